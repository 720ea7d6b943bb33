"""Warm stages for `reprozoo repro --jobs`: torch, Lightning, MLflow, the verbs and every paper and dataset
imported once, in a server; each stage's `reprozoo` command a fork of it.

DVC still runs each stage as it always does (`dvc repro --single-item`, a shell, a `reprozoo` process). That
process, finding REPROZOO_WARM in its environment, connects to the server's Unix socket, passes its
arguments, folder, environment and standard streams, and waits. The server forks; the fork takes the
streams, folder and environment and runs the verb as the `reprozoo` process would have, then reports its
exit status. A stage so skips the 5–8 s of imports each of the smoke pipeline's 99 stages otherwise pays.

`reprozoo` runs in its own process, as without a server, when none answers (not started yet, or gone) and
when a project file changed since the server imported it: a stale server never runs old code. The fork
drops REPROZOO_WARM, so what it starts (DDP's ranks, a retry) starts cold, reading its own environment.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pipelines.imports import PACKAGES, ROOT

VARIABLE = "REPROZOO_WARM"
STREAMS = (0, 1, 2)  # stdin, stdout, stderr: passed as file descriptors, so output is the stage's own
# The stages' verbs (dvc.yaml's commands); the cli imports each only when called
VERBS = tuple(f"pipelines.{verb}" for verb in ("cli", "fetch", "shard", "train", "evaluate", "report"))
PROJECT = ("pipelines", *PACKAGES)  # the code a stage runs: a change to it sends the stage cold
# Imported on first use by every train and evaluate: MLflow's SQL store (SQLAlchemy, alembic), 1.2 s a stage
FIRST_USE = ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store")


# --- the client: the `reprozoo` process DVC starts ---


def delegate(argv: list[str]) -> int | None:
    """Run this command in a fork of the warm server, if one answers: its exit status; None to run here."""
    path = os.environ.get(VARIABLE)
    if not path:
        return None
    connection = socket.socket(socket.AF_UNIX)
    try:
        connection.connect(path)
    except OSError:  # not listening yet, or gone
        return None
    with connection:
        socket.send_fds(connection, [b"."], list(STREAMS))
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        reply(connection, request)
        replies = connection.makefile("rb")
        started = read(replies)
        if started is None or "cold" in started:
            return None
        pid = started["pid"]
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # DVC stopping the stage stops the fork
            signal.signal(number, lambda received, _: os.kill(pid, received))
        ended = read(replies)
        gone(pid)  # its files closed and exit handlers run, as when a process ends, before DVC hashes outputs
    if ended is None:
        print(f"reprozoo: the warm fork {pid} ended without an exit status (killed?)", file=sys.stderr)
        return 1
    return ended["exit"]


def reply(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def read(replies) -> dict | None:
    line = replies.readline()
    return json.loads(line) if line else None


def gone(pid: int) -> None:
    """Until `pid` has exited: the server's forks are reaped by the kernel (SIGCHLD ignored)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


# --- the server ---


def preload(modules: list[str]) -> dict[str, int]:
    """Import `modules`, by default what the stages import; returns the project's imported files with their
    modification times."""
    for name in modules or VERBS:
        importlib.import_module(name)
    if not modules:
        from datamodules import DATASETS
        from lightning_modules import PAPERS

        for registry in (DATASETS, PAPERS):
            dict(registry.items())  # resolves every lazy entry: imports each dataset's and paper's file
        for name in FIRST_USE:
            importlib.import_module(name)
        fill_caches()
    return project_files()


def fill_caches() -> None:
    """Fill once the process-wide caches each stage would otherwise fill anew in its fork: MLflow's map of
    installed packages to their modules (0.9 s: it reads every installed distribution's file list), which it
    checks a logged model's pip requirements against in every evaluate; and torch.export's machinery, which
    its first export imports and sets up (dynamo, fake tensors, the serializer: 1,332 modules; under
    `make repro` the evaluate stages' export phases went from 61.5 to 49.6 s, about 0.4 s a stage)."""
    from mlflow.utils import requirements_utils

    fill = getattr(requirements_utils, "_init_packages_to_modules_map", None)  # private: absent, skip it
    if fill is not None:
        fill()
    export_once()


def export_once() -> None:
    """Export and serialize a tiny net as evaluate exports a model (a dynamic batch), into memory."""
    import io

    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU()).eval()
    batch = torch.export.Dim.AUTO
    exported = torch.export.export(net, (torch.zeros(2, 1, 4, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, io.BytesIO())


def project_files() -> dict[str, int]:
    files = {}
    for module in list(sys.modules.values()):
        path = Path(getattr(module, "__file__", None) or "/")
        if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in PROJECT:
            files[str(path)] = path.stat().st_mtime_ns
    return files


def changed(files: dict[str, int]) -> list[str]:
    def modified(path: str) -> bool:
        try:
            return os.stat(path).st_mtime_ns != files[path]
        except FileNotFoundError:
            return True

    return [path for path in files if modified(path)]


def serve(path: Path, modules: list[str]) -> tuple[socket.socket, dict[str, int]]:
    """Accept stages until killed or until its standard input closes (`reprozoo repro` holds the other end of
    that pipe, and a driver killed outright closes it too). Returns only in a fork: the connection of the
    stage it is to run."""
    files = preload(modules)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped by the kernel, never zombies
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)
    print(f"warm: {len(sys.modules)} modules imported, serving on {path}", flush=True)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            sys.exit(0)  # its standard input, `reprozoo repro`'s pipe, closed: no stage will come
        if listener not in ready:
            continue
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the stage's own subprocesses are waited for
            return connection, files
        connection.close()


def run(connection: socket.socket, files: dict[str, int]) -> int:
    """In a fork: become the stage's `reprozoo` process and run its verb; its exit status."""
    _, streams, _, _ = socket.recv_fds(connection, 1, len(STREAMS))
    replies = connection.makefile("rb")
    request = read(replies)
    if stale := changed(files):
        command = " ".join(request["argv"][1:])
        print(f"warm: {stale[0]} changed since the server started: reprozoo {command} runs cold", flush=True)
        reply(connection, {"cold": stale[0]})
        return 0
    print(
        f"warm: fork {os.getpid()} runs reprozoo {' '.join(request['argv'][1:])} in {request['cwd']}",
        flush=True,
    )
    for target, stream in zip(STREAMS, streams, strict=True):
        os.dup2(stream, target)
        os.close(stream)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(VARIABLE, None)
    sys.argv = request["argv"]
    # As in the `reprozoo` script: click names the program, and DDP's launcher re-runs it, from argv[0]
    main_module = sys.modules["__main__"]
    main_module.__spec__ = main_module.__package__ = None
    import torch

    from pipelines.cli import main
    from pipelines.processes import usable_cores

    torch.set_num_threads(usable_cores())  # as a fresh process reads OMP_NUM_THREADS: the server's was read
    reply(connection, {"pid": os.getpid()})
    code = exit_status(main)
    sys.stdout.flush()
    sys.stderr.flush()
    reply(connection, {"exit": code})
    return code


def exit_status(call: Callable[[], None]) -> int:
    """What the interpreter would exit with after `call`: SystemExit's code, 1 for an uncaught error."""
    try:
        call()
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # printed as the interpreter prints it
        traceback.print_exc()
        return 1
    return 0


def end(status: int) -> None:
    """A fork's exit: the exit handlers (MLflow ending a run left open, loggers flushing), then out. The
    interpreter's own teardown of the server's 5,000 modules would take another 3 s of every stage."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    end(run(*serve(Path(sys.argv[1]), sys.argv[2:])))  # the socket, then modules to import (default: VERBS')
