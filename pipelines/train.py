"""train@<paper>: models/<paper>/{last,best}.ckpt and run.json, with the curves in an MLflow run.

`build_trainer` is the only place a Trainer for training is built; `reprozoo tune`'s trials use it too.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import inspect
import json
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only

from datamodules import DATASETS
from datamodules.base import read_meta, rng_states, set_rng_states
from datamodules.files import DataError, atomic_write
from lightning_modules import PAPERS
from pipelines import paths, tracking
from pipelines.config import Params, Recipe, TrainerParams
from pipelines.errors import ReprozooError


class TrainingLocked(ReprozooError):
    """Another process is training the same experiment."""


@dataclass(frozen=True)
class TrainedRun:
    checkpoint: Path
    mlflow_run_id: str | None
    resumed: bool


def read_record(key: str) -> dict | None:
    path = paths.run_record(key)
    return json.loads(path.read_text()) if path.exists() else None


def write_record(key: str, record: dict) -> None:
    atomic_write(paths.run_record(key), json.dumps(record, indent=2, sort_keys=True) + "\n")


def resumable(recipe: Recipe) -> dict | None:
    """The record of an interrupted run of this same recipe, whose last.ckpt can be continued.

    A finished run is never resumed: DVC re-runs a finished stage only because code, data or params
    changed, and then the model must be trained anew.
    """
    record = read_record(recipe.key)
    last = paths.model_dir(recipe.key) / "last.ckpt"
    if record and not record["finished"] and record["fingerprint"] == recipe.fingerprint() and last.exists():
        return record
    return None


def with_data_facts(cls: type, hparams: dict, meta: dict) -> dict:
    """Sizes the shards know, unless params set them: a classifier's `num_classes` (1000 for ImageNet, 10 for its
    replica), a language model's `vocab_size` (the WordPiece vocabulary the shard stage trained)."""
    takes = inspect.signature(cls.__init__).parameters
    facts = {"num_classes": len(meta["splits"]["train"]["classes"]), "vocab_size": meta.get("vocab_size")}
    return {**{k: v for k, v in facts.items() if k in takes and v is not None}, **hparams}


def build_model_and_data(recipe: Recipe) -> tuple[pl.LightningModule, pl.LightningDataModule, dict]:
    """The paper's LightningModule and its dataset's DataModule for one recipe, seeded; and the shards' meta."""
    shards = paths.shards(recipe.dataset)
    meta = read_meta(shards)  # fails early if the shards are missing
    pl.seed_everything(recipe.seed, workers=True)
    model = PAPERS[recipe.paper](**with_data_facts(PAPERS[recipe.paper], recipe.hparams, meta))
    return model, DATASETS[recipe.dataset](shards, recipe.seed, **recipe.data), meta


@contextlib.contextmanager
def training_lock(key: str) -> Iterator[None]:
    """One training per experiment at a time: two would write the same last.ckpt and run.json. An flock dies with
    its process, so a killed run leaves no stale lock. It lives outside models/<key>, which DVC may delete."""
    path = paths.train_lock(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise TrainingLocked(
                f"{path}: another `reprozoo train {key}` is running ({handle.read().strip() or 'pid unknown'}); "
                f"wait for it or stop it (other experiments can train meanwhile)"
            ) from None
        handle.truncate(0)
        handle.write(
            f"pid {os.getpid()}, started {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}\n"
        )
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


@contextlib.contextmanager
def loading_safely(path: Path) -> Iterator[None]:
    """Checkpoints load with weights_only=True, which refuses anything but tensors and plain containers: a file
    someone swapped in fails here, naming itself, instead of running code."""
    try:
        yield
    except pickle.UnpicklingError as error:
        lines = str(error).splitlines()
        why = next(
            (line.strip() for line in lines if "Unsupported global" in line), lines[0] if lines else ""
        )
        raise DataError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers, which only "
            f"weights_only=False would unpickle (and so run code); {why}"
        ) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning writes a checkpoint in place: a run killed while saving would leave a truncated last.ckpt, and the
    resume would fail on it. Written under a temporary name and renamed, the old file stays whole until then."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        scratch = path.with_name(f".{path.name}.tmp{os.getpid()}")
        super().save_checkpoint(checkpoint, scratch, storage_options)
        os.replace(scratch, path)


class RngState(pl.Callback):
    """Checkpoints carry the global RNGs (dropout masks, noise), so a resumed run draws what the uninterrupted one
    would have. Ranks share one state: every rank was seeded alike."""

    def state_dict(self) -> dict:
        return rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict)


def checkpoints(settings: TrainerParams, model_dir: Path, monitor: tuple[str, str]) -> list[ModelCheckpoint]:
    """best.ckpt on the paper's monitor, and last.ckpt every `checkpoint_every_n_steps` (what a resume reads)."""
    best = ModelCheckpoint(
        dirpath=model_dir,
        filename="best",
        monitor=monitor[0],
        mode=monitor[1],
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=model_dir,
        save_top_k=0,
        save_last=True,
        enable_version_counter=False,
        every_n_train_steps=settings.checkpoint_every_n_steps,
    )
    return [best, last]


def for_speed(model: pl.LightningModule, settings: TrainerParams) -> pl.LightningModule:
    """The GPU path's options, off by default: channels-last memory and torch.compile (bf16 is `precision`)."""
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if settings.compile else model


def build_trainer(
    settings: TrainerParams,
    root: Path,
    logger: pl.loggers.Logger | bool,
    callbacks: list[pl.Callback],
    **placement,
) -> pl.Trainer:
    """The one Trainer recipe. `placement` replaces where it runs (accelerator, devices, strategy, plugins) for
    Ray Train, which owns the processes itself."""
    where = {
        "accelerator": settings.accelerator,
        "devices": settings.devices,
        "num_nodes": settings.num_nodes,
        "strategy": settings.strategy,
        **placement,
    }
    where["plugins"] = [AtomicCheckpointIO(), *where.get("plugins", [])]
    return pl.Trainer(
        **where,
        precision=settings.precision,
        deterministic=settings.deterministic,
        max_steps=settings.max_steps,
        max_epochs=-1,  # steps, not epochs: episodic streams are endless
        val_check_interval=settings.val_check_interval,
        check_val_every_n_epoch=None,
        limit_val_batches=settings.limit_val_batches,
        log_every_n_steps=settings.log_every_n_steps,
        gradient_clip_val=settings.gradient_clip_val,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=root,
        enable_model_summary=False,
    )


def train_paper(params: Params, key: str) -> TrainedRun:
    if rank_zero_only.rank != 0:  # DDP re-executes this command per rank; rank 0 holds the lock
        return _train(params, key)
    with training_lock(key):
        return _train(params, key)


def _train(params: Params, key: str) -> TrainedRun:
    recipe = params.recipe(key)
    model_dir = paths.model_dir(key)
    model, data, meta = build_model_and_data(recipe)
    data_source = meta["source"]["source"]

    resume, run_id = resumable(recipe), None
    last, best = model_dir / "last.ckpt", model_dir / "best.ckpt"
    if rank_zero_only.rank == 0:  # DDP re-executes this command per rank; only rank 0 owns the run
        record = resume
        if record is None:
            for stale in model_dir.glob("*.ckpt"):
                stale.unlink()
            record = {
                "paper": key,
                "fingerprint": recipe.fingerprint(),
                "profile": recipe.profile,
                "data_source": data_source,
                "mlflow_run_id": tracking.start_run(params, recipe, data_source),
                "finished": False,
            }
            write_record(key, record)  # a killed run can be continued
        run_id = record["mlflow_run_id"]
    logger = MLFlowLogger(experiment_name=key, tracking_uri=tracking.tracking_uri(params), run_id=run_id)
    callbacks = [*checkpoints(recipe.trainer, model_dir, model.monitor), RngState()]
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
        tracking.log_checkpoint(params, run_id, checkpoint)
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
