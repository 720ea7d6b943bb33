"""`reprozoo list` and `reprozoo recipe`: every experiment and dataset in params.yaml, with what has been
produced for each; one experiment's whole recipe as it would run."""

from __future__ import annotations

from rich.table import Table

from datamodules.files import read_json
from lightning_modules import PAPERS
from lightning_modules.paper import with_defaults
from pipelines import paths
from pipelines.config import Params


def experiments_table(params: Params) -> Table:
    table = Table(title=f"experiments (profile: {params.profile})")
    table.add_column("experiment", no_wrap=True)  # four relational_forward_model_* keys must stay apart
    for column in ("paper", "dataset", "claims judged", "status"):
        table.add_column(column, overflow="fold")
    for key, section in params.papers.items():
        path = paths.metrics(key)
        claims = read_json(path, f"run `reprozoo evaluate {key}` again")["claims"] if path.exists() else []
        statuses = [c["status"] for c in claims]
        summary = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))) or (
            "evaluated (no numeric claim)" if path.exists() else "not evaluated"
        )
        table.add_row(key, section.paper, section.dataset, str(len(statuses)), summary)
    return table


def datasets_table(params: Params) -> Table:
    table = Table("dataset", "source", "raw", "shards", title="datasets")
    for name, settings in params.datasets.items():
        meta = paths.shards(name) / "meta.json"
        counts = read_json(meta, f"run `reprozoo shard {name}` again")["splits"] if meta.exists() else {}
        shards = ", ".join(f"{split} {info['samples']}" for split, info in counts.items()) or "no"
        table.add_row(name, settings.source, "yes" if paths.raw(name).exists() else "no", shards)
    return table


def full_recipe(params: Params, key: str, profile: str | None = None) -> dict:
    """The paper's defaults with its recipe's changes (and the smoke block under the smoke profile)."""
    merged = params.recipe(key, profile)
    hparams = with_defaults(PAPERS[merged.paper], merged.hparams)
    return {
        "experiment": key,
        "paper": merged.paper,
        "profile": merged.profile,
        "hparams": hparams,
        "data": merged.data,
        "trainer": merged.trainer.model_dump(),
    }
