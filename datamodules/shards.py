"""Writing shards: a dataset's raw copy through its one parser into data/shards/<name>/<split>-%06d.tar, with
meta.json (classes, counts, shard list and sizes). `datamodules/base.py` reads them.

Layout (ARCHITECTURE "Shards"): one sample per `__key__` with an image (`png`/`jpg`), a `cls` label and `json`
annotations."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import webdataset as wds
from PIL import Image
from tqdm import tqdm

from datamodules.files import DataError, atomic_write, read_json

META = "meta.json"
IMAGE_KEYS = ("png", "jpg")


def as_rgb_jpeg(data: bytes, quality: int = 95) -> bytes:
    """Pass an RGB JPEG through untouched; re-encode anything else (grayscale, CMYK, a PNG named .JPEG)."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG" and image.mode == "RGB":
        return data
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def check_images(sample: dict, raw_dir: Path) -> None:
    """Raise DataError naming the raw file if an image member does not decode (or the parser flagged it)."""
    if "__error__" in sample:
        raise DataError(sample["__error__"])
    for key in IMAGE_KEYS:
        if key in sample:
            try:
                Image.open(io.BytesIO(sample[key])).load()
            except Exception as error:  # PIL raises a zoo of types for truncated or foreign bytes
                raise DataError(
                    f"{raw_dir / sample['__key__']}.{key}: not a readable image ({error})"
                ) from None


def write_split(
    samples: Iterable[dict],
    out_dir: Path,
    split: str,
    *,
    raw_dir: Path,
    shard_size: int,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Write one split's samples as tar shards; return its meta entry (count, skipped, shard names)."""
    count = skipped = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    # A fixed mtime: the same samples give byte-identical shards, so DVC's hash of data/shards/ is
    # reproducible.
    with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0, mtime=0) as sink:
        for sample in tqdm(samples, desc=f"shard {split}", unit=" samples", mininterval=1.0):
            try:
                check_images(sample, raw_dir)
            except DataError:
                if on_error != "skip":
                    raise
                skipped += 1
                continue
            sink.write(sample)
            count += 1
    shards = sorted(p.name for p in out_dir.glob(f"{split}-*.tar"))
    # Sizes let a reader catch a truncated shard by a stat: tarfile reads a tar cut mid-member as a shorter
    # one.
    return {
        "samples": count,
        "skipped": skipped,
        "shards": shards,
        "bytes": {n: (out_dir / n).stat().st_size for n in shards},
    }


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    atomic_write(out_dir / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(shards_dir: Path) -> dict[str, Any]:
    path = Path(shards_dir) / META
    if not path.exists():
        raise DataError(f"{path}: missing; run `reprozoo shard {Path(shards_dir).name}` first")
    return read_json(path, f"run `reprozoo shard {Path(shards_dir).name}` again")


def write_dataset(
    cls: type, raw: Path, out: Path, *, source: dict, shard_size: int = 1000, on_error: str = "raise"
) -> dict:
    """Every split of `cls` through its one parser into `out`; return meta.json's content."""
    splits = {
        split: {
            **write_split(
                cls.samples(raw, split), out, split, raw_dir=raw, shard_size=shard_size, on_error=on_error
            ),
            "classes": cls.classes(raw, split),
        }
        for split in cls.splits
    }
    meta = {"name": cls.name, "source": source, "splits": splits, **cls.extras(raw, out)}
    write_meta(out, meta)
    return meta
