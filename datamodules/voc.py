"""PASCAL VOC 2007 and 2012 (Everingham et al. 2010): 20 object classes, boxes and segmentation masks.

Raw layout: VOCdevkit/VOC2007 (trainval + test) and VOCdevkit/VOC2012 (trainval), each with JPEGImages/,
Annotations/*.xml, ImageSets/Main/*.txt, and (2012) ImageSets/Segmentation/*.txt with SegmentationClass/
palette PNGs (class index per pixel, 255 on object borders and "difficult" regions). torchvision's
VOCDetection and VOCSegmentation are the parsers. Splits: `train` = VOC07 trainval + VOC12 trainval (the
"07+12" of SSD and Faster R-CNN), `test` = VOC07 test, `seg_train` / `seg_val` = VOC12 segmentation.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeInt, PositiveInt
from torchvision import tv_tensors
from torchvision.datasets import VOCDetection, VOCSegmentation
from torchvision.datasets.voc import DATASET_YEAR_DICT
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError, extract
from datamodules.files import download as fetch_url
from datamodules.images import list_collate, open_image
from datamodules.voc_replica import synthesize

CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
ARCHIVES = [DATASET_YEAR_DICT[k] for k in ("2007", "2007-test", "2012")]  # url, filename, md5, base_dir
DETECTION = {"train": [("2007", "trainval"), ("2012", "trainval")], "test": [("2007", "test")]}
SEGMENTATION = {"seg_train": "train", "seg_val": "val"}
IGNORE = 255


def voc_root(raw_dir: Path, year: str) -> Path:
    return raw_dir / "VOCdevkit" / f"VOC{year}"


def download(raw_dir: Path, downloads: Path) -> None:
    for archive in ARCHIVES:
        extract(fetch_url(archive["url"], downloads / archive["filename"], archive["md5"]), raw_dir)


def check_layout(raw_dir: Path) -> None:
    needed = [
        voc_root(raw_dir, y) / p
        for y in ("2007", "2012")
        for p in ("JPEGImages", "Annotations", "ImageSets/Main")
    ]
    needed += [
        voc_root(raw_dir, "2007") / "ImageSets/Main/test.txt",
        voc_root(raw_dir, "2012") / "SegmentationClass",
    ]
    if missing := [str(p) for p in needed if not p.exists()]:
        raise DataError(
            f"{raw_dir}: not a VOCdevkit with VOC2007 (trainval and test) and VOC2012; missing "
            f"{', '.join(missing)}"
        )


def classes(raw_dir: Path, split: str) -> list[str]:
    return ["background", *CLASSES] if split in SEGMENTATION else CLASSES


def objects(annotation: dict, xml_path: str) -> dict:
    """VOC's 1-based inclusive pixel boxes → 0-based (x0, y0, x1, y1); a box that is not positive is an
    error."""
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(annotation["annotation"].get("object", []), 1):
        b = obj["bndbox"]
        x0, y0, x1, y1 = float(b["xmin"]) - 1, float(b["ymin"]) - 1, float(b["xmax"]), float(b["ymax"])
        if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
            raise DataError(f"{xml_path}: object {number} ({obj['name']}) has an invalid box {b}")
        if obj["name"] not in CLASSES:
            raise DataError(f"{xml_path}: object {number} has unknown class {obj['name']!r}")
        boxes.append([x0, y0, x1, y1])
        labels.append(CLASSES.index(obj["name"]))
        difficult.append(int(obj.get("difficult", 0)))
    size = annotation["annotation"]["size"]
    return {
        "boxes": boxes,
        "labels": labels,
        "difficult": difficult,
        "size": [int(size["height"]), int(size["width"])],
    }


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    if split in SEGMENTATION:
        parsed = VOCSegmentation(raw_dir, year="2012", image_set=SEGMENTATION[split], download=False)
        for image, mask in zip(parsed.images, parsed.masks):
            yield {
                "__key__": f"{split}/VOC2012/{Path(image).stem}",
                "jpg": Path(image).read_bytes(),
                "png": Path(mask).read_bytes(),
            }
        return
    for year, image_set in DETECTION[split]:
        parsed = VOCDetection(raw_dir, year=year, image_set=image_set, download=False)
        for image, xml in zip(parsed.images, parsed.annotations):
            key = f"{split}/VOC{year}/{Path(image).stem}"
            try:
                target = objects(parsed.parse_voc_xml(ET.parse(xml).getroot()), xml)
            except (DataError, ET.ParseError, KeyError, ValueError) as error:  # a DataError names the file
                why = (
                    error
                    if isinstance(error, DataError)
                    else f"{xml}: not a valid VOC annotation ({error!r})"
                )
                yield {"__key__": key, "__error__": f"{why}"}
                continue
            yield {"__key__": key, "jpg": Path(image).read_bytes(), "json": target}


# ---- the synthetic replica ---------------------------------------------------------------------------------


def palette() -> list[int]:
    """VOC's colour map: bits of the class index spread over R, G and B."""
    colours = []
    for i in range(256):
        r = g = b = 0
        for bit in range(8):
            r |= ((i >> 0) & 1) << (7 - bit)
            g |= ((i >> 1) & 1) << (7 - bit)
            b |= ((i >> 2) & 1) << (7 - bit)
            i >>= 3
        colours += [r, g, b]
    return colours


# ---- the DataModule ----------------------------------------------------------------------------------------


class VOC(ShardDataModule):
    """Detection: (image, {boxes, labels, difficult}) with SSD's augmentation; segmentation: (image, mask)."""

    name = "voc"
    # SSD reports VOC07 test and FCN the segmentation val: checkpoints are chosen on 1 in 10 training images.
    held_out_every = 10
    splits = ("train", "test", "seg_train", "seg_val")
    decode_keys = ("json",)  # images decoded in sample(): palette masks keep their indices
    collate = staticmethod(list_collate)
    download, synthesize, samples, classes, check_layout = map(
        staticmethod, (download, synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        task: Literal["detection", "segmentation"] = "detection",
        batch_size: PositiveInt = 32,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 1000,
        size: PositiveInt = 300,
        augment: bool = True,
        keep_difficult: bool = False,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.task, self.size, self.augment, self.keep_difficult = task, size, augment, keep_difficult

    def transform(self, split: str) -> v2.Compose:
        train = self.augment and split in ("train", "seg_train")
        if self.task == "detection":
            # SSD §2.2/§3.6: photometric distortion, zoom-out expansion, min-IoU crops, flips; then a fixed
            # size.
            steps = (
                [
                    v2.RandomPhotometricDistort(),
                    v2.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0}),
                    v2.RandomIoUCrop(),
                    v2.RandomHorizontalFlip(),
                ]
                if train
                else []
            )
            # Boxes cropped away take their label and difficult flag with them.
            steps += [
                v2.Resize((self.size, self.size), antialias=True),
                v2.SanitizeBoundingBoxes(
                    labels_getter=lambda inputs: (inputs[1]["labels"], inputs[1]["difficult"])
                ),
            ]
        else:
            steps = (
                [v2.RandomResizedCrop(self.size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()]
                if train
                else []
            )
        return v2.Compose([*steps, v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)])

    def sample(self, split: str):
        transform = self.transform(split)
        if self.task == "segmentation":
            return lambda s: transform(
                tv_tensors.Image(v2.functional.pil_to_tensor(open_image(s["jpg"]).convert("RGB"))),
                tv_tensors.Mask(torch.from_numpy(np.array(open_image(s["png"]), dtype=np.int64))),
            )

        train = split == "train"

        def detection(s: dict):
            target = s["json"]
            # Training drops `difficult` objects unless asked; evaluation keeps them, flagged, for the VOC
            # metric to ignore.
            keep = [i for i, d in enumerate(target["difficult"]) if self.keep_difficult or not train or not d]
            image = tv_tensors.Image(v2.functional.pil_to_tensor(open_image(s["jpg"]).convert("RGB")))
            boxes = tv_tensors.BoundingBoxes(
                torch.tensor([target["boxes"][i] for i in keep], dtype=torch.float32).reshape(-1, 4),
                format="XYXY",
                canvas_size=tuple(image.shape[-2:]),
            )
            return transform(
                image,
                {
                    "boxes": boxes,
                    "labels": torch.tensor([target["labels"][i] for i in keep], dtype=torch.int64),
                    "difficult": torch.tensor([target["difficult"][i] for i in keep], dtype=torch.bool),
                },
            )

        return detection

    def split_for(self, stage: str) -> str:
        return {
            "detection": {"train": "train", "test": "test"},
            "segmentation": {"train": "seg_train", "test": "seg_val"},
        }[self.task][stage]

    @property
    def train_split(self) -> str:
        return self.split_for("train")

    def train_loader(self):
        return self.loader(self.train_split)

    def test_dataloader(self):
        return self.loader(self.split_for("test"))
