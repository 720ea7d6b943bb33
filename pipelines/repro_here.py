"""`reprozoo repro --jobs N`: the stale stages in this workspace, N at a time, without Ray or a remote.

DVC runs each one (`dvc --wait-for-lock repro --single-item <stage>`). It holds the repository's lock only
around a stage's command (to check the stage and clear its outputs before, to hash, cache and record them
after) and releases it while the command runs, so stages that do not read one another run side by side and
dvc.lock is written as a sequential `dvc repro` writes it. Each stage gets the cores ÷ N threads: two torch
processes of two threads each on two cores thrash. A stage's output goes to .dvc/tmp/reprozoo/<stage>.log.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.processes import cpu_threads, dvc_command

LOGS = Path(".dvc/tmp/reprozoo")
POLL_S = 0.2


@dataclass(eq=False)  # a handle: hashed by identity
class Running:
    stage: str
    process: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)


def starter(root: Path, jobs: int, env: dict[str, str]):
    """`start(stage)` for `drive`: the stage's `dvc repro` in the background, its output in its log."""
    threads = {"OMP_NUM_THREADS": str(cpu_threads(jobs))}

    def start(stage: str) -> Running:
        log = root / LOGS / f"{stage.replace('@', '-')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command, environment = dvc_command(
            ("--wait-for-lock", "repro", "--single-item", stage), {**env, **threads}
        )
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
