"""shard@<dataset>: data/raw/<dataset>/ → data/shards/<dataset>/<split>-%06d.tar + meta.json."""

from __future__ import annotations

from pathlib import Path

from datamodules import DATASETS
from datamodules.base import write_meta, write_split
from datamodules.files import atomic_dir
from pipelines import paths
from pipelines.config import Params
from pipelines.fetch import source_of


def shard_raw(
    cls: type, raw: Path, out: Path, *, source: dict, shard_size: int = 1000, on_error: str = "raise"
) -> dict:
    """Every split through the dataset's one parser into `out`; return meta.json's content."""
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


def shard_dataset(params: Params, name: str) -> dict:
    """Replace data/shards/<name>; an interrupted run leaves the previous shards intact."""
    settings, raw = params.dataset(name), paths.raw(name)
    source = source_of(raw)
    with atomic_dir(paths.shards(name)) as out:
        return shard_raw(
            DATASETS[name],
            raw,
            out,
            source=source,
            shard_size=settings.shard_size,
            on_error=settings.on_error,
        )


def describe(meta: dict) -> str:
    counts = ", ".join(
        f"{split} {info['samples']}" + (f" ({info['skipped']} skipped)" if info["skipped"] else "")
        for split, info in meta["splits"].items()
    )
    return f"{meta['name']} ({meta['source']['source']}): {counts}"
