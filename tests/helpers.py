"""What tests share besides fixtures: the repository root, tiny params derived from the real params.yaml, a
project folder with its data fetched and sharded by the real stages, a copy of the repository for DVC, the CLI
run as DVC runs it."""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from pipelines import paths
from pipelines.params_files import NAMED_IN_PARAMS, has_file, read_tree

ROOT = Path(__file__).resolve().parents[1]


# Shrinks the smoke profile further: a 40-character replica, a few steps, a few test episodes.
TINY = {
    "datasets": {
        "omniglot": {"synthetic": {"alphabets": 4, "characters": 10, "drawers": 20}, "shard_size": 200},
        "omniglot_lake": {"synthetic": {"alphabets": 4, "characters": 20, "runs": 2}, "shard_size": 200},
        "cifar10": {"synthetic": {"train": 100, "test": 20}},
        "imagenet": {"synthetic": {"classes": 3, "train_per_class": 8, "val_per_class": 2}},
        "voc": {"synthetic": {"voc2007_trainval": 12, "voc2007_test": 4, "voc2012_trainval": 12}},
        "coco": {"synthetic": {"train": 6, "val": 4}},
        "camvid": {"synthetic": {"train": 2, "val": 1, "test": 1}},
        "lfw": {"synthetic": {"people": 40, "pairs_per_fold": 1, "dev_pairs": 2}},
        "associative_retrieval": {"synthetic": {"train": 2000, "val": 200, "test": 200}},
    },
    "papers": {
        **{
            key: {"smoke": {"hparams": {"adversarial_images": 3}}}
            for key in (
                "intriguing",
                "intriguing_fc10",
                "intriguing_fc10_wd2",
                "intriguing_fc10_wd0",
                "intriguing_ae400",
            )
        },
        # The costs that are the recipe's own, not the code's: L-BFGS's VGG passes, pixel-by-pixel sampling
        "neural_style": {"smoke": {"hparams": {"size": 32, "iterations_per_step": 2}, "data": {"size": 32}}},
        **{key: {"smoke": {"hparams": {"layers": 1}}} for key in ("pixelcnn", "pixelcnn_cifar10")},
        "protonets": {
            "smoke": {
                "data": {"train_way": 5, "val_episodes": 4, "test_query": 5, "test_episodes": 10},
                "trainer": {
                    "max_steps": 20,
                    "val_check_interval": 10,
                    "checkpoint_every_n_steps": 10,
                    "log_every_n_steps": 5,
                },
            }
        },
    },
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@functools.cache
def repository_params() -> dict:
    """The repository's settings as one tree (params.yaml with each experiment's recipe from recipes/ merged
    in), read once; callers get deep copies through `merge`."""
    return read_tree(ROOT / paths.PARAMS)[0]


def tiny_params(**override) -> dict:
    return merge(merge(repository_params(), TINY), override)


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[Path]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(previous)


# Where this session's scratch files go (pytest's base temp folder, one per xdist worker): set by conftest.
SCRATCH: dict[str, Path] = {}


def empty_mlflow_store() -> Path:
    """An MLflow sqlite store with its tables made, once per session: MLflow makes a new store's tables by
    running its ~50 schema migrations (0.9 s), which every test that trains in a project of its own would pay
    again. The store tests (test_concurrency, test_faults' unwritable stores) make theirs."""
    path = SCRATCH["folder"] / "empty-mlflow.db"
    if not path.exists():
        from mlflow.tracking import MlflowClient

        made = path.with_suffix(".making")
        MlflowClient(f"sqlite:///{made}").search_experiments()
        made.rename(path)
    return path


def split_params(params: dict) -> dict[Path, dict]:
    """A tree as `repository_params()` gives it, as the files that hold it: params.yaml naming each
    experiment's paper and dataset, and recipes/<paper>.yaml the rest of its section. An entry without a
    paper that could have a file stays whole in params.yaml, for validation to reject."""
    params, files = copy.deepcopy(params), {}
    entries = params.get("papers")
    for key, entry in entries.items() if isinstance(entries, dict) else ():
        if isinstance(entry, dict) and has_file(entry.get("paper")):
            named = {name: entry.pop(name) for name in NAMED_IN_PARAMS if name in entry}
            files.setdefault(paths.recipes(named["paper"]), {"papers": {}})["papers"][key] = entry
            params["papers"][key] = named
    return {paths.PARAMS: params, **files}


def write_params(project: Path, params: dict) -> Path:
    """`params` (one tree) as the project's params.yaml and recipes/ (`split_params`); where they keep
    MLflow's default store (mlflow.db in the project) and there is none yet, the project's starts as a copy
    of `empty_mlflow_store()`."""
    project.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(project / paths.RECIPES, ignore_errors=True)  # no recipe left from an earlier write
    for path, values in split_params(params).items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(yaml.safe_dump(values, sort_keys=False))
    store = project / "mlflow.db"
    default = params.get("mlflow", {}).get("tracking_uri") == "sqlite:///mlflow.db"
    if default and "folder" in SCRATCH and not store.exists():
        shutil.copyfile(empty_mlflow_store(), store)
    return project


def project_environment() -> dict[str, str]:
    """A project copy's commands (dvc, reprozoo) as a shell in the venv finds them, running this checkout's
    code."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}


def run_in(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 1200
) -> subprocess.CompletedProcess:
    """A command (`dvc …`, `reprozoo …`) in a project copy, with `project_environment()` under `env`."""
    env = {**project_environment(), **(env or {})}
    return subprocess.run(args, cwd=project, capture_output=True, text=True, env=env, timeout=timeout)


def intervals(project: Path, keys: list[str]) -> dict[str, tuple[int, int]]:
    """Each training's MLflow run in the project: when it started and ended (its own clock, not the driver's
    that scheduled it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    found = {}
    for key in keys:
        (run,) = client.search_runs([client.get_experiment_by_name(key).experiment_id])
        found[key] = (run.info.start_time, run.info.end_time)
    return found


def unpinned() -> None:
    """A child's CPU affinity back to the whole machine (a pytest-xdist worker is pinned to one core), as
    `dvc repro` runs outside the tests: torch's thread count changes the last bits of a float sum."""
    os.sched_setaffinity(0, range(os.cpu_count() or 1))


def as_make_repro() -> dict[str, str]:
    """The environment `make repro` gives a stage: the cores ÷ the Makefile's JOBS threads (with `unpinned`,
    on the whole machine). The committed smoke baseline comes from `make repro`, and torch's thread count
    moves the last bits of a float sum."""
    from pipelines.processes import cpu_threads

    jobs = int(re.search(r"^JOBS \?= (\d+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1))
    return {"OMP_NUM_THREADS": str(cpu_threads(jobs, os.cpu_count() or 1))}


def cli(
    project: Path,
    *args: str,
    check: bool = True,
    timeout: int = 600,
    preexec: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m pipelines ARGS` in `project`, as DVC would; `preexec` runs in the child before it starts
    (a resource limit, or `unpinned`); `env` over this process's environment."""
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
        preexec_fn=preexec,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"reprozoo {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


# What `dvc repro` needs of the repository, for tests that run the real pipeline in a copy.
PROJECT_FILES = (
    "dvc.yaml",
    "pyproject.toml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    "pipelines",
    "results",
    "deps",
    "lightning_modules",
    "datamodules",
)


def copy_repository(target: Path) -> Path:
    """A copy of the repository's pipeline files (no data, caches or tracking store), a git repo as DVC
    wants."""
    for name in PROJECT_FILES:
        source, destination = ROOT / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            # deps/ holds relative links into the copy's own code, which must stay links
            shutil.copytree(source, destination, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, destination)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    return target


def synthetic_shards(cls: type, root: Path, **synthetic) -> Path:
    """A dataset's replica, written by its synthesize() and sharded by the real shard code; returns the
    shards."""
    from datamodules.shards import write_dataset

    raw, out = root / "raw", root / "shards"
    cls.synthesize(raw, 0, **synthetic)
    write_dataset(cls, raw, out, source={"source": "synthetic"}, shard_size=50)
    return out


def fetched_project(project: Path, *datasets: str) -> Path:
    """A project folder with tiny params and `datasets` fetched and sharded by the real stages."""
    from pipelines.config import load_params
    from pipelines.fetch import fetch_dataset
    from pipelines.shard import shard_dataset

    write_params(project, tiny_params())
    with chdir(project):
        params = load_params()
        for dataset in datasets:
            fetch_dataset(params, dataset)
            shard_dataset(params, dataset)
    return project
