"""bench workflow: what a user waits for, each beside its target: the first command (`make repro`, the
install included) and the test suite (`make test`) as `make` recorded them in reports/timings/, an evaluate
stage beyond its test pass (its wall time as `reprozoo repro` recorded it, its phases as each evaluation
logged them to its MLflow run), and `reprozoo --help`."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines import paths
from pipelines.bench.common import ROUNDS, TARGETS
from pipelines.timing import EVALUATE_WORK, Phases

TIMINGS = paths.TIMINGS
SECONDS = "evaluate/seconds/"


def import_seconds() -> dict[str, Any]:
    """`reprozoo --help` in a fresh interpreter, best of ROUNDS: the floor of every verb's start-up."""
    runs = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipelines", "--help"], capture_output=True, check=True)
        runs.append(time.perf_counter() - start)
    seconds = min(runs)
    target = TARGETS["help_seconds"]
    return {"seconds": seconds, "target": f"seconds <= {target}", "holds": seconds <= target}


def recorded(name: str, target_minutes: float, how: str) -> dict[str, Any]:
    """The wall time `make` wrote when `name` last finished here, else what to run to get it."""
    record = TIMINGS / f"{name}.json"
    if not record.exists():
        return {"skipped": f"no {record}: run `{how}` (on a fresh clone, to include the install)"}
    found = json.loads(record.read_text())
    minutes = found["seconds"] / 60
    return {
        **found,
        "minutes": minutes,
        "target": f"minutes <= {target_minutes}",
        "holds": minutes <= target_minutes,
    }


def evaluate_overheads() -> dict[str, Any]:
    """Per evaluated experiment: its evaluate stage's seconds beyond the test pass, and each phase's. The
    stage's wall time where `reprozoo repro` recorded it (process start, DVC's checks and records included),
    else the verb's own phases."""
    keys = sorted(p.stem for p in Path("metrics").glob("*.json")) if Path("params.yaml").exists() else []
    if not keys:
        return {"skipped": "no metrics/<experiment>.json here: run `make repro` first"}
    from mlflow.exceptions import MlflowException

    from pipelines import tracking
    from pipelines.config import load_params

    client = tracking.store(load_params()).client
    stage_times = json.loads(paths.STAGE_TIMES.read_text()) if paths.STAGE_TIMES.exists() else {}
    stages: dict[str, Any] = {}
    for key in keys:
        run_id = json.loads(paths.metrics(key).read_text()).get("mlflow_run_id")
        try:
            logged = client.get_run(run_id).data.metrics if run_id else {}
        except MlflowException:  # a committed baseline's run, made in another store (a fresh clone's)
            continue
        phases = {k.removeprefix(SECONDS): v for k, v in logged.items() if k.startswith(SECONDS)}
        if phases:
            stages[key] = {"phases": phases, "overhead": Phases(**phases).overhead(EVALUATE_WORK)}
            if (wall := stage_times.get(f"evaluate@{key}")) is not None:  # the whole stage, DVC's work too
                stages[key] |= {"stage_seconds": wall, "overhead": wall - phases.get(EVALUATE_WORK, 0.0)}
    if not stages:
        return {
            "skipped": "no evaluation in this MLflow store logged its phases: run `make repro` (or evaluate "
            "again)"
        }
    overheads = [stage["overhead"] for stage in stages.values()]
    target = TARGETS["evaluate_overhead_seconds"]
    return {
        "stages": stages,
        "mean_overhead": statistics.fmean(overheads),
        "max_overhead": max(overheads),
        "target": f"max_overhead <= {target}",
        "holds": max(overheads) <= target,
    }


def bench_workflow() -> dict[str, Any]:
    parts = {
        "first_command": recorded("make-repro", TARGETS["first_command_minutes"], "make repro"),
        "test_suite": recorded("make-test", TARGETS["test_suite_minutes"], "make test"),
        "evaluate": evaluate_overheads(),
        "help_import": import_seconds(),
    }
    judged = [part["holds"] for part in parts.values() if "holds" in part]
    return {**parts, "holds": all(judged)} if judged else parts
