"""ImageNet ILSVRC2012 (Russakovsky et al. 2015): 1.28M training and 50,000 validation images of 1000 classes.

Raw layout: the three official archives, as torchvision.datasets.ImageNet expects them in its root:
ILSVRC2012_img_train.tar (one tar per wnid inside), ILSVRC2012_img_val.tar (ILSVRC2012_val_%08d.JPEG) and
ILSVRC2012_devkit_t12.tar.gz (data/meta.mat: the synsets; data/ILSVRC2012_validation_ground_truth.txt).
Images are streamed straight out of the tars instead of extracted (torchvision extracts ~150 GB first);
the devkit is read the way torchvision's parse_devkit_archive reads it. Images that are not RGB JPEGs
(grayscale, CMYK, the PNG named .JPEG) are re-encoded as RGB JPEG when sharded.
There is no public download: `download` says which files to obtain, and `local` reads them.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from pydantic import NonNegativeInt, PositiveInt
from torchvision.datasets.imagenet import ARCHIVE_META
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError
from datamodules.images import classification_sample
from datamodules.shards import as_rgb_jpeg
from datamodules.synthetic import encode, object_image

TRAIN_TAR, VAL_TAR, DEVKIT = (ARCHIVE_META[k][0] for k in ("train", "val", "devkit"))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The first ten ILSVRC2012 synsets, for the replica.
SYNSETS = [
    ("n01440764", "tench, Tinca tinca"),
    ("n01443537", "goldfish, Carassius auratus"),
    ("n01484850", "great white shark, white shark"),
    ("n01491361", "tiger shark, Galeocerdo cuvieri"),
    ("n01494475", "hammerhead, hammerhead shark"),
    ("n01496331", "electric ray, crampfish"),
    ("n01498041", "stingray"),
    ("n01514668", "cock"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich, Struthio camelus"),
]


def download(raw_dir: Path, downloads: Path) -> None:
    raise DataError(
        "ImageNet has no public download. Obtain ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "
        "ILSVRC2012_devkit_t12.tar.gz from https://image-net.org/download-images (after accepting its "
        "terms), "
        "put them in one folder, and set datasets.imagenet.source: local with path: that folder"
    )


def check_layout(raw_dir: Path) -> None:
    missing = [f for f in (TRAIN_TAR, VAL_TAR, DEVKIT) if not (raw_dir / f).exists()]
    if missing:
        raise DataError(f"{raw_dir}: not an ILSVRC2012 copy; missing {', '.join(missing)}")


def read_devkit(raw_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(wnid, names) of the leaf synsets in ILSVRC2012_ID order, and the wnid of each validation image."""
    import scipy.io

    with tarfile.open(raw_dir / DEVKIT) as tar:

        def member(name: str) -> bytes:
            try:
                return tar.extractfile(f"ILSVRC2012_devkit_t12/data/{name}").read()
            except KeyError:
                raise DataError(f"{raw_dir / DEVKIT}: no data/{name} inside") from None

        synsets = scipy.io.loadmat(io.BytesIO(member("meta.mat")), squeeze_me=True)["synsets"]
        truth = member("ILSVRC2012_validation_ground_truth.txt").decode().split()
    leaves = sorted((int(s[0]), str(s[1]), str(s[2])) for s in synsets if int(s[4]) == 0)  # num_children == 0
    by_id = {ilsvrc_id: wnid for ilsvrc_id, wnid, _ in leaves}
    return [(wnid, words) for _, wnid, words in leaves], [by_id[int(i)] for i in truth]


def classes(raw_dir: Path, split: str) -> list[str]:
    return [f"{wnid} {words}" for wnid, words in read_devkit(raw_dir)[0]]


VAL_NAME = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    synsets, val_wnids = read_devkit(raw_dir)
    index = {wnid: i for i, (wnid, _) in enumerate(synsets)}
    if split == "train":
        with tarfile.open(raw_dir / TRAIN_TAR) as outer:
            for inner_info in outer:
                wnid = inner_info.name.removesuffix(".tar")
                if wnid not in index:  # nothing is extracted, but a foreign member is named, not a KeyError
                    yield foreign(raw_dir / TRAIN_TAR, inner_info.name, "one of the 1000 <wnid>.tar archives")
                    continue
                with tarfile.open(fileobj=outer.extractfile(inner_info)) as inner:
                    for info in inner:
                        yield _sample(
                            f"train/{wnid}/{Path(info.name).stem}",
                            inner.extractfile(info).read(),
                            index[wnid],
                            raw_dir,
                        )
    else:
        with tarfile.open(raw_dir / VAL_TAR) as tar:
            for info in sorted(tar.getmembers(), key=lambda m: m.name):
                if not VAL_NAME.fullmatch(info.name):
                    yield foreign(raw_dir / VAL_TAR, info.name, "ILSVRC2012_val_<8 digits>.JPEG")
                    continue
                number = int(Path(info.name).stem.rsplit("_", 1)[1])  # ILSVRC2012_val_00000001 → 1
                yield _sample(
                    f"val/{Path(info.name).stem}",
                    tar.extractfile(info).read(),
                    index[val_wnids[number - 1]],
                    raw_dir,
                )


def foreign(archive: Path, member: str, expected: str) -> dict:
    return {"__key__": member, "__error__": f"{archive}: member {member!r} is not {expected}"}


def _sample(key: str, data: bytes, cls: int, raw_dir: Path) -> dict:
    try:
        return {"__key__": key, "jpg": as_rgb_jpeg(data), "cls": cls}
    except Exception as error:  # PIL's many error types for a truncated or foreign file
        return {"__key__": key, "jpg": data, "cls": cls, "__error__": f"{raw_dir}: {key}: {error}"}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    classes: PositiveInt = 10,
    train_per_class: PositiveInt = 30,
    val_per_class: PositiveInt = 10,
) -> None:
    """The three archives in the official format, with the real dataset's odd files among the JPEGs."""
    import scipy.io

    if classes > len(SYNSETS):
        raise DataError(f"datasets.imagenet.synthetic.classes: at most {len(SYNSETS)}, got {classes}")
    rng, raw_dir = np.random.default_rng(seed), Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    synsets = SYNSETS[:classes]

    def picture(cls: int, number: int) -> bytes:
        image = object_image(rng, cls, classes, int(rng.integers(96, 160)), int(rng.integers(96, 160)))
        if number == 1:  # ImageNet holds grayscale JPEGs ...
            return encode(Image.fromarray(image).convert("L"), "JPEG")
        if number == 2:  # ... CMYK JPEGs ...
            return encode(Image.fromarray(image).convert("CMYK"), "JPEG")
        if number == 3:  # ... and one PNG named .JPEG
            return encode(image, "PNG")
        return encode(image, "JPEG", quality=90)

    with tarfile.open(raw_dir / TRAIN_TAR, "w") as outer:
        for cls, (wnid, _) in enumerate(synsets):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for n in range(train_per_class):
                    _add(inner, f"{wnid}_{n + 1}.JPEG", picture(cls, n + 1 if cls == 0 else 0))
            _add(outer, f"{wnid}.tar", buffer.getvalue())
    truth = [int(c) for c in rng.permutation(np.repeat(np.arange(classes), val_per_class))]
    with tarfile.open(raw_dir / VAL_TAR, "w") as tar:
        for n, cls in enumerate(truth, 1):
            _add(tar, f"ILSVRC2012_val_{n:08d}.JPEG", picture(cls, 0))
    # meta.mat lists leaf synsets (ILSVRC2012_ID 1..1000) and inner nodes (num_children > 0), which parsers
    # skip.
    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    rows = [
        (i + 1, wnid, words, f"a {words.split(',')[0]}", 0, np.zeros(0), 0, train_per_class)
        for i, (wnid, words) in enumerate(synsets)
    ]
    rows.append((classes + 1, "n00001740", "entity", "the root", classes, np.arange(1, classes + 1), 18, 0))
    table = np.array(rows, dtype=[(f, object) for f in fields])
    mat, text = io.BytesIO(), "\n".join(str(cls + 1) for cls in truth) + "\n"
    scipy.io.savemat(mat, {"synsets": table})
    with tarfile.open(raw_dir / DEVKIT, "w:gz") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", mat.getvalue())
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", text.encode())


class ImageNet(ShardDataModule):
    """Training: random-resized crops and flips; evaluation: resize then centre crop (the torchvision
    recipe)."""

    name = "imagenet"
    # The papers report val (no test labels are published): checkpoints are chosen on 1 in 20 training images.
    held_out_every = 20
    splits = ("train", "val")
    image_mode = "pilrgb"
    float_batches = (MEAN, STD)
    download, synthesize, samples, classes, check_layout = map(
        staticmethod, (download, synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 256,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 5000,
        crop: PositiveInt = 224,
        resize: PositiveInt = 256,
        scale: tuple[float, float] = (0.08, 1.0),
        test_crops: Literal[1, 10] = 1,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.crop, self.resize, self.scale, self.test_crops = crop, resize, tuple(scale), test_crops

    def transform(self, split: str) -> v2.Compose:
        if split == "train":
            steps = [
                v2.RandomResizedCrop(self.crop, scale=self.scale, antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        else:
            steps = [v2.Resize(self.resize, antialias=True), v2.CenterCrop(self.crop)]
        return v2.Compose([v2.ToImage(), *steps])  # uint8: normalised on the device (float_batches)

    def sample(self, split: str):
        return classification_sample(self.transform(split))

    def ten_crops(self) -> v2.Compose:
        """ResNet's 10-crop testing (§3.4): the four corners and the centre, and their mirror images."""
        return v2.Compose(
            [v2.ToImage(), v2.Resize(self.resize, antialias=True), v2.TenCrop(self.crop), torch.stack]
        )

    def test_dataloader(self):
        sample = classification_sample(self.ten_crops()) if self.test_crops == 10 else None
        return self.loader("val", sample=sample)
