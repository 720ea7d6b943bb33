"""`reprozoo repro --jobs N`: the stale stages in this workspace, N at a time, without Ray or a remote.

DVC runs each one (`dvc --wait-for-lock repro --single-item <stage>`). It holds the repository's lock only
around a stage's command (to check the stage and clear its outputs before, to hash, cache and record them
after) and releases it while the command runs, so stages that do not read one another run side by side and
dvc.lock is written as a sequential `dvc repro` writes it. Each stage gets the cores ÷ N threads: two torch
processes of two threads each on two cores thrash. A stage's output goes to .dvc/tmp/reprozoo/<stage>.log.
Each stage's `reprozoo` runs as a fork of one warm server that imported the libraries once
(pipelines/warm.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import warm
from pipelines.processes import cpu_threads, dvc_command

LOGS = Path(".dvc/tmp/reprozoo")
POLL_S = 0.2


@dataclass(eq=False)  # a handle: hashed by identity
class Running:
    stage: str
    process: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)


def threads(jobs: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(cpu_threads(jobs))}


@contextmanager
def warm_server(root: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The warm server (pipelines/warm.py) for the stages started inside: the variable that names it. Its
    output goes to .dvc/tmp/reprozoo/warm.log; it and any fork still running end with the block. Linux only:
    macOS's system libraries are not safe to fork once threads have touched them, so elsewhere stages start
    cold."""
    if sys.platform != "linux":
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="reprozoo-warm-"))  # mode 700: only this user's stages connect
    socket_path = folder / "socket"
    (root / LOGS).mkdir(parents=True, exist_ok=True)
    with (root / LOGS / "warm.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipelines.warm", str(socket_path)],
            cwd=root,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,  # the server ends when this closes, however this process ends
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the forks are in it
        )
    try:
        yield {warm.VARIABLE: str(socket_path)}
    finally:
        server.stdin.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def starter(root: Path, env: dict[str, str]):
    """`start(stage)` for `drive`: the stage's `dvc repro` in the background, its output in its log; `env`
    over this process's (the threads of `threads(jobs)`, the warm server)."""

    def start(stage: str) -> Running:
        log = root / LOGS / f"{stage.replace('@', '-')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command, environment = dvc_command(("--wait-for-lock", "repro", "--single-item", stage), env)
        with log.open("w") as out:
            process = subprocess.Popen(
                command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=environment
            )
        return Running(stage, process, log)

    return start


def wait(running: list[Running]) -> tuple[Running, dict | Exception]:
    """The first of `running` to end, with its result: its wall time, or its log's tail as the error."""
    while True:
        for handle in running:
            if handle.process.poll() is None:
                continue
            if handle.process.returncode:
                return handle, RuntimeError(handle.log.read_text(errors="replace")[-3000:])
            return handle, {"node": "here", "seconds": time.monotonic() - handle.started}
        time.sleep(POLL_S)
