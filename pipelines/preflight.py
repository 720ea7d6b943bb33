"""preflight [KEYS...]: what a full reproduction costs, measured before it starts. Each experiment's recipe
(the paper's by default) is built on this machine's accelerator and stepped a few times at its real shapes,
in a process of its own so that one experiment's peak memory is its own: does it build (the error in one line
if not), seconds per step and samples per second, peak memory (RSS on CPU, the most allocated on CUDA), one
evaluation step, the recipe's step count and the projected wall time. A batch that does not fit in memory
is halved until one does (on CPU the child's address space is capped at 80% of RAM, so an oversized batch
fails with an allocation error instead of swapping the machine to a halt); a batch capped to fit (or by
`--max-batch`) says the gradient accumulation that reaches the paper's. Written to
reports/preflight.{json,md}.

Inputs are the dataset's shards as they are (a synthetic replica is enough: the recipe's data settings give
the batches their real shapes), so `reprozoo fetch` and `shard` come first."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from datamodules.files import atomic_write, read_json
from pipelines.config import Params
from pipelines.markers import replace_block

REPORT = Path("reports") / "preflight"
PROBE = (
    "import sys, json; from pipelines.preflight import cap_memory, probe; "
    "args = json.loads(sys.argv[1]); cap_memory(args.pop('memory_gib')); print(json.dumps(probe(**args)))"
)


def cap_memory(gib: float | None) -> None:
    """On CPU, cap this process's address space (80% of RAM unless told) so that a batch too big for the
    machine fails with an allocation error rather than swapping it to a halt; CUDA says "out of memory"
    itself."""
    import resource

    import torch

    if not torch.cuda.is_available():
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        cap = int(gib * 2**30) if gib else int(0.8 * total)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def probe(key: str, profile: str, steps: int, max_batch: int | None, random_weights: bool = False) -> dict:
    """One experiment, in this process: build, `steps` training steps (the first is warm-up), one
    evaluation step; the figures as a dict. `random_weights`: pretrained weights replaced by random ones of
    the same architecture (sets a process-wide switch: only for a process of its own)."""
    import resource

    import pytorch_lightning as pl
    import torch

    from datamodules import files

    files.RANDOM_WEIGHTS["on"] = random_weights

    from pipelines.config import load_params
    from pipelines.processes import hardware
    from pipelines.runs import build_model_and_data

    recipe = load_params().recipe(key, profile)
    paper_batch = recipe.data.get("batch_size")
    batch = min(paper_batch, max_batch) if paper_batch and max_batch else paper_batch
    recipe = dataclasses.replace(
        recipe, data=recipe.data | {"num_workers": 0} | ({"batch_size": batch} if batch else {})
    )
    found = {"key": key, "profile": profile, "paper_batch": paper_batch, "batch": batch}
    found["weights"] = "random (sizing only)" if random_weights else "as the recipe says"
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
        if out_of_memory(error):
            return found | {"builds": True, "fits": False}
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
        "fits": True,
        "hardware": hardware(),
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


def out_of_memory(error: BaseException) -> bool:
    """An allocation the device could not satisfy: CUDA's OutOfMemoryError, or the CPU allocator refused
    under the address-space cap."""
    text = str(error)
    return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def preflight(
    params: Params,
    keys: list[str],
    profile: str,
    steps: int,
    max_batch: int | None,
    memory_gib: float | None = None,
    random_weights: bool = False,
) -> list[dict]:
    """Each experiment in a child process, its batch halved until it fits; the rows probed. The report is
    rewritten as it grows (a long preflight shows progress) and keeps the rows of the same profile's earlier
    run for experiments not probed this time (re-probing one after a fix keeps the others)."""
    order = list(params.papers)
    rows = {r["key"]: r for r in earlier() if r.get("profile") == profile and r.get("key") in order}
    for key in keys or order:
        args = {"key": key, "profile": profile, "steps": steps, "random_weights": random_weights}
        rows[key] = fitted(args | {"max_batch": max_batch}, memory_gib)
        write(sorted(rows.values(), key=lambda row: order.index(row["key"])))
    return [rows[key] for key in keys or order]


def earlier() -> list[dict]:
    path = REPORT.with_suffix(".json")
    return read_json(path, f"delete {path} to start a new report") if path.exists() else []


def fitted(args: dict, memory_gib: float | None) -> dict:
    """The probe (`args`: probe's keyword arguments) at the largest batch that fits: the paper's, or the cap,
    halved on each failure to fit."""
    did_not_fit: list[int] = []
    while True:
        row = child_probe(args, memory_gib) | {"did_not_fit": did_not_fit}
        if row.get("fits", True) or not row.get("batch") or row["batch"] == 1:
            return row
        did_not_fit.append(row["batch"])
        args = args | {"max_batch": row["batch"] // 2}


def child_probe(args: dict, memory_gib: float | None) -> dict:
    child = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args | {"memory_gib": memory_gib})],
        capture_output=True,
        text=True,
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        return {"key": args["key"], "profile": args["profile"], "builds": False, "error": last[:300]}
    return json.loads(lines[-1])


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
        if not r.get("fits", True):
            lines.append(f"| {r['key']} | yes | does not fit at batch 1 | | | | | | | |")
            continue
        lines.append(
            f"| {r['key']} | yes | {r['device']} | {r['batch']} ({r['paper_batch']}) | {r['step_s']:.3g} | "
            f"{r['samples_per_s']:.3g} | {r['peak_memory_gib']:.2f} | {r['recipe_steps']:,} | "
            f"{r['accumulate_to_paper_batch']} | {r['projected_hours']:,.1f} |"
        )
    hours = [r["projected_hours"] for r in results if "projected_hours" in r]
    if hours:
        lines += [
            "",
            f"All {len(hours)} measured trainings: {sum(hours):,.0f} hours one after another on one such "
            f"machine; with `reprozoo repro` over {NODES} such machines, {on_nodes(hours, NODES):,.0f} hours "
            f"(the longest training alone is {max(hours):,.0f}).",
        ]
    return "\n".join(lines) + "\n"


NODES = 8  # the cluster size the projection is given for


def on_nodes(hours: list[float], nodes: int) -> float:
    """The wall hours of trainings taking `hours` each over `nodes` machines, one training per machine at a
    time, each next-longest training onto the machine free soonest (within 4/3 of the best schedule)."""
    loads = [0.0] * nodes
    for each in sorted(hours, reverse=True):
        loads[loads.index(min(loads))] += each
    return max(loads)


def readme_section(text: str, results: list[dict]) -> str:
    """README.md with its preflight block replaced by this run's table and the machine it was measured on."""
    measured = next((r["hardware"] for r in results if "hardware" in r), None)
    machine = "an unrecorded machine"
    if measured:
        machine = (
            f"{measured['hardware.cpu']}, {measured['hardware.cores']} cores, "
            f"{measured['hardware.memory_gib']} GiB, GPU: {measured['hardware.gpu']}"
        )
    return replace_block(text, "preflight", f"Measured on {machine}:\n\n{table(results)}")


def update_readme(readme: Path = Path("README.md")) -> None:
    """The last report's table into README.md (what the maintainers commit beside reports/preflight.*)."""
    atomic_write(readme, readme_section(readme.read_text(), earlier()))
