"""`reprozoo retrain`: the job a scheduler runs. DVC says what is stale, `dvc repro` re-runs exactly that
(evaluate registers each new model as `challenger`), and the registry promotes a challenger only if it beats
the champion. Every decision, a no-op included, is an MLflow run of its own in the `reprozoo.retrain`
experiment.
"""

from __future__ import annotations

import json
import time

from pipelines import checks, registry, tracking
from pipelines.config import Params
from pipelines.processes import dvc
from pipelines.registry import Decision

EXPERIMENT = "reprozoo.retrain"


def stale_stages() -> set[str]:
    """The stages whose deps, params or outs differ from dvc.lock (`dvc status`, which runs nothing)."""
    status = dvc("status", "--json")
    if status.returncode != 0:
        raise RuntimeError(f"dvc status failed: {status.stderr.strip() or status.stdout.strip()}")
    return set(json.loads(status.stdout or "{}"))


def champion_age_days(store: tracking.Store, key: str) -> float | None:
    champion = registry.alias(store.client, key, registry.CHAMPION)
    return None if champion is None else (time.time() * 1000 - champion.creation_timestamp) / 86_400_000


def plan(params: Params, papers: list[str], max_age: float | None) -> dict[str, str]:
    """Why each paper must re-run (absent: it is up to date): its own stages or its dataset's are stale, or
    its champion is older than `max_age` days."""
    stale, why = stale_stages(), {}
    for key in papers:
        dataset = params.experiment(key).dataset
        changed = sorted(stale & {f"fetch@{dataset}", f"shard@{dataset}", f"train@{key}", f"evaluate@{key}"})
        age = champion_age_days(tracking.store(params), key) if max_age is not None else None
        if changed:
            why[key] = "stale: " + ", ".join(changed)
        elif age is not None and age > max_age:
            why[key] = f"champion is {age:.1f} days old (> --max-age {max_age:g})"
    return why


def rerun(key: str, reason: str) -> str | None:
    """`dvc repro` of one paper (forced when only its age asks for it); the failure's last lines, or None."""
    steps = (
        [("repro", "--force", "--single-item", f"train@{key}")] if reason.startswith("champion is") else []
    )
    for args in [*steps, ("repro", f"evaluate@{key}")]:
        result = dvc(*args)
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
            return f"`dvc {' '.join(args)}` exited {result.returncode}: {' | '.join(tail)}"
    return None


def retrain(
    params: Params, papers: list[str] | None = None, max_age: float | None = None, dry_run: bool = False
) -> list[Decision]:
    keys = papers or list(params.papers)
    for key in keys:
        params.experiment(key)  # an unknown paper fails before DVC is asked anything
    checks.check_store(tracking.store(params), EXPERIMENT)  # every decision is logged there
    started = time.time()
    why = plan(params, keys, max_age)
    decisions = []
    for key in keys:
        if key not in why:
            decisions.append(Decision(key, "up_to_date", "nothing stale"))
        elif dry_run:
            decisions.append(Decision(key, "would_retrain", why[key]))
        elif failure := rerun(key, why[key]):
            decisions.append(Decision(key, "failed", f"{why[key]}; {failure}; champion untouched"))
        else:
            decision = registry.decide(tracking.store(params), key)
            decisions.append(Decision(**{**decision.as_dict(), "reason": f"{why[key]}; {decision.reason}"}))
    if why and not dry_run and any(d.action != "failed" for d in decisions if d.experiment in why):
        dvc("repro", "--single-item", "report")  # the report reflects the new metrics
    log_decisions(
        params,
        decisions,
        {"papers": ",".join(keys), "max_age_days": max_age, "dry_run": dry_run},
        time.time() - started,
    )
    return decisions


def log_decisions(params: Params, decisions: list[Decision], settings: dict, seconds: float) -> str:
    store = tracking.store(params)
    client = store.client
    actions = [d.action for d in decisions]
    run = client.create_run(
        tracking.experiment_id(store, EXPERIMENT),
        run_name=f"retrain-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            "git_commit": tracking.git_commit(),
            "reprozoo.kind": "retrain",
            **{f"decision/{d.experiment}": d.action for d in decisions},
        },
    )
    tracking.log_params(client, run.info.run_id, settings)
    client.log_dict(run.info.run_id, {"decisions": [d.as_dict() for d in decisions]}, "decisions.json")
    for name in ("promoted", "kept", "failed", "up_to_date", "would_retrain"):
        client.log_metric(run.info.run_id, f"papers/{name}", actions.count(name))
    client.log_metric(run.info.run_id, "wall_seconds", seconds)
    client.set_terminated(run.info.run_id, "FAILED" if "failed" in actions else "FINISHED")
    return run.info.run_id


def summary(decisions: list[Decision], seconds: float) -> str:
    """One line when nothing was stale; else one line per paper that did something."""
    acted = [d for d in decisions if d.action != "up_to_date"]
    if not acted:
        return (
            f"retrain: nothing stale in {len(decisions)} experiments ({seconds:.1f} s); champions unchanged"
        )
    return "\n".join(f"{d.experiment}: {d.action} ({d.reason})" for d in acted)
