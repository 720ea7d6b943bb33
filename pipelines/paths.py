"""Every on-disk path, derived from a key. dvc.yaml is the only other place these appear
(tests/test_registry.py checks that the two agree). Relative to the repo root, where DVC runs stages."""

from pathlib import Path

PARAMS = Path("params.yaml")
# recipes/<paper>.yaml: the settings of that paper's experiments (pipelines/params_files.py)
RECIPES = Path("recipes")
REPORT_MD = Path("reports/reproductions.md")
REPORT_PNG = Path("reports/reproductions.png")
REPORT_FIGURES = Path("reports/figures")  # each evaluated run's figures, copied from MLflow
TUNE_RUNS = Path("ray_results")  # Tune's experiment folders: trial checkpoints, results (not DVC's)
TIMINGS = Path("reports/timings")  # wall times `make` and `reprozoo repro` record for `reprozoo bench`
STAGE_TIMES = TIMINGS / "stages.json"  # each stage's, as `reprozoo repro` last ran it


def recipes(paper: str) -> Path:
    return RECIPES / f"{paper}.yaml"


def raw(dataset: str) -> Path:
    return Path("data/raw") / dataset


def downloads(dataset: str) -> Path:
    """Archives kept between runs so an interrupted download resumes; not a DVC output."""
    return Path("data/downloads") / dataset


def shards(dataset: str) -> Path:
    return Path("data/shards") / dataset


def model_dir(experiment: str) -> Path:
    return Path("models") / experiment


def train_lock(experiment: str) -> Path:
    """Held while `reprozoo train <experiment>` runs; beside models/<experiment>, which is DVC's to delete."""
    return Path("models/.locks") / f"{experiment}.lock"


def run_record(experiment: str) -> Path:
    return model_dir(experiment) / "run.json"


def metrics(experiment: str) -> Path:
    return Path("metrics") / f"{experiment}.json"


def tune_report(experiment: str) -> Path:
    """The last sweep's best configuration and every trial's outcome."""
    return Path("reports/tune") / f"{experiment}.json"
