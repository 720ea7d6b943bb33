"""Small training harness for the paper tests: score, fit a few steps on CPU, score again."""

from __future__ import annotations

import pytorch_lightning as pl


def trainer(steps: int) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def score(model: pl.LightningModule, data: pl.LightningDataModule, metric: str) -> float:
    return float(trainer(1).test(model, datamodule=data, verbose=False)[0][metric])


def fit_and_score(
    model: pl.LightningModule, data: pl.LightningDataModule, *, steps: int, metric: str
) -> tuple[float, float]:
    pl.seed_everything(0)
    before = score(model, data, metric)
    trainer(steps).fit(model, datamodule=data)
    return before, score(model, data, metric)


def shapes(module) -> dict[str, tuple[int, ...]]:
    """Every parameter's and buffer's name and shape: two networks built alike have equal shapes."""
    return {name: tuple(value.shape) for name, value in module.state_dict().items()}
