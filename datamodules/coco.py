"""MS COCO 2017 (Lin et al. 2014): 118k training and 5k validation images, 80 categories, boxes and masks.

Raw layout: train2017/, val2017/ and annotations/instances_{train,val}2017.json (+ person_keypoints_*.json).
torchvision's CocoDetection (pycocotools) is the parser. Samples keep the annotation as COCO wrote it
(polygons or RLE, iscrowd, keypoints) with boxes as (x0, y0, x1, y1) and category ids mapped to contiguous
labels; masks are decoded with pycocotools when loading. Boxes under one pixel wide or high are dropped
and counted (`degenerate` in the sample's json).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as coco_mask
from pydantic import NonNegativeInt, PositiveInt
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.coco_format import annotation_problem, decode_masks, target
from datamodules.files import DataError, extract, read_json
from datamodules.files import download as fetch_url
from datamodules.images import list_collate
from datamodules.synthetic import encode, scene

ARCHIVES = {
    "train2017.zip": "cced6f7f71b7629ddf16f17bbcfab6b2",
    "val2017.zip": "442b8da7639aecaf257c1dceb8ba8c80",
    "annotations_trainval2017.zip": "f4bbac642086de4f52a3fdda2de5fa2c",
}
URLS = {
    "train2017.zip": "http://images.cocodataset.org/zips/train2017.zip",
    "val2017.zip": "http://images.cocodataset.org/zips/val2017.zip",
    "annotations_trainval2017.zip": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
}
SPLITS = {"train": "train2017", "val": "val2017"}
REFETCH = "fix the file or fetch the dataset again"  # what a damaged annotation file calls for
# The first ten COCO categories, with their real (non-contiguous beyond 80) ids, for the replica.
CATEGORIES = [
    (1, "person", "person"),
    (2, "bicycle", "vehicle"),
    (3, "car", "vehicle"),
    (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"),
    (6, "bus", "vehicle"),
    (7, "train", "vehicle"),
    (8, "truck", "vehicle"),
    (9, "boat", "vehicle"),
    (10, "traffic light", "outdoor"),
]
# The 17 person keypoints of COCO's person_keypoints files, in order (also what Keypoint R-CNN predicts).
# fmt: off
KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle"]
# fmt: on


def annotation_file(raw_dir: Path, split: str, kind: str = "instances") -> Path:
    return raw_dir / "annotations" / f"{kind}_{SPLITS[split]}.json"


def download(raw_dir: Path, downloads: Path) -> None:
    for name, md5 in ARCHIVES.items():
        extract(fetch_url(URLS[name], downloads / name, md5), raw_dir)


def check_layout(raw_dir: Path) -> None:
    needed = [raw_dir / f for f in SPLITS.values()] + [annotation_file(raw_dir, s) for s in SPLITS]
    if missing := [str(p) for p in needed if not p.exists()]:
        raise DataError(f"{raw_dir}: not a COCO 2017 copy; missing {', '.join(missing)}")


def categories(raw_dir: Path) -> list[dict]:
    return sorted(read_json(annotation_file(raw_dir, "val"), REFETCH)["categories"], key=lambda c: c["id"])


def classes(raw_dir: Path, split: str) -> list[str]:
    return [c["name"] for c in categories(raw_dir)]


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            parsed = CocoDetection(raw_dir / SPLITS[split], annotation_file(raw_dir, split))
    except json.JSONDecodeError as error:  # pycocotools' own json.load names no file
        path = annotation_file(raw_dir, split)
        raise DataError(f"{path}: not valid JSON ({error}); {REFETCH}") from None
    label_of = {c["id"]: i for i, c in enumerate(categories(raw_dir))}
    people = annotation_file(raw_dir, split, "person_keypoints")
    keypoints = (
        {a["id"]: a["keypoints"] for a in read_json(people, REFETCH)["annotations"]}
        if people.exists()
        else {}
    )
    for image_id in parsed.ids:
        info = parsed.coco.loadImgs(image_id)[0]
        path = raw_dir / SPLITS[split] / info["file_name"]
        key = f"{split}/{Path(info['file_name']).stem}"
        if not path.exists():
            yield {
                "__key__": key,
                "__error__": (
                    f"{annotation_file(raw_dir, split)}: image {image_id} ({info['file_name']}) is missing"
                ),
            }
            continue
        annotations = parsed.coco.loadAnns(parsed.coco.getAnnIds(imgIds=image_id))
        problems = [
            f"annotation {a['id']}: {problem}"
            for a in annotations
            if (problem := annotation_problem(a, info, label_of))
        ]
        if problems:
            where = f"{annotation_file(raw_dir, split)}: image {image_id} ({info['file_name']})"
            yield {"__key__": key, "__error__": f"{where}, {problems[0]}"}
            continue
        yield {
            "__key__": key,
            "jpg": path.read_bytes(),
            "json": {
                "image_id": image_id,
                "size": [info["height"], info["width"]],
                **target(annotations, keypoints, label_of),
            },
        }


# ---- the synthetic replica -------------------------------------------------------------------------------


def synthesize(raw_dir: Path, seed: int = 0, *, train: PositiveInt = 40, val: PositiveInt = 16) -> None:
    """Instances JSON with polygons, one crowd region as uncompressed RLE per few images, images with no
    annotation, one degenerate box, and person keypoints, as in the real files."""
    rng, ann_id = np.random.default_rng(seed), 1
    cats = [{"id": i, "name": n, "supercategory": s} for i, n, s in CATEGORIES]
    (raw_dir / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val)):
        (raw_dir / SPLITS[split]).mkdir(parents=True)
        images, annotations, people = [], [], []
        for n in range(count):
            image_id = 1000 * (split == "val") + n + 1
            height, width = int(rng.integers(200, 320)), int(rng.integers(240, 400))
            image, objs = scene(
                rng, height, width, len(CATEGORIES), 0 if n % 7 == 6 else int(rng.integers(1, 5))
            )
            name = f"{image_id:012d}.jpg"
            (raw_dir / SPLITS[split] / name).write_bytes(encode(image, "JPEG", quality=90))
            images.append({"id": image_id, "file_name": name, "height": height, "width": width})
            for k, obj in enumerate(objs):
                x0, y0, x1, y1 = obj["box"]
                crowd = n % 5 == 0 and k == 0
                if crowd:  # crowd regions are uncompressed RLE in COCO (column-major run lengths)
                    rle = coco_mask.encode(np.asfortranarray(obj["mask"].astype(np.uint8)))
                    segmentation = {"size": [height, width], "counts": _uncompressed(obj["mask"])}
                    area = float(coco_mask.area(rle))
                else:
                    segmentation, area = (
                        [obj["polygon"].round(2).flatten().tolist()],
                        float(obj["mask"].sum()),
                    )
                ann = {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": CATEGORIES[obj["cls"]][0],
                    "iscrowd": int(crowd),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": area,
                    "segmentation": segmentation,
                }
                annotations.append(ann)
                if obj["cls"] == 0:
                    points = np.stack([rng.uniform(x0, x1, 17), rng.uniform(y0, y1, 17), np.full(17, 2)], 1)
                    people.append(
                        {**ann, "keypoints": points.round(1).flatten().tolist(), "num_keypoints": 17}
                    )
                ann_id += 1
        if split == "train" and annotations:  # a zero-width box, as a few real annotations have
            annotations.append(
                {
                    **annotations[0],
                    "id": ann_id,
                    "bbox": [10.0, 10.0, 0.0, 5.0],
                    "iscrowd": 0,
                    "segmentation": [[10, 10, 10, 15, 10, 12]],
                }
            )
        info = {"description": "reprozoo synthetic COCO replica", "version": "1.0"}
        (raw_dir / "annotations" / f"instances_{SPLITS[split]}.json").write_text(
            json.dumps({"info": info, "images": images, "annotations": annotations, "categories": cats})
        )
        person_cat = [
            {**cats[0], "keypoints": KEYPOINTS, "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13]]}
        ]
        (raw_dir / "annotations" / f"person_keypoints_{SPLITS[split]}.json").write_text(
            json.dumps({"info": info, "images": images, "annotations": people, "categories": person_cat})
        )


def _uncompressed(mask: np.ndarray) -> list[int]:
    """Run lengths of the column-major flattened mask, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], changes])).tolist()


# ---- the DataModule ----------------------------------------------------------------------------------------


class COCO(ShardDataModule):
    """(image, {boxes, labels, iscrowd, masks}) per sample, with flips for training; lists per batch."""

    name = "coco"
    # The papers report val2017 (minival): checkpoints are chosen on 1 in 20 training images.
    held_out_every = 20
    splits = ("train", "val")
    image_mode = "pilrgb"
    collate = staticmethod(list_collate)
    download, synthesize, samples, classes, check_layout = map(
        staticmethod, (download, synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 16,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 1000,
        masks: bool = True,
        skip_empty: bool = True,
        augment: bool = True,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.masks, self.skip_empty, self.augment = masks, skip_empty, augment

    def sample(self, split: str):
        steps = [v2.RandomHorizontalFlip()] if split == "train" and self.augment else []
        transform = v2.Compose(
            [*steps, v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
        )

        def coco(s: dict):
            t, (height, width) = s["json"], s["json"]["size"]
            target = {
                "boxes": tv_tensors.BoundingBoxes(
                    torch.tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4),
                    format="XYXY",
                    canvas_size=(height, width),
                ),
                "labels": torch.tensor(t["labels"], dtype=torch.int64),
                "iscrowd": torch.tensor(t["iscrowd"], dtype=torch.int64),
                "area": torch.tensor(t["area"], dtype=torch.float32),  # COCO's (the mask's), for AP by size
                "image_id": t["image_id"],
            }
            if self.masks:
                target["masks"] = tv_tensors.Mask(
                    torch.from_numpy(decode_masks(t["segmentation"], height, width))
                )
            return transform(tv_tensors.Image(v2.functional.pil_to_tensor(s["jpg"])), target)

        return coco

    def keep(self, split: str):
        # torchvision's detection references also drop images without annotations from training.
        return (lambda s: bool(s["json"]["boxes"])) if split == "train" and self.skip_empty else None
