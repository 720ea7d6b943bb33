"""Inside a Tune trial: the `train` verb's Lightning training with the trial's sample merged over the recipe,
reporting its validation metrics and a checkpoint to Ray at every validation; on one process, or as one rank
of a Ray Train DDP group."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import ray
import torch
from ray import tune

from pipelines import paths, tracking
from pipelines.config import Params, Recipe, TuneParams
from pipelines.runs import RngState, RunLogger, build_model_and_data, build_trainer, for_speed


@dataclass(frozen=True)
class Sweep:
    """What every trial needs, shipped to the Ray workers (Params is a plain pydantic model: it pickles)."""

    params: Params
    key: str
    root: str  # the project root: every path in the contract is relative to it
    parent_run_id: str
    store: tracking.Store  # the driver's store, resolved once: trials log their child runs there
    metric: str
    mode: str
    settings: TuneParams


class ReportToRay(pl.Callback):
    """At every validation: the scalar metrics and a checkpoint to Ray (`ray.tune.report` in a trial,
    `ray.train.report` on a Ray Train worker). Ray's own Lightning callbacks report at epoch ends, which a
    step-budgeted run over endless episode streams never reaches."""

    def __init__(self, report: Callable[..., None]):
        self.report, self.resumed_from_step = report, 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.resumed_from_step = trainer.global_step  # > 0 when Ray restarted the trial from a checkpoint

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        with tempfile.TemporaryDirectory() as folder:
            trainer.save_checkpoint(
                Path(folder) / "checkpoint.ckpt", weights_only=False
            )  # collective under DDP: every rank calls it
            checkpoint = ray.tune.Checkpoint.from_directory(folder) if trainer.is_global_zero else None
            self.report(
                {
                    **metrics,
                    "step": trainer.global_step,
                    "world_size": trainer.world_size,
                    "resumed_from_step": self.resumed_from_step,
                },
                checkpoint=checkpoint,
            )


def trial_run_id(sweep: Sweep, recipe: Recipe, trial_id: str, data_source: str, hparams: dict) -> str:
    """The trial's child run: found again when Tune restarts the trial, so a retry continues it."""
    found = sweep.store.client.search_runs(
        [tracking.experiment_id(sweep.store, sweep.key)],
        filter_string=f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}' and "
        f"tags.`tune.trial_id` = '{trial_id}'",
    )
    if found:
        return found[0].info.run_id
    return tracking.start_run(
        sweep.store,
        recipe,
        data_source,
        run_name=f"{sweep.key}-{trial_id}",
        tags={"mlflow.parentRunId": sweep.parent_run_id, "tune.trial_id": trial_id, "reprozoo.kind": "trial"},
        hparams=hparams,
    )


def fit_trial(
    sweep: Sweep,
    overrides: dict[str, Any],
    trial_id: str,
    *,
    report: Callable,
    latest: Callable[[], Any],
    rank: int = 0,
    **placement,
) -> None:
    """One trial's training, on one process or as one rank of a Ray Train group."""
    os.chdir(sweep.root)  # Tune starts trials in their own folder
    torch.set_num_threads(max(1, int(sweep.settings.resources_per_trial.cpu)))  # no oversubscribed OpenMP
    recipe = sweep.params.recipe(sweep.key, overrides=overrides)
    model, data, meta = build_model_and_data(recipe)
    run_id = (
        trial_run_id(sweep, recipe, trial_id, meta["source"]["source"], dict(model.hparams))
        if rank == 0
        else None
    )
    logger = RunLogger(sweep.store, sweep.key, run_id)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(
            recipe.trainer, Path(scratch), logger, [ReportToRay(report), RngState()], **placement
        )
        if "strategy" in placement:
            from ray.train.lightning import prepare_trainer

            trainer = prepare_trainer(trainer)
        checkpoint = latest()
        model = for_speed(model, recipe.trainer)
        if checkpoint is None:
            trainer.fit(model, datamodule=data)
        else:
            with checkpoint.as_directory() as folder:
                trainer.fit(
                    model, datamodule=data, ckpt_path=str(Path(folder) / "checkpoint.ckpt"), weights_only=True
                )


def single_process_trial(config: dict[str, Any], sweep: Sweep) -> None:
    fit_trial(
        sweep, config, tune.get_context().get_trial_id(), report=tune.report, latest=tune.get_checkpoint
    )


def ddp_worker(loop: dict[str, Any]) -> None:
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    sweep: Sweep = loop["sweep"]
    fit_trial(
        sweep,
        loop["config"],
        loop["trial_id"],
        report=ray.train.report,
        latest=ray.train.get_checkpoint,
        rank=ray.train.get_context().get_world_rank(),
        strategy=RayDDPStrategy(),
        plugins=[RayLightningEnvironment()],
        devices="auto",
        num_nodes=1,
        accelerator="gpu" if sweep.settings.use_gpu else "cpu",
    )


def ddp_trial(config: dict[str, Any], sweep: Sweep) -> None:
    """A trial that is a Ray Train run; a restarted trial resumes the same run (same name and storage)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context, settings = tune.get_context(), sweep.settings
    TorchTrainer(
        ddp_worker,
        train_loop_config={"sweep": sweep, "config": config, "trial_id": context.get_trial_id()},
        scaling_config=ray.train.ScalingConfig(
            num_workers=settings.workers_per_trial,
            use_gpu=settings.use_gpu,
            resources_per_worker=worker_resources(settings),
        ),
        run_config=ray.train.RunConfig(
            name=f"{context.get_trial_name()}-train",
            storage_path=str(Path(sweep.root) / paths.TUNE_RUNS),
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=settings.max_failures),
        ),
    ).fit()


def worker_resources(settings: TuneParams) -> dict[str, float]:
    return {
        "CPU": settings.resources_per_trial.cpu,
        "GPU": settings.resources_per_trial.gpu or float(settings.use_gpu),
    }
