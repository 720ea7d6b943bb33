"""Every paper and dataset is wired everywhere: registry ↔ params.yaml ↔ tests ↔ dvc.yaml ↔ paths.py."""

import re

import pytest
import yaml

from datamodules import DATASETS
from lightning_modules import PAPERS
from lightning_modules.paper import Paper, PaperModule, monitor, with_defaults
from pipelines import paths
from pipelines.config import load_params
from tests.helpers import ROOT, repository_params

TESTS = ROOT / "tests"


def test_every_paper_is_wired_everywhere():
    params = load_params(ROOT / "params.yaml")
    assert set(PAPERS) <= set(params.papers)  # each paper's main experiment has its key
    assert {section.paper for section in params.papers.values()} == set(PAPERS)
    for key, section in params.papers.items():
        assert section.dataset in DATASETS and key.startswith(section.paper)
    for key, module in PAPERS.items():
        assert module.paper.key == key
        assert module.paper.dataset in DATASETS
        assert (TESTS / "papers" / f"test_{key}.py").exists()
        assert (ROOT / "lightning_modules" / f"{key}.py").exists()
        assert (ROOT / paths.recipes(key)).exists()  # its experiments' recipes
        for claim in module.paper.claims:
            # a test-pass number, or one read off the curves (`curve_metrics`, as a paper reads a figure)
            assert re.fullmatch(r"(test|curve)/[a-z0-9_]+", claim.metric), claim.metric
            assert claim.tolerance >= 0
            assert claim.dataset is None or claim.dataset in DATASETS, claim.metric
        named = module.paper.primary_metric
        assert named is None or named in {c.metric for c in module.paper.claims}, (
            f"{key}: primary_metric {named}"
        )
    assert {path.stem for path in (ROOT / paths.RECIPES).glob("*")} == set(PAPERS)  # no file of no paper


def test_every_dataset_is_wired_everywhere():
    params = load_params(ROOT / "params.yaml")
    assert set(DATASETS) == set(params.datasets)
    for name, cls in DATASETS.items():
        assert cls.name == name
        assert (TESTS / "datamodules" / f"test_{name}.py").exists()
        assert (ROOT / "datamodules" / f"{name}.py").exists()


def test_dvc_yaml_paths_agree_with_paths_module():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    key = "KEY"
    fill = lambda text: text.replace("${key}", key)
    assert fill(stages["fetch"]["do"]["outs"][0]) == str(paths.raw(key))
    assert fill(stages["shard"]["do"]["outs"][0]) == str(paths.shards(key))
    assert fill(next(iter(stages["train"]["do"]["outs"][0]))) == str(paths.model_dir(key))
    assert fill(next(iter(stages["evaluate"]["do"]["metrics"][0]))) == str(paths.metrics(key))
    assert stages["report"]["outs"] == [
        str(paths.REPORT_MD),
        str(paths.REPORT_PNG),
        str(paths.REPORT_FIGURES),
    ]
    for verb in ("fetch", "shard", "train", "evaluate"):
        assert (
            stages[verb]["do"]["cmd"] == f"reprozoo {verb} ${{key}}"
        )  # only the key: values come from params


PARAMS = load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("key", list(PARAMS.papers))
def test_every_experiment_meets_the_paper_contract(key):
    """What the verbs read of a paper (its claims, monitor, exportability) is there for every experiment's
    recipe, without building the model."""
    recipe = PARAMS.recipe(key)
    cls = PAPERS[recipe.paper]
    assert isinstance(cls, PaperModule), f"{cls.__name__} does not meet lightning_modules.paper.PaperModule"
    assert isinstance(cls.paper, Paper) and isinstance(cls.exportable, bool)
    assert not hasattr(cls, "figures") or callable(cls.figures)
    for profile in ("smoke", "paper"):
        metric, mode = monitor(cls, PARAMS.recipe(key, profile).hparams)
        assert re.fullmatch(r"val/[a-z0-9_]+", metric) and mode in ("min", "max"), (metric, mode)


@pytest.mark.parametrize("key", list(PARAMS.papers))
def test_every_experiment_has_a_tune_setup(key):
    """`reprozoo tune <key> --dry-run` resolves: a space (written or the paper's default), a metric, rungs."""
    from pipelines.tune import plan, search_space

    resolved = plan(PARAMS, key)
    assert resolved.settings.space and search_space(resolved.settings)
    assert resolved.metric.startswith("val/") and resolved.mode in ("min", "max") and resolved.rungs >= 1


def restates(value, default) -> bool:
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else v
    value, default = as_list(value), as_list(default)
    if isinstance(value, float) or isinstance(default, float):
        return (
            isinstance(value, (int, float))
            and isinstance(default, (int, float))
            and abs(value - default) <= 1e-12
        )
    return value == default


@pytest.mark.parametrize("key", list(PARAMS.papers))
def test_each_recipe_has_one_home(key):
    """A paper's recipe is its class's defaults; recipes/ names only what an experiment changes (a variant,
    or the smoke profile), so the two can never disagree about what runs."""
    section = repository_params()["papers"][key]
    defaults = with_defaults(PAPERS[section["paper"]], {})
    written = section.get("hparams") or {}
    for name, value in written.items():
        assert not restates(value, defaults[name]), (
            f"papers.{key}.hparams.{name} restates the code's {value!r}"
        )
    for name, value in ((section.get("smoke") or {}).get("hparams") or {}).items():
        assert not restates(value, written.get(name, defaults[name])), f"papers.{key}.smoke.hparams.{name}"
