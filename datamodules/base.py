"""The only WebDataset code in reprozoo: writing shards with their meta.json, and reading them DDP-safely.

Layout (ARCHITECTURE "Shards"): data/shards/<name>/<split>-%06d.tar, one sample per `__key__` with an
image (`png`/`jpg`), a `cls` label and `json` annotations, plus meta.json (classes, counts, shard list).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler
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


def float_images(
    images: torch.Tensor, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> torch.Tensor:
    """A uint8 image batch (..., C, H, W) → float32 in [0, 1], normalised per channel when mean and std are given."""
    images = images.float().div_(255)
    if mean is not None:
        shape = (-1, 1, 1)
        images = images.sub_(images.new_tensor(mean).view(shape)).div_(images.new_tensor(std).view(shape))
    return images


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
                raise DataError(
                    f"{raw_dir / sample['__key__']}.{key}: not a readable image ({error})"
                ) from None


def unreadable_shard(error: Exception) -> bool:
    """webdataset's handler for a shard it cannot read (a truncated tar, a corrupt header): name the file."""
    url = next(
        (a for a in reversed(error.args) if isinstance(a, str)), "a shard"
    )  # webdataset appends the url
    raise DataError(
        f"{url}: unreadable shard ({error.args[0] if error.args else type(error).__name__}); "
        f"re-run `reprozoo shard {Path(url).parent.name}`"
    ) from error


def decoding(image_mode: str, keys: tuple[str, ...]) -> Callable[[dict], dict]:
    """webdataset's decoder for `keys` (other members stay bytes: a .pyd/.pth/.pickle is never unpickled), with a
    record that does not decode (a truncated JPEG) named by shard and key instead of a bare DecodingError."""
    decode = wds.autodecode.Decoder([wds.autodecode.imagehandler(image_mode)], only=list(keys))

    def decoded(sample: dict) -> dict:
        try:
            return decode(sample)
        except Exception as error:
            cause = error.__cause__ or error.__context__ or error
            url = sample.get("__url__", "a shard")
            raise DataError(
                f"{url}: record {sample.get('__key__')!r} does not decode ({cause}); "
                f"re-run `reprozoo shard {Path(url).parent.name}` from an intact raw copy"
            ) from None

    return decoded


def write_split(
    samples: Iterable[dict],
    out_dir: Path,
    split: str,
    *,
    raw_dir: Path,
    shard_size: int,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Write one split's samples as tar shards; return its meta entry (count, skipped, shard names)."""
    count = skipped = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    # A fixed mtime: the same samples give byte-identical shards, so DVC's hash of data/shards/ is reproducible.
    with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0, mtime=0) as sink:
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
    # Sizes let a reader catch a truncated shard by a stat: tarfile reads a tar cut mid-member as a shorter one.
    return {
        "samples": count,
        "skipped": skipped,
        "shards": shards,
        "bytes": {n: (out_dir / n).stat().st_size for n in shards},
    }


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write(out_dir / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(shards_dir: Path) -> dict[str, Any]:
    path = Path(shards_dir) / META
    if not path.exists():
        raise DataError(f"{path}: missing; run `reprozoo shard {Path(shards_dir).name}` first")
    return json.loads(path.read_text())


def rng_states() -> dict[str, Any]:
    """The process's global RNGs (torch, CUDA, numpy, random) as tensors and plain lists: a checkpoint holding them
    still loads with `torch.load(weights_only=True)` (a numpy array would need unpickling)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))


def native_rng_states() -> tuple:
    """The CPU RNGs as their libraries hand them out (the data stream never touches CUDA's)."""
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def set_native_rng_states(states: tuple) -> None:
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])


def seeded_rng_states(seed: int) -> tuple:
    """Fresh CPU RNG states from `seed`, as `torch.manual_seed` etc. would make them, touching no global RNG."""
    return (
        torch.Generator().manual_seed(seed).get_state(),
        np.random.RandomState(seed).get_state(),
        random.Random(seed).getstate(),
    )


class ResumableLoader:
    """The training loader as Lightning sees it, made so that a killed run resumes exactly where it stopped.

    - Its randomness is its own: random crops, shuffles in the main process and the workers' seeds draw from RNGs
      seeded by (data seed, rank), swapped in around each fetch, never from the training's global RNG. Otherwise a
      batch would depend on when Lightning prefetched it, and a resumed run could not draw the same crops.
    - After a restore it skips the `epochs` and `batches` the checkpoint's run had trained on: it reads them again
      (the stream is deterministic) but trains on none. Loaders whose stream seeks by index (episodes) start at
      the restored step themselves and skip nothing.
    """

    def __init__(self, loader: Iterable, seed: int, *, epochs: int = 0, batches: int = 0):
        self.loader, self.skip_epochs, self.skip_batches, self.epoch = loader, epochs, batches, 0
        self.rng = seeded_rng_states(hash((seed, rank_and_world()[0])) & 0xFFFF_FFFF)

    def __len__(self) -> int:
        return len(self.loader)  # a TypeError for an unsized stream, as Lightning expects

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        # On every fetch, so the states stay in their native forms (no list conversion: ~8x cheaper per batch).
        training = native_rng_states()
        set_native_rng_states(self.rng)
        try:
            yield
        finally:
            self.rng = native_rng_states()
            set_native_rng_states(training)

    def start_epoch(self) -> Iterator[Any]:
        # Lightning sets a DistributedSampler's epoch only on the DataLoaders it sees; this one is wrapped.
        if callable(set_epoch := getattr(getattr(self.loader, "sampler", None), "set_epoch", None)):
            set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)

    def __iter__(self) -> Iterator[Any]:
        with self.own_rng():
            for _ in range(self.skip_epochs):  # whole epochs the restored run had finished
                for _ in self.start_epoch():
                    pass
            iterator = self.start_epoch()
            for _ in range(self.skip_batches):  # and the restored epoch's batches it had trained on
                next(iterator, None)
        self.skip_epochs = self.skip_batches = 0
        while True:
            with self.own_rng():
                batch = next(iterator, StopIteration)
            if batch is StopIteration:
                return
            yield batch


def trained_position(trainer: pl.Trainer | None) -> tuple[int, int]:
    """(finished epochs, batches of the current epoch) a restored trainer had trained on; (0, 0) on a fresh one.
    Read when Lightning builds the training loader, after a checkpoint restored its loops."""
    if trainer is None:
        return 0, 0
    return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed


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
    # Image classifiers' batches leave the workers as uint8, a quarter of float32's bytes through worker queues and
    # host-to-device copies, and become floats once per batch on the device (`on_after_batch_transfer`), not once
    # per sample in a worker. `float_batches` names the per-channel (mean, std) to normalise with, or () for [0, 1].
    float_batches: ClassVar[tuple | None] = None

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: int = 32,
        num_workers: int = 0,
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
        """Dataset-wide files the shard stage writes beside the shards (a vocabulary, pair lists); meta entries."""
        return {}

    def dataset(
        self, split: str, *, shuffle: bool = False, nodesplitter: Callable = wds.split_by_node
    ) -> wds.WebDataset:
        """Decoded samples of a split; with the defaults, each rank reads its own share of the shards."""
        return (
            wds.WebDataset(
                self.urls(split),
                shardshuffle=100 if shuffle else False,  # None warns: "set explicitly to False or a number"
                nodesplitter=nodesplitter,  # the default, single_node_only, raises under DDP
                workersplitter=wds.split_by_worker,
                empty_check=False,
                seed=self.seed,
                handler=unreadable_shard,
            )
            # One seeded generator per pipeline: reproducible (an unseeded shuffle is not), yet each epoch that
            # with_epoch() replays draws a new order (a `seed=` would restart the same order every epoch). The
            # buffer fills before the first sample leaves: webdataset's default starts after 100, which hands out
            # runs of one class from a class-sorted file.
            .shuffle(
                self.shuffle_buffer if shuffle else 0,
                initial=self.shuffle_buffer,
                rng=random.Random(self.seed),
            )
            .map(decoding(self.image_mode, self.decode_keys))
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
            raise DataError(
                f"{self.shards_dir / META}: split {split!r} has {samples} samples, fewer than one batch "
                f"of {self.batch_size} per rank × {world} ranks; lower data.batch_size or add data"
            )
        if samples == 0:
            raise DataError(f"{self.shards_dir / META}: split {split!r} is empty")
        return max(
            1,
            -(-samples // (world * self.batch_size))
            if split != "train"
            else samples // (world * self.batch_size),
        )

    def loader(self, split: str, sample: Callable[[dict], Any] | None = None) -> wds.WebLoader:
        train = split == "train"
        dataset = self.dataset(split, shuffle=train)
        if keep := self.keep(split):
            dataset = dataset.select(keep)
        dataset = dataset.map(sample or self.sample(split)).batched(
            self.batch_size, partial=not train, **({"collation_fn": self.collate} if self.collate else {})
        )
        # Every rank must see the same number of batches or DDP hangs at the first all-reduce: with_epoch
        # cuts (or, on a rank with fewer shards, repeats) the stream to exactly that many batches.
        return wds.WebLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        ).with_epoch(self.batches_per_rank(split))

    def memory_loader(self, split: str, sample: Callable[[dict], Any] | None = None) -> DataLoader:
        """The split as a list in RAM behind a plain DataLoader: Lightning adds a DistributedSampler under DDP,
        and the seeded generator draws a new, reproducible order every epoch."""
        if split not in self._in_memory:
            keep, to_sample = self.keep(split) or (lambda _: True), sample or self.sample(split)
            self._in_memory[split] = [to_sample(s) for s in self.read_all(split) if keep(s)]
        train, (rank, world) = split == "train", rank_and_world()
        self.batches_per_rank(split)  # the same early check as streaming
        # Lightning adds a DistributedSampler to the evaluation loaders; the training one reaches it wrapped in a
        # ResumableLoader, which Lightning leaves alone, so it brings its own.
        sampler = (
            DistributedSampler(
                self._in_memory[split], world, rank, shuffle=True, seed=self.seed, drop_last=True
            )
            if train and world > 1
            else None
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

    # The training stream starts at the restored step by itself (episode i is a function of i): nothing to skip.
    seeks_by_step: ClassVar[bool] = False

    def train_loader(self) -> Iterable:
        """The training stream from its start (or, if `seeks_by_step`, from the trainer's restored step)."""
        return self.split_loader("train")

    def train_dataloader(self) -> ResumableLoader:
        epochs, batches = (0, 0) if self.seeks_by_step else trained_position(self.trainer)
        return ResumableLoader(self.train_loader(), self.seed, epochs=epochs, batches=batches)

    def val_dataloader(self) -> DataLoader | wds.WebLoader:
        return self.split_loader("val")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.float_batches is None:
            return batch
        images, *rest = batch
        return (float_images(images, *self.float_batches), *rest)

    def test_dataloader(self) -> DataLoader | wds.WebLoader:
        # ImageNet and COCO publish no test labels: their papers report the validation split.
        return self.split_loader("test" if "test" in self.splits else "val")
