"""The only WebDataset code in reprozoo: writing shards with their meta.json, and reading them DDP-safely.

Layout (ARCHITECTURE "Shards"): data/shards/<name>/<split>-%06d.tar, one sample per `__key__` with an
image (`png`/`jpg`), a `cls` label and `json` annotations, plus meta.json (classes, counts, shard list).
"""
from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from datamodules.episodes import rank_and_world
from datamodules.files import DataError, atomic_write

META = "meta.json"
IMAGE_KEYS = ("png", "jpg")


def as_rgb_jpeg(data: bytes, quality: int = 95) -> bytes:
    """Pass an RGB JPEG through untouched; re-encode anything else (grayscale, CMYK, a PNG named .JPEG)."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG" and image.mode == "RGB":
        return data
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def image_of(sample: dict) -> Any:
    return sample["jpg"] if "jpg" in sample else sample["png"]


def open_image(data: bytes) -> Image.Image:
    """For members left undecoded: webdataset's "pil" decoding converts to RGB, which would wreck label PNGs."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def classification_sample(transform: Callable) -> Callable[[dict], tuple]:
    """Decoded sample → (transformed image, class index): what every image classifier consumes."""
    return lambda sample: (transform(image_of(sample)), sample["cls"])


def list_collate(samples: list[tuple]) -> tuple[list, ...]:
    """Detection batches: images and targets stay lists (boxes per image differ in number)."""
    return tuple(map(list, zip(*samples)))


def check_images(sample: dict, raw_dir: Path) -> None:
    """Raise DataError naming the raw file if an image member does not decode (or the parser flagged it)."""
    if "__error__" in sample:
        raise DataError(sample["__error__"])
    for key in IMAGE_KEYS:
        if key in sample:
            try:
                Image.open(io.BytesIO(sample[key])).load()
            except Exception as error:  # PIL raises a zoo of types for truncated or foreign bytes
                raise DataError(f"{raw_dir / sample['__key__']}.{key}: not a readable image ({error})") from None


def write_split(samples: Iterable[dict], out_dir: Path, split: str, *, raw_dir: Path, shard_size: int,
                on_error: str = "raise") -> dict[str, Any]:
    """Write one split's samples as tar shards; return its meta entry (count, skipped, shard names)."""
    count = skipped = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for sample in tqdm(samples, desc=f"shard {split}", unit=" samples", mininterval=1.0):
            try:
                check_images(sample, raw_dir)
            except DataError:
                if on_error != "skip":
                    raise
                skipped += 1
                continue
            sink.write(sample)
            count += 1
    shards = sorted(p.name for p in out_dir.glob(f"{split}-*.tar"))
    return {"samples": count, "skipped": skipped, "shards": shards}


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write(out_dir / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(shards_dir: Path) -> dict[str, Any]:
    path = Path(shards_dir) / META
    if not path.exists():
        raise DataError(f"{path}: missing; run `reprozoo shard {Path(shards_dir).name}` first")
    return json.loads(path.read_text())


class ShardDataModule(pl.LightningDataModule):
    """Streams data/shards/<name>/<split>-%06d.tar, written by `reprozoo shard <name>`.

    A dataset file subclasses this, names its sources and splits, and overrides `sample()`.
    """

    name: ClassVar[str]                                   # the DATASETS key and the params section
    sources: ClassVar[tuple[str, ...]] = ("synthetic", "download", "local")
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    decode_keys: ClassVar[tuple[str, ...]] = ("png", "jpg", "cls", "json")
    image_mode: ClassVar[str] = "pil"                    # webdataset's decoder: "pilrgb", "pill", ...
    collate: ClassVar[Callable | None] = None            # None: stack tensors (webdataset's default)
    # Small datasets of small samples (token sequences, digit vectors) are read once into memory: for them the
    # per-sample stream (untar, decode, map) costs ten times the model's own step.
    in_memory: ClassVar[bool] = False

    def __init__(self, shards_dir: Path, seed: int = 0, *, batch_size: int = 32, num_workers: int = 0,
                 shuffle_buffer: int = 1000):
        super().__init__()
        self.shards_dir, self.seed = Path(shards_dir), seed
        self.batch_size, self.num_workers, self.shuffle_buffer = batch_size, num_workers, shuffle_buffer
        self.meta = read_meta(self.shards_dir)
        self._in_memory: dict[str, list] = {}

    def urls(self, split: str) -> list[str]:
        if split not in self.meta["splits"]:
            raise DataError(f"{self.shards_dir / META}: no split {split!r}; has {', '.join(self.meta['splits'])}")
        return [str(self.shards_dir / name) for name in self.meta["splits"][split]["shards"]]

    def sample(self, split: str) -> Callable[[dict], Any]:
        """The one thing a streaming dataset overrides: decoded sample dict → what its papers consume."""
        return lambda sample: sample

    def keep(self, split: str) -> Callable[[dict], bool] | None:
        """A filter on decoded samples before `sample()` (e.g. drop unannotated images from training)."""
        return None

    @staticmethod
    def extras(raw_dir: Path, out_dir: Path) -> dict[str, Any]:
        """Dataset-wide files the shard stage writes beside the shards (a vocabulary, pair lists); meta entries."""
        return {}

    def dataset(self, split: str, *, shuffle: bool = False, nodesplitter: Callable = wds.split_by_node) -> wds.WebDataset:
        """Decoded samples of a split; with the defaults, each rank reads its own share of the shards."""
        return (
            wds.WebDataset(
                self.urls(split),
                shardshuffle=100 if shuffle else False,   # None warns: "set explicitly to False or a number"
                nodesplitter=nodesplitter,                # the default, single_node_only, raises under DDP
                workersplitter=wds.split_by_worker,
                empty_check=False,
                seed=self.seed,
            )
            # One seeded generator per pipeline: reproducible (an unseeded shuffle is not), yet each epoch that
            # with_epoch() replays draws a new order (a `seed=` would restart the same order every epoch). The
            # buffer fills before the first sample leaves: webdataset's default starts after 100, which hands out
            # runs of one class from a class-sorted file.
            .shuffle(self.shuffle_buffer if shuffle else 0, initial=self.shuffle_buffer, rng=random.Random(self.seed))
            .decode(self.image_mode, only=self.decode_keys)   # .pyd/.pth/.pickle members stay bytes: never unpickled
        )

    def read_all(self, split: str) -> Iterator[dict]:
        """Every sample of a split in shard order, on every rank (for in-memory indexes such as episodes)."""
        return iter(self.dataset(split, nodesplitter=lambda shards: shards))

    def batches_per_rank(self, split: str) -> int:
        """Full batches per rank (training drops the last partial one); an impossible split fails here, before
        training, because a stream that yields no batch would make with_epoch() restart it forever."""
        _, world = rank_and_world()
        samples = self.meta["splits"][split]["samples"]
        if split == "train" and samples < world * self.batch_size:
            raise DataError(f"{self.shards_dir / META}: split {split!r} has {samples} samples, fewer than one batch "
                            f"of {self.batch_size} per rank × {world} ranks; lower data.batch_size or add data")
        if samples == 0:
            raise DataError(f"{self.shards_dir / META}: split {split!r} is empty")
        return max(1, -(-samples // (world * self.batch_size)) if split != "train" else samples // (world * self.batch_size))

    def loader(self, split: str, sample: Callable[[dict], Any] | None = None) -> wds.WebLoader:
        train = split == "train"
        dataset = self.dataset(split, shuffle=train)
        if keep := self.keep(split):
            dataset = dataset.select(keep)
        dataset = (dataset.map(sample or self.sample(split))
                   .batched(self.batch_size, partial=not train, **({"collation_fn": self.collate} if self.collate else {})))
        # Every rank must see the same number of batches or DDP hangs at the first all-reduce: with_epoch
        # cuts (or, on a rank with fewer shards, repeats) the stream to exactly that many batches.
        return wds.WebLoader(dataset, batch_size=None, num_workers=self.num_workers,
                             persistent_workers=self.num_workers > 0).with_epoch(self.batches_per_rank(split))

    def memory_loader(self, split: str, sample: Callable[[dict], Any] | None = None) -> DataLoader:
        """The split as a list in RAM behind a plain DataLoader: Lightning adds a DistributedSampler under DDP,
        and the seeded generator draws a new, reproducible order every epoch."""
        if split not in self._in_memory:
            keep, to_sample = self.keep(split) or (lambda _: True), sample or self.sample(split)
            self._in_memory[split] = [to_sample(s) for s in self.read_all(split) if keep(s)]
        train = split == "train"
        self.batches_per_rank(split)                                      # the same early check as streaming
        return DataLoader(self._in_memory[split], batch_size=self.batch_size, shuffle=train, drop_last=train,
                          generator=torch.Generator().manual_seed(self.seed), collate_fn=self.collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def split_loader(self, split: str) -> DataLoader | wds.WebLoader:
        return self.memory_loader(split) if self.in_memory else self.loader(split)

    def train_dataloader(self) -> DataLoader | wds.WebLoader:
        return self.split_loader("train")

    def val_dataloader(self) -> DataLoader | wds.WebLoader:
        return self.split_loader("val")

    def test_dataloader(self) -> DataLoader | wds.WebLoader:
        # ImageNet and COCO publish no test labels: their papers report the validation split.
        return self.split_loader("test" if "test" in self.splits else "val")
