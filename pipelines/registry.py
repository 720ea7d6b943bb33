"""The MLflow model registry: each evaluated model is a version of `reprozoo.<key>`; aliases `champion` (the
model to use) and `challenger` (the newest evaluated one). Only `decide` moves the champion, and only to a
challenger that beats it on the experiment's headline claim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lightning_modules import PAPERS
from pipelines import tracking
from pipelines.claims import headline

CHAMPION, CHALLENGER = "champion", "challenger"


def model_name(key: str) -> str:
    return f"reprozoo.{key}"


def version_tags(result: dict[str, Any], run_tags: dict[str, str]) -> dict[str, str]:
    """What a reviewer filters versions by: provenance, every claim's numbers and verdict, the headline."""
    paper = result["paper"]
    tags = {
        "experiment": result["experiment"],
        "paper": paper,
        "profile": result["profile"],
        "data_source": result["data_source"],
        "git_commit": run_tags.get("git_commit", "unknown"),
        "dvc_data_hash": run_tags.get("dvc_data_hash", "unknown"),
    }
    for claim in result["claims"]:
        tags |= {
            f"claimed/{claim['metric']}": str(claim["claimed"]),
            f"reproduced/{claim['metric']}": str(claim["reproduced"]),
            f"status/{claim['metric']}": claim["status"],
        }
    if claim := headline(paper, result["metrics"]):
        tags |= {
            "headline": claim.metric,
            "headline_value": str(result["metrics"][claim.metric]),
            "headline_higher_is_better": str(claim.higher_is_better).lower(),
        }
    return tags


def alias(client: MlflowClient, key: str, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name(key), name)
    except MlflowException:
        return None


def register(store: tracking.Store, result: dict[str, Any]) -> ModelVersion:
    """A new version from an evaluation (the exported model, or the checkpoint for models torch.export cannot
    capture), aliased `challenger`; the first version of a model is also its `champion`."""
    client, key, paper, run_id = store.client, result["experiment"], result["paper"], result["mlflow_run_id"]
    run = client.get_run(run_id)
    try:
        client.create_registered_model(
            model_name(key),
            tags={"paper": paper},
            description=f"{PAPERS[paper].paper.title}: experiment {key}",
        )
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = version_tags(result, run.data.tags)
    if model_uri := result["model_uri"]:  # the logged model (models:/<id>): its signature travels with it
        model_id = model_uri.removeprefix("models:/")
        version = client.create_model_version(
            model_name(key), model_uri, run_id, tags=tags, model_id=model_id
        )
    else:
        version = client.create_model_version(
            model_name(key), f"{run.info.artifact_uri}/checkpoints", run_id, tags=tags
        )
    client.set_registered_model_alias(model_name(key), CHALLENGER, version.version)
    if alias(client, key, CHAMPION) is None:
        client.set_registered_model_alias(model_name(key), CHAMPION, version.version)
        record(client, key, version.version, "promoted", "the first version: no champion to beat")
    return version


@dataclass(frozen=True)
class Decision:
    experiment: str
    action: str  # promoted | kept | failed | up_to_date | would_retrain
    reason: str
    challenger: str | None = None  # version numbers
    champion: str | None = None
    metric: str | None = None
    challenger_value: float | None = None
    champion_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record(client: MlflowClient, key: str, version: str, action: str, reason: str) -> None:
    client.set_model_version_tag(model_name(key), version, "decision", action)
    client.set_model_version_tag(model_name(key), version, "decision_reason", reason)


def decide(store: tracking.Store, key: str) -> Decision:
    """Promote the challenger if it beats the champion on the headline claim; ties and regressions keep the
    champion. The verdict and its reason are tagged on the challenger version."""
    client = store.client
    challenger, champion = alias(client, key, CHALLENGER), alias(client, key, CHAMPION)
    if challenger is None:
        return Decision(key, "kept", "no evaluated model registered yet")
    if champion is not None and (champion.version == challenger.version or "decision" in challenger.tags):
        # Decided when it was registered (the first version of a model is promoted on the spot): report that
        # decision, not "kept", or a first promotion would read as a refusal.
        decided = challenger.tags.get("decision", "promoted")
        why = f"version {challenger.version} was already decided: {decided}"
        return Decision(key, decided, why, challenger.version, champion.version)
    base = {"challenger": challenger.version, "champion": champion.version if champion else None}
    metric = challenger.tags.get("headline")
    if champion is None:
        action, reason = "promoted", "no champion to beat"
    elif metric is None or champion.tags.get("headline") != metric:
        action, reason = (
            "kept",
            (
                f"no headline claim to compare on (champion {champion.tags.get('headline')}, "
                f"challenger {metric}); promote by hand with the `champion` alias"
            ),
        )
    else:
        new, old = float(challenger.tags["headline_value"]), float(champion.tags["headline_value"])
        higher = challenger.tags["headline_higher_is_better"] == "true"
        better = new > old if higher else new < old
        action = "promoted" if better else "kept"
        reason = (
            f"{metric} {new:.4f} {'beats' if better else ('ties' if new == old else 'is worse than')} "
            f"champion v{champion.version}'s {old:.4f} ({'higher' if higher else 'lower'} is better)"
        )
        base |= {"metric": metric, "challenger_value": new, "champion_value": old}
    if action == "promoted":
        client.set_registered_model_alias(model_name(key), CHAMPION, challenger.version)
    record(client, key, challenger.version, action, reason)
    return Decision(key, action, reason, **base)
