"""Reading shards DDP-safely: the DataModule every dataset extends, its loaders and their resumable RNG state.
(`datamodules/shards.py` writes them; these two files hold the only WebDataset code in reprozoo.)

Layout (ARCHITECTURE "Shards"): data/shards/<name>/<split>-%06d.tar, one sample per `__key__` with an image
(`png`/`jpg`), a `cls` label and `json` annotations, plus meta.json (classes, counts, shard list)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import webdataset as wds
from pydantic import NonNegativeInt
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler

from datamodules.episodes import rank_and_world
from datamodules.files import DataError
from datamodules.held_out import NonEmpty, part_of_split
from datamodules.images import float_images
from datamodules.records import decoding, unreadable_shard
from datamodules.resume import ResumableLoader, trained_position
from datamodules.shards import META, read_meta


def every_shard(urls: list[str]) -> list[str]:
    return urls


class ShardDataModule(pl.LightningDataModule):
    """Streams data/shards/<name>/<split>-%06d.tar, written by `reprozoo shard <name>`.

    A dataset file subclasses this, names its sources and splits, and overrides `sample()`.
    """

    name: ClassVar[str]  # the DATASETS key and the params section
    sources: ClassVar[tuple[str, ...]] = ("synthetic", "download", "local")
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    decode_keys: ClassVar[tuple[str, ...]] = ("png", "jpg", "cls", "json")
    image_mode: ClassVar[str] = "pil"  # webdataset's decoder: "pilrgb", "pill", ...
    collate: ClassVar[Callable | None] = None  # None: stack tensors (webdataset's default)
    # Small datasets of small samples (token sequences, digit vectors) are read once into memory: for them the
    # per-sample stream (untar, decode, map) costs ten times the model's own step.
    in_memory: ClassVar[bool] = False
    # Image classifiers' batches leave the workers as uint8, a quarter of float32's bytes through worker
    # queues and host-to-device copies, and become floats once per batch on the device
    # (`on_after_batch_transfer`), not once per sample in a worker. `float_batches` names the per-channel
    # (mean, std) to normalise with, or () for [0, 1].
    float_batches: ClassVar[tuple | None] = None
    # Where the papers report the only split there is to validate on, validation holds out about one in
    # `held_out_every` training samples instead (datamodules/held_out.py).
    held_out_every: ClassVar[int | None] = None

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: int = 32,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: int = 1000,
    ):
        super().__init__()
        self.shards_dir, self.seed = Path(shards_dir), seed
        self.batch_size, self.num_workers, self.shuffle_buffer = batch_size, num_workers, shuffle_buffer
        self.meta = read_meta(self.shards_dir)
        self._in_memory: dict[str, list] = {}

    def urls(self, split: str) -> list[str]:
        """The split's shards, each checked to be there and non-empty before any compute starts."""
        if split not in self.meta["splits"]:
            raise DataError(
                f"{self.shards_dir / META}: no split {split!r}; has {', '.join(self.meta['splits'])}"
            )
        info = self.meta["splits"][split]
        paths = [self.shards_dir / name for name in info["shards"]]
        for path in paths:
            size = path.stat().st_size if path.is_file() else None
            expected = info.get("bytes", {}).get(path.name)
            if not size or (expected is not None and size != expected):
                problem = (
                    "missing"
                    if size is None
                    else "empty"
                    if not size
                    else f"{size} bytes where the shard stage wrote {expected} (truncated or altered)"
                )
                raise DataError(
                    f"{path}: listed in {META} but {problem}; re-run `reprozoo shard {self.shards_dir.name}`"
                )
        return [str(path) for path in paths]

    def sample(self, split: str) -> Callable[[dict], Any]:
        """The one thing a streaming dataset overrides: decoded sample dict → what its papers consume."""
        return lambda sample: sample

    def keep(self, split: str) -> Callable[[dict], bool] | None:
        """A filter on decoded samples before `sample()` (e.g. drop unannotated images from training)."""
        return None

    @staticmethod
    def extras(raw_dir: Path, out_dir: Path) -> dict[str, Any]:
        """Dataset-wide files the shard stage writes beside the shards (a vocabulary, pair lists); meta
        entries."""
        return {}

    def dataset(
        self,
        split: str,
        *,
        shuffle: bool = False,
        nodesplitter: Callable = wds.split_by_node,
        every_nth: tuple[int, int] | None = None,
        held_out: bool | None = None,
    ) -> wds.WebDataset:
        """Decoded samples of a split; with the defaults, each rank reads its own share of the shards.
        `every_nth=(rank, world)` instead hands each rank every world-th sample of every shard (see
        `loader`); `held_out` keeps only the training split's held-out part (True) or the rest (False)."""
        stream = wds.WebDataset(
            self.urls(split),
            shardshuffle=100 if shuffle else False,  # None warns: "set explicitly to False or a number"
            nodesplitter=nodesplitter,  # the default, single_node_only, raises under DDP
            workersplitter=wds.split_by_worker,
            empty_check=False,
            seed=self.seed,
            handler=unreadable_shard,
        )
        if held_out is not None and self.held_out_every and split == self.train_split:
            stream = stream.compose(part_of_split(held_out, self.is_held_out))
        if every_nth:  # before decoding: a rank pays only for untarring the samples it skips
            stream = stream.slice(every_nth[0], None, every_nth[1])
        return (
            stream
            # One seeded generator per pipeline: reproducible (an unseeded shuffle is not), yet each epoch
            # that with_epoch() replays draws a new order (a `seed=` would restart the same order every
            # epoch). The buffer fills before the first sample leaves: webdataset's default starts after 100,
            # which hands out runs of one class from a class-sorted file.
            .shuffle(
                self.shuffle_buffer if shuffle else 0,
                initial=self.shuffle_buffer,
                rng=random.Random(self.seed),
            ).map(decoding(self.image_mode, self.decode_keys))
        )

    def read_all(self, split: str, held_out: bool | None = None) -> Iterator[dict]:
        """Every sample of a split in shard order, on every rank (for in-memory indexes such as episodes); of
        the training split, with `held_out` False only what training may see, True only the held-out part."""
        return iter(self.dataset(split, nodesplitter=every_shard, held_out=held_out))

    @property
    def train_split(self) -> str:
        return "train"

    def is_held_out(self, key: str, position: int) -> bool:
        """Every `held_out_every`-th sample of each training shard, from its first (so never none)."""
        return position % self.held_out_every == 0

    def batches_per_rank(self, split: str, held_out: bool = False) -> int:
        """Full batches per rank (training drops the last partial one); an impossible split fails here, before
        training, because a stream that yields no batch would make with_epoch() restart it forever."""
        _, world, train = *rank_and_world(), split == self.train_split and not held_out
        samples = self.meta["splits"][split]["samples"]
        if self.held_out_every and split == self.train_split:  # about: an epoch's end may move a few samples
            share = -(-samples // self.held_out_every)
            samples = share if held_out else samples - share
        if train and samples < world * self.batch_size:
            raise DataError(
                f"{self.shards_dir / META}: split {split!r} has {samples} samples, fewer than one batch "
                f"of {self.batch_size} per rank × {world} ranks; lower data.batch_size or add data"
            )
        if samples == 0:
            raise DataError(f"{self.shards_dir / META}: split {split!r} is empty")
        if held_out and samples < world:  # a streaming rank with no held-out sample hangs at the sync
            raise DataError(
                f"{self.shards_dir / META}: split {split!r} holds out {samples} samples for validation, "
                f"fewer than the {world} ranks (each needs one); validate on fewer devices or add samples"
            )
        return max(
            1, samples // (world * self.batch_size) if train else -(-samples // (world * self.batch_size))
        )

    def loader(
        self, split: str, sample: Callable[[dict], Any] | None = None, *, held_out: bool = False
    ) -> wds.WebLoader:
        """The split's batches: for training if it is the training split (shuffled, full batches, its held-out
        part left out), else for evaluation; `held_out` evaluates the training split's held-out part."""
        train, (rank, world) = split == self.train_split and not held_out, rank_and_world()
        if train or world == 1:
            dataset = self.dataset(split, shuffle=train, held_out=held_out)
        else:
            # Evaluating under DDP: every rank reads every shard (its workers split them alike) and keeps each
            # world-th sample, so every sample is scored by exactly one rank, with nothing padded or repeated.
            # Ranks may then differ by a batch: harmless in evaluation, whose one collective is the metrics'
            # sync at the epoch's end (Lightning weights each rank's mean by its sample count).
            dataset = self.dataset(
                split, nodesplitter=every_shard, every_nth=(rank, world), held_out=held_out
            )
        if keep := self.keep(split):
            dataset = dataset.select(keep)
        dataset = dataset.map(sample or self.sample(split)).batched(
            self.batch_size, partial=not train, **({"collation_fn": self.collate} if self.collate else {})
        )
        loader = wds.WebLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )
        batches = self.batches_per_rank(split, held_out)  # an impossible or empty split fails here, up front
        if held_out and world == 1:
            return NonEmpty(
                loader,
                f"{self.shards_dir / META}: no {split!r} sample falls in the part held out for validation; "
                "add training samples",
            )
        if not train:
            # Evaluating: each worker reads its shards to the end and ends on its own partial batch, so every
            # sample is seen exactly once whatever num_workers is (a batch count would cut or repeat some:
            # 8 of VOC07 test's 4,952 images with 2 workers).
            return loader
        # Every training rank must see the same number of batches or DDP hangs at the first gradient
        # all-reduce: with_epoch cuts (or, on a rank with fewer shards, repeats) the stream to that many.
        return loader.with_epoch(batches)

    def sampled(self, split: str, sample: Callable[[dict], Any] | None = None) -> list:
        """Every sample of the split this module keeps, in shard order, as `sample` (default: the split's own)
        makes them."""
        keep, to_sample = self.keep(split) or (lambda _: True), sample or self.sample(split)
        return [to_sample(s) for s in self.read_all(split) if keep(s)]

    def memory_loader(self, split: str, sample: Callable[[dict], Any] | None = None) -> DataLoader:
        """The split as a list in RAM behind a plain DataLoader, with its own sampler under DDP; the seeded
        generator draws a new, reproducible order every epoch."""
        if split not in self._in_memory:
            self._in_memory[split] = self.sampled(split, sample)
        train, (rank, world) = split == self.train_split, rank_and_world()
        self.batches_per_rank(split)  # the same early check as streaming
        # Lightning leaves a loader that has a DistributedSampler alone. Training brings one (Lightning would
        # not see it through the ResumableLoader); evaluation brings an unrepeated one, because the one
        # Lightning adds pads the last rank's share with repeated samples (mean IU moved 0.14745 → 0.14553).
        sampler = None
        if world > 1:
            sampler = (
                DistributedSampler(
                    self._in_memory[split], world, rank, shuffle=True, seed=self.seed, drop_last=True
                )
                if train
                else UnrepeatedDistributedSampler(self._in_memory[split], world, rank, shuffle=False)
            )
        return DataLoader(
            self._in_memory[split],
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )  # page-locked batches copy to a GPU asynchronously

    def split_loader(self, split: str) -> DataLoader | wds.WebLoader:
        return self.memory_loader(split) if self.in_memory else self.loader(split)

    # The training stream starts at the restored step by itself (episode i is a function of i): nothing to
    # skip.
    seeks_by_step: ClassVar[bool] = False

    def train_loader(self) -> Iterable:
        """The training stream from its start (or, if `seeks_by_step`, from the trainer's restored step)."""
        return self.split_loader("train")

    def train_dataloader(self) -> ResumableLoader:
        epochs, batches = (0, 0) if self.seeks_by_step else trained_position(self.trainer)
        return ResumableLoader(self.train_loader(), self.seed, epochs=epochs, batches=batches)

    def val_dataloader(self) -> DataLoader | wds.WebLoader:
        if self.held_out_every:
            return self.loader(self.train_split, held_out=True)
        return self.split_loader("val")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.float_batches is None:
            return batch
        images, *rest = batch
        return (float_images(images, *self.float_batches), *rest)

    def test_dataloader(self) -> DataLoader | wds.WebLoader:
        # ImageNet and COCO publish no test labels: their papers report the validation split.
        return self.split_loader("test" if "test" in self.splits else "val")
