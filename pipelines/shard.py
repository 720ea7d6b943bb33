"""shard@<dataset>: data/raw/<dataset>/ → data/shards/<dataset>/<split>-%06d.tar + meta.json."""
from __future__ import annotations

from datamodules import DATASETS
from datamodules.base import write_meta, write_split
from datamodules.files import atomic_dir
from pipelines import paths
from pipelines.config import Params
from pipelines.fetch import source_of


def shard_dataset(params: Params, name: str) -> dict:
    """Write every split with the dataset's one parser; return meta.json's content."""
    settings, cls, raw = params.dataset(name), DATASETS[name], paths.raw(name)
    source = source_of(raw)
    with atomic_dir(paths.shards(name)) as out:
        splits = {
            split: {**write_split(cls.samples(raw, split), out, split, raw_dir=raw, shard_size=settings.shard_size,
                                  on_error=settings.on_error),
                    "classes": cls.classes(raw, split)}
            for split in cls.splits
        }
        meta = {"name": name, "source": source, "splits": splits}
        write_meta(out, meta)
    return meta


def describe(meta: dict) -> str:
    counts = ", ".join(f"{split} {info['samples']}" + (f" ({info['skipped']} skipped)" if info["skipped"] else "")
                       for split, info in meta["splits"].items())
    return f"{meta['name']} ({meta['source']['source']}): {counts}"
