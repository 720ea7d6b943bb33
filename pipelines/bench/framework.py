"""bench framework: Lightning against a hand-written loop: same net, batches and optimizer."""

from __future__ import annotations

import time
from collections.abc import Iterable
from itertools import cycle, islice
from typing import Any

import pytorch_lightning as pl
import torch

from pipelines.bench.common import ROUNDS, TARGETS, Size, steady_rate


def cifar_module() -> pl.LightningModule:
    from lightning_modules.resnet import ResNet

    torch.manual_seed(0)
    return ResNet(arch="cifar", depth=20, num_classes=10, plain_twin=False, milestones=[10**9])


def synthetic_batches(batch: int, count: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(batch, 3, 32, 32, generator=generator),
            torch.randint(0, 10, (batch,), generator=generator),
        )
        for _ in range(count)
    ]


def plain_loop(module: pl.LightningModule, batches: Iterable, steps: int) -> list[float]:
    """The hand-written loop: the module's net, loss and optimizer, nothing else."""
    from lightning_modules.common import classification_step

    configured = module.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    module.train()
    stamps = []
    for images, labels in islice(cycle(batches), steps):
        loss, _, _ = classification_step(module.net, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        stamps.append(time.perf_counter())
    return stamps


class Stamps(pl.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def lightning_loop(module: pl.LightningModule, batches: list, steps: int, **trainer) -> list[float]:
    stamps = Stamps()
    loader = torch.utils.data.DataLoader(batches * (steps // len(batches) + 1), batch_size=None)
    pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[stamps],
        **{"accelerator": "cpu", "devices": 1, **trainer},
    ).fit(module, train_dataloaders=loader)
    return stamps.times


def bench_framework(size: Size) -> dict[str, Any]:
    batches, steps, warmup = synthetic_batches(size.framework_batch), size.steps // 2 + 3, 3
    # Best of alternating rounds (as timeit takes the best): a neighbour's burst on a shared machine then
    # slows one round of one side, not the ratio.
    rounds = [
        (
            steady_rate(plain_loop(cifar_module(), batches, steps), 1, warmup),
            steady_rate(lightning_loop(cifar_module(), batches, steps), 1, warmup),
        )
        for _ in range(ROUNDS)
    ]
    plain, lightning = (max(side) for side in zip(*rounds))
    overhead = plain / lightning - 1
    return {
        "model": "ResNet-20 (CIFAR)",
        "batch": size.framework_batch,
        "plain_steps_per_s": plain,
        "lightning_steps_per_s": lightning,
        "lightning_overhead": overhead,
        "target": f"lightning_overhead <= {TARGETS['framework_overhead']}",
        "holds": overhead <= TARGETS["framework_overhead"],
    }
