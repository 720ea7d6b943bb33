"""report: reports/reproductions.md (one row per claim) and reports/reproductions.png (claimed vs
reproduced)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run without a display
import matplotlib.pyplot as plt

from datamodules.files import atomic_dir, atomic_write, read_json
from lightning_modules import PAPERS
from pipelines import evidence, paths
from pipelines.claims import claim_tables, number
from pipelines.config import Params

COLOURS = {"reproduced": "#2e7d32", "not_reproduced": "#c62828", "not_comparable": "#9e9e9e"}


def load_results(params: Params) -> list[dict]:
    """metrics/<experiment>.json for every experiment in params.yaml that has been evaluated, in params
    order."""
    return [read_result(params, key) for key in params.papers if paths.metrics(key).exists()]


def read_result(params: Params, key: str) -> dict:
    """One metrics file. Files written before `experiment` had its own field named the experiment `paper`."""
    result = read_json(paths.metrics(key), f"run `reprozoo evaluate {key}` again")
    if "experiment" not in result:
        result = {**result, "experiment": key, "paper": params.papers[key].paper}
    # Trust belongs to the claim, not to the run: read it from the paper as it is now.
    verified = {c.metric: c.verified for c in PAPERS[result["paper"]].paper.claims}
    return {
        **result,
        "claims": [{**c, "verified": verified.get(c["metric"], False)} for c in result["claims"]],
    }


def rows(results: list[dict]) -> list[dict]:
    return [
        {
            "experiment": r["experiment"],
            "setting": c["metric"],
            "claimed": c["claimed"],
            "reproduced": c["reproduced"],
            "ci95": r["metrics"].get(f"{c['metric']}_ci95"),
            "status": c["status"],
            "source": c["source"],
            "data_source": r["data_source"],
            "profile": r["profile"],
            "mlflow_run_id": r["mlflow_run_id"],
            "row": c.get("row"),
            "column": c.get("column"),
            "untrained": c.get("untrained"),
            "verified": c["verified"],
        }
        for r in results
        for c in r["claims"]
    ]


def markdown(table: list[dict]) -> str:
    lines = [
        "## Every evaluated run in this workspace (the smoke baseline after `make repro`)",
        "",
        "Status is `reproduced` only for the paper's recipe on the paper's data; smoke and synthetic runs "
        "are `not_comparable`. *Untrained* is the same net at its seeded initialisation on the first "
        "batches of the same test set (`untrained_test_batches` in metrics/), measured for smoke runs: the "
        "floor a run must clear to show it learned. A claim marked "
        "*(unverified)* was taken from a summary of the paper and is still to be checked against the "
        "paper's own table.",
        "",
        "| experiment | setting | claimed | reproduced (± 95% CI) | untrained | status | claim from | data "
        "| profile | MLflow run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['experiment']} | `{r['setting']}` | {number(r['claimed'])} | "
        f"{number(r['reproduced'], r['ci95'])} | "
        f"{number(r['untrained'])} | {r['status']} | "
        f"{r['source']}{'' if r['verified'] else ' (unverified)'} | {r['data_source']} | {r['profile']} | "
        f"`{r['mlflow_run_id']}` |"
        for r in table
    ]
    if not table:
        lines.append("| — | no experiment has been evaluated yet | | | | | | | | |")
    for key in dict.fromkeys(r["experiment"] for r in table):
        for grid in claim_tables(
            [r | {"metric": r["setting"]} for r in table if r["experiment"] == key], key
        ).values():
            lines += ["", grid.rstrip("\n")]
    return "\n".join(lines) + "\n"


def chart(table: list[dict]) -> bytes:
    """One horizontal bar pair per claim: the paper's value (outline) and ours (filled, coloured by
    status)."""
    height = max(2.5, 0.45 * len(table) + 1.2)
    figure, axes = plt.subplots(figsize=(9, height))
    labels = [f"{r['experiment']}  {r['setting']}" for r in table]
    y = range(len(table))
    axes.barh(
        [i + 0.2 for i in y],
        [r["claimed"] for r in table],
        height=0.4,
        fill=False,
        edgecolor="black",
        label="claimed",
    )
    axes.barh(
        [i - 0.2 for i in y],
        [r["reproduced"] or 0 for r in table],
        height=0.4,
        xerr=[r["ci95"] or 0 for r in table],
        color=[COLOURS[r["status"]] for r in table],
        label="reproduced",
    )
    axes.set_yticks(list(y), labels)
    axes.invert_yaxis()
    axes.set_title(
        "reprozoo: reproduced vs claimed (grey: not comparable, green: reproduced, red: not reproduced)",
        fontsize=9,
    )
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def measured_without_claims(results: list[dict]) -> str:
    """Papers with no numeric claim (or metrics beyond their claims' cells): every test metric beside the
    untrained net's, so a run that learned nothing shows it here too."""
    lines = []
    for r in results:
        claimed = {c["metric"] for c in r["claims"]}
        others = {k: v for k, v in r["metrics"].items() if k not in claimed and not k.endswith("_ci95")}
        if r["claims"] or not others:
            continue
        untrained = r.get("untrained_metrics") or {}
        lines += [
            "",
            f"**{r['experiment']}** ({r['profile']}, {r['data_source']} data; no numeric claim in the paper)",
            "",
            "| metric | trained | untrained |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{k}` | {v:.4g} | {'—' if untrained.get(k) is None else f'{untrained[k]:.4g}'} |"
            for k, v in others.items()
        ]
    return "\n".join(["", "## Measured without a claim", *lines]) + "\n" if lines else ""


def unmeasured(params: Params, results: list[dict]) -> str:
    """Every claim no evaluated run has measured, with the experiments whose paper recipe would: what is left
    to run before the paper can be judged on it."""
    measured = {c["metric"] for r in results for c in r["claims"]}
    lines = []
    for paper, module in PAPERS.items():
        keys = [k for k, section in params.papers.items() if section.paper == paper]
        for c in module.paper.claims:
            if c.metric not in measured:
                runs = ", ".join(f"`{k}`" for k in keys)
                lines.append(f"| {paper} | `{c.metric}` | {number(c.claimed)} | {c.source} | {runs} |")
    header = ["", "## Claims no run has measured yet", "", "| paper | claim | paper's value | from | run |"]
    return "\n".join([*header, "|---|---|---|---|---|", *lines]) + "\n" if lines else ""


def copy_figures(params: Params, results: list[dict]) -> str:
    """Each evaluated run's figures (the `figures/` artifacts evaluate logged) under
    reports/figures/<experiment>/, and the markdown that shows them; a run whose tracking store is gone is
    skipped, not fatal."""
    from pipelines import tracking

    lines = []
    with atomic_dir(paths.REPORT_FIGURES) as scratch:
        store = tracking.store(params)
        for r in results:
            key = r["experiment"]
            try:
                names = tracking.download_figures(store, r["mlflow_run_id"], scratch / key)
            except Exception:
                continue
            if names:
                lines += ["", f"### {key}", ""]
                lines += [f"![{key} {name}](figures/{key}/figures/{name})" for name in names]
    return "\n".join(["", "## Figures", *lines]) + "\n" if lines else ""


def real_data() -> str:
    """The committed evidence first: what has been reproduced on real data, each row linked to its record."""
    return (
        "# Reproductions\n\n## Reproduced on real data\n\nPublished runs (`results/`, written by `reprozoo "
        "publish`): each record names its recipe and every deviation from the paper's, the data's sha256, "
        "the commit, the hardware and the wall time.\n\n"
        + evidence.table(evidence.records()).replace("](results/", "](../results/")
        + "\n"
    )


def write_report(params: Params) -> list[dict]:
    results = load_results(params)
    table = rows(results)
    atomic_write(
        paths.REPORT_MD,
        real_data()
        + markdown(table)
        + measured_without_claims(results)
        + unmeasured(params, results)
        + copy_figures(params, results),
    )
    readme = Path("README.md")
    if readme.exists() and evidence.README_START in (text := readme.read_text()):
        if (updated := evidence.readme_section(text, evidence.records())) != text:
            atomic_write(readme, updated)
    atomic_write(paths.REPORT_PNG, chart(table))
    return table
