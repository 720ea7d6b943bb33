"""bench pipeline: a no-op `dvc repro`, and writing shards against copying the raw files."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pipelines.bench.common import TARGETS, Size
from pipelines.processes import dvc


def yaml_in_c() -> bool:
    """Whether DVC parses YAML in C: it re-reads params.yaml for every stage's params, so this is most of a
    no-op."""
    from ruamel.yaml import YAML

    return "CParser" in YAML(typ="safe").Parser.__name__


def noop_repro() -> dict[str, Any]:
    """A no-op `dvc repro` where the pipeline is up to date; else `dvc repro --dry` (the same checks, nothing
    run)."""
    if not Path("dvc.yaml").exists():
        return {"skipped": "no dvc.yaml in the current folder"}
    status = dvc("status", "--json")
    stale = status.returncode != 0 or json.loads(status.stdout or "{}") != {}
    start = time.perf_counter()
    result = dvc("repro", "--dry") if stale else dvc("repro")
    seconds = time.perf_counter() - start
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]
    return {
        "command": "dvc repro --dry (pipeline not up to date)" if stale else "dvc repro (no-op)",
        "seconds": seconds,
        "stages": len(dvc("stage", "list", "--name-only").stdout.split()),
        "yaml_in_c": yaml_in_c(),
        "ok": result.returncode == 0,
        **({"error": errors[-1]} if errors else {}),
        "target": f"seconds <= {TARGETS['noop_repro_seconds']}",
        "holds": seconds <= TARGETS["noop_repro_seconds"],
    }


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def bench_pipeline(scratch: Path, size: Size) -> dict[str, Any]:
    from datamodules.imagenet import ImageNet
    from datamodules.shards import write_dataset

    raw = scratch / "pipeline-raw"
    ImageNet.synthesize(raw, 1, classes=10, train_per_class=max(2, size.images // 10), val_per_class=1)
    megabytes = folder_bytes(raw) / 2**20
    start = time.perf_counter()
    shutil.copytree(raw, scratch / "pipeline-copy")
    copy = time.perf_counter() - start
    start = time.perf_counter()
    write_dataset(ImageNet, raw, scratch / "pipeline-shards", source={"source": "synthetic"}, shard_size=1000)
    shard = time.perf_counter() - start
    noop = noop_repro()
    return {
        "raw_megabytes": megabytes,
        "copy_megabytes_per_s": megabytes / copy,
        "shard_megabytes_per_s": megabytes / shard,
        "shard_over_copy_time": shard / copy,
        "noop_repro": noop,
        **(
            {"target": f"no-op dvc repro {noop['target']}", "holds": noop["holds"]} if "holds" in noop else {}
        ),
    }
