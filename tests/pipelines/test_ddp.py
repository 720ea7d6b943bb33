"""A two-process CPU DDP training (gloo) through the real CLI, as `strategy: ddp, devices: 2` runs it."""
import json

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import cli, tiny_params, write_params


@pytest.mark.slow
def test_two_process_ddp_training_finishes_with_one_mlflow_run(project):
    write_params(project, tiny_params(trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp"}))
    result = cli(project, "train", "protonets", timeout=300)
    assert "trained protonets" in result.stdout
    record = json.loads((project / "models/protonets/run.json").read_text())
    assert record["finished"] and record["global_step"] == 20
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    experiment = client.get_experiment_by_name("protonets")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1                                   # rank 1 re-runs the command but owns no run
    assert runs[0].data.metrics["train/loss"] > 0
