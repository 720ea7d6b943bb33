"""`dvc repro` and `reprozoo retrain` on one real DVC project (a copy of the repository with two experiments
on one dataset and a second dataset no paper uses), made once per session by its first `dvc repro` (each
stage's command a warm fork, as under `make repro`): outputs, a no-op second run, then retrain's decisions
(nothing stale, only the changed experiment re-runs, a better model is promoted, a failing run leaves the
champion and exits non-zero), each an MLflow run.

The tests share the project and run in file order on one worker (xdist_group): each starts from the state
the one before it leaves."""

import json
import subprocess
import sys
from copy import deepcopy as copy_of
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.repro_here import warm_server
from tests.helpers import copy_repository, project_environment, run_in, tiny_params, write_params

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dvc_project")]


def dvc(copy: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_in(copy, "dvc", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def retrain(copy: Path, *args: str) -> subprocess.CompletedProcess:
    return run_in(copy, sys.executable, "-m", "pipelines", "retrain", *args)


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


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict, str]:
    """The copy, its params and the first `dvc repro`'s output. protonets_weak starts with a learning rate
    too small to learn, so a later fix of it gives retrain a better model to promote."""
    copy = copy_repository(tmp_path_factory.mktemp("dvc") / "repo")
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
    # Two datasets: every dataset's fetch and shard run in test_smoke_all and the dataset tests; here what
    # matters is DVC's wiring (a dataset no paper uses is fetched and sharded all the same).
    params["datasets"] = {name: params["datasets"][name] for name in ("omniglot", "mnist")}
    write_params(copy, params)
    # DVC runs every stage, and each stage's `reprozoo` is a fork of a warm server, as under `make repro`
    # (pipelines/warm.py): 9 stages without 9 cold imports. The retrain test's `dvc repro`s start cold.
    with warm_server(copy, project_environment()) as warm:
        first = dvc(copy, "repro", env=warm)
    return copy, params, first


def test_dvc_repro_runs_every_stage_then_a_second_run_is_a_noop(project):
    copy, params, first = project
    for key in params["papers"]:
        assert f"Running stage 'train@{key}'" in first and f"Running stage 'evaluate@{key}'" in first
        assert (copy / f"metrics/{key}.json").exists()
    assert "Running stage 'report'" in first
    for dataset in params["datasets"]:  # from a clean state
        assert f"Running stage 'fetch@{dataset}'" in first and f"Running stage 'shard@{dataset}'" in first
        assert (copy / "data/shards" / dataset / "meta.json").exists()
    assert (copy / "reports/reproductions.png").exists() and (copy / "mlflow.db").exists()
    assert "test/acc_5way_5shot" in dvc(copy, "metrics", "show")
    assert {v["decision"] for v in versions(copy, "protonets_weak").values()} == {
        "promoted"
    }  # v1: nothing to beat
    assert "runs reprozoo evaluate" in (copy / ".dvc/tmp/reprozoo/warm.log").read_text()  # forks, not cold
    assert "Running stage" not in dvc(copy, "repro")  # nothing changed: a no-op


def test_retrain_noop_then_one_changed_paper_promoted_then_a_failure_keeps_the_champion(project):
    copy, params, _ = project
    noop = retrain(copy)  # nothing changed
    assert noop.returncode == 0 and noop.stdout.startswith("retrain: nothing stale in 2 experiments"), (
        noop.stdout + noop.stderr
    )
    assert len(versions(copy, "protonets")) == len(versions(copy, "protonets_weak")) == 1

    params["papers"]["protonets_weak"]["hparams"]["lr"] = 3e-3  # the weak experiment now learns
    write_params(copy, params)
    dry = retrain(copy, "--dry-run")
    assert (
        dry.returncode == 0
        and "protonets_weak: would_retrain (stale:" in dry.stdout
        and len(versions(copy, "protonets_weak")) == 1
    )
    better = retrain(copy)
    assert better.returncode == 0, better.stdout + better.stderr
    # only the changed experiment's stages and the report re-ran; evaluate, whose params are its model's, is
    # stale once its training has re-run
    assert "protonets_weak: promoted (stale: train@protonets_weak;" in better.stdout
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
