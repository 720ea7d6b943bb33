"""bench loader: the shard loader against the decode limit per worker and against ImageFolder."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipelines.bench.common import ROUNDS, TARGETS, Size, threads


def bench_shards(scratch: Path, images: int) -> tuple[Path, Path]:
    """The synthetic ImageNet replica in its official archives, sharded by the real shard code."""
    from datamodules.imagenet import ImageNet
    from datamodules.shards import write_dataset

    raw, shards, classes = scratch / "raw", scratch / "shards", 10
    ImageNet.synthesize(raw, 0, classes=classes, train_per_class=max(2, images // classes), val_per_class=1)
    write_dataset(ImageNet, raw, shards, source={"source": "synthetic"}, shard_size=max(10, images // 8))
    return raw, shards


def timed_epoch(loader: Iterable) -> float:
    """Samples/s of the best pass after the first, which starts the workers and fills the shuffle buffer."""
    rates = []
    for _ in range(1 + ROUNDS):
        start, samples = time.perf_counter(), 0
        for images, _ in loader:
            samples += len(images)
        rates.append(samples / (time.perf_counter() - start))
    return max(rates[1:])


def decode_limit(jpegs: list[bytes], transform: Callable) -> float:
    """Samples/s of decoding and transforming in memory, one thread: what one worker could deliver at best.
    The transform is the DataModule's own, which ends at uint8 (the float conversion runs per batch on the
    device)."""
    rates = []
    with threads(1):
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for data in jpegs:
                transform(Image.open(io.BytesIO(data)).convert("RGB"))
            rates.append(len(jpegs) / (time.perf_counter() - start))
    return max(rates)


def raw_jpegs(shards: Path) -> list[bytes]:
    import tarfile

    meta = json.loads((shards / "meta.json").read_text())
    jpegs = []
    for name in meta["splits"]["train"]["shards"]:
        with tarfile.open(shards / name) as tar:
            jpegs += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    return jpegs


def bench_loader(scratch: Path, size: Size) -> dict[str, Any]:
    from torchvision.datasets import ImageFolder

    from datamodules.imagenet import ImageNet

    _, shards = bench_shards(scratch, size.images)
    jpegs = raw_jpegs(shards)
    folder = scratch / "folder"
    for n, data in enumerate(
        jpegs
    ):  # ImageFolder wants classes as folders; any class split reads the same bytes
        (folder / f"{n % 10:02d}").mkdir(parents=True, exist_ok=True)
        (folder / f"{n % 10:02d}" / f"{n:06d}.jpg").write_bytes(data)
    transform = ImageNet(shards).transform("train")
    limit = decode_limit(jpegs, transform)
    rows = {}
    for workers in size.workers:
        data = ImageNet(shards, 0, batch_size=size.batch, num_workers=workers, shuffle_buffer=len(jpegs))
        streamed = timed_epoch(data.train_dataloader())
        reference = timed_epoch(
            torch.utils.data.DataLoader(
                ImageFolder(str(folder), transform=transform),
                batch_size=size.batch,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
                persistent_workers=True,
            )
        )
        rows[str(workers)] = {
            "webdataset_samples_per_s": streamed,
            "imagefolder_samples_per_s": reference,
            "per_worker_vs_decode_limit": streamed / (workers * limit),
            "vs_imagefolder": streamed / reference,
        }
    usable = [w for w in size.workers if w <= (os.cpu_count() or 1)]
    return {
        "images": len(jpegs),
        "batch": size.batch,
        "decode_limit_samples_per_s": limit,
        "workers": rows,
        "target": f"per_worker_vs_decode_limit >= {TARGETS['loader_per_worker']} for workers <= cores",
        "holds": all(
            rows[str(w)]["per_worker_vs_decode_limit"] >= TARGETS["loader_per_worker"] for w in usable
        ),
    }
