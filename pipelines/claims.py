"""Claims against results: which runs may be judged, each claim's verdict, the headline claim that ranks an
experiment's models, and the paper's tables rebuilt with our numbers beside the paper's. Shared by evaluate,
report, the registry and publish."""

from __future__ import annotations

from lightning_modules import PAPERS
from lightning_modules.paper import Claim
from pipelines.config import Recipe


def comparable(recipe: Recipe, data_source: str, claim: Claim | None = None) -> bool:
    """Only the paper's recipe on the paper's data is judged against the paper's numbers: real data, or a task
    the paper defines by its generator; never a synthetic replica or the bundled 5,000-digit subset of
    MNIST. The paper's data is the claim's own where it names one."""
    paper = PAPERS[recipe.paper].paper
    return (
        recipe.profile == "paper"
        and data_source in ("download", "local", "generated")
        and recipe.dataset == ((claim and claim.dataset) or paper.dataset)
        and paper.dataset_is_the_papers
    )


def judge(
    recipe: Recipe, metrics: dict[str, float], data_source: str, untrained: dict[str, float] | None = None
) -> list[dict]:
    """Every claim this experiment measured (a paper's other experiments measure the rest), beside what the
    untrained net scored when that was measured."""
    untrained = untrained or {}
    return [
        {
            "metric": c.metric,
            "claimed": c.claimed,
            "reproduced": metrics.get(c.metric),
            "tolerance": c.tolerance,
            "source": c.source,
            "higher_is_better": c.higher_is_better,
            "status": c.verdict(metrics.get(c.metric), comparable(recipe, data_source, c)),
            "row": c.row,
            "column": c.column,
            "untrained": untrained.get(c.metric),
            "verified": c.verified,
        }
        for c in PAPERS[recipe.paper].paper.claims
        if c.metric in metrics
    ]


def headline(paper: str, metrics: dict[str, float]) -> Claim | None:
    """The claim that ranks this experiment's models: the paper's primary claim when the experiment measures
    it, else the first claim it measures (resnet_cifar measures Table 6, not ImageNet's Table 2); None for
    papers that make no numeric claim."""
    claims = PAPERS[paper].paper.claims
    return next(
        (c for c in ([PAPERS[paper].paper.primary, *claims] if claims else []) if c.metric in metrics), None
    )


def claim_tables(claims: list[dict], paper: str = "") -> dict[str, str]:
    """The paper's tables rebuilt from the claims that name a cell: "ours (paper's)" in each cell, so a
    reader compares a whole row or column at a glance, as in the paper."""
    tables: dict[str, str] = {}
    for source in dict.fromkeys(c["source"] for c in claims if c.get("row")):
        cells = [c for c in claims if c["source"] == source and c.get("row")]
        rows_, columns = (
            list(dict.fromkeys(c["row"] for c in cells)),
            list(dict.fromkeys(c["column"] for c in cells)),
        )
        grid = {(c["row"], c["column"]): f"{number(c['reproduced'])} ({c['claimed']:.4f})" for c in cells}
        statuses = sorted({c["status"] for c in cells})
        lines = [
            f"**{' '.join(filter(None, (paper, source)))}**: ours (paper's); status {', '.join(statuses)}",
            "",
            "| | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        lines += [
            f"| {row} | " + " | ".join(grid.get((row, col), "—") for col in columns) + " |" for row in rows_
        ]
        tables[" ".join(filter(None, (paper, source)))] = "\n".join(lines) + "\n"
    return tables


def number(value: float | None, ci95: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" + (f" ± {ci95:.4f}" if ci95 is not None else "")
