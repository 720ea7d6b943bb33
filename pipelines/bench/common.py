"""What every bench section shares: targets, sizes, rates over steady steps, a thread budget."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

TARGETS = {
    "loader_per_worker": 0.9,
    "framework_overhead": 0.05,
    "ddp_speedup": 1.6,
    "tune_concurrency": 1.25,
    "noop_repro_seconds": 2.0,
    "first_command_minutes": 15.0,  # `make repro` on a fresh clone, the install included
    "test_suite_minutes": 20.0,  # `.ci/run`: `make test` on a clean clone, the install included
    "evaluate_overhead_seconds": 5.0,  # an evaluate stage's wall time beyond its test pass
    "help_seconds": 1.5,  # `reprozoo --help`: every verb's start-up floor
}
ROUNDS = 2  # timings are the best of this many rounds: the machine may be shared (a VM's neighbours)


@dataclass(frozen=True)
class Size:
    images: int  # training JPEGs of the synthetic ImageNet replica the loader reads
    batch: int
    steps: int  # timed training steps (framework, ddp, tune, gpu)
    workers: tuple[int, ...]
    framework_batch: int  # resnet_cifar's recipe batch: the framework's share of a real step


SIZES = {
    "tiny": Size(images=40, batch=8, steps=6, workers=(1, 2), framework_batch=8),
    "default": Size(images=2000, batch=32, steps=60, workers=(1, 2, 4), framework_batch=128),
}


def steady_rate(stamps: list[float], items_per_stamp: int, warmup: int) -> float:
    """Items/s between the end of the `warmup`-th step and the last one (start-up and first-step costs
    excluded)."""
    timed = stamps[warmup:]
    return items_per_stamp * (len(timed) - 1) / (timed[-1] - timed[0])


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
