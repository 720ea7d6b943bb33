"""`reprozoo tune`: real Ray (a local 2-CPU instance), real Lightning trials on the tiny Omniglot replica."""

import json
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from pipelines import paths
from pipelines.config import load_params
from pipelines.errors import ParamsError
from tests.helpers import merge, tiny_params, write_params

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster at a time on 2 cores


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def sweep_params(project, smoke=None, **tune):
    params = tiny_params()
    params["papers"]["protonets"]["tune"] = tune
    if smoke:  # over the tiny profile's smoke, not in place of it (else the full recipe's 60-way episodes)
        params["papers"]["protonets"]["smoke"] = merge(params["papers"]["protonets"]["smoke"], smoke)
    write_params(project, params)
    return load_params(project / "params.yaml")


def child_runs(project, parent_run_id):
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    experiment = client.get_experiment_by_name("protonets")
    return client, client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )


@pytest.mark.slow
def test_asha_sweep_stops_weak_trials_and_reports_the_best_config(project, local_ray):
    from pipelines.tune import run_sweep

    # Two learning rates that learn and two that cannot: the weak pair reaches ASHA's first rung after the
    # strong pair (two trials run at once), so it is stopped there; the outcome does not hang on random draws.
    params = sweep_params(
        project,
        space={"hparams.lr": {"grid": [3e-3, 3e-3, 1e-9, 1e-9]}},
        num_samples=1,
        max_concurrent_trials=2,
        grace_period=1,
        reduction_factor=2,
        smoke={
            "data": {"val_episodes": 10, "test_episodes": 10},  # enough to tell learning from none
            "trainer": {"max_steps": 40, "val_check_interval": 20, "checkpoint_every_n_steps": 20},
        },
    )
    summary = run_sweep(params, "protonets")

    assert len(summary["trials"]) == 4 and summary["metric"] == "val/acc" and summary["mode"] == "max"
    statuses = {t["config"]["hparams.lr"]: t["status"] for t in summary["trials"]}
    assert statuses[3e-3] == "completed" and statuses[1e-9] == "stopped_early"
    assert summary["best_config"] == {"hparams.lr": 3e-3}
    assert (
        json.loads((project / paths.tune_report("protonets")).read_text())["best_trial"]
        == summary["best_trial"]
    )

    client, children = child_runs(project, summary["mlflow_parent_run_id"])
    assert len(children) == 4  # one child run per trial, none duplicated
    assert {c.data.params["hparams.lr"] for c in children} == {"0.003", "1e-09"}
    assert all(c.info.status == "FINISHED" and "val/acc" in c.data.metrics for c in children)
    parent = client.get_run(summary["mlflow_parent_run_id"])
    assert (
        parent.data.params["best.hparams.lr"] == "0.003"
        and parent.data.metrics["best/val/acc"] == summary["best_value"]
    )


def kill_once_checkpointed(
    project, process_title: str, registered: str, killed: list[int], stop: threading.Event
) -> None:
    """SIGKILL the Ray worker process titled `process_title` once Ray has registered a checkpoint: the file
    `registered` (a glob under ray_results/) is written only after the checkpoint is recorded."""
    import psutil

    while not stop.is_set() and not killed:
        if any(path.stat().st_size for path in (project / "ray_results").glob(registered)):
            for process in psutil.process_iter(["cmdline"]):
                # the title Ray sets as argv[0], not a mention (this test id, on a pytest command line)
                if (process.info["cmdline"] or [""])[0].startswith(process_title):
                    process.kill()
                    killed.append(process.pid)
                    break
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers, process_title, registered",
    [
        (1, "ray::ImplicitFunc", "*/*/progress.csv"),  # Tune logs a result it has taken
        (
            2,
            "ray::RayTrainWorker",
            "*-train/checkpoint_manager_snapshot.json",
        ),  # Ray Train's checkpoint manager
    ],
)
def test_a_trial_whose_worker_is_killed_restarts_from_its_checkpoint(
    project, local_ray, workers, process_title, registered
):
    """One process: Tune retries the trial (FailureConfig). A trial that is a two-worker Ray Train DDP run
    (two gloo ranks, rank 1 logging nothing of its own): the group restarts from its checkpoint."""
    from pipelines.tune import run_sweep

    params = sweep_params(
        project,
        space={"hparams.lr": {"choice": [1e-3]}},
        num_samples=1,
        scheduler="fifo",
        max_failures=1,
        workers_per_trial=workers,
        resources_per_trial={"cpu": 1},
        smoke={
            "data": {"train_way": 20},  # ~0.35 s a step: the kill lands well before the last of 20 steps
            "trainer": {"max_steps": 20, "val_check_interval": 5, "checkpoint_every_n_steps": 5},
        },
    )
    killed, stop = [], threading.Event()
    killer = threading.Thread(
        target=kill_once_checkpointed, args=(project, process_title, registered, killed, stop)
    )
    killer.start()
    try:
        summary = run_sweep(params, "protonets")
    finally:
        stop.set()
        killer.join()
    (trial,) = summary["trials"]
    assert killed, f"no {process_title} process was found to kill"
    assert trial["status"] == "completed" and trial["step"] == 20 and trial["validations"] == 4
    assert trial["resumed_from_step"] >= 5  # restored, not started over
    assert trial["world_size"] == workers  # two ranks, not one process
    _, (child,) = child_runs(project, summary["mlflow_parent_run_id"])  # the retry continued the trial's run
    assert child.info.status == "FINISHED" and 0 <= child.data.metrics["val/acc"] <= 1


@pytest.mark.parametrize(
    "space, message",
    [
        (
            {"hparams.lr": {"loguniform": [0, 1]}},
            "papers.protonets.tune.space.hparams.lr.loguniform: expected [low, high] numbers with low < "
            "high and low > 0",
        ),
        (
            {"hparams.lr": {"choice": [1e-3, -1]}},
            "papers.protonets.tune.space.hparams.lr: input should be greater than 0, got -1",
        ),
        (
            {"lr": {"choice": [1e-3]}},
            "papers.protonets.tune.space.lr: expected hparams.<name>, data.<name> or trainer.<name>",
        ),
        (
            {"hparams.lr": {"choice": [1e-3], "uniform": [0, 1]}},
            "papers.protonets.tune.space.hparams.lr: expected exactly one of",
        ),
        ({"hparams.nope": {"choice": [1]}}, "papers.protonets.tune.space.hparams.nope: unknown key"),
    ],
)
def test_a_bad_search_space_is_rejected_when_params_load(project, space, message):
    with pytest.raises(
        ParamsError, match=message.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")
    ):
        sweep_params(project, space=space)


def test_the_space_maps_to_ray_distributions_and_the_default_metric_is_the_monitor(project):
    from ray.tune.search.sample import Float

    from pipelines.tune import objective, search_space, validation_rungs

    params = sweep_params(
        project, space={"hparams.lr": {"loguniform": [1e-4, 1e-2]}, "data.shot": {"grid": [1, 5]}}
    )
    space = search_space(params.experiment("protonets").tune)
    assert isinstance(space["hparams.lr"], Float) and space["data.shot"] == {"grid_search": [1, 5]}
    assert objective(params, "protonets") == ("val/acc", "max")
    assert validation_rungs(params, "protonets") == 2  # tiny profile: 20 steps, validation every 10
    assert params.recipe("protonets", overrides={"data.shot": 1}).data["shot"] == 1
    with pytest.raises(ParamsError, match="papers.protonets.tune.mode: required with metric 'val/loss'"):
        objective(
            sweep_params(project, space={"hparams.lr": {"choice": [1e-3]}}, metric="val/loss"), "protonets"
        )


def test_an_unknown_search_algorithm_is_named_before_ray_starts(project):
    from pipelines.tune import run_sweep

    params = sweep_params(project, space={"hparams.lr": {"uniform": [1e-4, 1e-2]}}, search="no_such_searcher")
    with pytest.raises(ParamsError, match="papers.protonets.tune.search"):
        run_sweep(params, "protonets")
