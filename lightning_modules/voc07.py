"""The PASCAL VOC 2007 detection metric: 11-point interpolated AP at IoU 0.5 with `difficult` objects ignored,
as the VOC2007 devkit computes it."""

from __future__ import annotations

import torch


def voc07_average_precision(
    detections: list[dict], truths: list[dict], num_classes: int, iou_threshold: float = 0.5
) -> dict[int, float]:
    """AP per class as the VOC2007 devkit's VOCevaldet computes it.

    detections[i] = {"boxes" (n, 4) XYXY, "scores" (n,), "labels" (n,)} and truths[i] = {"boxes", "labels",
    "difficult"} for image i. Per class, detections in descending score are matched greedily to the truth of
    highest IoU if it is ≥ threshold (the devkit's `>=`; IoU in float64, so an exact 0.5 counts) and not yet
    taken; a match to a `difficult` truth is neither a true nor a false positive, and difficult truths are not
    counted in the recall. AP is the mean over recall 0, 0.1, …, 1 of the highest precision at that recall or
    above. Classes with no non-difficult truth are left out (NaN). Boxes are continuous corners: the devkit's
    inclusive pixel boxes are x2 + 1 here (tests/metrics/test_references.py).
    """
    from torchvision.ops import box_iou

    results: dict[int, float] = {}
    for c in range(num_classes):
        gts = [(t["boxes"][t["labels"] == c], t["difficult"][t["labels"] == c]) for t in truths]
        positives = sum(int((~difficult).sum()) for _, difficult in gts)
        if positives == 0:
            results[c] = float("nan")
            continue
        found = [
            (float(s), i, b)
            for i, d in enumerate(detections)
            for s, b in zip(d["scores"][d["labels"] == c], d["boxes"][d["labels"] == c])
        ]
        found.sort(key=lambda f: -f[0])
        taken = [torch.zeros(len(b), dtype=torch.bool) for b, _ in gts]
        tp, fp = [], []
        for _, image, box in found:
            boxes, difficult = gts[image]
            best, j = (
                box_iou(box[None].double(), boxes.double())[0].max(0)
                if len(boxes)
                else (torch.tensor(0.0), None)
            )
            if best >= iou_threshold and difficult[j]:
                continue  # ignored: neither true nor false
            hit = bool(best >= iou_threshold and not taken[image][j])
            if hit:
                taken[image][j] = True
            tp.append(hit), fp.append(not hit)
        tps, fps = (
            torch.tensor(tp, dtype=torch.float64).cumsum(0),
            torch.tensor(fp, dtype=torch.float64).cumsum(0),
        )
        recall, precision = tps / positives, tps / (tps + fps).clamp(min=1e-12)
        results[c] = float(
            sum(
                (precision[recall >= t].max() if (recall >= t).any() else torch.tensor(0.0))
                for t in torch.linspace(0, 1, 11, dtype=torch.float64)
            )
            / 11
        )
    return results
