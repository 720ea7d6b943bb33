"""Resuming a training run exactly: the global RNGs as checkpoint-safe state, and the training loader that
draws from RNGs of its own and skips what a restored run had already trained on."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from datamodules.episodes import rank_and_world


def rng_states() -> dict[str, Any]:
    """The process's global RNGs (torch, CUDA, numpy, random) as tensors and plain lists: a checkpoint holding
    them still loads with `torch.load(weights_only=True)` (a numpy array would need unpickling)."""
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
    """Fresh CPU RNG states from `seed`, as `torch.manual_seed` etc. would make them, touching no global
    RNG."""
    return (
        torch.Generator().manual_seed(seed).get_state(),
        np.random.RandomState(seed).get_state(),
        random.Random(seed).getstate(),
    )


class ResumableLoader:
    """The training loader as Lightning sees it, made so that a killed run resumes exactly where it stopped.

    - Its randomness is its own: random crops, shuffles in the main process and the workers' seeds draw from
      RNGs seeded by (data seed, rank), swapped in around each fetch, never from the training's global RNG.
      Otherwise a batch would depend on when Lightning prefetched it, and a resumed run could not draw the
      same crops.
    - After a restore it skips the `epochs` and `batches` the checkpoint's run had trained on: it reads them
      again (the stream is deterministic) but trains on none. Loaders whose stream seeks by index (episodes)
      start at the restored step themselves and skip nothing.
    """

    def __init__(self, loader: Iterable, seed: int, *, epochs: int = 0, batches: int = 0):
        self.loader, self.skip_epochs, self.skip_batches, self.epoch = loader, epochs, batches, 0
        self.rng = seeded_rng_states(hash((seed, rank_and_world()[0])) & 0xFFFF_FFFF)

    def __len__(self) -> int:
        return len(self.loader)  # a TypeError for an unsized stream, as Lightning expects

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        # On every fetch, so the states stay in their native forms (no list conversion: ~8x cheaper per
        # batch).
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
    """(finished epochs, batches of the current epoch) a restored trainer had trained on; (0, 0) on a fresh
    one. Read when Lightning builds the training loader, after a checkpoint restored its loops."""
    if trainer is None:
        return 0, 0
    return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
