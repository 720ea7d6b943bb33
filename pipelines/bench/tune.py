"""bench tune: two concurrent Ray Tune trials against one, and a trial's start-up cost."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from pipelines.bench.common import TARGETS, Size
from pipelines.bench.framework import cifar_module, plain_loop, synthetic_batches


def fixed_work(steps: int, batch: int) -> float:
    """A trial's compute: `steps` ResNet-20 steps on one thread; returns its seconds."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    plain_loop(cifar_module(), synthetic_batches(batch, 2), steps)
    return time.perf_counter() - start


def tune_trial(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"compute_seconds": fixed_work(config["steps"], config["batch"])})


def tune_wall(samples: int, size: Size, storage: Path) -> float:
    from ray import tune

    start = time.perf_counter()
    tune.Tuner(
        tune.with_resources(tune_trial, {"cpu": 1}),
        param_space={"steps": size.steps, "batch": size.batch},
        tune_config=tune.TuneConfig(num_samples=samples, max_concurrent_trials=samples),
        run_config=tune.RunConfig(name=f"bench-{samples}", storage_path=str(storage), verbose=0),
    ).fit()
    return time.perf_counter() - start


def bench_tune(scratch: Path, size: Size) -> dict[str, Any]:
    import ray

    from pipelines.processes import connect_ray

    compute = fixed_work(size.steps, size.batch)
    started_here = not ray.is_initialized()
    connect_ray(None, os.cpu_count())
    try:
        tune_wall(1, size, scratch / "ray")  # warms Ray's worker pool, as a long-lived cluster is
        one, two = tune_wall(1, size, scratch / "ray"), tune_wall(2, size, scratch / "ray")
    finally:
        if started_here:
            ray.shutdown()
    return {
        "trial_compute_seconds": compute,
        "one_trial_wall_seconds": one,
        "two_trials_wall_seconds": two,
        "two_over_one": two / one,
        "per_trial_startup_seconds": one - compute,
        "target": f"two_over_one <= {TARGETS['tune_concurrency']}",
        "holds": two / one <= TARGETS["tune_concurrency"],
    }
