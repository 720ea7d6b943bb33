"""train@<experiment>: models/<experiment>/{last,best}.ckpt and run.json, with the curves in an MLflow run."""

from __future__ import annotations

import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from pytorch_lightning.utilities import rank_zero_only

from lightning_modules.paper import monitor
from pipelines import checks, paths, tracking
from pipelines.config import Params, Recipe
from pipelines.processes import cpu_threads
from pipelines.runs import (
    RngState,
    RunLogger,
    build_model_and_data,
    build_trainer,
    checkpoints,
    for_speed,
    loading_safely,
    paper_class,
    read_record,
    training_lock,
    untrained_floor,
    write_record,
)


@dataclass(frozen=True)
class TrainedRun:
    checkpoint: Path
    mlflow_run_id: str | None
    resumed: bool


def resumable(recipe: Recipe) -> dict | None:
    """The record of an interrupted run of this same recipe, whose last.ckpt can be continued.

    A finished run is never resumed: DVC re-runs a finished stage only because code, data or params
    changed, and then the model must be trained anew.
    """
    record = read_record(recipe.key)
    last = paths.model_dir(recipe.key) / "last.ckpt"
    if record and not record["finished"] and record["fingerprint"] == recipe.fingerprint() and last.exists():
        if intact(last):
            return record
        aside = last.with_name(f"last.ckpt.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        last.rename(aside)  # kept for a look, out of the way: the next run would fail on it again
        print(
            f"{last}: unreadable (cut while being written?); set aside as {aside.name}, training anew",
            file=sys.stderr,
        )
    return None


def intact(checkpoint: Path) -> bool:
    """A checkpoint is a zip archive (torch.save's format): every member there and matching its CRC. Read,
    never unpickled."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def train_experiment(params: Params, key: str) -> TrainedRun:
    if rank_zero_only.rank != 0:  # DDP re-executes this command per rank; rank 0 holds the lock
        return _train(params, key)
    with training_lock(key):
        return _train(params, key)


def _train(params: Params, key: str) -> TrainedRun:
    recipe, store = params.recipe(key), tracking.store(params)
    if rank_zero_only.rank == 0:
        checks.check_store(store, key)  # before any compute: a dead server would fail only at the end
    if recipe.trainer.accelerator == "cpu" and isinstance(recipe.trainer.devices, int):
        torch.set_num_threads(cpu_threads(recipe.trainer.devices))  # each DDP rank runs this, on its share
    model_dir = paths.model_dir(key)
    resume, run_id = resumable(recipe), None
    # Before the training's model and data are built, which seeds anew: the floor leaves them as they were.
    starts = rank_zero_only.rank == 0 and resume is None and recipe.profile == "smoke"
    floor = untrained_floor(recipe) if starts else {}  # a paper run is judged against the paper
    model, data, meta = build_model_and_data(recipe)
    data_source = meta["source"]["source"]

    last, best = model_dir / "last.ckpt", model_dir / "best.ckpt"
    if rank_zero_only.rank == 0:  # DDP re-executes this command per rank; only rank 0 owns the run
        record = resume
        if record is None:
            for stale in model_dir.glob("*.ckpt"):
                stale.unlink()
            record = {
                "experiment": key,
                "paper": recipe.paper,
                "fingerprint": recipe.fingerprint(),
                "profile": recipe.profile,
                "data_source": data_source,
                # every hparam as the model got it: the paper's defaults, params' changes, the data's facts
                "mlflow_run_id": tracking.start_run(store, recipe, data_source, hparams=dict(model.hparams)),
                "finished": False,
                **floor,  # what evaluate judges a smoke run's numbers against
            }
            write_record(key, record)  # a killed run can be continued
        run_id = record["mlflow_run_id"]
    logger = RunLogger(store, key, run_id)
    callbacks = [
        *checkpoints(recipe.trainer, model_dir, monitor(paper_class(recipe), recipe.hparams)),
        RngState(),
    ]
    trainer = build_trainer(recipe.trainer, model_dir, logger, callbacks)
    with loading_safely(last):
        trainer.fit(
            for_speed(model, recipe.trainer),
            datamodule=data,
            ckpt_path=last if resume else None,
            weights_only=True,
        )
    trainer.save_checkpoint(
        last, weights_only=False
    )  # the final state, whether or not the step count hit a checkpoint interval

    checkpoint = best if best.exists() else last
    if rank_zero_only.rank == 0:
        tracking.log_checkpoint(store, run_id, checkpoint)
        write_record(
            key,
            {
                **record,
                "finished": True,
                "global_step": trainer.global_step,
                "best": str(checkpoint),
                "last": str(last),
            },
        )
    return TrainedRun(checkpoint, run_id, resumed=resume is not None)
