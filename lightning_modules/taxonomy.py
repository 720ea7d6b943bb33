"""Taskonomy's taxonomy (§3.3–3.4): win rates between transfers, AHP affinities, and the binary integer
program that picks the transfers within a supervision budget; the affinity matrix and the chosen taxonomy as
pictures."""

from __future__ import annotations

import numpy as np


def win_rates(losses: np.ndarray) -> np.ndarray:
    """losses (candidates, images) → W[i, j]: the fraction of images on which i's loss is below j's (ties
    half)."""
    below = (losses[:, None] < losses[None]).mean(-1)
    return below + 0.5 * (losses[:, None] == losses[None]).mean(-1)


def ahp(wins: np.ndarray, clip: float = 1e-3) -> np.ndarray:
    """§3.3: W' = W / Wᵀ with win rates clipped to [clip, 1 − clip]; its principal eigenvector, summing to
    1."""
    w = np.clip(wins, clip, 1 - clip)
    values, vectors = np.linalg.eig(w / w.T)
    principal = np.abs(np.real(vectors[:, np.argmax(np.real(values))]))
    return principal / principal.sum()


def choose_transfers(
    candidates: list[tuple[str, tuple[str, ...], float]], budget: int
) -> tuple[list[int], set[str]]:
    """§3.4's Boolean integer program: one candidate (target, sources, value) per target, every source of a
    chosen candidate supervised, at most `budget` supervised tasks; maximise the chosen values.
    Returns the chosen candidates' indices and the supervised tasks."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    tasks = sorted({s for _, sources, _ in candidates for s in sources})
    n, m = len(candidates), len(tasks)
    rows, low, high = [], [], []
    for target in sorted({t for t, _, _ in candidates}):  # exactly one transfer per target
        rows.append([float(t == target) for t, _, _ in candidates] + [0.0] * m)
        low.append(1), high.append(1)
    for i, (_, sources, _) in enumerate(candidates):  # x_i ≤ y_s for each of its sources
        for s in sources:
            row = [0.0] * (n + m)
            row[i], row[n + tasks.index(s)] = 1.0, -1.0
            rows.append(row), low.append(-np.inf), high.append(0)
    rows.append([0.0] * n + [1.0] * m), low.append(0), high.append(budget)  # the supervision budget
    result = milp(
        c=-np.array([v for _, _, v in candidates] + [0.0] * m),
        integrality=np.ones(n + m),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(np.array(rows), low, high),
    )
    if result.x is None:
        raise ValueError(
            f"hparams.supervision_budget: no taxonomy fits a budget of {budget} ({result.message})"
        )
    chosen = np.round(result.x).astype(bool)
    return [i for i in range(n) if chosen[i]], {t for j, t in enumerate(tasks) if chosen[n + j]}


def taxonomy(losses: dict[str, np.ndarray], tasks: list[str], budget: int) -> dict:
    """Stages 3 and 4 on per-image test losses: affinities by AHP per target, then the BIP's choice."""
    affinity, candidates = np.zeros((len(tasks), len(tasks))), []
    for j, target in enumerate(tasks):
        names = [f"{s}__{target}" for s in tasks if s != target] + [
            target
        ]  # the transfers, and its own network
        weights = ahp(win_rates(np.stack([losses[n] for n in names])))
        for name, weight in zip(names, weights):
            source = name.split("__")[0]
            affinity[tasks.index(source), j] = weight
            candidates.append((target, (source,), float(weight)))
    chosen, supervised = choose_transfers(candidates, budget)
    picked = {candidates[i][0]: candidates[i][1][0] for i in chosen}
    metrics = {}
    for target, source in picked.items():
        mine = losses[target if source == target else f"{source}__{target}"]
        metrics[f"loss_taxonomy_{target}"] = float(mine.mean())
        if target not in supervised:  # gain and quality are measured where the taxonomy saves supervision
            metrics[f"gain_{target}"] = float(win_rates(np.stack([mine, losses[f"scratch__{target}"]]))[0, 1])
            metrics[f"quality_{target}"] = float(win_rates(np.stack([mine, losses[target]]))[0, 1])
    transferred = [t for t in picked if t not in supervised]
    metrics["taxonomy_gain"] = (
        float(np.mean([metrics[f"gain_{t}"] for t in transferred])) if transferred else float("nan")
    )
    metrics["taxonomy_quality"] = (
        float(np.mean([metrics[f"quality_{t}"] for t in transferred])) if transferred else float("nan")
    )
    return {"affinity": affinity, "picked": picked, "supervised": sorted(supervised), "metrics": metrics}


def taxonomy_figures(results: dict, tasks: list[str]) -> dict:
    import matplotlib.pyplot as plt

    heat, axes = plt.subplots(figsize=(1 + 0.6 * len(tasks), 0.6 * len(tasks)))
    shown = axes.imshow(results["affinity"], cmap="magma")
    axes.set_xticks(range(len(tasks)), tasks, rotation=60, fontsize=7, ha="right")
    axes.set_yticks(range(len(tasks)), tasks, fontsize=7)
    axes.set_xlabel("target"), axes.set_ylabel("source")
    axes.set_title("AHP affinity (diagonal: the target's own network)", fontsize=8)
    heat.colorbar(shown), heat.tight_layout()
    graph, axes = plt.subplots(figsize=(6, 0.45 * len(tasks) + 1))
    sources = results["supervised"]
    for i, task in enumerate(tasks):
        axes.text(1, -i, task, ha="left", va="center", fontsize=8)
    for i, source in enumerate(sources):
        axes.text(0, -i, source, ha="right", va="center", fontsize=8, weight="bold")
    for target, source in results["picked"].items():
        axes.annotate(
            "",
            xy=(0.98, -tasks.index(target)),
            xytext=(0.02, -sources.index(source)),
            arrowprops={"arrowstyle": "->", "color": "tab:blue"},
        )
    axes.set_xlim(-0.6, 1.6), axes.set_ylim(-len(tasks), 1), axes.axis("off")
    axes.set_title(f"taxonomy: {len(sources)} supervised sources (bold) → every target", fontsize=9)
    graph.tight_layout()
    return {"affinity": heat, "taxonomy": graph}
