"""`reprozoo tune <key>`: a Ray Tune sweep over `papers.<key>.tune`, one MLflow parent run with a child per
trial.

Each trial is the `train` verb's Lightning training (same builders, same Trainer recipe) with the trial's
sample merged over the recipe. It reports the validation metrics and a checkpoint at every validation, so ASHA
can stop it at a rung and Tune can restart it from its checkpoint after a failure. With `workers_per_trial >
1` a trial is a Ray Train run (TorchTrainer, RayDDPStrategy, RayLightningEnvironment) whose reports Tune
receives through `TuneReportCallback`. The best configuration lands in reports/tune/<key>.json and on the
parent run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from rich.table import Table

from datamodules.files import atomic_write
from datamodules.shards import read_meta
from lightning_modules.paper import monitor, with_defaults
from pipelines import checks, paths, tracking
from pipelines.config import Params, TuneParams
from pipelines.errors import ParamsError
from pipelines.processes import connect_ray
from pipelines.runs import paper_class
from pipelines.tune.trial import Sweep, ddp_trial, single_process_trial

DRIVER_MEMORY = 256 * 2**20  # bytes Ray sets aside for a DDP trial's driver, which only waits on its workers
DISTRIBUTIONS: dict[str, Callable[[list], Any]] = {
    "choice": tune.choice,
    "grid": tune.grid_search,
    "uniform": lambda v: tune.uniform(*v),
    "loguniform": lambda v: tune.loguniform(*v),
    "randint": lambda v: tune.randint(*v),
}


def search_space(settings: TuneParams) -> dict[str, Any]:
    return {
        dotted: DISTRIBUTIONS[kind](values)
        for dotted, spec in settings.space.items()
        for kind, values in spec.items()
    }


def objective(params: Params, key: str) -> tuple[str, str]:
    """The metric Tune optimises: params' choice, else the paper's monitor for this recipe (what best.ckpt
    tracks, the validation stand-in for its primary claim)."""
    recipe = params.recipe(key)
    settings, watched = params.experiment(key).tune, monitor(paper_class(recipe), recipe.hparams)
    if settings.metric in (None, watched[0]):
        return watched[0], settings.mode or watched[1]
    if settings.mode is None:
        raise ParamsError(f"papers.{key}.tune.mode: required with metric {settings.metric!r} (min or max)")
    return settings.metric, settings.mode


def validation_rungs(params: Params, key: str) -> int:
    """How many reports a full trial makes: one per validation (ASHA's `max_t`)."""
    trainer = params.recipe(key).trainer
    return max(1, trainer.max_steps // trainer.val_check_interval)


# ---- inside a trial ----------------------------------------------------------------------------------------


# ---- the driver --------------------------------------------------------------------------------------------


def check_search(settings: TuneParams, key: str) -> None:
    """Before Ray starts: the search algorithm exists and is installed, and fits the space."""
    if settings.search == "random":
        return
    if any("grid" in spec for spec in settings.space.values()):
        raise ParamsError(
            f"papers.{key}.tune.search: {settings.search!r} cannot sample grid axes; use search: random"
        )
    try:
        tune.search.create_searcher(settings.search)
    except ValueError as error:
        raise ParamsError(f"papers.{key}.tune.search: {error}") from None
    except ImportError as error:
        raise ParamsError(
            f"papers.{key}.tune.search: {settings.search!r} needs a package this environment lacks ({error})"
        ) from None


def tune_config(settings: TuneParams, metric: str, mode: str, rungs: int) -> tune.TuneConfig:
    scheduler = (
        tune.schedulers.ASHAScheduler(
            time_attr="training_iteration",
            max_t=rungs,
            grace_period=min(settings.grace_period, rungs),
            reduction_factor=settings.reduction_factor,
        )
        if settings.scheduler == "asha"
        else tune.schedulers.FIFOScheduler()
    )
    searcher = None if settings.search == "random" else tune.search.create_searcher(settings.search)
    return tune.TuneConfig(
        metric=metric,
        mode=mode,
        scheduler=scheduler,
        search_alg=searcher,
        num_samples=settings.num_samples,
        max_concurrent_trials=settings.max_concurrent_trials,
        trial_dirname_creator=lambda trial: trial.trial_id,
    )


def trainable(sweep: Sweep) -> Any:
    settings = sweep.settings
    if settings.workers_per_trial == 1:
        resources = {"cpu": settings.resources_per_trial.cpu, "gpu": settings.resources_per_trial.gpu}
        return tune.with_resources(tune.with_parameters(single_process_trial, sweep=sweep), resources)
    # The trial itself only waits on its Ray Train group, which claims the workers' CPUs and GPUs; a CPU of
    # its own would leave a 2-CPU machine one short of a 2-worker group. Ray wants a non-empty request:
    # memory, not a CPU.
    return tune.with_resources(
        tune.with_parameters(ddp_trial, sweep=sweep), {"cpu": 0, "memory": DRIVER_MEMORY}
    )


@dataclass(frozen=True)
class Plan:
    """A sweep resolved before Ray starts: what `--dry-run` prints."""

    settings: TuneParams
    metric: str
    mode: str
    rungs: int

    def describe(self, key: str) -> dict[str, Any]:
        return {
            "experiment": key,
            "metric": self.metric,
            "mode": self.mode,
            "validation_rungs": self.rungs,
            **self.settings.model_dump(),
        }


def plan(params: Params, key: str, num_samples: int | None = None) -> Plan:
    """The sweep's settings (the experiment's space, else the paper's default one), objective and rungs,
    checked."""
    settings = params.experiment(key).tune
    if num_samples is not None:
        if num_samples < 1:
            raise ParamsError(f"--num-samples: expected a positive number of trials, got {num_samples}")
        settings = settings.model_copy(update={"num_samples": num_samples})
    if not settings.space:
        settings = settings.model_copy(update={"space": default_space(params, key)})
    check_search(settings, key)
    return Plan(settings, *objective(params, key), validation_rungs(params, key))


def default_space(params: Params, key: str) -> dict[str, dict[str, list]]:
    """Where an experiment names no space: a decade either side of the recipe's learning rate and (when it has
    one) weight decay, on a log scale; each end checked against the paper's signature like a written space."""
    recipe = params.recipe(key)
    hparams = with_defaults(paper_class(recipe), recipe.hparams)
    space = {
        f"hparams.{name}": {"loguniform": [hparams[name] / 10, hparams[name] * 10]}
        for name in ("lr", "weight_decay")
        if isinstance(hparams.get(name), float) and hparams[name] > 0
    }
    if not space:
        raise ParamsError(
            f"papers.{key}.tune.space: empty, and {recipe.paper} has no lr or weight_decay to default "
            f"to; name at least one hparams.<name>, data.<name> or trainer.<name>"
        )
    for dotted, distribution in space.items():
        for value in distribution["loguniform"]:
            params.recipe(key, overrides={dotted: value})
    return space


def run_sweep(
    params: Params,
    key: str,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Run the sweep; return (and write to reports/tune/<key>.json) the best config and every trial's
    outcome."""
    resolved = plan(params, key, num_samples)
    settings, metric, mode, rungs = resolved.settings, resolved.metric, resolved.mode, resolved.rungs
    read_meta(
        paths.shards(params.experiment(key).dataset)
    )  # no shards: one clear error, not one per Ray trial
    store = tracking.store(params)
    checks.check_store(store, key)  # before Ray starts: not once per trial
    parent = tracking.start_sweep(store, params.recipe(key), settings.model_dump(), metric, mode)
    sweep = Sweep(params, key, str(Path.cwd()), parent, store, metric, mode, settings)
    connect_ray(address, num_cpus)
    started = time.time()
    try:
        grid = tune.Tuner(
            trainable(sweep),
            param_space=search_space(settings),
            tune_config=tune_config(settings, metric, mode, rungs),
            run_config=tune.RunConfig(
                name=f"{key}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(paths.TUNE_RUNS.resolve()),
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=1,
            ),
        ).fit()
        summary = summarise(grid, sweep, rungs, time.time() - started)
    except BaseException:
        store.client.set_terminated(parent, "FAILED")  # the parent says the sweep did not finish
        raise
    atomic_write(paths.tune_report(key), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tracking.finish_sweep(store, parent, summary, paths.tune_report(key))
    return summary


def summarise(grid: tune.ResultGrid, sweep: Sweep, rungs: int, seconds: float) -> dict[str, Any]:
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        trials.append(
            {
                "trial_id": metrics.get("trial_id"),
                "config": result.config,
                "status": "error"
                if result.error
                else ("stopped_early" if metrics.get("training_iteration", 0) < rungs else "completed"),
                "validations": metrics.get("training_iteration", 0),
                "step": metrics.get("step"),
                "world_size": metrics.get("world_size"),
                "resumed_from_step": metrics.get("resumed_from_step"),
                sweep.metric: metrics.get(sweep.metric),
                "error": str(result.error) if result.error else None,
                "checkpoint": result.checkpoint.path if result.checkpoint else None,
            }
        )
    scored = [t for t in trials if t[sweep.metric] is not None]
    if not scored:
        raise RuntimeError(
            f"tune {sweep.key}: no trial reported {sweep.metric}; errors: {[t['error'] for t in trials]}"
        )
    best = max(scored, key=lambda t: t[sweep.metric] if sweep.mode == "max" else -t[sweep.metric])
    return {
        "experiment": sweep.key,
        "paper": sweep.params.experiment(sweep.key).paper,
        "profile": sweep.params.profile,
        "metric": sweep.metric,
        "mode": sweep.mode,
        "best_config": best["config"],
        "best_trial": best["trial_id"],
        "best_value": best[sweep.metric],
        "best_checkpoint": best["checkpoint"],
        "mlflow_parent_run_id": sweep.parent_run_id,
        "scheduler": sweep.settings.scheduler,
        "search": sweep.settings.search,
        "workers_per_trial": sweep.settings.workers_per_trial,
        "wall_seconds": round(seconds, 1),
        "trials": sorted(trials, key=lambda t: t["trial_id"] or ""),
    }


def trials_table(summary: dict[str, Any], key: str) -> Table:
    """Each trial's sampled values, outcome and metric, for the terminal."""
    metric = summary["metric"]
    table = Table(
        "trial",
        "config",
        "status",
        "validations",
        metric,
        title=f"tune {key} ({summary['wall_seconds']:.0f} s)",
    )
    for trial in summary["trials"]:
        config = " ".join(
            f"{k.split('.', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
            for k, v in trial["config"].items()
        )
        value = trial[metric]
        table.add_row(
            trial["trial_id"],
            config,
            trial["status"],
            str(trial["validations"]),
            "—" if value is None else f"{value:.4f}",
        )
    return table
