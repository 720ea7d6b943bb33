"""What lets `reprozoo repro` try a stage again after its worker died, here or on another node.

- A worker that dies (the OOM killer, a killed process) leaves its stage's processes running: Ray does not
  kill a crashed worker's children. They would hold DVC's lock and the training's, and train on beside the
  retry. Every process of a stage runs in its checkout, so any found there when a try starts is an earlier
  try's, and is stopped.
- A train stage's last.ckpt and run.json are mirrored to the DVC remote (`<remote>/reprozoo-resume/<commit>/
  <stage>/`) whenever last.ckpt changes. A try in a checkout without them (another node, or a node whose disk
  was lost) takes them from there, and `reprozoo train` resumes the same run from the same step. The mirror
  is removed once the stage is done: its outputs and lock entry take over.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

MIRROR_EVERY_S = 2.0  # how often the mirror looks at last.ckpt (a checkpoint is minutes apart in a real run)
MIRRORED = ("run.json", "last.ckpt")  # the record first: a last.ckpt is only resumed beside its record


def stop_earlier_tries(checkout: Path) -> list[int]:
    """Kill every process whose working folder is in `checkout`; the pids killed."""
    import psutil

    found, checkout = [], checkout.resolve()
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info["cwd"]  # None for another user's process
        if cwd and Path(cwd).is_relative_to(checkout):
            found.append(process)
    for process in found:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(found, timeout=30)
    return [process.pid for process in found]


def remote_folder(checkout: Path, commit: str, stage: str):
    """The DVC remote's filesystem (its credentials and endpoint as DVC has them) and this stage's folder."""
    from dvc.repo import Repo

    with Repo(str(checkout)) as repo:
        remote = repo.cloud.get_remote()
    return remote.fs, remote.fs.join(remote.path, "reprozoo-resume", commit[:12], stage.replace("@", "-"))


def restore(fs, folder: str, model_dir: Path) -> bool:
    """The mirrored run into a checkout that has none; whether there was one."""
    if (model_dir / "last.ckpt").exists() or not all(fs.exists(fs.join(folder, n)) for n in MIRRORED):
        return False
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MIRRORED:
        fs.get_file(fs.join(folder, name), str(model_dir / name))
    return True


def upload(fs, folder: str, model_dir: Path) -> None:
    """Each file under a temporary name, then moved: a mirror cut mid-copy keeps the previous whole one."""
    fs.makedirs(folder, exist_ok=True)
    for name in MIRRORED:
        partial = fs.join(folder, f"{name}.partial")
        fs.put_file(str(model_dir / name), partial)
        fs.mv(partial, fs.join(folder, name))


def watch(fs, folder: str, model_dir: Path, stop: threading.Event) -> None:
    seen = None
    while not stop.wait(MIRROR_EVERY_S):
        last = model_dir / "last.ckpt"
        try:
            now = (last.stat().st_mtime_ns, last.stat().st_size)
        except FileNotFoundError:
            continue
        if now != seen and (model_dir / "run.json").exists():
            with contextlib.suppress(FileNotFoundError):  # replaced between the look and the copy: next time
                upload(fs, folder, model_dir)
                seen = now


@contextlib.contextmanager
def mirrored(checkout: Path, commit: str, stage: str):
    """Around a try of `stage`: a train stage's run restored from the remote when this checkout has none,
    mirrored there while it runs, and the mirror removed when the try succeeds. Yields whether it restored."""
    verb, _, key = stage.partition("@")
    if verb != "train":
        yield False
        return
    fs, folder = remote_folder(checkout, commit, stage)
    model_dir = checkout / "models" / key
    restored = restore(fs, folder, model_dir)
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(fs, folder, model_dir, stop), daemon=True)
    watcher.start()
    try:
        yield restored
    finally:
        stop.set()
        watcher.join()
    if fs.exists(folder):
        fs.rm(folder, recursive=True)
