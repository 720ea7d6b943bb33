"""`reprozoo bench`: is the input pipeline or the framework the bottleneck on this machine? Each answer is a
ratio of two things measured side by side in one run, written to reports/bench.json and logged to the MLflow
experiment `reprozoo.bench`.

- loader: the WebDataset DataModule's samples/s (read, decode, transform, collate) over the decode limit (the
  same JPEG bytes decoded and transformed in a tight loop in memory), per worker for 1, 2, 4 workers; and over
  torchvision's ImageFolder reading the same JPEGs from a folder layout.
- framework: training steps/s of the Lightning module over a hand-written loop (same net, batches, optimizer).
- ddp: samples/s of 2 gloo processes over 1.
- tune: wall time of 2 concurrent Ray Tune trials over one, and a trial's start-up cost.
- pipeline: a no-op `dvc repro`, and writing shards over copying the raw files.
- gpu: ResNet-50 training images/s, plain loop vs Lightning with channels-last, bf16 and torch.compile (CUDA
  only).
- workflow: what a user waits for: `make repro` and `make test` (as `make` recorded them), an evaluate stage
  beyond its test pass (per experiment, as each logged it), `reprozoo --help`.

Every result states its target and whether it held. Sizes: `tiny` (what the tests run), `default`.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from datamodules.files import atomic_write
from pipelines.bench.common import SIZES, TARGETS
from pipelines.bench.ddp import bench_ddp
from pipelines.bench.framework import bench_framework
from pipelines.bench.gpu import bench_gpu
from pipelines.bench.loader import bench_loader
from pipelines.bench.pipeline import bench_pipeline
from pipelines.bench.tune import bench_tune
from pipelines.bench.workflow import bench_workflow
from pipelines.errors import ParamsError

REPORT = Path("reports/bench.json")
EXPERIMENT = "reprozoo.bench"
SECTIONS = ("loader", "framework", "ddp", "tune", "pipeline", "gpu", "workflow")


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def run_bench(
    size_name: str = "default",
    sections: Iterable[str] = SECTIONS,
    report: Path = REPORT,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    size = SIZES[size_name]
    results: dict[str, Any] = {"size": size_name, "machine": machine(), "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="reprozoo-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        runners: dict[str, Callable[[], dict]] = {
            "loader": lambda: bench_loader(scratch, size),
            "framework": lambda: bench_framework(size),
            "ddp": lambda: bench_ddp(size),
            "tune": lambda: bench_tune(scratch, size),
            "pipeline": lambda: bench_pipeline(scratch, size),
            "gpu": lambda: bench_gpu(size),
            "workflow": bench_workflow,
        }
        for name in sections:
            progress(name)
            start = time.perf_counter()
            results[name] = {**runners[name](), "bench_seconds": time.perf_counter() - start}
    atomic_write(report, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def flat_metrics(results: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`loader/workers/2/per_worker_vs_decode_limit`-style names for every number (booleans as 0/1)."""
    out: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, f"{name}/"))
        elif isinstance(value, (bool, int, float)) and not isinstance(value, str):
            out[name.replace(" ", "_")] = float(value)
    return out


def log_to_mlflow(params, results: dict[str, Any], report: Path) -> str:
    from pipelines import tracking

    store = tracking.store(params)
    client = store.client
    run = client.create_run(
        tracking.experiment_id(store, EXPERIMENT),
        run_name=f"bench-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            "git_commit": tracking.git_commit(),
            "reprozoo.kind": "bench",
            "size": results["size"],
            **{f"machine.{k}": str(v) for k, v in results["machine"].items()},
        },
    )
    metrics = flat_metrics({k: v for k, v in results.items() if k in SECTIONS})
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, value)
    client.log_artifact(run.info.run_id, str(report))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def summary(name: str, section: dict) -> str:
    """The one number of a bench section a person looks at first."""
    if name == "loader":
        return ", ".join(
            f"{w} workers: {r['per_worker_vs_decode_limit']:.2f} of decode limit/worker, "
            f"{r['vs_imagefolder']:.2f}x ImageFolder"
            for w, r in section["workers"].items()
        )
    if name == "framework":
        return f"Lightning overhead {section['lightning_overhead']:+.1%}"
    if name == "ddp":
        return f"2 processes {section['speedup_vs_one_process_1_thread']:.2f}x one"
    if name == "tune":
        startup = section["per_trial_startup_seconds"]
        return f"2 trials {section['two_over_one']:.2f}x one; start-up {startup:.1f} s/trial"
    if name == "pipeline":
        return (
            f"shard {section['shard_megabytes_per_s']:.0f} MB/s vs copy "
            f"{section['copy_megabytes_per_s']:.0f} MB/s; "
            f"{section['noop_repro'].get('command', 'dvc')} "
            f"{section['noop_repro'].get('seconds', float('nan')):.1f} s"
        )
    if name == "workflow":
        return workflow_summary(section)
    return json.dumps(section.get("images_per_s", {}))[:120]


def workflow_summary(section: dict) -> str:
    def shown(part: str, name: str, text: str) -> str:
        return f"{name} not measured" if "skipped" in section[part] else name + text.format(**section[part])

    return "; ".join(
        [
            shown("first_command", "make repro", " {minutes:.1f} min"),
            shown("test_suite", "make test", " {minutes:.1f} min"),
            shown("evaluate", "evaluate overhead", " ≤ {max_overhead:.1f} s (mean {mean_overhead:.1f})"),
            shown("help_import", "--help", " {seconds:.2f} s"),
        ]
    )


def check_request(size: str, only: list[str] | None) -> tuple[str, ...]:
    """The sections to run, checked before anything runs."""
    if size not in SIZES:
        raise ParamsError(f"--size: {size!r}; expected one of {', '.join(SIZES)}")
    if unknown := sorted(set(only or []) - set(SECTIONS)):
        raise ParamsError(
            f"--only: unknown section {', '.join(unknown)}; expected any of {', '.join(SECTIONS)}"
        )
    return tuple(only or SECTIONS)


def results_table(results: dict[str, Any], sections: tuple[str, ...]) -> Table:
    table = Table("section", "result", "target", "holds")
    for name in sections:
        section = results[name]
        holds = "—" if "holds" not in section else ("yes" if section["holds"] else "no")
        table.add_row(
            name, section.get("skipped") or summary(name, section), section.get("target", ""), holds
        )
    return table
