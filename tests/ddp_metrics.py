"""Run by `torch.distributed.run` from a project directory: every experiment named, at its seeded
initialisation, through Lightning's validate and test on this launch's ranks (DDP over gloo when there are
two); rank 0 writes every logged number to the JSON file named first.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_metrics.py out.json KEY...
"""

import json
import os
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from pipelines.config import load_params
from pipelines.runs import build_model_and_data


def measured(key: str, world: int) -> dict[str, float]:
    model, data, _ = build_model_and_data(load_params().recipe(key))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    numbers, runs = {}, [trainer.test]
    # A rank without a single validation sample would never join the metrics' final sync (and hang the
    # others): the tiny replicas hold out 1 image of COCO's and ImageNet's training shards, so their
    # validation is compared only where 2 ranks each get one.
    if not data.held_out_every or sum(1 for _ in data.read_all(data.train_split, held_out=True)) >= 2:
        runs.insert(0, trainer.validate)
    for run in runs:
        run(model, datamodule=data, verbose=False)
        numbers.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return numbers


def main(out: str, *keys: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    results = {key: measured(key, world) for key in keys}
    if int(os.environ.get("RANK", 0)) == 0:
        Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
