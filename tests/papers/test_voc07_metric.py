"""The VOC2007 metric against a hand computation and against torchmetrics' COCO-style evaluator set to VOC's
single IoU threshold and 11 recall points (the two agree whenever no object is `difficult`)."""

import math

import torch
from torchmetrics.detection import MeanAveragePrecision

from lightning_modules.voc07 import voc07_average_precision


def box(x, y, size=10.0):
    return [x, y, x + size, y + size]


def test_a_hand_example():
    truths = [
        {
            "boxes": torch.tensor([box(0, 0), box(50, 50), box(100, 100)]),
            "labels": torch.tensor([0, 0, 0]),
            "difficult": torch.tensor([False, False, True]),
        }
    ]
    # Scores: a hit (0.9), a miss (0.8), the difficult one (0.7, ignored), a duplicate of the first (0.6,
    # false), a hit (0.5). Precision/recall after each counted detection: (1, 1/2), (1/2, 1/2), (1/3, 1/2),
    # (1/2, 1).
    detections = [
        {
            "boxes": torch.tensor([box(1, 0), box(200, 200), box(100, 101), box(0, 1), box(50, 51)]),
            "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]),
            "labels": torch.tensor([0, 0, 0, 0, 0]),
        }
    ]
    ap = voc07_average_precision(detections, truths, num_classes=2)
    # Recall ≥ 0 … 0.5: best precision 1 (6 points); recall 0.6 … 1: 1/2 (5 points).
    assert math.isclose(ap[0], (6 * 1 + 5 * 0.5) / 11) and math.isnan(ap[1])


def test_agrees_with_torchmetrics_at_iou_half_and_eleven_recall_points():
    g = torch.Generator().manual_seed(0)
    truths, detections = [], []
    for _ in range(6):
        n = int(torch.randint(1, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 200
        boxes = torch.cat([xy, xy + 20 + torch.rand(n, 2, generator=g) * 40], 1)
        labels = torch.randint(0, 3, (n,), generator=g)
        truths.append({"boxes": boxes, "labels": labels, "difficult": torch.zeros(n, dtype=torch.bool)})
        jitter = boxes + torch.randn(n, 4, generator=g) * 6  # some above IoU 0.5, some below
        noise = torch.cat([torch.rand(3, 2, generator=g) * 200, torch.rand(3, 2, generator=g) * 200 + 240], 1)
        detections.append(
            {
                "boxes": torch.cat([jitter, noise]),
                "scores": torch.rand(n + 3, generator=g),
                "labels": torch.cat([labels, torch.randint(0, 3, (3,), generator=g)]),
            }
        )
    ours = voc07_average_precision(detections, truths, num_classes=3)
    reference = MeanAveragePrecision(
        iou_thresholds=[0.5],
        rec_thresholds=torch.linspace(0, 1, 11).tolist(),
        class_metrics=True,
        max_detection_thresholds=[1, 10, 100],
    )
    reference.update(detections, [{"boxes": t["boxes"], "labels": t["labels"]} for t in truths])
    theirs = reference.compute()
    checked = 0
    for c, value in zip(theirs["classes"].tolist(), theirs["map_per_class"].tolist()):
        if value == -1:  # torchmetrics' mark for a class with no truth
            assert math.isnan(ours[c])
            continue
        checked += 1
        assert math.isclose(ours[c], value, abs_tol=1e-6), (c, ours[c], value)
    assert checked >= 2
