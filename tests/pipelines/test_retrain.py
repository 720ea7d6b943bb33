"""`reprozoo retrain` on a real DVC project (a copy of the repository with two experiments on one dataset): a
no-op when nothing changed, only the changed experiment re-runs, a better model is promoted, a failing run
leaves the champion and exits non-zero; every decision is an MLflow run."""

import json
import os
import subprocess
import sys
from copy import deepcopy as copy_of
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import ROOT, copy_repository, tiny_params, write_params


def run(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(args, cwd=copy, capture_output=True, text=True, env=env, timeout=900)


def retrain(copy: Path) -> subprocess.CompletedProcess:
    return run(copy, sys.executable, "-m", "pipelines", "retrain")


def versions(copy: Path, key: str) -> dict[str, dict]:
    client = MlflowClient(f"sqlite:///{copy}/mlflow.db", registry_uri=f"sqlite:///{copy}/mlflow.db")
    found = [
        client.get_model_version(f"reprozoo.{key}", v.version)
        for v in client.search_model_versions(f"name = 'reprozoo.{key}'")
    ]
    return {str(v.version): {**v.tags, "aliases": set(v.aliases)} for v in found}  # search leaves aliases out


def decisions(copy: Path) -> list[dict]:
    client = MlflowClient(f"sqlite:///{copy}/mlflow.db")
    experiment = client.get_experiment_by_name("reprozoo.retrain")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [
        {k.removeprefix("decision/"): v for k, v in r.data.tags.items() if k.startswith("decision/")}
        for r in runs
    ]


@pytest.mark.slow
def test_retrain_noop_then_one_changed_paper_promoted_then_a_failure_keeps_the_champion(tmp_path):
    copy = copy_repository(tmp_path / "repo")
    params = tiny_params()
    learns = {
        "data": {"train_way": 20, "val_episodes": 10, "test_query": 5, "test_episodes": 20},
        "trainer": {
            "max_steps": 40,
            "val_check_interval": 20,
            "checkpoint_every_n_steps": 20,
            "log_every_n_steps": 10,
        },
    }
    weak = copy_of(params["papers"]["protonets"])
    weak.setdefault("hparams", {})["lr"], weak["smoke"] = 1e-9, learns
    params["papers"] = {
        "protonets": {**params["papers"]["protonets"], "smoke": learns},
        "protonets_weak": weak,
    }
    params["datasets"] = {"omniglot": params["datasets"]["omniglot"]}
    write_params(copy, params)
    first = run(copy, "dvc", "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert {v["decision"] for v in versions(copy, "protonets_weak").values()} == {
        "promoted"
    }  # v1: nothing to beat

    noop = retrain(copy)  # nothing changed
    assert noop.returncode == 0 and noop.stdout.startswith("retrain: nothing stale in 2 experiments"), (
        noop.stdout + noop.stderr
    )
    assert len(versions(copy, "protonets")) == len(versions(copy, "protonets_weak")) == 1

    params["papers"]["protonets_weak"]["hparams"]["lr"] = 3e-3  # the weak experiment now learns
    write_params(copy, params)
    dry = run(copy, sys.executable, "-m", "pipelines", "retrain", "--dry-run")
    assert (
        dry.returncode == 0
        and "protonets_weak: would_retrain (stale:" in dry.stdout
        and len(versions(copy, "protonets_weak")) == 1
    )
    better = retrain(copy)
    assert better.returncode == 0, better.stdout + better.stderr
    assert "protonets_weak: promoted (stale: evaluate@protonets_weak, train@protonets_weak;" in better.stdout
    assert (
        "protonets:" not in better.stdout and len(versions(copy, "protonets")) == 1
    )  # the other paper did not re-run
    weak_versions = versions(copy, "protonets_weak")
    assert weak_versions["2"]["aliases"] == {"champion", "challenger"}
    assert float(weak_versions["2"]["headline_value"]) > float(weak_versions["1"]["headline_value"])

    params["papers"]["protonets_weak"]["data"]["shot"] = 50  # more drawings than a character has: fails
    write_params(copy, params)
    failed = retrain(copy)
    assert (
        failed.returncode == 1
        and "protonets_weak: failed" in failed.stdout
        and "champion untouched" in failed.stdout
    )
    assert versions(copy, "protonets_weak")["2"]["aliases"] == {"champion", "challenger"}

    assert decisions(copy) == [
        {"protonets": "up_to_date", "protonets_weak": "up_to_date"},
        {"protonets": "up_to_date", "protonets_weak": "would_retrain"},
        {"protonets": "up_to_date", "protonets_weak": "promoted"},
        {"protonets": "up_to_date", "protonets_weak": "failed"},
    ]
    assert json.loads((copy / "metrics/protonets_weak.json").read_text())["profile"] == "smoke"
