"""shard@<dataset>: data/raw/<dataset>/ → data/shards/<dataset>/<split>-%06d.tar + meta.json."""

from __future__ import annotations

from datamodules import DATASETS
from datamodules.files import atomic_dir, read_source
from datamodules.shards import write_dataset
from pipelines import paths
from pipelines.config import Params


def shard_dataset(params: Params, name: str) -> dict:
    """Replace data/shards/<name>; an interrupted run leaves the previous shards intact."""
    settings, raw = params.dataset(name), paths.raw(name)
    source = read_source(raw)
    with atomic_dir(paths.shards(name)) as out:
        return write_dataset(
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
