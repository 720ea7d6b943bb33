"""A training killed with SIGKILL mid-run and started again resumes from last.ckpt and ends bit-identical to a
run that was never interrupted: weights, optimizer and step, with the same MLflow run continued."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules.resume import ResumableLoader
from tests.helpers import ROOT, cli, fetched_project, tiny_params, write_params

# A checkpoint every 10 steps of 40: the kill lands after the first one, well before the end.
SCHEDULE = {"max_steps": 40, "val_check_interval": 10, "checkpoint_every_n_steps": 10, "log_every_n_steps": 5}


def project_for(root: Path, experiment: str, data: Path) -> Path:
    params = tiny_params()
    params["papers"] = {experiment: params["papers"][experiment]}
    params["papers"][experiment].setdefault("smoke", {})["trainer"] = SCHEDULE
    write_params(root, params)
    (root / "data").symlink_to(data)
    return root


@pytest.fixture(scope="module")
def cifar10_data(tmp_path_factory) -> Path:
    """Fetched and sharded by the real stages: a streamed dataset with random crops and flips, 3 batches an
    epoch."""
    return fetched_project(tmp_path_factory.mktemp("cifar10"), "cifar10") / "data"


def kill_after_first_checkpoint(project: Path, experiment: str) -> None:
    train = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "train", experiment],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    last = project / "models" / experiment / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and train.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert train.poll() is None, f"training ended before it could be killed:\n{train.stderr.read().decode()}"
    train.send_signal(signal.SIGKILL)
    train.wait()


def final_state(project: Path, experiment: str) -> dict:
    return torch.load(project / "models" / experiment / "last.ckpt", weights_only=True, map_location="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["protonets", "resnet_cifar"])
def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_one(
    tmp_path, experiment, omniglot_project, cifar10_data
):
    data = omniglot_project / "data" if experiment == "protonets" else cifar10_data
    straight = project_for(tmp_path / "straight", experiment, data)
    cli(straight, "train", experiment)

    killed = project_for(tmp_path / "killed", experiment, data)
    kill_after_first_checkpoint(killed, experiment)
    record = json.loads((killed / "models" / experiment / "run.json").read_text())
    interrupted_at = final_state(killed, experiment)["global_step"]
    assert not record["finished"] and 0 < interrupted_at < SCHEDULE["max_steps"]

    assert "(resumed)" in cli(killed, "train", experiment).stdout  # what `dvc repro` runs again
    expected, resumed = final_state(straight, experiment), final_state(killed, experiment)
    assert resumed["global_step"] == expected["global_step"] == SCHEDULE["max_steps"]
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), (
            f"{name} differs after resuming at step {interrupted_at}"
        )
    assert str(resumed["optimizer_states"]) == str(expected["optimizer_states"])

    client = MlflowClient(f"sqlite:///{killed}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [record["mlflow_run_id"]]  # continued, not duplicated
    assert runs[0].info.status == "FINISHED"
    curve = next(name for name in runs[0].data.metrics if name.startswith("train/"))
    steps = {m.step for m in client.get_metric_history(record["mlflow_run_id"], curve)}
    assert min(steps) < interrupted_at and max(steps) >= SCHEDULE["max_steps"] - SCHEDULE["log_every_n_steps"]


def test_a_resumed_loader_continues_the_stream_without_touching_the_training_rng():
    def data():  # built afresh, as in a new process
        return torch.utils.data.DataLoader(
            list(range(20)), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1)
        )

    straight = ResumableLoader(data(), seed=3)
    stream = [b.tolist() for _ in range(3) for b in straight]  # three epochs of five batches
    resumed = ResumableLoader(data(), seed=3, epochs=1, batches=2)  # as restored at epoch 1, batch 2
    torch.manual_seed(0)
    expected_draw = torch.rand(1)
    torch.manual_seed(0)
    continued = [b.tolist() for _ in range(2) for b in resumed]
    assert continued == stream[7:]
    assert torch.equal(torch.rand(1), expected_draw)  # shuffling drew from its own RNG


def test_an_unreadable_last_checkpoint_is_set_aside_not_resumed(project):
    """A last.ckpt cut while being written (by another tool, a full disk) made every rerun fail until someone
    deleted it: it is now moved aside with a message and training starts anew."""
    from pipelines import paths
    from pipelines.config import load_params
    from pipelines.runs import write_record
    from pipelines.train import resumable

    recipe = load_params().recipe("protonets")
    model_dir = paths.model_dir("protonets")
    model_dir.mkdir(parents=True)
    write_record("protonets", {"finished": False, "fingerprint": recipe.fingerprint(), "mlflow_run_id": "r"})
    (model_dir / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    assert resumable(recipe) is None
    assert not (model_dir / "last.ckpt").exists() and len(list(model_dir.glob("last.ckpt.unreadable-*"))) == 1
