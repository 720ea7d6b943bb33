"""The other processes reprozoo starts or joins: git, DVC from this environment, a local Ray or a cluster's,
and the free loopback ports that process groups (DDP, a browser, a test server) meet on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def changed_since_head(may_differ: tuple[str, ...], cwd: Path | None = None) -> tuple[str, list[str]]:
    """HEAD's commit and the tracked files that differ from it, but for those starting with `may_differ`:
    what a command that names a commit (publish) or runs it elsewhere (repro) refuses to start from."""
    status = git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    changed = [line[3:] for line in status.splitlines() if not line[3:].startswith(may_differ)]
    return git("rev-parse", "HEAD", cwd=cwd).strip(), changed


def dvc_command(args: tuple[str, ...], env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """DVC from this environment (the one `make` installed) with `args`, and the environment to run it in:
    `env` over this process's, with this environment's commands (`reprozoo`, which DVC's stages run) first on
    PATH."""
    binary = Path(sys.executable).with_name("dvc")
    environment = {**os.environ, **(env or {})}
    environment["PATH"] = f"{binary.parent}{os.pathsep}{environment.get('PATH', '')}"
    return [str(binary) if binary.exists() else "dvc", *args], environment


def dvc(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`dvc_command` run in `cwd` (default: the current folder), output captured."""
    command, environment = dvc_command(args, env)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environment)


def connect_ray(address: str | None, num_cpus: int | None) -> None:
    """A cluster's address (or RAY_ADDRESS, as inside `reprozoo submit`), else a local Ray on this machine."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    local = (
        {}
        if address
        else {
            "num_cpus": num_cpus,
            "include_dashboard": False,
            "runtime_env": {"env_vars": {"PYTHONPATH": str(CODE_ROOT)}},
        }
    )
    ray.init(address=address, log_to_driver=True, **local)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a test worker pinned to one core), which
    its children inherit, rather than every core of the machine; at most OMP_NUM_THREADS, which Ray sets to
    the CPUs a task or trial was given (two tasks on a node must not both take every core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    granted = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(granted)) if granted.isdigit() and int(granted) > 0 else cores


def cpu_threads(processes: int, cores: int | None = None) -> int:
    """Threads for each of `processes` torch processes sharing this process's cores: their sum is the core
    count (two processes of two threads each on two cores run each at a fraction of its speed)."""
    return max(1, (cores or usable_cores()) // max(1, processes))


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (Linux), else the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here (AVX2, AVX512, ...). Float sums run in another
    order on another CPU or capability, so a trained net's last bits, and its metrics, differ between them."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def numerics() -> dict[str, str]:
    """What a smoke run's numbers depend on besides the code, data and threads: two machines that agree on
    these compute the same numbers bit for bit."""
    return {"cpu": cpu_model(), "cpu_capability": cpu_capability()}


def hardware() -> dict[str, str]:
    """What a run ran on, as MLflow tags: a published number names its machine. `cores` is this process's
    share (its CPU affinity), which is what a wall time was measured with."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {
        **{f"hardware.{name}": value for name, value in numerics().items()},
        "hardware.cores": str(usable_cores()),
        "hardware.memory_gib": f"{memory / 2**30:.0f}",
        "hardware.gpu": ", ".join(gpus) or "none",
    }
