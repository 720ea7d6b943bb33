"""Validation on samples that no reported number uses (issue 23). Where a dataset's papers report the one
split they could validate on (ImageNet's and COCO's val, VOC07 test, VOC's segmentation val, LFW's test
pairs), choosing a checkpoint on it would tune to the number then reported as the test result. Such a dataset
holds out a fixed part of its training split instead: validation reads only that part, training never sees
it. The part is decided on raw samples, before any decoding, by key and position within their shard: the
same on every rank, worker, epoch and machine."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from datamodules.files import DataError


def part_of_split(held_out: bool, is_held_out: Callable[[str, int], bool]) -> Callable[[Iterable], Iterator]:
    """A webdataset stage on raw samples keeping the held-out part (`held_out`) or the rest;
    `is_held_out(key, position in its shard)` decides."""

    def stage(samples: Iterable[dict]) -> Iterator[dict]:
        shard, position = None, 0
        for sample in samples:
            if sample["__url__"] != shard:
                shard, position = sample["__url__"], 0
            if is_held_out(sample["__key__"], position) == held_out:
                yield sample
            position += 1

    return stage


class NonEmpty:
    """A validation stream that fails, naming `problem`, if it yields nothing: an empty validation would
    otherwise surface as a checkpoint monitor that was never logged."""

    def __init__(self, loader: Iterable, problem: str):
        self.loader, self.problem = loader, problem

    def __iter__(self) -> Iterator:
        empty = True
        for batch in self.loader:
            empty = False
            yield batch
        if empty:
            raise DataError(self.problem)


def verification_pairs(faces: Iterable[str], group: Callable[[str], str], seed: int) -> list[dict]:
    """Same/different pairs over held-out faces, shaped like LFW's View 2 (as many matched as mismatched
    pairs, 10 folds, each fold balanced), so validation runs the test's own protocol: matched pairs join
    disjoint couples of one person's faces, mismatched ones a face of each of two neighbouring people (in a
    seeded order)."""
    import random

    by_group: dict[str, list[str]] = {}
    for face in sorted(faces):  # a set of keys gives the same pairs on every rank and run
        by_group.setdefault(group(face), []).append(face)
    people = sorted(by_group)
    random.Random(seed).shuffle(people)
    matched = [(a, b) for p in people for a, b in zip(by_group[p][::2], by_group[p][1::2])]
    mismatched = [(by_group[p][0], by_group[q][-1]) for p, q in zip(people, people[1:])]
    n = min(len(matched), len(mismatched))
    pairs = [pair for both in zip(matched[:n], mismatched[:n]) for pair in both]  # alternating: folds balance
    return [{"fold": i // 2 % 10, "a": a, "b": b, "same": i % 2 == 0} for i, (a, b) in enumerate(pairs)]
