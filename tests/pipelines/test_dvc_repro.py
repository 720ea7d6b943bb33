"""`dvc repro` end to end on a copy of the repository: outputs, a no-op second run, one paper re-run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, copy_repository, tiny_params, write_params


def dvc(copy: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(["dvc", *args], cwd=copy, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_repro_end_to_end_then_noop_then_one_paper(tmp_path):
    copy = copy_repository(tmp_path / "repo")
    params = tiny_params()
    # One paper and two datasets: every dataset's fetch and shard run in test_smoke_all and the dataset tests;
    # here what matters is DVC's wiring (a dataset no paper uses is fetched and sharded all the same).
    params["papers"] = {"protonets": params["papers"]["protonets"]}
    params["datasets"] = {name: params["datasets"][name] for name in ("omniglot", "mnist")}
    write_params(copy, params)

    first = dvc(copy, "repro")
    for stage in ("train@protonets", "evaluate@protonets", "report"):
        assert f"Running stage '{stage}'" in first
    for dataset in params["datasets"]:  # from a clean state
        assert f"Running stage 'fetch@{dataset}'" in first and f"Running stage 'shard@{dataset}'" in first
        assert (copy / "data/shards" / dataset / "meta.json").exists()
    assert (copy / "metrics/protonets.json").exists() and (copy / "reports/reproductions.png").exists()
    assert (copy / "mlflow.db").exists()
    assert "test/acc_5way_5shot" in dvc(copy, "metrics", "show")

    assert "Running stage" not in dvc(copy, "repro")  # nothing changed: a no-op

    params["papers"]["protonets"].setdefault("hparams", {})["lr"] = 2e-3
    write_params(copy, params)
    third = dvc(copy, "repro")
    ran = {line.split("'")[1] for line in third.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@protonets", "evaluate@protonets", "report"}
