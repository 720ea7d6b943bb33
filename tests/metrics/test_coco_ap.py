"""COCO AP as the papers report it (FPN, Mask R-CNN): the project's metric against pycocotools' COCOeval
itself, on random but realistic detections (jittered truths, misses, false alarms, crowd regions, masks
smaller than their boxes so COCO's `area` and the box's differ). They agree on every summary number, AP by
size included, to float32's precision (6e-8): torchmetrics returns float32, COCOeval float64."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightning_modules.detection import coco_metric

SUMMARY = {"map": 0, "map_50": 1, "map_75": 2, "map_small": 3, "map_medium": 4, "map_large": 5, "mar_100": 8}


def scene(rng: np.random.Generator, size: int = 320, classes: int = 3):
    """Truth and detections for one image: boxes, labels, crowd flags, masks (an ellipse inside each box)."""
    n = int(rng.integers(1, 7))
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(8, size * 0.5, (n, 2))  # small, medium and large objects
    boxes = np.concatenate([xy, np.minimum(xy + wh, size - 1)], 1).round(1)
    yy, xx = np.mgrid[:size, :size]
    masks = np.stack(
        [
            ((xx - (b[0] + b[2]) / 2) / ((b[2] - b[0]) / 2)) ** 2
            + ((yy - (b[1] + b[3]) / 2) / ((b[3] - b[1]) / 2)) ** 2
            <= 1
            for b in boxes
        ]
    )
    truth = {
        "boxes": boxes,
        "labels": rng.integers(0, classes, n),
        "iscrowd": (rng.random(n) < 0.1).astype(int),
        "area": masks.reshape(n, -1).sum(1).astype(float),
        "masks": masks,
    }
    keep = rng.random(n) > 0.2  # some objects missed
    jitter = rng.normal(0, 4, (n, 4)) * (wh.mean(1, keepdims=True) / 40)
    found = np.concatenate(
        [(boxes + jitter)[keep], np.concatenate([xy, xy + 20], 1)[: int(rng.integers(0, 3))]]
    )
    labels = np.concatenate([truth["labels"][keep], rng.integers(0, classes, len(found) - keep.sum())])
    return truth, {
        "boxes": found.clip(0, size - 1),
        "labels": labels,
        "scores": rng.random(len(found)).round(3),
    }


def reference(images, kind: str) -> np.ndarray:
    """COCOeval's 12 summary numbers on the same images, built as COCO's own json."""
    size = 320
    gt, dt, aid = COCO(), [], 1
    gt.dataset = {
        "images": [{"id": i, "height": size, "width": size} for i in range(len(images))],
        "categories": [{"id": c} for c in range(3)],
        "annotations": [],
    }
    for i, (truth, found) in enumerate(images):
        for box, label, crowd, area, mask in zip(
            *(truth[k] for k in ("boxes", "labels", "iscrowd", "area", "masks"))
        ):
            x0, y0, x1, y1 = box
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            gt.dataset["annotations"].append(
                {
                    "id": aid,
                    "image_id": i,
                    "category_id": int(label),
                    "iscrowd": int(crowd),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(area),
                    "segmentation": rle,
                }
            )
            aid += 1
        for box, label, score in zip(found["boxes"], found["labels"], found["scores"]):
            x0, y0, x1, y1 = box
            entry = {
                "image_id": i,
                "category_id": int(label),
                "score": float(score),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            }
            if kind == "segm":
                mask = np.zeros((size, size), np.uint8)
                mask[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = 1
                entry["segmentation"] = mask_utils.encode(np.asfortranarray(mask))
            dt.append(entry)
    gt.createIndex()
    evaluation = COCOeval(gt, gt.loadRes(dt), kind)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats


@pytest.mark.parametrize("kind", ["bbox", "segm"])
def test_coco_ap_equals_cocoeval(kind):
    rng = np.random.default_rng(3)
    images = [scene(rng) for _ in range(12)]
    metric = coco_metric(kind)
    for truth, found in images:
        t = {
            "boxes": torch.tensor(truth["boxes"], dtype=torch.float32),
            "labels": torch.tensor(truth["labels"]),
            "iscrowd": torch.tensor(truth["iscrowd"]),
            "area": torch.tensor(truth["area"], dtype=torch.float32),
        }
        d = {
            "boxes": torch.tensor(found["boxes"], dtype=torch.float32),
            "labels": torch.tensor(found["labels"]),
            "scores": torch.tensor(found["scores"], dtype=torch.float32),
        }
        if kind == "segm":
            t["masks"] = torch.tensor(truth["masks"])
            masks = torch.zeros(len(found["boxes"]), 320, 320, dtype=torch.bool)
            for m, (x0, y0, x1, y1) in zip(masks, found["boxes"]):
                m[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
            d["masks"] = masks
        metric.update([d], [t])
    ours, theirs = metric.compute(), reference(images, kind)
    for name, index in SUMMARY.items():
        assert float(ours[name]) == pytest.approx(theirs[index], abs=6e-8), name


def test_an_iou_on_a_threshold_counts_as_cocoeval_counts_it():
    """IoU exactly 0.55 matches at COCO's (float64) 0.55 threshold; on torchmetrics' float32 grid
    (0.5500000119) it did not, and AP fell from 0.2 to 0.1 for this one detection."""
    truth = {
        "boxes": np.array([[0.0, 0.0, 100.0, 100.0]]),
        "labels": np.array([0]),
        "iscrowd": np.array([0]),
        "area": np.array([10_000.0]),
        "masks": np.ones((1, 320, 320), bool),
    }
    found = {"boxes": np.array([[0.0, 0.0, 55.0, 100.0]]), "labels": np.array([0]), "scores": np.array([0.9])}
    metric = coco_metric("bbox")
    metric.update(
        [
            {
                k: torch.tensor(v, dtype=torch.float32 if k != "labels" else torch.int64)
                for k, v in found.items()
            }
        ],
        [
            {
                "boxes": torch.tensor(truth["boxes"], dtype=torch.float32),
                "labels": torch.tensor(truth["labels"]),
                "iscrowd": torch.tensor(truth["iscrowd"]),
                "area": torch.tensor(truth["area"], dtype=torch.float32),
            }
        ],
    )
    assert reference([(truth, found)], "bbox")[0] == pytest.approx(0.2)
    assert float(metric.compute()["map"]) == pytest.approx(0.2)


def test_proposal_recall_equals_cocoevals_average_recall():
    """FPN's Table 1: AR@100 and AR@1000 of class-agnostic proposals (best objectness first), against
    COCOeval with one category and maxDets 10/100/1000."""
    from lightning_modules.fpn import proposal_recall

    rng = np.random.default_rng(5)
    images, gt, dt = [], COCO(), []
    gt.dataset = {"images": [], "categories": [{"id": 0}], "annotations": []}
    for i in range(8):
        truth, _ = scene(rng)
        n = int(rng.integers(150, 1200))  # jittered truths among random boxes, as an RPN's are
        xy = rng.uniform(0, 250, (n, 2))
        proposals = np.concatenate([xy, xy + rng.uniform(5, 70, (n, 2))], 1)
        near = rng.integers(0, len(truth["boxes"]), n // 4)
        proposals[: n // 4] = truth["boxes"][near] + rng.normal(0, 6, (n // 4, 4))
        images.append(
            (
                torch.tensor(proposals, dtype=torch.float32),
                torch.tensor(truth["boxes"], dtype=torch.float32),
                torch.tensor(truth["iscrowd"]),
            )
        )
        gt.dataset["images"].append({"id": i, "height": 320, "width": 320})
        for box, crowd in zip(truth["boxes"], truth["iscrowd"]):
            x0, y0, x1, y1 = box
            gt.dataset["annotations"].append(
                {
                    "id": len(gt.dataset["annotations"]) + 1,
                    "image_id": i,
                    "category_id": 0,
                    "iscrowd": int(crowd),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float((x1 - x0) * (y1 - y0)),
                }
            )
        for box, score in zip(images[-1][0].tolist(), torch.linspace(1, 0, n).tolist()):
            x0, y0, x1, y1 = box
            dt.append({"image_id": i, "category_id": 0, "score": score, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    gt.createIndex()
    evaluation = COCOeval(gt, gt.loadRes(dt), "bbox")
    evaluation.params.maxDets = [10, 100, 1000]
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    ar100, ar1000 = proposal_recall(images)
    assert float(ar100) == pytest.approx(evaluation.stats[7], abs=6e-8)
    assert float(ar1000) == pytest.approx(evaluation.stats[8], abs=6e-8)
