"""What a hostile file or a careless setting cannot do: run code from a checkpoint, leak a credential into
params, logs or MLflow, or expose a server beyond this machine."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datamodules.files import DataError
from pipelines import paths
from pipelines.config import load_params
from pipelines.errors import ParamsError
from pipelines.evaluate import evaluate_experiment
from pipelines.train import train_experiment
from tests.helpers import ROOT, tiny_params, write_params


class Payload:
    """Unpickling this creates a file: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def tamper(checkpoint: Path, marker: Path) -> None:
    state = torch.load(checkpoint, weights_only=True)
    state["hyper_parameters"]["evil"] = Payload(marker)
    torch.save(state, checkpoint)


def test_a_tampered_checkpoint_is_refused_and_never_unpickled(project):
    params = load_params()
    train_experiment(params, "protonets")
    marker = project / "pwned"
    best = paths.model_dir("protonets") / "best.ckpt"
    tamper(best, marker)
    with pytest.raises(
        DataError, match=r"best.ckpt: refused to load: .*weights_only=False .*Unsupported global: GLOBAL "
    ):
        evaluate_experiment(params, "protonets")

    last = paths.model_dir("protonets") / "last.ckpt"  # and a resume of an interrupted run
    record = json.loads(paths.run_record("protonets").read_text())
    paths.run_record("protonets").write_text(json.dumps({**record, "finished": False}))
    tamper(last, marker)
    with pytest.raises(DataError, match=r"last.ckpt: refused to load"):
        train_experiment(params, "protonets")
    assert not marker.exists()


def test_a_credential_in_an_mlflow_uri_is_refused_without_repeating_it(tmp_path):
    write_params(tmp_path, tiny_params(mlflow={"tracking_uri": "https://alice:s3cret@mlflow.example.com"}))
    with pytest.raises(ParamsError, match="mlflow.tracking_uri: holds a user name or password") as error:
        load_params(tmp_path / "params.yaml")
    assert "s3cret" not in str(error.value) and "MLFLOW_TRACKING_PASSWORD" in str(error.value)


@pytest.mark.slow
def test_credentials_in_the_environment_never_reach_mlflow_or_the_logs(project):
    secrets = {
        "MLFLOW_TRACKING_PASSWORD": "pw-5f1e2a",
        "AWS_SECRET_ACCESS_KEY": "aws-9c3d7b",
        "AWS_ACCESS_KEY_ID": "AKIA-4b8e",
        "RAY_AUTH_TOKEN": "ray-77aa01",
    }
    env = {**os.environ, **secrets, "PYTHONPATH": str(ROOT)}
    logs = "".join(
        subprocess.run(
            [sys.executable, "-m", "pipelines", verb, "protonets"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for verb in ("train", "evaluate")
    )
    stored = b"".join(
        p.read_bytes() for p in [project / "mlflow.db", *(project / "mlartifacts").rglob("*")] if p.is_file()
    )
    stored += b"".join(p.read_bytes() for p in (project / "models").rglob("*") if p.is_file())
    for secret in secrets.values():
        assert secret not in logs and secret.encode() not in stored


@pytest.mark.slow
@pytest.mark.xdist_group("ui")  # the session's one server (tests/conftest.py)
def test_reprozoo_ui_listens_on_loopback_only(served):
    import psutil

    server = psutil.Process(served[3])
    family = [server, *server.children(recursive=True)]
    listening = {
        c.laddr.ip for p in family for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN
    }
    assert listening == {"127.0.0.1"}


def test_shipped_params_and_infra_hold_no_credentials():
    """The committed configuration names where secrets come from, never a secret itself."""
    assert "@" not in load_params(ROOT / "params.yaml").mlflow.tracking_uri
    for path in [ROOT / "params.yaml", *(ROOT / "recipes").glob("*.yaml"), *(ROOT / "infra").rglob("*.y*ml")]:
        text = path.read_text().lower()
        for word in ("password:", "secret_access_key:", "token:"):
            for line in (line for line in text.splitlines() if word in line):
                assert any(ok in line for ok in ("secretkeyref", "valuefrom", "${", "$(")), (
                    f"{path}: {line.strip()}"
                )


def test_payload_really_runs_code_when_unpickled(tmp_path):
    """The tamper test's premise: without weights_only, this checkpoint would have run code."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()
