"""`reprozoo submit`: a real local Ray cluster (`ray start --head` on 127.0.0.1, free ports), the Jobs API,
and a teardown that stops only this cluster's processes."""

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from pipelines.processes import free_port
from pipelines.submit import EXCLUDES, SubmitError, entrypoint
from tests.helpers import ROOT, cli

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster at a time on 2 cores

CODE = ("pipelines", "datamodules", "lightning_modules", "constraints.txt", "pyproject.toml")


@pytest.fixture(scope="module")
def cluster():
    """The dashboard URL of a one-CPU head node; every process it started is killed afterwards."""
    temp = tempfile.mkdtemp(prefix="rz", dir="/tmp")  # short: Ray's socket paths live under it
    port, dashboard = free_port(), free_port()
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=1",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        mine = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(temp in part or f"={port}" in part for part in p.info["cmdline"] or [])
        ]
        for process in mine:
            process.kill()
        psutil.wait_procs(mine, timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def checkout(project):
    """The project with the code beside it, as a user's working tree is: the job runs the uploaded copy."""
    for name in CODE:
        source = ROOT / name
        (
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
            if source.is_dir()
            else shutil.copy(source, project / name)
        )
    return project


@pytest.mark.slow
def test_a_submitted_command_streams_its_logs_and_returns_its_status(checkout, cluster):
    result = cli(checkout, "submit", "--address", cluster, "--", "reprozoo", "list", timeout=400)
    assert "SUCCEEDED" in result.stdout
    assert (checkout / "data/shards/omniglot/meta.json").exists()  # here, but never uploaded:
    assert re.search(
        r"omniglot\s*│\s*synthetic\s*│\s*no\s*│\s*no", result.stdout
    )  # the job's own output, streamed
    failed = cli(
        checkout,
        "submit",
        "--address",
        cluster,
        "--env",
        "cluster",
        "--",
        "reprozoo",
        "train",
        "no_such_paper",
        check=False,
        timeout=200,
    )
    assert (
        failed.returncode == 1
        and "FAILED" in failed.stdout
        and "'no_such_paper' is not one of" in failed.stdout  # the CLI's own list of experiments
    )


@pytest.mark.slow
def test_a_job_submitted_without_waiting_can_be_watched_and_stopped(checkout, cluster):
    started = cli(
        checkout,
        "submit",
        "--address",
        cluster,
        "--env",
        "cluster",
        "--no-wait",
        "--",
        "python",
        "-c",
        "import time; print('tick', flush=True); time.sleep(300)",
    )
    job = started.stdout.strip().splitlines()[-1]
    deadline = time.time() + 120
    while "tick" not in cli(checkout, "submit", "--address", cluster, "--logs", job).stdout:
        assert time.time() < deadline, "the job never printed"
        time.sleep(1)
    assert cli(checkout, "submit", "--address", cluster, "--status", job).stdout.strip() == "RUNNING"
    assert "stop requested" in cli(checkout, "submit", "--address", cluster, "--stop", job).stdout
    while (
        status := cli(checkout, "submit", "--address", cluster, "--status", job).stdout.strip()
    ) != "STOPPED":
        assert time.time() < deadline and status in ("RUNNING", "PENDING"), status
        time.sleep(1)
    unknown = cli(checkout, "submit", "--address", cluster, "--status", "raysubmit_nope", check=False)
    assert unknown.returncode == 2 and "job raysubmit_nope: not found" in unknown.stderr


def test_no_cluster_at_the_address_is_one_clear_error(project):
    result = cli(
        project,
        "submit",
        "--address",
        f"http://127.0.0.1:{free_port()}",
        "--",
        "reprozoo",
        "list",
        check=False,
    )
    assert result.returncode == 2 and "no Ray dashboard answers there" in result.stderr


def test_the_job_runs_reprozoo_from_the_uploaded_copy_without_data_or_tracking_stores():
    assert entrypoint(["reprozoo", "tune", "protonets"]) == "python -m pipelines tune protonets"
    assert entrypoint(["dvc", "repro", "train@protonets"]) == "dvc repro train@protonets"
    assert {"/data", "/models", "/mlflow.db", "/mlartifacts", "/ray_results", ".env"} <= set(EXCLUDES)
    with pytest.raises(SubmitError, match="nothing to submit"):
        entrypoint([])


def test_a_head_whose_job_agent_is_not_up_yet_is_asked_again(monkeypatch):
    """Right after `ray start` the head answers "No available agent ... try again later": submit waits for
    the agent instead of failing a scheduled job; any other error is raised at once."""
    import pipelines.submit as submit_module

    class Head:
        def __init__(self, failures: list[str]):
            self.failures, self.calls = failures, 0

        def submit_job(self, **request):
            self.calls += 1
            if self.failures:
                raise RuntimeError(self.failures.pop(0))
            return "raysubmit_1"

    monkeypatch.setattr(submit_module.time, "sleep", lambda _: None)
    cold = Head(
        [f"Request failed with status code 500: {submit_module.NO_AGENT}, please try again later"] * 2
    )
    monkeypatch.setattr(submit_module, "client", lambda address: cold)
    assert submit_module.submit(["reprozoo", "list"], "http://127.0.0.1:1", env="cluster")[1] == "raysubmit_1"
    assert cold.calls == 3
    broken = Head(["Request failed with status code 400: bad runtime_env"])
    monkeypatch.setattr(submit_module, "client", lambda address: broken)
    with pytest.raises(RuntimeError, match="bad runtime_env"):
        submit_module.submit(["reprozoo", "list"], "http://127.0.0.1:1", env="cluster")
    assert broken.calls == 1
