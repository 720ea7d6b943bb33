"""COCO's annotation format as the parser reads it: an image's targets, what the format promises of each
annotation, masks from polygons and RLE."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask


def target(annotations: list[dict], keypoints: dict[int, list], label_of: dict[int, int]) -> dict:
    """COCO annotations of one image → boxes (x0, y0, x1, y1), contiguous labels, and the raw extras."""
    kept = [a for a in annotations if a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
    return {
        "boxes": [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)],
        "labels": [label_of[a["category_id"]] for a in kept],
        "iscrowd": [a.get("iscrowd", 0) for a in kept],
        "segmentation": [a["segmentation"] for a in kept],
        "area": [a["area"] for a in kept],
        "keypoints": [keypoints.get(a["id"]) for a in kept],
        "annotation_ids": [a["id"] for a in kept],
        "degenerate": len(annotations) - len(kept),
    }


def annotation_problem(annotation: dict, info: dict, label_of: dict[int, int]) -> str | None:
    """What the COCO format promises of one annotation and this one breaks: a box inside its image (a pixel
    of slack for rounding), a known category."""
    x, y, w, h = annotation["bbox"]
    if x < -1 or y < -1 or x + w > info["width"] + 1 or y + h > info["height"] + 1 or w < 0 or h < 0:
        size = f"{info['width']}×{info['height']}"
        return f"box [x, y, w, h] = {annotation['bbox']} is not inside its {size} image"
    if annotation["category_id"] not in label_of:
        return f"category_id {annotation['category_id']} is not one of the file's categories"
    return None


def decode_masks(segmentations: list, height: int, width: int) -> np.ndarray:
    """Polygons, compressed and uncompressed RLE → (n, H, W) uint8 masks, as pycocotools' annToMask does."""
    masks = []
    for seg in segmentations:
        if isinstance(seg, dict) and not isinstance(
            seg["counts"], list
        ):  # compressed RLE: already pycocotools' own
            rle = {
                "size": seg["size"],
                "counts": seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"],
            }
        else:  # polygons, or uncompressed RLE
            rle = coco_mask.frPyObjects(seg, height, width)
            rle = coco_mask.merge(rle) if isinstance(rle, list) else rle
        masks.append(coco_mask.decode(rle))
    return np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
