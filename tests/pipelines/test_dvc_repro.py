"""`dvc repro` end to end on a copy of the repository: outputs, a no-op second run, one paper re-run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules import DATASETS
from tests.conftest import ROOT, copy_repository, tiny_params, write_params


def dvc(copy: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["dvc", *args], cwd=copy, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_repro_end_to_end_then_noop_then_one_paper(tmp_path):
    copy = copy_repository(tmp_path / "repo")
    params = tiny_params()
    params["papers"] = {"protonets": params["papers"]["protonets"]}     # one paper; every dataset
    write_params(copy, params)

    first = dvc(copy, "repro")
    for stage in ("train@protonets", "evaluate@protonets", "report"):
        assert f"Running stage '{stage}'" in first
    for dataset in DATASETS:                                          # every dataset from a clean state
        assert f"Running stage 'fetch@{dataset}'" in first and f"Running stage 'shard@{dataset}'" in first
        assert (copy / "data/shards" / dataset / "meta.json").exists()
    assert (copy / "metrics/protonets.json").exists() and (copy / "reports/reproductions.png").exists()
    assert (copy / "mlflow.db").exists()
    assert "test/acc_5way_5shot" in dvc(copy, "metrics", "show")

    assert "Running stage" not in dvc(copy, "repro")                # nothing changed: a no-op

    params["papers"]["protonets"]["hparams"]["lr"] = 2e-3
    write_params(copy, params)
    third = dvc(copy, "repro")
    ran = {line.split("'")[1] for line in third.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@protonets", "evaluate@protonets", "report"}
