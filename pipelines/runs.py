"""The run plumbing every verb that trains or loads a model shares: run records, the model and data of a
recipe, the one Trainer recipe and its checkpoints, safe checkpoint loading and the per-experiment training
lock.

`train`, `evaluate`, `tune` and `bench` all build through here, so a Tune trial trains exactly as `train`
does."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.plugins.io import TorchCheckpointIO

from datamodules import DATASETS
from datamodules.files import DataError, atomic_write, out_of_space, read_json, storage_error
from datamodules.resume import rng_states, set_rng_states
from datamodules.shards import read_meta
from lightning_modules import PAPERS
from lightning_modules.paper import PaperModule, with_defaults
from pipelines import paths, tracking
from pipelines.config import Recipe, TrainerParams
from pipelines.errors import ReprozooError


def paper_class(recipe: Recipe) -> type[PaperModule]:
    """The LightningModule class of the recipe's paper, seen through the paper contract."""
    return PAPERS[recipe.paper]


class TrainingLocked(ReprozooError):
    """Another process is training the same experiment."""


def read_record(key: str) -> dict | None:
    path = paths.run_record(key)
    return read_json(path, f"train it again (`reprozoo train {key}`)") if path.exists() else None


def write_record(key: str, record: dict) -> None:
    atomic_write(paths.run_record(key), json.dumps(record, indent=2, sort_keys=True) + "\n")


def with_data_facts(cls: type, hparams: dict, meta: dict) -> dict:
    """Sizes the shards know, unless params set them: a classifier's `num_classes` (1000 for ImageNet, 10 for
    its replica), a language model's `vocab_size` (the WordPiece vocabulary the shard stage trained)."""
    takes = with_defaults(cls, {})
    facts = {"num_classes": len(meta["splits"]["train"]["classes"]), "vocab_size": meta.get("vocab_size")}
    return {**{k: v for k, v in facts.items() if k in takes and v is not None}, **hparams}


def build_model_and_data(recipe: Recipe) -> tuple[pl.LightningModule, pl.LightningDataModule, dict]:
    """The paper's LightningModule and its dataset's DataModule for one recipe, seeded; and the shards'
    meta."""
    shards = paths.shards(recipe.dataset)
    meta = read_meta(shards)  # fails early if the shards are missing
    pl.seed_everything(recipe.seed, workers=True)
    cls = paper_class(recipe)
    model = cls(**with_data_facts(cls, recipe.hparams, meta))
    return model, DATASETS[recipe.dataset](shards, recipe.seed, **recipe.data), meta


def test_metrics(
    trainer: pl.Trainer, model: pl.LightningModule, data: pl.LightningDataModule
) -> dict[str, float]:
    trainer.test(model, datamodule=data, verbose=False)
    return {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}


def tester(recipe: Recipe, **limits: int) -> pl.Trainer:
    # One process: the test episodes are then exactly the configured ones, with no DDP padding.
    return pl.Trainer(
        accelerator=recipe.trainer.accelerator,
        devices=1,
        precision=recipe.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **limits,
    )


# The untrained floor is scored on the first batches of each test loader, not all of them: an untrained net
# scores near chance, which ten batches place closely enough to be cleared or not, and a second full pass
# doubled evaluate's cost (protonets at smoke: 42 s). Test sets of ten batches or fewer are scored whole.
UNTRAINED_BATCHES = 10


def untrained_floor(recipe: Recipe) -> dict:
    """The net at the seeded initialisation its training starts from, on the first UNTRAINED_BATCHES batches
    of the test loaders: the floor a smoke run must clear to show that it learned (a smoke run's number means
    nothing on its own). `train` scores it before its first step, on a model and data of their own (the
    training's are built after, seeded anew), and records it in run.json; `evaluate` reads it there."""
    model, data, _ = build_model_and_data(recipe)
    batches = UNTRAINED_BATCHES
    metrics = test_metrics(tester(recipe, limit_test_batches=batches), model, data)
    return {"untrained_metrics": metrics, "untrained_test_batches": batches}


@contextlib.contextmanager
def training_lock(key: str) -> Iterator[None]:
    """One training per experiment at a time: two would write the same last.ckpt and run.json. An flock dies
    with its process, so a killed run leaves no stale lock. It lives outside models/<key>, which DVC may
    delete."""
    path = paths.train_lock(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise TrainingLocked(
                f"{path}: another `reprozoo train {key}` is running "
                f"({handle.read().strip() or 'pid unknown'}); "
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
    """Checkpoints load with weights_only=True, which refuses anything but tensors and plain containers: a
    file someone swapped in fails here, naming itself, instead of running code."""
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
    """Lightning writes a checkpoint in place: a run killed while saving would leave a truncated last.ckpt,
    and the resume would fail on it. Written under a temporary name and renamed, the old file stays whole
    until then."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        scratch = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, scratch, storage_options)
        except (OSError, RuntimeError) as error:
            scratch.unlink(missing_ok=True)
            if out_of_space(error):
                raise storage_error(path, error) from None
            raise
        os.replace(scratch, path)


class RngState(pl.Callback):
    """Checkpoints carry the global RNGs (dropout masks, noise), so a resumed run draws what the uninterrupted
    one would have. Ranks share one state: every rank was seeded alike."""

    def state_dict(self) -> dict:
        return rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict)


def checkpoints(settings: TrainerParams, model_dir: Path, monitor: tuple[str, str]) -> list[ModelCheckpoint]:
    """best.ckpt on the paper's monitor, and last.ckpt every `checkpoint_every_n_steps` (what a resume
    reads)."""
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
    """The GPU path's options, off by default: channels-last memory and torch.compile (bf16 is
    `precision`)."""
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
    """The one Trainer recipe. `placement` replaces where it runs (accelerator, devices, strategy, plugins)
    for Ray Train, which owns the processes itself."""
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
        accumulate_grad_batches=settings.accumulate_grad_batches,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=root,
        enable_model_summary=False,
    )


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger, continuing a run that tracking.start_run created, without the
    `mlflow.set_tracking_uri` its `experiment` calls first: that writes MLFLOW_TRACKING_URI into the
    environment, where the next training in the same process (a test, a Tune worker) would take it for the
    user's setting."""

    def __init__(self, store: tracking.Store, experiment: str, run_id: str | None):
        super().__init__(experiment_name=experiment, tracking_uri=store.uri, run_id=run_id)

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        if self._run_id is None:  # only ranks other than 0 have no run, and they never get here
            raise RuntimeError("RunLogger logs into an existing run; start one with tracking.start_run")
        if not self._initialized:
            self._experiment_id = self._mlflow_client.get_run(self._run_id).info.experiment_id
            self._initialized = True
        return self._mlflow_client
