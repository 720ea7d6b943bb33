"""Content and style images for Neural Style (Gatys, Ecker & Bethge 2015): every content image paired with
every style image.

Raw layout: content/*.{jpg,png} and style/*.{jpg,png}. Sources: `synthetic` (real photographs and textures
from scikit-image, so the replica is real imagery) and `local` (your two folders, under `path:`). There is
no download: the paper's images are paintings and photographs, not a data set.
A pair's index is its class, so the model learns from the shards' meta how many images it optimises
(`num_classes`). The train, val and test splits hold the same pairs: the optimised image is both what is
trained and what is scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import NonNegativeInt, PositiveInt, conint
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError
from datamodules.images import open_image
from datamodules.synthetic import encode, photo

CONTENT = ("astronaut", "chelsea", "coffee")  # photographs
STYLE = ("immunohistochemistry", "brick", "gravel")  # a stained-tissue "painting" and two textures
SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDERS = ("content", "style")


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)


def check_layout(raw_dir: Path) -> None:
    for folder in FOLDERS:
        if not (raw_dir / folder).is_dir() or not images_in(raw_dir / folder):
            raise DataError(
                f"{raw_dir / folder}: expected a folder of {'/'.join(SUFFIXES)} images "
                f"(the layout is {raw_dir}/content/ and {raw_dir}/style/)"
            )


def pairs(raw_dir: Path) -> list[tuple[Path, Path]]:
    return list(product(images_in(raw_dir / "content"), images_in(raw_dir / "style")))


def classes(raw_dir: Path, split: str) -> list[str]:
    return [f"{content.stem}+{style.stem}" for content, style in pairs(raw_dir)]


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    for index, (content, style) in enumerate(pairs(raw_dir)):
        yield {
            "__key__": f"{split}/{content.stem}+{style.stem}",
            "content.img": content.read_bytes(),
            "style.img": style.read_bytes(),
            "cls": index,
        }


def square(image: np.ndarray, size: int) -> np.ndarray:
    side = min(image.shape[:2])
    y, x = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return np.asarray(
        Image.fromarray(image[y : y + side, x : x + side]).resize((size, size), Image.Resampling.LANCZOS)
    )


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    contents: conint(gt=0, le=len(CONTENT)) = 2,
    styles: conint(gt=0, le=len(STYLE)) = 2,
    size: PositiveInt = 256,
) -> None:
    """Centre squares of scikit-image's photographs (content) and textures (style); `seed` is unused: the
    images are fixed."""
    for folder, names, count in (("content", CONTENT, contents), ("style", STYLE, styles)):
        (raw_dir / folder).mkdir(parents=True, exist_ok=True)
        for name in names[:count]:
            (raw_dir / folder / f"{name}.png").write_bytes(encode(square(photo(name), size), "PNG"))


class Style(ShardDataModule):
    """(content, style, pair index), both images resized to `size` × `size` in [0, 1]; a batch holds every
    pair."""

    name = "style"
    sources = ("synthetic", "local")
    splits = ("train", "val", "test")
    decode_keys = ()  # JPEG or PNG: opened in sample()
    synthesize, samples, classes, check_layout = map(
        staticmethod, (synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        size: PositiveInt = 512,
        batch_size: PositiveInt | None = None,
        num_workers: NonNegativeInt = 0,
    ):
        """`batch_size` None: every pair in one batch, so each step optimises every image."""
        super().__init__(
            shards_dir, seed, batch_size=batch_size or 1, num_workers=num_workers, shuffle_buffer=1
        )
        self.batch_size = batch_size or self.meta["splits"]["train"]["samples"]
        self.transform = v2.Compose(
            [v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
        )

    def sample(self, split: str):
        def triple(s: dict):
            content, style = (
                self.transform(open_image(s[k]).convert("RGB")) for k in ("content.img", "style.img")
            )
            return content, style, int(s["cls"])  # left undecoded with the images: bytes

        return triple
