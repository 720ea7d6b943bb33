"""preflight [KEYS...]: what a full reproduction costs, measured before it starts. Each experiment's recipe
(the paper's by default) is built on this machine's accelerator and stepped a few times at its real shapes,
in a process of its own so that one experiment's peak memory is its own: does it build (the error in one line
if not), seconds per step and samples per second, peak memory (RSS on CPU, the most allocated on CUDA), one
evaluation step, the recipe's step count and the projected wall time. A batch capped to fit (`--max-batch`)
says the gradient accumulation that reaches the paper's. Written to reports/preflight.{json,md}.

Inputs are the dataset's shards as they are (a synthetic replica is enough: the recipe's data settings give
the batches their real shapes), so `reprozoo fetch` and `shard` come first."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from datamodules.files import atomic_write
from pipelines.config import Params

REPORT = Path("reports") / "preflight"
PROBE = (
    "import sys, json; from pipelines.preflight import probe; "
    "print(json.dumps(probe(*json.loads(sys.argv[1]))))"
)


def probe(key: str, profile: str, steps: int, max_batch: int | None) -> dict:
    """One experiment, in this process: build, `steps` training steps (the first is warm-up), one
    evaluation step; the figures as a dict."""
    import resource

    import pytorch_lightning as pl
    import torch

    from pipelines.config import load_params
    from pipelines.runs import build_model_and_data

    recipe = load_params().recipe(key, profile)
    paper_batch = recipe.data.get("batch_size")
    batch = min(paper_batch, max_batch) if paper_batch and max_batch else paper_batch
    recipe = dataclasses.replace(
        recipe, data=recipe.data | {"num_workers": 0} | ({"batch_size": batch} if batch else {})
    )
    found = {"key": key, "profile": profile, "paper_batch": paper_batch, "batch": batch}
    found["recipe_steps"] = recipe.trainer.max_steps
    try:
        model, data, _ = build_model_and_data(recipe)
    except Exception as error:  # any failure to build is the finding, in one line
        return found | {
            "builds": False,
            "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}",
        }
    stamps: list[float] = []

    class Stamp(pl.Callback):
        def on_train_batch_end(self, *args) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    def trainer(**options) -> pl.Trainer:
        quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
        return pl.Trainer(
            accelerator=recipe.trainer.accelerator,
            devices=1,
            precision=recipe.trainer.precision,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            **quiet,
            **options,
        )

    try:
        start = time.perf_counter()
        trainer(max_steps=steps, max_epochs=-1, limit_val_batches=0, callbacks=[Stamp()]).fit(
            model, datamodule=data
        )
        stamps.insert(0, start)
    except Exception as error:
        return found | {
            "builds": False,
            "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}",
        }
    evaluated, evaluate_error = time.perf_counter(), None
    try:  # one batch: a metric of the whole split (LFW's protocol) may not compute from it, and says so
        trainer(limit_val_batches=1).validate(model, datamodule=data, verbose=False)
    except Exception as error:
        evaluate_error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    evaluate_s = time.perf_counter() - evaluated
    timed = [b - a for a, b in zip(stamps[1:], stamps[2:])] or [stamps[-1] - stamps[0]]  # past warm-up
    step_s = sorted(timed)[len(timed) // 2]
    peak = (
        torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    accumulate = math.ceil(paper_batch / batch) if paper_batch and batch else 1
    return found | {
        "builds": True,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "step_s": step_s,
        "samples_per_s": (batch or 1) / step_s,
        "evaluate_step_s": None if evaluate_error else evaluate_s,
        "evaluate_error": evaluate_error,
        "peak_memory_gib": peak / 2**30,
        "accumulate_to_paper_batch": accumulate,
        # the paper's batch reached by accumulation costs `accumulate` steps of this size per recipe step
        "projected_hours": step_s * accumulate * recipe.trainer.max_steps / 3600,
    }


def preflight(params: Params, keys: list[str], profile: str, steps: int, max_batch: int | None) -> list[dict]:
    """Each experiment in a child process; the table is rewritten as it grows (a long preflight shows
    progress)."""
    results = []
    for key in keys or list(params.papers):
        child = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps([key, profile, steps, max_batch])],
            capture_output=True,
            text=True,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode != 0 or not lines:
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            results.append({"key": key, "profile": profile, "builds": False, "error": last[:300]})
        else:
            results.append(json.loads(lines[-1]))
        write(results)
    return results


def write(results: list[dict]) -> None:
    atomic_write(REPORT.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    atomic_write(REPORT.with_suffix(".md"), table(results))


def table(results: list[dict]) -> str:
    lines = [
        "| experiment | builds | device | batch (paper's) | s/step | samples/s | peak GiB | recipe steps "
        "| accumulate | projected hours |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r.get("builds"):
            lines.append(f"| {r['key']} | no: {r.get('error', '')} | | | | | | | | |")
            continue
        lines.append(
            f"| {r['key']} | yes | {r['device']} | {r['batch']} ({r['paper_batch']}) | {r['step_s']:.3g} | "
            f"{r['samples_per_s']:.3g} | {r['peak_memory_gib']:.2f} | {r['recipe_steps']:,} | "
            f"{r['accumulate_to_paper_batch']} | {r['projected_hours']:,.1f} |"
        )
    return "\n".join(lines) + "\n"
