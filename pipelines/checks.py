"""What is checked before any compute starts, beyond params: that the MLflow store answers and that an
experiment's artifacts can be written where they go (a dead server or a read-only folder would otherwise
fail a training only at its end, or hang in MLflow's retries for minutes)."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from datamodules.files import DataError
from pipelines import paths
from pipelines.config import Recipe
from pipelines.errors import ReprozooError, StageError
from pipelines.runs import read_record
from pipelines.tracking import Store


class TrackingError(ReprozooError):
    """The MLflow store or its artifact location cannot be used; found before any compute starts."""


REACH_SECONDS = 5  # a tracking server that is down fails here, not after MLflow's retries (minutes)


def writable_folder(folder: Path) -> str | None:
    """Why files cannot be written under `folder` (made if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".reprozoo-check-"):
            return None
    except OSError as error:
        return error.strerror or str(error)


def check_store(store: Store, experiment: str) -> None:
    """Before training or evaluating: the tracking store answers (a server within REACH_SECONDS, a SQLite
    file in a writable folder), and the experiment's artifacts can be written where they go. An experiment
    keeps the artifact location it was created with, so a corrected `mlflow.artifact_location` does not move
    an existing one: say so, and how to move on."""
    uri = store.uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=REACH_SECONDS):
                pass
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise TrackingError(
                f"MLflow tracking server {uri}: not reachable within {REACH_SECONDS} s ({reason}); start it "
                f"(infra/mlflow) or point MLFLOW_TRACKING_URI / mlflow.tracking_uri at a running one"
            ) from None
    elif uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        if problem := writable_folder(database.parent):
            raise TrackingError(f"MLflow tracking URI {uri}: cannot write in {database.parent} ({problem})")
        if database.exists() and not os.access(database, os.W_OK):
            raise TrackingError(f"MLflow tracking URI {uri}: {database} is not writable")
    found = store.client.get_experiment_by_name(experiment)
    location = found.artifact_location if found else store.artifact_location
    if location.startswith("file://") or "://" not in location:
        folder = Path(urllib.parse.urlsplit(location).path if "://" in location else location)
        if problem := writable_folder(folder):
            remedy = (
                f"MLflow experiment {experiment!r} keeps the location it was created with, whatever "
                f"mlflow.artifact_location says now ({store.artifact_location}); make {folder} writable, or "
                f"delete the experiment (`mlflow experiments delete --experiment-id {found.experiment_id}`, "
                f"then `mlflow gc`) so the next run creates it at the new location"
                if found and location != store.artifact_location
                else "set mlflow.artifact_location to a folder (or URI) you can write to"
            )
            raise TrackingError(f"artifact location {location}: cannot write there ({problem}); {remedy}")


def own_checkpoint(recipe: Recipe) -> Path:
    """The checkpoint `train` wrote for this very recipe, only from under models/ (run.json is a file a user
    could edit); it is loaded with weights_only=True all the same, so even a swapped file cannot run code.

    A checkpoint trained under another recipe (the smoke profile, other params, other training code) is
    refused: judged against the paper it would give a verdict about a model that is not the paper's recipe."""
    key = recipe.key
    record = read_record(key)
    if record is None or not record.get("finished"):
        raise StageError(f"{paths.run_record(key)}: no finished training; run `reprozoo train {key}` first")
    if record.get("fingerprint") != (expected := recipe.fingerprint()):
        trained = f"profile {record.get('profile')}, fingerprint {record.get('fingerprint')}"
        raise StageError(
            f"{paths.run_record(key)}: the checkpoint was trained under another recipe ({trained}) than "
            f"the params' now (profile {recipe.profile}, fingerprint {expected}); train it again "
            f"(`reprozoo train {key}` or `dvc repro`)"
        )
    checkpoint = Path(record["best"])
    if not checkpoint.resolve().is_relative_to(Path("models").resolve()) or not checkpoint.exists():
        raise DataError(f"{paths.run_record(key)}: checkpoint {checkpoint} is missing or outside models/")
    return checkpoint
