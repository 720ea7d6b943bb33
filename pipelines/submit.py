"""`reprozoo submit -- <command>`: any reprozoo verb (or `dvc repro …`) as a Ray job, through the Jobs API.

The job runs in an uploaded copy of the working tree, without data, caches, virtualenvs or local tracking
stores: data comes from the command itself (`dvc repro`) or shared storage, and results go to the MLflow
server that MLFLOW_TRACKING_URI names (forwarded; credentials stay in the cluster's own environment).
Its Python packages come from constraints.txt, the same lock `make` installs from.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Literal

from ray.job_submission import JobStatus, JobSubmissionClient

from pipelines.errors import ReprozooError

LOCK = Path("constraints.txt")
# Never uploaded (Ray already skips .git and .venv): DVC and MLflow own these; they are large or
# machine-specific.
EXCLUDES = [
    "/data",
    "/models",
    "/reports",
    "/mlruns",
    "/mlartifacts",
    "/mlflow.db",
    "/ray_results",
    "/lightning_logs",
    "/.dvc/cache",
    "/.dvc/tmp",
    "__pycache__",
    "*.ckpt",
    ".pytest_cache",
    "*.egg-info",
    ".env",
]
FORWARDED = ("MLFLOW_TRACKING_URI",)  # settings, never secrets: those live on the cluster
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_SECONDS = 60


class SubmitError(ReprozooError):
    """The cluster cannot be reached, or a job id is unknown."""


def auth_headers() -> dict[str, str]:
    """Ray's cluster token (Ray ≥ 2.59 turns token auth on for local clusters), from where Ray itself looks:
    RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token. Sent as a header, never
    logged."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def client(address: str | None) -> JobSubmissionClient:
    from ray.exceptions import AuthenticationError

    address = (
        address
        or os.environ.get("RAY_API_SERVER_ADDRESS")
        or os.environ.get("RAY_ADDRESS")
        or DEFAULT_ADDRESS
    )
    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except AuthenticationError:
        raise SubmitError(
            f"--address {address}: the cluster wants its auth token; set RAY_AUTH_TOKEN or "
            "RAY_AUTH_TOKEN_PATH (on the head node: ~/.ray/auth_token)"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SubmitError(
            f"--address {address}: no Ray dashboard answers there ({error}); "
            "start one with `ray start --head` or infra/ray/cluster.yaml"
        ) from None


def entrypoint(command: list[str]) -> str:
    """`reprozoo …` runs as `python -m pipelines …`: the uploaded copy is not pip-installed on the cluster."""
    if not command:
        raise SubmitError(
            "nothing to submit: give the command after `--`, e.g. reprozoo submit -- reprozoo tune protonets"
        )
    if command[0] == "reprozoo":
        command = ["python", "-m", "pipelines", *command[1:]]
    return shlex.join(command)


def runtime_env(env: Literal["lock", "cluster"], upload: bool = True) -> dict[str, Any]:
    """The working tree (minus EXCLUDES) unless the job runs in a checkout on the cluster, and with env=lock
    the locked packages: a cluster built from infra/ (which installs the same lock) can skip that with
    env=cluster."""
    runtime: dict[str, Any] = {
        "env_vars": {name: os.environ[name] for name in FORWARDED if name in os.environ}
    }
    if upload:
        runtime |= {"working_dir": ".", "excludes": EXCLUDES}
    if env == "lock":
        if not LOCK.exists():
            raise SubmitError(
                f"{LOCK}: not found in {Path.cwd()}; run reprozoo submit from the repository root"
            )
        pins = [
            line.strip()
            for line in LOCK.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        runtime["pip"] = {"packages": pins, "pip_check": False}
    return runtime


def submit(
    command: list[str],
    address: str | None,
    env: Literal["lock", "cluster"] = "lock",
    cwd: str | None = None,
    cpus: float | None = None,
    gpus: float | None = None,
) -> tuple[JobSubmissionClient, str]:
    """Submit; `cwd`: run in that folder on the cluster (a persistent checkout, as scheduled retraining needs)
    instead of an uploaded copy; `cpus`/`gpus`: what the command itself needs, so Ray places it on a node that
    has them (a `dvc repro` trains in the job's own process)."""
    jobs = client(address)
    line = entrypoint(command) if cwd is None else f"cd {shlex.quote(cwd)} && {entrypoint(command)}"
    request = {
        "entrypoint": line,
        "runtime_env": runtime_env(env, upload=cwd is None),
        "entrypoint_num_cpus": cpus,
        "entrypoint_num_gpus": gpus,
        "metadata": {"tool": "reprozoo", "command": shlex.join(command)},
    }
    # A head node just started (`ray start`, a restarted cluster) answers before its job agent is up: Ray
    # says "try again later", so do, for a while, rather than fail a scheduled job on a cold cluster.
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    while True:
        try:
            return jobs, jobs.submit_job(**request)
        except RuntimeError as error:
            if NO_AGENT not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def follow(jobs: JobSubmissionClient, job_id: str) -> JobStatus:
    """Stream the job's logs to stdout until it ends; return its final status."""

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(tail())
    while not (
        status := jobs.get_job_status(job_id)
    ).is_terminal():  # the log stream can close just before the status flips
        time.sleep(0.5)
    return status


def known(jobs: JobSubmissionClient, job_id: str) -> str:
    try:
        jobs.get_job_info(job_id)
    except RuntimeError:
        raise SubmitError(f"job {job_id}: not found on this cluster; `ray job list` shows the ids") from None
    return job_id


def manage(address: str | None, *, status: str | None, logs: str | None, stop: str | None) -> list[str]:
    """`--status`, `--logs`, `--stop` on jobs already submitted: what to print, in that order."""
    jobs, out = client(address), []
    if status:
        out.append(jobs.get_job_status(known(jobs, status)).value + "\n")
    if logs:
        out.append(jobs.get_job_logs(known(jobs, logs)))
    if stop:
        out.append(
            f"{stop}: {'stop requested' if jobs.stop_job(known(jobs, stop)) else 'already finished'}\n"
        )
    return out
