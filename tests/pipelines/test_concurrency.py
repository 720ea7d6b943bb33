"""One training per experiment at a time, experiments side by side, and one MLflow sqlite store shared by many
writers (parallel Tune trials) without a lost write or a corrupted file."""

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from pipelines import paths
from tests.helpers import ROOT, cli

HOLD = (
    "import sys, time; from pipelines.runs import training_lock\n"
    "with training_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)"
)


def holder(project, key: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, key],
        cwd=project,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.mark.slow
def test_a_second_training_of_the_same_experiment_is_refused_while_others_run(project):
    # imported here: the spawned store writers below import this module, and pipelines.runs brings torch
    from pipelines.runs import TrainingLocked, training_lock

    process = holder(project, "protonets")
    try:
        with pytest.raises(
            TrainingLocked,
            match=rf"models/.locks/protonets.lock: another `reprozoo train protonets` is "
            rf"running \(pid {process.pid}, started .*\); wait for it or stop it",
        ):
            with training_lock("protonets"):
                pass
        with training_lock("mann"):  # a different experiment is free
            assert paths.train_lock("mann").read_text().startswith(f"pid {os.getpid()}")
    finally:
        process.send_signal(signal.SIGKILL)  # a killed holder leaves no stale lock
        process.wait()
    with training_lock("protonets"):
        pass


@pytest.mark.slow
def test_the_cli_refuses_with_one_line_before_any_compute(project):
    process = holder(project, "protonets")
    try:
        result = cli(project, "train", "protonets", check=False)
    finally:
        process.kill()
        process.wait()
    assert result.returncode == 2 and "another `reprozoo train protonets` is running" in result.stderr
    assert "Traceback" not in result.stderr and not paths.model_dir("protonets").exists()


def log_many(uri: str, worker: int, metrics: int) -> None:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("shared")
    run = client.create_run(experiment.experiment_id, run_name=f"trial-{worker}")
    for step in range(metrics):
        client.log_metric(run.info.run_id, "val/acc", step / metrics, step=step)
    client.set_terminated(run.info.run_id)


@pytest.mark.slow
def test_parallel_writers_share_one_sqlite_store_without_losing_a_write(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment("shared")
    workers, metrics = 4, 100
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=log_many, args=(uri, w, metrics)) for w in range(workers)]
    started = time.monotonic()
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * workers, "a writer failed (database is locked?)"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert len(runs) == workers and all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "val/acc")) == metrics for r in runs)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    print(f"{workers} writers x {metrics} metrics in {time.monotonic() - started:.1f} s")
