"""The few-shot batch type and the N-way K-shot sampler shared by the episodic papers (protonets, mann).

Episodes come already shaped by (way, shot), so no paper re-sorts a flat batch. Episode `i` of a split
is a pure function of (seed, rank, i): training resumes at the exact episode it stopped at, and two DDP
ranks never draw the same episodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from datamodules.files import DataError


class Episode(NamedTuple):
    support: Tensor  # (way, shot, C, H, W)
    query: Tensor  # (way, query, C, H, W)
    query_labels: Tensor  # (way * query,): class index 0..way-1, grouped by class


class Sequence(NamedTuple):
    """An episode as a stream (MANN): every image of `way` classes × `shot` instances in a random order."""

    images: Tensor  # (way * shot, C, H, W)
    labels: Tensor  # (way * shot,): class index 0..way-1; the class order is random per episode


def rank_and_world() -> tuple[int, int]:
    """This process's DDP rank and the world size; RANK/WORLD_SIZE (set by launchers) count before init."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def evaluation_share(count: int) -> range:
    """Which of `count` evaluation items (episodes, batches) this rank's worker scores: every
    (world · workers)-th, so each is scored exactly once and nothing is padded. Ranks may then differ by one
    item: harmless in evaluation, whose one collective is the metrics' sync at the end (Lightning weights
    each rank's mean by its sample count)."""
    rank, world = rank_and_world()
    worker = get_worker_info()
    workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
    return range(rank + worker_id * world, count, world * workers)


class EpisodeSampler(IterableDataset):
    """Draws episodes from `classes`, a list of (n_i, C, H, W) image tensors, one per class.

    `episodes=None` streams forever from episode `start` (training: `max_steps` ends it, identically on
    every rank). A finite count (evaluation) is split across ranks and workers without padding.
    """

    def __init__(
        self,
        classes: list[Tensor],
        *,
        way: int,
        shot: int,
        query: int,
        seed: int,
        episodes: int | None = None,
        start: int = 0,
        sequence: bool = False,
    ):
        smallest = min((len(c) for c in classes), default=0)
        if way > len(classes) or shot + query > smallest:
            raise DataError(
                f"a {way}-way {shot}-shot episode with {query} queries per class needs {way} classes with "
                f"{shot + query} images each; this split has {len(classes)} classes, the smallest with "
                f"{smallest}"
            )
        self.classes, self.way, self.shot, self.query = classes, way, shot, query
        self.seed, self.episodes, self.start, self.sequence = seed, episodes, start, sequence

    def episode(self, index: int, stream: int) -> Episode | Sequence:
        g = torch.Generator().manual_seed(hash((self.seed, stream, index)) & 0x7FFF_FFFF_FFFF_FFFF)
        chosen = torch.randperm(len(self.classes), generator=g)[: self.way]
        images = []
        for c in chosen.tolist():
            pick = torch.randperm(len(self.classes[c]), generator=g)[: self.shot + self.query]
            images.append(self.classes[c][pick])
        images = torch.stack(images)  # (way, shot + query, C, H, W)
        if self.sequence:
            order = torch.randperm(self.way * self.shot, generator=g)
            return Sequence(
                images[:, : self.shot].flatten(0, 1)[order],
                torch.arange(self.way).repeat_interleave(self.shot)[order],
            )
        labels = torch.arange(self.way).repeat_interleave(self.query)
        return Episode(images[:, : self.shot], images[:, self.shot :], labels)

    def __iter__(self) -> Iterator[Episode | Sequence]:
        rank, world = rank_and_world()
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        if self.episodes is None:  # training: an endless stream per rank
            # The DataLoader takes batches from its workers round-robin, so worker w yielding
            # start + w, start + w + workers, ... keeps the global order start, start + 1, ...
            index = self.start + worker_id
            while True:
                yield self.episode(index, stream=rank)
                index += workers
        # Evaluation episodes share one stream, so the same seed gives the same test set on any world size.
        for index in evaluation_share(self.episodes):
            yield self.episode(index, stream=-1)
