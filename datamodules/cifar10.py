"""CIFAR-10 (Krizhevsky 2009): 60,000 32×32 colour images in 10 classes, 50,000 for training, 10,000 for test.

Raw layout: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, Python pickles. Every file's
md5 is checked against the official list (or, for the replica, the list it wrote) before it is read, and it
is read with an unpickler that admits only numpy arrays, so a tampered file cannot run code. (That is
why torchvision's CIFAR10 parser, which calls pickle.load, is not used.) The last 5,000 training images
are the validation split, as in ResNet's CIFAR experiments (45k/5k).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import NonNegativeInt, PositiveInt
from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError, extract, md5sum
from datamodules.files import download as fetch_url
from datamodules.images import classification_sample
from datamodules.synthetic import encode, object_image

URL, MD5 = TorchvisionCIFAR10.url, TorchvisionCIFAR10.tgz_md5
OFFICIAL_MD5 = dict(TorchvisionCIFAR10.train_list + TorchvisionCIFAR10.test_list) | {
    "batches.meta": TorchvisionCIFAR10.meta["md5"]
}
FOLDER, REPLICA_MD5S = "cifar-10-batches-py", "REPLICA_MD5SUMS"
TRAIN_FILES, TEST_FILES = [f for f, _ in TorchvisionCIFAR10.train_list], ["test_batch"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
VAL_SIZE_FRACTION = 0.1
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refused to unpickle {module}.{name}: a CIFAR batch holds only arrays and lists")
        return super().find_class(module, name)


def download(raw_dir: Path, downloads: Path) -> None:
    extract(fetch_url(URL, downloads / "cifar-10-python.tar.gz", MD5), raw_dir)


def check_layout(raw_dir: Path) -> None:
    missing = [f for f in OFFICIAL_MD5 if not (raw_dir / FOLDER / f).exists()]
    if missing:
        raise DataError(f"{raw_dir / FOLDER}: not a CIFAR-10 copy; missing {', '.join(missing)}")


def load_batch(raw_dir: Path, name: str) -> dict:
    path = raw_dir / FOLDER / name
    replica = raw_dir / FOLDER / REPLICA_MD5S
    allowed = {OFFICIAL_MD5[name]}
    if replica.exists():
        allowed |= {line.split()[0] for line in replica.read_text().splitlines() if line.endswith(f" {name}")}
    if (got := md5sum(path)) not in allowed:
        raise DataError(
            f"{path}: md5 {got} matches neither the official checksum nor the replica's; not unpickled"
        )
    with path.open("rb") as f:
        return ArraysOnly(f, encoding="latin1").load()


def synthesize(raw_dir: Path, seed: int = 0, *, train: PositiveInt = 1000, test: PositiveInt = 200) -> None:
    """Batches in the official pickle format: data (N, 3072) uint8 in channel-major order, labels,
    filenames."""
    rng, folder = np.random.default_rng(seed), raw_dir / FOLDER
    folder.mkdir(parents=True)
    per_file = {name: train // len(TRAIN_FILES) for name in TRAIN_FILES} | {"test_batch": test}
    sums = []
    for name, count in per_file.items():
        labels = [int(c) for c in rng.integers(0, 10, count)]
        data = np.stack([object_image(rng, c, 10, 32, 32).transpose(2, 0, 1).reshape(-1) for c in labels])
        batch = {
            "batch_label": name,
            "labels": labels,
            "data": data,
            "filenames": [f"{name}_{i}.png" for i in range(count)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        sums.append(f"{md5sum(folder / name)}  {name}")
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CLASSES, "num_vis": 3072}, protocol=2))
    sums.append(f"{md5sum(folder / 'batches.meta')}  batches.meta")
    (folder / REPLICA_MD5S).write_text("\n".join(sums) + "\n")


def classes(raw_dir: Path, split: str) -> list[str]:
    return list(load_batch(raw_dir, "batches.meta")["label_names"])


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    batches = [load_batch(raw_dir, n) for n in (TEST_FILES if split == "test" else TRAIN_FILES)]
    data = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = [label for b in batches for label in b["labels"]]
    cut = len(labels) - round(len(labels) * VAL_SIZE_FRACTION)
    rows = {"train": range(cut), "val": range(cut, len(labels)), "test": range(len(labels))}[split]
    for i in rows:
        yield {"__key__": f"{split}/{i:05d}", "png": encode(data[i], "PNG"), "cls": labels[i]}


class CIFAR10(ShardDataModule):
    """(3, 32, 32) images, normalised on the device; training adds the ResNet paper's 4-pixel padding, random
    crop and flip."""

    name = "cifar10"
    image_mode = "pilrgb"
    download, synthesize, samples, classes, check_layout = map(
        staticmethod, (download, synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 128,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 5000,
        augment: bool = True,
        normalize: bool = True,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.augment, self.normalize = augment, normalize  # density models (pixelcnn) read raw [0, 1] pixels

    def transform(self, split: str) -> v2.Compose:
        steps = [v2.ToImage()]
        if split == "train" and self.augment:
            steps += [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
        return v2.Compose(steps)  # uint8: made float on the device (float_batches)

    @property
    def float_batches(self) -> tuple:
        return (MEAN, STD) if self.normalize else ()

    def sample(self, split: str):
        return classification_sample(self.transform(split))
