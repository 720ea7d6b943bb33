"""Shared fixtures: tiny params derived from the real params.yaml, and synthetic Omniglot shards made by
the real fetch → shard path (session-scoped, so every test reads the same few hundred drawings)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import chdir, fetched_project, synthetic_shards, tiny_params, write_params


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Path]) -> Path:
    """`build(folder)` run once a session, by the first pytest-xdist worker to ask, into a folder the others
    then read (the workers' base temps share a parent): every dataset a fixture makes is made once a run, not
    once a worker (the all_data project alone takes a worker 20 s). Returns what `build` returned."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    folder, made = tmp_path_factory.getbasetemp().parent / name, f"{name}.made"
    with FileLock(folder.with_name(f"{name}.lock")):  # the other workers wait for the first one's build
        if not folder.with_name(made).exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed midway left
            folder.mkdir()
            folder.with_name(made).write_text(str(build(folder).relative_to(folder)))
    return folder / folder.with_name(made).read_text()


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs one worker per core), each worker is pinned to a core of its
    own: every torch process a test starts (training, DDP ranks, DVC's stages, Ray) then sizes its threads
    to that core (pipelines.processes.usable_cores), so two workers never thrash two cores."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker and 1 < count <= len(cores):
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})


@pytest.fixture(scope="session", autouse=True)
def scratch(tmp_path_factory) -> Path:
    """The session's scratch folder for tests.helpers (its empty MLflow store)."""
    helpers.SCRATCH["folder"] = tmp_path_factory.getbasetemp()
    return helpers.SCRATCH["folder"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Slow tests first (stable otherwise): xdist hands tests out in this order, so the long ones start early
    and the short ones fill the gaps instead of one worker finishing a long test alone.

    And `--dist loadgroup` made to work: xdist 3.8 tags a grouped test by assigning `item._nodeid`, which
    pytest 9 no longer reads (its node ids live in `item._id`), so every group was silently split across
    workers (a shared DVC project built twice, two Ray clusters at once). The same tag, where pytest 9 keeps
    it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers under --dist loadgroup
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        if (mark := item.get_closest_marker("xdist_group")) and "@" not in item.nodeid:
            group = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
            item._id = coerce_node_id(f"{item.nodeid}@{group}")


@pytest.fixture(scope="session")
def omniglot_project(tmp_path_factory) -> Path:
    """A project folder with tiny params and fetched + sharded synthetic Omniglot."""
    return built_once(tmp_path_factory, "omniglot", lambda folder: fetched_project(folder, "omniglot"))


@pytest.fixture(scope="session")
def omniglot_shards(omniglot_project) -> Path:
    return omniglot_project / "data" / "shards" / "omniglot"


@pytest.fixture
def project(tmp_path, omniglot_project) -> Iterator[Path]:
    """A fresh project folder (cwd) that reuses the session's raw data and shards through symlinks."""
    write_params(tmp_path, tiny_params())
    (tmp_path / "data").mkdir()
    for part in ("raw", "shards"):
        (tmp_path / "data" / part).symlink_to(omniglot_project / "data" / part)
    with chdir(tmp_path):
        yield tmp_path


@pytest.fixture(scope="session")
def served(tmp_path_factory, omniglot_project) -> Iterator[tuple[str, str, Path, int]]:
    """`reprozoo ui` serving a project whose store holds a smoke-trained and evaluated protonets: its URL, the
    first line it printed, the project and the server's pid. One server a session (it takes ~20 s to start),
    shared by the tests that look at it (xdist_group "ui")."""
    import signal
    import subprocess
    import sys
    import threading

    from pipelines.config import load_params
    from pipelines.evaluate import evaluate_experiment
    from pipelines.train import train_experiment
    from tests.browser import free_port, wait_for_http
    from tests.helpers import ROOT

    project = write_params(tmp_path_factory.mktemp("served"), tiny_params())
    (project / "data").mkdir()
    for part in ("raw", "shards"):
        (project / "data" / part).symlink_to(omniglot_project / "data" / part)
    with chdir(project):
        params = load_params()
        train_experiment(params, "protonets")
        evaluate_experiment(params, "protonets")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "ui", "--port", str(port)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own group: the server's workers go with it
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", timeout=90)
        first = server.stdout.readline()
        # Drain the rest: an unread pipe would block the server once 64 KB of its logs fill it.
        threading.Thread(target=server.stdout.read, daemon=True).start()
        yield url, first, project, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def all_data(tmp_path_factory) -> Path:
    """A project with every dataset fetched and sharded at the tiny size (about 20 s)."""
    return built_once(tmp_path_factory, "all", every_dataset)


def every_dataset(project: Path) -> Path:
    from pipelines.config import load_params
    from pipelines.fetch import fetch_dataset
    from pipelines.shard import shard_dataset

    write_params(project, tiny_params())
    with chdir(project):
        params = load_params()
        for name in sorted({section.dataset for section in params.papers.values()}):
            fetch_dataset(params, name)
            shard_dataset(params, name)
    return project


@pytest.fixture(scope="session")
def imagenet_shards(tmp_path_factory) -> Path:
    from datamodules.imagenet import ImageNet

    return built_once(
        tmp_path_factory,
        "imagenet",
        lambda folder: synthetic_shards(ImageNet, folder, classes=4, train_per_class=30, val_per_class=10),
    )


@pytest.fixture(scope="session")
def wikitext_shards(tmp_path_factory) -> Path:
    """The replica: real English text from the standard library's documentation, with its WordPiece
    vocabulary."""
    from datamodules.wikitext103 import WikiText103

    return built_once(tmp_path_factory, "wikitext103", lambda folder: synthetic_shards(WikiText103, folder))


@pytest.fixture(scope="session")
def mnist_shards(tmp_path_factory) -> Path:
    """The bundled real digits."""
    return built_once(tmp_path_factory, "mnist", bundled_mnist)


def bundled_mnist(root: Path) -> Path:
    from datamodules.mnist import MNIST
    from datamodules.shards import write_dataset

    MNIST.bundled(root / "raw")
    write_dataset(MNIST, root / "raw", root / "shards", source={"source": "bundled"}, shard_size=1000)
    return root / "shards"


@pytest.fixture(scope="session")
def lfw_shards(tmp_path_factory) -> Path:
    from datamodules.lfw import LFW

    return built_once(
        tmp_path_factory,
        "lfw",
        lambda folder: synthetic_shards(LFW, folder, people=60, pairs_per_fold=6, dev_pairs=10),
    )


@pytest.fixture(scope="session")
def cifar10_shards(tmp_path_factory) -> Path:
    from datamodules.cifar10 import CIFAR10

    return built_once(
        tmp_path_factory, "cifar10", lambda folder: synthetic_shards(CIFAR10, folder, train=600, test=200)
    )


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, so a result never depends on which tests ran before."""
    import pytorch_lightning as pl

    pl.seed_everything(0, verbose=False)
