"""The warm server of `reprozoo repro --jobs` (pipelines/warm.py): a stage's `reprozoo` runs as a fork of it,
in the stage's folder, with the stage's streams and exit status; without a server, or with code
changed since it started, `reprozoo` runs in its own process."""

import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml

from pipelines import warm
from tests.helpers import ROOT, cli, tiny_params, write_params


def start_server(tmp_path, code=ROOT):
    """A warm server that imported the fetch verb only (the stages' whole set takes 7 s), from `code`'s
    packages; its socket, log and process."""
    path, log = tmp_path / "socket", tmp_path / "warm.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.warm", str(path), "pipelines.cli", "pipelines.fetch"],
            cwd=code,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), log.read_text()
    return path, log, process


@pytest.fixture
def server(tmp_path):
    path, log, process = start_server(tmp_path)
    yield path, log, process
    process.terminate()
    process.wait()


def test_a_stage_runs_in_a_fork_in_its_folder_with_its_streams(server, tmp_path):
    path, log, _ = server
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, tiny_params())

    done = cli(project, "fetch", "omniglot", env={warm.VARIABLE: str(path)})

    assert "fetched omniglot" in done.stdout  # the fork wrote to the stage's stdout
    assert any((project / "data/raw/omniglot").iterdir())  # in the stage's folder
    assert f"runs reprozoo fetch omniglot in {project}" in log.read_text()  # the server's fork ran it


def test_the_stages_error_and_exit_status_come_back(server, tmp_path):
    path, log, _ = server
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"profile": "smoke", "seed": "zero"}))

    failed = cli(tmp_path, "fetch", "omniglot", check=False, env={warm.VARIABLE: str(path)})

    assert failed.returncode == 2  # a user error, as `reprozoo` exits with it
    assert "seed: input should be a valid integer, got 'zero'" in failed.stderr  # on the stage's stderr
    assert f"runs reprozoo fetch omniglot in {tmp_path}" in log.read_text()


def test_code_changed_since_the_server_started_runs_cold(tmp_path):
    code = tmp_path / "code"  # a copy of the code, so that the test edits no file of the repository
    for package in warm.PROJECT:
        shutil.copytree(ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    path, log, process = start_server(tmp_path, code)
    try:
        edited = code / "pipelines" / "fetch.py"
        edited.write_text(edited.read_text() + "\n")

        done = cli(tmp_path, "--help", env={warm.VARIABLE: str(path)})

        assert "fetch" in done.stdout  # run, in a process of its own
        assert f"{edited} changed since the server started: reprozoo --help runs cold" in log.read_text()
        assert "runs reprozoo --help" not in log.read_text()
    finally:
        process.terminate()
        process.wait()


def test_without_a_server_reprozoo_runs_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.delenv(warm.VARIABLE, raising=False)
    assert warm.delegate(["reprozoo", "--help"]) is None
    monkeypatch.setenv(warm.VARIABLE, str(tmp_path / "nobody-listens"))
    assert warm.delegate(["reprozoo", "--help"]) is None


def test_a_file_changed_since_the_server_imported_it_is_noticed(tmp_path):
    kept, edited, deleted = (tmp_path / f"{name}.py" for name in ("kept", "edited", "deleted"))
    for path in (kept, edited, deleted):
        path.write_text("x = 1\n")
    files = {str(path): path.stat().st_mtime_ns for path in (kept, edited, deleted)}
    os.utime(edited, ns=(time.time_ns(), files[str(edited)] + 1_000_000))
    deleted.unlink()
    assert warm.changed(files) == [str(edited), str(deleted)]


def test_the_project_files_are_the_code_a_stage_runs():
    files = warm.project_files()
    assert str(ROOT / "pipelines" / "warm.py") in files
    assert all(path.startswith(str(ROOT)) and "/.venv/" not in path for path in files)


def test_a_fork_checks_a_models_requirements_without_reading_the_installed_packages_again(monkeypatch):
    """The server fills MLflow's package map once; a fork that logs a model then reads no distribution's files
    (0.9 s an evaluate stage)."""
    import importlib_metadata
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a fresh server
    warm.fill_caches()
    reads = []
    monkeypatch.setattr(importlib_metadata, "packages_distributions", lambda: reads.append(1) or {})
    requirements_utils.warn_dependency_requirement_mismatches([f"torch=={torch.__version__.split('+')[0]}"])
    assert not reads


def test_after_the_servers_export_a_forks_first_export_imports_nothing():
    """The server exports a tiny net once; a model exported after it (other layers, as evaluate exports a
    paper's net) imports no module of its own. In a fresh interpreter: this test process may have exported
    already."""
    script = """
import io, sys, torch
from pipelines import warm
warm.export_once()
before = set(sys.modules)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.LayerNorm(8), torch.nn.GELU())
batch = {0: torch.export.Dim.AUTO}
exported = torch.export.export(net.eval(), (torch.zeros(2, 1, 4, 4),), dynamic_shapes=(batch,))
torch.export.save(exported, io.BytesIO())
print(sorted(set(sys.modules) - before))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("stop", "status"),
    [(None, 0), (SystemExit(), 0), (SystemExit(3), 3), (SystemExit("bad"), 1), (ValueError("bad"), 1)],
)
def test_the_exit_status_is_the_interpreters(stop, status, capsys):
    def call():
        if stop is not None:
            raise stop

    assert warm.exit_status(call) == status
    if status == 1:
        assert "bad" in capsys.readouterr().err  # printed, as the interpreter prints it


def test_the_server_ends_when_reprozoo_repro_is_gone(server):
    """`reprozoo repro` holds the server's standard input: when that closes, however the driver ended (killed
    outright included), the server ends."""
    path, log, process = server
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_off_linux_stages_start_cold(tmp_path, monkeypatch):
    """Forking a process whose system libraries threads have touched is unsafe on macOS: no server there."""
    from pipelines import repro_here

    monkeypatch.setattr(sys, "platform", "darwin")
    with repro_here.warm_server(tmp_path, {}) as server:
        assert server == {}
    assert not (tmp_path / repro_here.LOGS / "warm.log").exists()
