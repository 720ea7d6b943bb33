"""The few-shot batch type and the N-way K-shot sampler shared by the episodic papers (protonets, mann), and
FaceNet's batches of many faces per identity.

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


def generator(seed: int, stream: int, index: int) -> torch.Generator:
    """The random state of draw `index` in `stream`: a pure function of the three, so a draw never depends on
    the ones before it (resuming, and several ranks, need no replay)."""
    return torch.Generator().manual_seed(hash((seed, stream, index)) & 0x7FFF_FFFF_FFFF_FFFF)


def training_stream(draw, start: int) -> Iterator:
    """`draw(index, stream=rank)` for index start, start + 1, ... forever, one stream per rank."""
    rank, _ = rank_and_world()
    worker = get_worker_info()
    workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
    # The DataLoader takes batches from its workers round-robin, so worker w yielding
    # start + w, start + w + workers, ... keeps the global order start, start + 1, ...
    index = start + worker_id
    while True:
        yield draw(index, stream=rank)
        index += workers


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
        g = generator(self.seed, stream, index)
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
        if self.episodes is None:  # training: an endless stream per rank
            yield from training_stream(self.episode, self.start)
        # Evaluation episodes share one stream, so the same seed gives the same test set on any world size.
        for index in evaluation_share(self.episodes):
            yield self.episode(index, stream=-1)


class IdentityBatches(IterableDataset):
    """FaceNet's training batches (§3.2): "around 40 faces are selected per identity per mini-batch.
    Additionally, randomly sampled negative faces are added": up to `identities` people with two or more
    photos, up to `faces` photos of each (a person gives what they have: real LFW has 1,680 people with two
    or more and few with 40), then photos of other people at random until the batch holds `size` faces.

    `people` is a list of (n_i, C, H, W) image tensors, one per person. A batch is (images, labels): labels
    number the people, so two random negatives of one person are a positive pair, as they should be. Batch
    `i` is a pure function of (seed, rank, i), streamed from `start` (training; `max_steps` ends it).
    """

    def __init__(
        self, people: list[Tensor], *, identities: int, faces: int, size: int, seed: int, start: int = 0
    ):
        self.several = torch.tensor([i for i, photos in enumerate(people) if len(photos) >= 2])
        if not len(self.several):
            raise DataError(
                "FaceNet's batches need people with two or more photos (an anchor and a positive); "
                f"this split's {len(people)} people have one each"
            )
        counts = [len(photos) for photos in people]
        self.photos = torch.cat(people)  # one tensor; each person's photos a view of it
        self.people = list(self.photos.split(counts))
        self.owner = torch.arange(len(people)).repeat_interleave(torch.tensor(counts))  # each photo's person
        self.identities, self.faces, self.size, self.seed, self.start = identities, faces, size, seed, start

    def batch(self, index: int, stream: int) -> tuple[Tensor, Tensor]:
        g = generator(self.seed, stream, index)
        chosen = self.several[torch.randperm(len(self.several), generator=g)[: self.identities]].tolist()
        images, labels, room = [], [], self.size
        for person in chosen:
            if room < 2:  # a person alone in the batch has no positive: the rest are negatives
                break
            pick = torch.randperm(len(self.people[person]), generator=g)[: min(self.faces, room)]
            images.append(self.people[person][pick])
            labels.append(torch.full((len(pick),), person))
            room -= len(pick)
        others = (~torch.isin(self.owner, torch.tensor([int(t[0]) for t in labels]))).nonzero().squeeze(1)
        negatives = others[torch.randperm(len(others), generator=g)[:room]]
        return torch.cat([*images, self.photos[negatives]]), torch.cat([*labels, self.owner[negatives]])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield from training_stream(self.batch, self.start)
