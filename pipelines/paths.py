"""Every on-disk path, derived from a key. dvc.yaml is the only other place these appear
(tests/test_registry.py checks that the two agree). Relative to the repo root, where DVC runs stages."""

from pathlib import Path

PARAMS = Path("params.yaml")
REPORT_MD = Path("reports/reproductions.md")
REPORT_PNG = Path("reports/reproductions.png")
REPORT_FIGURES = Path("reports/figures")  # each evaluated run's figures, copied from MLflow
TUNE_RUNS = Path("ray_results")  # Tune's experiment folders: trial checkpoints, results (not DVC's)


def raw(dataset: str) -> Path:
    return Path("data/raw") / dataset


def downloads(dataset: str) -> Path:
    """Archives kept between runs so an interrupted download resumes; not a DVC output."""
    return Path("data/downloads") / dataset


def shards(dataset: str) -> Path:
    return Path("data/shards") / dataset


def model_dir(paper: str) -> Path:
    return Path("models") / paper


def train_lock(paper: str) -> Path:
    """Held while `reprozoo train <paper>` runs; beside models/<paper>, which is DVC's to delete."""
    return Path("models/.locks") / f"{paper}.lock"


def run_record(paper: str) -> Path:
    return model_dir(paper) / "run.json"


def metrics(paper: str) -> Path:
    return Path("metrics") / f"{paper}.json"


def tune_report(paper: str) -> Path:
    """The last sweep's best configuration and every trial's outcome."""
    return Path("reports/tune") / f"{paper}.json"
