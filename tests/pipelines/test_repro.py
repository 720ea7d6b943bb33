"""`reprozoo repro`: `dvc repro` over a local Ray of 2 slots and a local-directory DVC remote, on a copy of
the repository with two small experiments on one dataset. One project, two runs: the first with one
experiment made to fail mid-training (its descendants skipped, the other done, the two trainings overlapping,
exit 1), the second with it fixed (only its stages run, their up-to-date inputs pushed from here to an
emptied remote); then a local `dvc repro` has nothing to do, and the data stages' output hashes equal a
sequential `dvc repro`'s."""

import shutil
import subprocess
from copy import deepcopy as copy_of
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import copy_repository, intervals, project_environment, run_in, tiny_params, write_params

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one Ray at a time on 2 cores


def commit(project: Path, message: str) -> None:
    for step in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        subprocess.run(["git", *step], cwd=project, check=True, capture_output=True)


def project_with(folder: Path, params: dict, remote: Path) -> Path:
    project = copy_repository(folder)
    (project / "dvc.lock").unlink(missing_ok=True)
    write_params(project, params)
    assert run_in(project, "dvc", "remote", "add", "-d", "shared", str(remote)).returncode == 0
    commit(project, "project")
    return project


def test_stale_stages_run_as_ray_tasks_a_failure_stops_only_its_descendants(tmp_path):
    params = tiny_params()
    params["papers"] = {  # copies: YAML would write shared dicts as one anchored node
        "protonets": copy_of(params["papers"]["protonets"]),
        "protonets_b": copy_of(params["papers"]["protonets"]),
    }
    params["datasets"] = {"omniglot": params["datasets"]["omniglot"]}
    broken = copy_of(params)
    # More drawings than a character has: the training fails once its MLflow run has started, when Lightning
    # builds the episodes (and ends the run FAILED, with an end time)
    broken["papers"]["protonets_b"]["data"]["shot"] = 500
    project = project_with(tmp_path / "cluster", broken, tmp_path / "remote")
    repro = ("reprozoo", "repro", "--num-cpus", "2", "--checkouts", str(tmp_path / "checkouts"))

    first = run_in(project, *repro)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "train@protonets_b: " in first.stdout and "not done: " in first.stdout
    undone = first.stdout.split("not done: ")[1].split()[0:3]
    assert {s.strip(",") for s in undone} == {"train@protonets_b", "evaluate@protonets_b", "report"}
    # the independent stages finished, their outputs pulled here
    assert (project / "metrics/protonets.json").exists() and (project / "models/protonets/best.ckpt").exists()
    (a_start, a_end), (b_start, b_end) = intervals(project, ["protonets", "protonets_b"]).values()
    assert a_start < b_end and b_start < a_end  # two trainings at the same time

    write_params(project, params)  # fixed: only its stages and the report are stale now
    commit(project, "fix protonets_b")
    # A remote that has lost what the first run pushed: the up-to-date shards that train@protonets_b reads
    # reach its node only because the driver pushes them from here.
    shutil.rmtree(tmp_path / "remote")
    second = run_in(project, *repro)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "train@protonets_b" in second.stdout and "train@protonets " not in second.stdout
    assert "Running stage" not in run_in(project, "dvc", "repro").stdout  # the lock is complete: a no-op
    assert (project / "reports/reproductions.md").exists()

    sequential = project_with(tmp_path / "sequential", params, tmp_path / "remote2")
    assert run_in(sequential, "dvc", "repro", "shard@omniglot").returncode == 0
    ours, theirs = (yaml.safe_load((p / "dvc.lock").read_text())["stages"] for p in (project, sequential))
    for stage in ("fetch@omniglot", "shard@omniglot"):
        assert ours[stage] == theirs[stage]  # deterministic stages: the same deps, params and output hashes


def stage_processes(checkout: Path) -> list:
    """The stage's processes (dvc, its `reprozoo train`) and the Ray worker running its task."""
    import psutil

    found = [
        p
        for p in psutil.process_iter(["cwd"])
        if p.info["cwd"] and Path(p.info["cwd"]).is_relative_to(checkout)
    ]
    workers = {p.parent() for p in found} - set(found)
    return [*workers, *found]


def test_a_worker_lost_mid_training_is_retried_and_resumes_from_the_remote(tmp_path):
    """A node lost mid-training (its Ray worker, its processes and its disk): Ray retries the task, the new
    checkout takes the checkpoint the first try mirrored to the DVC remote, and the same MLflow run goes on
    to the end; the lock is right (a local `dvc repro` of the training has nothing to do). Only the training
    and the stages it reads run: what follows it is the first test's."""
    import signal
    import time

    params = tiny_params()
    params["papers"] = {"fast_weights": params["papers"]["fast_weights"]}
    schedule = {"max_steps": 600, "val_check_interval": 300, "checkpoint_every_n_steps": 50}
    params["papers"]["fast_weights"]["smoke"]["trainer"] = schedule | {"log_every_n_steps": 50}
    params["datasets"] = {"associative_retrieval": params["datasets"]["associative_retrieval"]}
    project = project_with(tmp_path / "cluster", params, tmp_path / "remote")
    checkouts = tmp_path / "checkouts"
    repro = subprocess.Popen(
        ["reprozoo", "repro", "--num-cpus", "2", "--checkouts", str(checkouts), "train@fast_weights"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=project_environment(),
    )
    deadline = time.monotonic() + 600
    while not list((tmp_path / "remote").glob("reprozoo-resume/*/train-fast_weights/last.ckpt")):
        assert repro.poll() is None and time.monotonic() < deadline, repro.stdout.read()
        time.sleep(0.1)
    (checkout,) = checkouts.glob("*/train-fast_weights")
    lost = stage_processes(checkout)
    for process in lost:  # frozen first, so nothing reacts while the node's disk goes
        process.send_signal(signal.SIGSTOP)
    shutil.rmtree(checkout)
    for process in lost:
        process.kill()

    output, _ = repro.communicate(timeout=900)
    assert repro.returncode == 0, output
    assert "train@fast_weights: resumed from the checkpoint mirrored on the DVC remote" in output
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    (run_,) = client.search_runs([client.get_experiment_by_name("fast_weights").experiment_id])
    assert run_.info.status == "FINISHED"  # one run, continued: a fresh start would have made a second
    assert "Running stage" not in run_in(project, "dvc", "repro", "train@fast_weights").stdout
    assert not list((tmp_path / "remote").glob("reprozoo-resume/*/*"))  # done: the mirror is removed
