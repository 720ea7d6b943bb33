"""`reprozoo ui`: the MLflow UI over this project's own tracking store, bound to loopback unless asked."""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines import tracking
from pipelines.config import Params


def ui_command(params: Params, host: str, port: int) -> tuple[list[str] | None, str]:
    """The `mlflow ui` command for the configured store, and its URI; no command where the runs live on a
    tracking server (which has its own UI)."""
    uri = tracking.tracking_uri(params)
    if uri.startswith(("http://", "https://")):
        return None, uri
    location = params.mlflow.artifact_location
    artifacts = location if "://" in location else str(Path(location).resolve())
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return [
        mlflow,
        "ui",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
    ], uri
