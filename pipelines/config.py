"""params.yaml and recipes/<paper>.yaml, validated. Every verb calls `load_params()` first, so a wrong key,
type or value stops the run before any compute, with the file, the dotted path, the bad value and what is
allowed.

A paper's recipe (`hparams`) and data settings (`data`) are checked against the keyword-only signature of
its LightningModule and DataModule: the defaults and the allowed ranges live once, in code, next to the
paper, and the recipe files name only what the recipe sets.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from datamodules import DATASETS
from lightning_modules import PAPERS
from pipelines import paths
from pipelines.errors import ParamsError, UnknownKey
from pipelines.imports import training_code_hash
from pipelines.params_files import Reader, locate, read_tree
from pipelines.validation import check_kwargs, check_space, validate

PARTS = ("hparams", "data", "trainer")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MlflowParams(Strict):
    tracking_uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI in the environment wins
    artifact_location: str = "mlartifacts"  # where new experiments keep artifacts (a path or a URI)


class TrainerParams(Strict):
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: PositiveInt | Literal["auto"] = 1
    num_nodes: PositiveInt = 1
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"] = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = "32-true"
    max_steps: PositiveInt = 1000
    val_check_interval: PositiveInt = 500  # optimizer steps between validations
    limit_val_batches: PositiveInt | None = None
    checkpoint_every_n_steps: PositiveInt = 500  # how often last.ckpt is refreshed
    log_every_n_steps: PositiveInt = 50
    gradient_clip_val: float | None = Field(None, ge=0)
    # batches summed into one optimizer step: a paper's batch on a device that holds only a part of it
    accumulate_grad_batches: PositiveInt = 1
    deterministic: bool = True
    channels_last: bool = False  # NHWC weights and activations: faster convolutions on tensor cores
    compile: bool = False  # torch.compile the module (slow first steps, faster later ones)


class DatasetParams(Strict):
    source: Literal["synthetic", "generated", "download", "local", "bundled"] = (
        "synthetic"  # generated: a task defined by its generator
    )
    path: Path | None = None  # the existing copy, for source: local
    seed: int = 0  # the synthetic replica's seed
    shard_size: PositiveInt = 1000  # samples per tar shard
    on_error: Literal["raise", "skip"] = (
        "raise"  # an unreadable raw file stops the shard stage, or is counted
    )
    synthetic: dict[str, Any] = {}  # replica size, checked against the dataset's synthesize()


class Overrides(Strict):
    hparams: dict[str, Any] = {}
    data: dict[str, Any] = {}
    trainer: dict[str, Any] = {}


class Resources(Strict):
    cpu: float = Field(1, ge=0)
    gpu: float = Field(0, ge=0)


class TuneParams(Strict):
    """`reprozoo tune <key>`: a Ray Tune sweep. `space` maps `hparams.X`, `data.X` or `trainer.X` to one
    distribution: `{choice: [..]}`, `{grid: [..]}`, `{uniform: [lo, hi]}`, `{loguniform: [lo, hi]}`,
    `{randint: [lo, hi]}` (hi excluded)."""

    space: dict[str, dict[Literal["choice", "grid", "uniform", "loguniform", "randint"], list]] = {}
    num_samples: PositiveInt = 4  # with grid axes: samples of the whole grid
    metric: str | None = None  # a validation metric; default: the paper's `monitor`
    mode: Literal["min", "max"] | None = None  # default: the monitor's mode
    scheduler: Literal["asha", "fifo"] = "asha"  # asha stops weak trials at validation rungs
    grace_period: PositiveInt = 1  # validations every trial gets before ASHA may stop it
    reduction_factor: float = Field(2, gt=1)
    search: str = "random"  # or any name ray.tune.search.create_searcher knows (optuna, hyperopt, …)
    max_concurrent_trials: PositiveInt | None = None
    resources_per_trial: Resources = Resources()  # per worker when workers_per_trial > 1
    workers_per_trial: PositiveInt = 1  # > 1: each trial is a Ray Train DDP run of this many workers
    use_gpu: bool = False  # Ray Train workers each take a GPU
    max_failures: int = Field(1, ge=0)  # a trial whose worker dies restarts from its last checkpoint


class ExperimentParams(Overrides):
    paper: str  # the PAPERS key whose file this experiment runs
    dataset: str
    smoke: Overrides = Overrides()  # merged over the section only when profile: smoke
    tune: TuneParams = TuneParams()
    # What its train stage takes on a Ray cluster (`reprozoo repro`); default: a CPU, and the trainer's
    # devices as GPUs when it trains on GPUs
    resources: Resources | None = None


class Params(Strict):
    profile: Literal["smoke", "paper"] = "smoke"
    seed: int = 0
    mlflow: MlflowParams = MlflowParams()
    trainer: TrainerParams = TrainerParams()
    datasets: dict[str, DatasetParams]
    papers: dict[str, ExperimentParams]

    def experiment(self, key: str) -> ExperimentParams:
        """An experiment's section (papers.<key>): the key of its params, DVC stages, MLflow experiment and
        files."""
        if key not in self.papers:
            raise UnknownKey(f"papers.{key}: unknown experiment; known: {', '.join(sorted(self.papers))}")
        return self.papers[key]

    def dataset(self, key: str) -> DatasetParams:
        if key not in self.datasets:
            raise UnknownKey(f"datasets.{key}: unknown dataset; known: {', '.join(sorted(self.datasets))}")
        return self.datasets[key]

    def recipe(self, key: str, profile: str | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
        """The effective settings of one paper: its section, with the smoke block merged under profile smoke,
        then `overrides` (`{"hparams.lr": 0.01}`: a Tune trial's sample) over both."""
        section, profile = self.experiment(key), profile or self.profile
        smoke = section.smoke if profile == "smoke" else Overrides()
        trial = split_dotted(overrides or {}, f"papers.{key}.tune.space")
        layers = [("", section), ("smoke.", smoke), ("tune.space.", trial)]
        where = {
            part: {
                name: f"papers.{key}.{prefix}{part}"
                for prefix, layer in layers
                for name in getattr(layer, part)
            }
            for part in PARTS
        }
        merged = {
            part: {k: v for _, layer in layers for k, v in getattr(layer, part).items()} for part in PARTS
        }
        trainer = validate(
            TrainerParams,
            {**self.trainer.model_dump(), **merged["trainer"]},
            lambda name: where["trainer"].get(name, "trainer"),
        )
        hparams = check_kwargs(
            PAPERS[section.paper].__init__,
            merged["hparams"],
            lambda name: where["hparams"].get(name, f"papers.{key}.hparams"),
        )
        data = check_kwargs(
            DATASETS[section.dataset].__init__,
            merged["data"],
            lambda name: where["data"].get(name, f"papers.{key}.data"),
        )
        return Recipe(key, section.paper, section.dataset, profile, self.seed, hparams, data, trainer)


def split_dotted(values: dict[str, Any], where: str) -> Overrides:
    """`{"hparams.lr": 0.01}` → Overrides(hparams={"lr": 0.01}); any other prefix is an error naming
    `where`."""
    parts: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
    for dotted, value in values.items():
        part, _, name = dotted.partition(".")
        if part not in PARTS or not name:
            raise ParamsError(f"{where}.{dotted}: expected hparams.<name>, data.<name> or trainer.<name>")
        parts[part][name] = value
    return Overrides(**parts)


@dataclass(frozen=True)
class Recipe:
    key: str  # the experiment: the params section, DVC stage item, MLflow experiment, models/<key>
    paper: str  # the PAPERS key
    dataset: str
    profile: str
    seed: int
    hparams: dict[str, Any]
    data: dict[str, Any]
    trainer: TrainerParams

    def flat(self, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """`hparams.lr`-style keys, for MLflow params; `hparams` replaces the recipe's (e.g. the model's own,
        every default and data fact included)."""
        parts = {
            "hparams": self.hparams if hparams is None else hparams,
            "data": self.data,
            "trainer": self.trainer.model_dump(),
        }
        return {
            "paper": self.paper,
            "dataset": self.dataset,
            "profile": self.profile,
            "seed": self.seed,
            **{f"{part}.{name}": value for part, values in parts.items() for name, value in values.items()},
        }

    def fingerprint(self) -> str:
        """Changes whenever a setting or the code that shapes the trained weights changes (resuming across
        either is wrong)."""
        shape = {**self.flat(), "code": training_code_hash(self.paper, self.dataset)}
        return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_registries(params: Params) -> None:
    for name, dataset in params.datasets.items():
        if name not in DATASETS:
            raise UnknownKey(f"datasets.{name}: unknown dataset; known: {', '.join(sorted(DATASETS))}")
        cls = DATASETS[name]
        if dataset.source not in cls.sources:
            raise ParamsError(
                f"datasets.{name}.source: {name} has no {dataset.source!r} source; allowed: "
                f"{', '.join(cls.sources)}"
            )
        if dataset.source == "local" and dataset.path is None:
            raise ParamsError(
                f"datasets.{name}.path: required when source is 'local' (the folder of your copy)"
            )
        check_kwargs(cls.synthesize, dataset.synthetic, lambda _, name=name: f"datasets.{name}.synthetic")
    for key, paper in params.papers.items():
        if paper.paper not in PAPERS:
            raise UnknownKey(
                f"papers.{key}.paper: unknown paper {paper.paper!r}; known: {', '.join(sorted(PAPERS))}"
            )
        if paper.dataset not in params.datasets:
            raise ParamsError(
                f"papers.{key}.dataset: {paper.dataset!r} has no section under datasets; "
                f"known: {', '.join(sorted(params.datasets))}"
            )
        for profile in ("paper", "smoke"):
            params.recipe(key, profile)
        check_space(params, key)


def _check_no_credentials(params: Params) -> None:
    """params.yaml is committed and logged to every run: a password in a URI would travel with it. The message
    never repeats the value."""
    for name in ("tracking_uri", "artifact_location"):
        parsed = urllib.parse.urlsplit(getattr(params.mlflow, name))
        if parsed.username or parsed.password:
            raise ParamsError(
                f"mlflow.{name}: holds a user name or password (scheme://user:password@host); take it out "
                f"and set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY for S3) in the environment"
            )


def load_params(path: Path = paths.PARAMS, read: Reader | None = None) -> Params:
    """Read and validate params.yaml and its experiments' recipes/<paper>.yaml; raise ParamsError naming the
    file and the first bad dotted path. `read`: another source of the files (a commit's), by their path."""
    path = Path(path)
    raw, sources = read_tree(path, read)
    try:
        params = validate(Params, raw, lambda name: "")
        _check_no_credentials(params)
        _check_registries(params)
    except (ParamsError, UnknownKey) as error:  # each line named by the file it is written in
        raise type(error)(locate(str(error), path, sources)) from None
    for key, experiment in params.papers.items():
        if key not in sources:
            raise ParamsError(
                f"{path.parent / paths.recipes(experiment.paper)}: no section papers.{key}; params.yaml "
                f"lists the experiment {key!r} of paper {experiment.paper!r}, and its recipe goes there"
            )
    return params
