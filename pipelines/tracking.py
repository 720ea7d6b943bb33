"""MLflow, as the contract says: one experiment per paper, one run per training, continued by evaluate.

The run records the flattened recipe, tags (paper, dataset, profile, data source, git commit, DVC hash of
the shards), per-step curves (through Lightning's MLFlowLogger), test metrics under the claim keys,
`claimed/<metric>` and `gap/<metric>`, and the checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import torch
import yaml
from mlflow.entities import Metric, Param
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from pipelines import paths
from pipelines.config import Params, Recipe
from pipelines.processes import git, hardware


@dataclass(frozen=True)
class Store:
    """One MLflow store, for runs and the model registry alike, resolved once from the environment and params
    and handed to whatever logs. Nothing here calls `mlflow.set_tracking_uri`, which would write
    MLFLOW_TRACKING_URI into the environment for every later caller and subprocess to inherit. It pickles, so
    a Ray trial logs where its driver does whatever its own environment says."""

    uri: str
    artifact_location: str  # where new experiments keep artifacts: a URI, or a folder made absolute

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri, registry_uri=self.uri)


def tracking_uri(params: Params) -> str:
    """MLFLOW_TRACKING_URI, else params'. A relative sqlite path is made absolute against the repository root
    (the cwd of every verb): MLflow caches stores by URI, so a relative one would follow whatever the cwd was
    first."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.mlflow.tracking_uri
    path = uri.removeprefix("sqlite:///")
    return (
        f"sqlite:///{Path(path).resolve()}"
        if uri.startswith("sqlite:///") and not path.startswith("/")
        else uri
    )


def store(params: Params) -> Store:
    location = params.mlflow.artifact_location
    return Store(tracking_uri(params), location if "://" in location else Path(location).resolve().as_uri())


# MLflow 3's UI opens an experiment of unknown kind on its GenAI pages (traces); ours are model training.
KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(store: Store, name: str) -> str:
    mlflow_client = store.client
    if experiment := mlflow_client.get_experiment_by_name(name):
        if "mlflow.experimentKind" not in experiment.tags:
            mlflow_client.set_experiment_tag(experiment.experiment_id, *next(iter(KIND.items())))
        return experiment.experiment_id
    return mlflow_client.create_experiment(name, artifact_location=store.artifact_location, tags=KIND)


def git_commit() -> str:
    try:
        return git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_hash(dataset: str) -> str:
    """The md5 DVC recorded for data/shards/<dataset> in dvc.lock, else a hash of its meta.json."""
    lock, shards = Path("dvc.lock"), str(paths.shards(dataset))
    if lock.exists():
        # 4,400 lines under make repro: libyaml's parser reads them in 24 ms, PyYAML's own in 190
        for stage in (yaml.load(lock.read_text(), Loader=yaml.CSafeLoader) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):
                if out.get("path") == shards and "md5" in out:
                    return out["md5"]
    meta = paths.shards(dataset) / "meta.json"
    return "meta-sha256:" + hashlib.sha256(meta.read_bytes()).hexdigest()[:16] if meta.exists() else "unknown"


def log_params(mlflow_client: MlflowClient, run_id: str, values: dict[str, Any]) -> None:
    """Every value as a param (MlflowClient.log_batch splits them into batches of MLflow's limit itself)."""
    mlflow_client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in values.items()])


def start_run(
    store: Store,
    recipe: Recipe,
    data_source: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    hparams: dict[str, Any] | None = None,
) -> str:
    """Create the run a training (or a Tune trial, with its parent's tags) logs into; return its id."""
    tags = {
        "experiment": recipe.key,
        "paper": recipe.paper,
        "dataset": recipe.dataset,
        "profile": recipe.profile,
        "data_source": data_source,
        "git_commit": git_commit(),
        "dvc_data_hash": data_hash(recipe.dataset),
        "fingerprint": recipe.fingerprint(),
        **hardware(),
        **(tags or {}),
    }
    mlflow_client = store.client
    run = mlflow_client.create_run(
        experiment_id(store, recipe.key), tags=tags, run_name=run_name or f"{recipe.key}-{recipe.profile}"
    )
    log_params(mlflow_client, run.info.run_id, recipe.flat(hparams))
    return run.info.run_id


def start_sweep(store: Store, recipe: Recipe, settings: dict[str, Any], metric: str, mode: str) -> str:
    """The parent run of a Tune sweep: its settings as params; each trial is a child run."""
    mlflow_client, key = store.client, recipe.key
    tags = {
        "experiment": key,
        "paper": recipe.paper,
        "profile": recipe.profile,
        "git_commit": git_commit(),
        "reprozoo.kind": "sweep",
        "tune.metric": metric,
        "tune.mode": mode,
    }
    run = mlflow_client.create_run(
        experiment_id(store, key), tags=tags, run_name=f"tune-{key}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    log_params(mlflow_client, run.info.run_id, {f"tune.{k}": v for k, v in settings.items()})
    return run.info.run_id


def finish_sweep(store: Store, parent_run_id: str, summary: dict[str, Any], report: Path) -> None:
    """The best trial's config and metric on the parent; each child closed, tagged with how its trial ended
    (a trial ASHA stopped was killed mid-run, so its run would otherwise stay RUNNING)."""
    mlflow_client = store.client
    children = {
        run.data.tags.get("tune.trial_id"): run
        for run in mlflow_client.search_runs(
            [mlflow_client.get_run(parent_run_id).info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        )
    }
    for trial in summary["trials"]:
        if child := children.get(trial["trial_id"]):
            mlflow_client.set_tag(child.info.run_id, "tune.status", trial["status"])
            mlflow_client.set_terminated(
                child.info.run_id, "FAILED" if trial["status"] == "error" else "FINISHED"
            )
    log_params(mlflow_client, parent_run_id, {f"best.{k}": v for k, v in summary["best_config"].items()})
    if best := children.get(summary["best_trial"]):
        mlflow_client.set_tag(parent_run_id, "tune.best_run_id", best.info.run_id)
    mlflow_client.set_tag(parent_run_id, "tune.best_trial", summary["best_trial"])
    mlflow_client.log_batch(
        parent_run_id,
        metrics=[
            Metric(f"best/{summary['metric']}", float(summary["best_value"]), int(time.time() * 1000), 0),
            Metric("tune/trials", len(summary["trials"]), int(time.time() * 1000), 0),
            Metric("tune/wall_seconds", summary["wall_seconds"], int(time.time() * 1000), 0),
        ],
    )
    mlflow_client.log_artifact(parent_run_id, str(report), "tune")
    mlflow_client.set_terminated(parent_run_id, "FINISHED")


def training_curves(store: Store, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every `train/...` and `val/...` metric of the run as (step, value) pairs, for papers that plot their
    curves or read claims off them."""
    mlflow_client = store.client
    keys = [k for k in mlflow_client.get_run(run_id).data.metrics if k.startswith(("train/", "val/"))]
    return {k: [(m.step, m.value) for m in mlflow_client.get_metric_history(run_id, k)] for k in keys}


def download_figures(store: Store, run_id: str, target: Path) -> list[str]:
    """The `figures/` artifacts evaluate logged to a run, downloaded under target/figures/; their names (none
    downloaded when there are none)."""
    names = [a.path.split("/")[-1] for a in store.client.list_artifacts(run_id, "figures")]
    if names:
        target.mkdir(parents=True, exist_ok=True)
        store.client.download_artifacts(run_id, "figures", str(target))
    return names


def log_checkpoint(store: Store, run_id: str, checkpoint: Path) -> None:
    store.client.log_artifact(run_id, str(checkpoint), "checkpoints")


def log_model(store: Store, run_id: str, model: torch.nn.Module) -> str:
    """The evaluated model as an MLflow logged model of the run, exported with torch.export (no pickle) from
    its `example_input_array` (batch > 1, so the batch dimension stays dynamic). Saved, then logged through
    the store's client: `mlflow.pytorch.log_model` would log wherever the process-wide tracking URI points."""
    model.eval()
    example = model.example_input_array  # one tensor, or a tuple for a model of several inputs
    example = [t.numpy() for t in (example if isinstance(example, tuple) else (example,))]
    # Declared, not inferred: MLflow infers no tensor signature from several inputs; -1 keeps the batch
    # dynamic. One input stays unnamed: MLflow's serving check then feeds it an array, not a dict it cannot
    # pass on.
    signature = ModelSignature(
        inputs=Schema(
            [
                TensorSpec(e.dtype, (-1, *e.shape[1:]), name=f"input_{i}" if len(example) > 1 else None)
                for i, e in enumerate(example)
            ]
        )
    )
    mlflow_client = store.client
    with tempfile.TemporaryDirectory() as folder:
        mlflow.pytorch.save_model(
            model,
            f"{folder}/model",
            input_example=example if len(example) > 1 else example[0],
            signature=signature,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            serialization_format="pt2",
        )
        experiment = mlflow_client.get_run(run_id).info.experiment_id
        logged = mlflow_client.create_logged_model(experiment, name="model", source_run_id=run_id)
        mlflow_client.log_model_artifacts(logged.model_id, f"{folder}/model")
    mlflow_client.finalize_logged_model(logged.model_id, "READY")
    return f"models:/{logged.model_id}"


def log_numbers(store: Store, run_id: str, values: dict[str, float]) -> None:
    now = int(time.time() * 1000)
    store.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in sorted(values.items())])


def log_evaluation(
    store: Store,
    run_id: str,
    metrics: dict[str, float],
    claims: list[dict[str, Any]],
    figures: dict[str, Any],
    tables: dict[str, str],
) -> None:
    """Test metrics under the claim keys, each claim's claimed value, gap and status, and the paper's tables
    (ours beside the paper's, as markdown) on the training run."""
    mlflow_client = store.client
    values = dict(metrics)
    for claim in claims:
        values[f"claimed/{claim['metric']}"] = claim["claimed"]
        if claim["reproduced"] is not None:
            values[f"gap/{claim['metric']}"] = claim["reproduced"] - claim["claimed"]
        if claim.get("untrained") is not None:
            values[f"untrained/{claim['metric']}"] = claim["untrained"]
        mlflow_client.set_tag(run_id, f"status/{claim['metric']}", claim["status"])
    log_numbers(store, run_id, values)  # a real timestamp: a re-run evaluation adds a point, not a collision
    for name, figure in figures.items():
        mlflow_client.log_figure(run_id, figure, f"figures/{name}.png")
    for name, table in tables.items():
        mlflow_client.log_text(run_id, table, f"tables/{name.replace(' ', '_')}.md")
