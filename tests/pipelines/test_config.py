"""params.yaml errors stop a verb before any compute, naming the dotted path, the value and what is
allowed."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.config import load_params
from pipelines.errors import ParamsError, UnknownKey
from pipelines.imports import dataset_code, paper_code, training_code_hash
from tests.helpers import ROOT, cli, tiny_params, write_params


def load(tmp_path, params) -> None:
    write_params(tmp_path, params)
    load_params(tmp_path / "params.yaml")


def test_the_shipped_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.profile == "smoke"
    smoke, paper = params.recipe("protonets", "smoke"), params.recipe("protonets", "paper")
    assert paper.data["train_way"] == 60 and smoke.data["train_way"] < 60  # the smoke block merges
    assert paper.hparams == smoke.hparams == {}  # the recipe is the class's defaults: nothing to change
    assert paper.trainer.max_steps == 20000 and smoke.trainer.max_steps < 1000


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"papers": {"protonets": {"hparams": {"lr": -1}}}},
            "papers.protonets.hparams.lr: input should be greater than 0, got -1",
        ),
        (
            {"papers": {"protonets": {"hparams": {"lrr": 0.1}}}},
            "papers.protonets.hparams.lrr: unknown key; allowed: hidden, in_channels, lr, lr_halve_every",
        ),
        (
            {"papers": {"protonets": {"smoke": {"data": {"shot": "five"}}}}},
            "papers.protonets.smoke.data.shot: input should be a valid integer",
        ),
        (
            {"papers": {"protonets": {"trainer": {"max_steps": 0}}}},
            "papers.protonets.trainer.max_steps: input should be greater than 0, got 0",
        ),
        ({"trainer": {"precision": "8-bit"}}, "trainer.precision: input should be '32-true'"),
        ({"profile": "fast"}, "profile: input should be 'smoke' or 'paper', got 'fast'"),
        (
            {"papers": {"protonets": {"hparamz": {}}}},
            "papers.protonets.hparamz: unknown key; allowed: data, dataset, hparams, paper, resources, "
            "smoke, trainer, tune",
        ),
        (
            {"datasets": {"omniglot": {"source": "bundled"}}},
            "datasets.omniglot.source: omniglot has no 'bundled' source",
        ),
        (
            {"datasets": {"omniglot": {"source": "local"}}},
            "datasets.omniglot.path: required when source is 'local'",
        ),
        (
            {"datasets": {"omniglot": {"synthetic": {"alphabets": -2}}}},
            "datasets.omniglot.synthetic.alphabets: input should be greater than 0",
        ),
        (
            {"papers": {"protonets": {"dataset": "omniglotz"}}},
            "papers.protonets.dataset: 'omniglotz' has no section under datasets",
        ),
    ],
)
def test_a_bad_value_names_its_dotted_path(tmp_path, override, message):
    with pytest.raises(ParamsError) as error:
        load(tmp_path, tiny_params(**override))
    assert message in str(error.value)


def test_an_unknown_paper_lists_the_known_ones(tmp_path):
    params = tiny_params()
    params["papers"]["protonet"] = params["papers"].pop("protonets")
    params["papers"]["protonet"]["paper"] = "protonet"
    with pytest.raises(
        UnknownKey, match="params.yaml: papers.protonet.paper: unknown paper 'protonet'; known: .*protonets"
    ):
        load(tmp_path, params)


def test_broken_yaml_and_missing_file_are_named(tmp_path):
    (tmp_path / "params.yaml").write_text("papers: [unclosed\n")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.slow
def test_the_cli_prints_one_line_and_exits_2_before_any_compute(tmp_path):
    write_params(tmp_path, tiny_params(papers={"protonets": {"hparams": {"lr": -1}}}))
    result = cli(tmp_path, "train", "protonets", check=False)
    assert result.returncode == 2
    assert "papers.protonets.hparams.lr: input should be greater than 0, got -1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "models").exists()
    write_params(tmp_path, tiny_params())
    unknown = cli(tmp_path, "train", "resnet9000", check=False)  # the CLI lists params.yaml's experiments
    assert (
        unknown.returncode == 2
        and "'resnet9000' is not one of" in unknown.stderr
        and "'protonets'" in unknown.stderr
    )
    assert "Traceback" not in unknown.stderr


def test_recipe_fingerprint_changes_with_the_recipe():
    params = load_params(ROOT / "params.yaml")
    base = params.recipe("protonets")
    changed = params.model_copy(update={"seed": 1}).recipe("protonets")
    assert (
        base.fingerprint() != changed.fingerprint()
        and base.fingerprint() == params.recipe("protonets").fingerprint()
    )
    assert yaml.safe_dump(base.flat())  # MLflow params are plain values


def test_the_training_code_hash_follows_the_experiments_own_code(tmp_path):
    """The hash covers the paper's and dataset's import closure and the training verb, nothing else: an
    edit of another paper's file leaves it (DVC would not re-train, so evaluate must not refuse)."""
    files = {
        "lightning_modules/mine.py": "from lightning_modules.shared import f\n",
        "lightning_modules/shared.py": "f = 1\n",
        "lightning_modules/other.py": "g = 1\n",
        "datamodules/mnist.py": "x = 1\n",
        "datamodules/voc.py": "v = 1\n",
        "pipelines/train.py": "y = 1\n",
        "pipelines/runs.py": "w = 1\n",
        "pipelines/report.py": "z = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    before = training_code_hash("mine", "mnist", tmp_path)
    for unrelated in ("pipelines/report.py", "lightning_modules/other.py", "datamodules/voc.py"):
        (tmp_path / unrelated).write_text("changed = 2\n")
        assert training_code_hash("mine", "mnist", tmp_path) == before, unrelated
    for own in ("lightning_modules/shared.py", "datamodules/mnist.py", "pipelines/runs.py"):
        (tmp_path / own).write_text(files[own] + "# changed\n")
        after = training_code_hash("mine", "mnist", tmp_path)
        assert after != before, own  # a resumed run would mix two codes
        before = after


def test_the_fingerprints_code_is_what_the_train_stage_depends_on():
    """The same closure as deps/: what DVC watches for a train stage is what the fingerprint hashes."""
    from pipelines.deps import linked

    params = load_params(ROOT / "params.yaml")
    for key, section in params.papers.items():
        watched = linked(ROOT / "deps" / "papers" / section.paper) | linked(
            ROOT / "deps" / "datasets" / section.dataset
        )
        assert watched == paper_code(section.paper) | dataset_code(section.dataset), key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"papers": {"protonets": {"hparams": {"hidden": True}}}},
            "papers.protonets.hparams.hidden: input should",
        ),
        (
            {"papers": {"protonets": {"hparams": {"hidden": "64"}}}},
            "papers.protonets.hparams.hidden: input should",
        ),
        ({"trainer": {"max_steps": True}}, "trainer.max_steps: input should be a valid integer, got True"),
        ({"seed": "1"}, "seed: input should be a valid integer, got '1'"),
    ],
)
def test_values_are_never_coerced(tmp_path, override, message):
    """`true` is no number and "64" no integer: lax parsing would train with 1 and 64 and say nothing."""
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(write_params(tmp_path, tiny_params(**override)) / "params.yaml")


def shipped_files(tmp_path) -> Path:
    """The repository's params.yaml and recipes/, as written (comments, anchors), in `tmp_path`."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copyfile(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_an_exponent_without_a_dot_is_a_number_as_dvc_reads_it(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-5` as a string; DVC, and `dvc exp run -S` (writing `1e-05`), a number."""
    recipe = shipped_files(tmp_path) / "recipes/neural_style.yaml"
    recipe.write_text(recipe.read_text().replace("ratio: 1.0e-5}", "ratio: 1e-05}"))
    assert load_params(tmp_path / "params.yaml").recipe("neural_style", "smoke").hparams["ratio"] == 1e-5


def test_a_key_given_twice_is_named_with_both_lines(tmp_path):
    params = shipped_files(tmp_path) / "params.yaml"
    params.write_text(params.read_text().replace("seed: 0\n", "seed: 0\nseed: 1\n", 1))
    with pytest.raises(ParamsError, match=r"params.yaml: .*key 'seed' given twice, on lines \d+ and \d+"):
        load_params(params)
    recipe = tmp_path / "recipes/protonets.yaml"
    recipe.write_text(recipe.read_text().replace("      shot: 5\n", "      shot: 5\n      shot: 1\n", 1))
    params.write_text(params.read_text().replace("seed: 0\nseed: 1\n", "seed: 0\n", 1))
    with pytest.raises(ParamsError, match=r"recipes/protonets.yaml: .*key 'shot' given twice"):
        load_params(params)


def test_each_setting_is_named_in_the_file_it_is_written_in(tmp_path):
    """params.yaml lists the experiments (paper, dataset); recipes/<paper>.yaml holds each one's recipe."""
    with pytest.raises(
        ParamsError, match=r"/recipes/protonets.yaml: papers.protonets.hparams.lr: input should"
    ):
        load(tmp_path, tiny_params(papers={"protonets": {"hparams": {"lr": -1}}}))
    with pytest.raises(
        ParamsError, match=r"/params.yaml: papers.protonets.dataset: 'omniglotz' has no section"
    ):
        load(tmp_path, tiny_params(papers={"protonets": {"dataset": "omniglotz"}}))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (  # a recipe written in params.yaml, as every recipe was before recipes/
            lambda params, recipe: params.write_text(
                params.read_text().replace("dataset: omniglot}", "dataset: omniglot, hparams: {lr: 0.1}}")
            ),
            r"params.yaml: papers.protonets.hparams: params.yaml names only an experiment's paper and "
            r"dataset; its hparams belong in recipes/protonets.yaml under papers.protonets",
        ),
        (
            lambda params, recipe: recipe.write_text(recipe.read_text() + "  protonets_x: {}\n"),
            r"recipes/protonets.yaml: papers.protonets_x: params.yaml's papers lists no experiment "
            r"'protonets_x' of paper 'protonets'",
        ),
        (
            lambda params, recipe: recipe.write_text(recipe.read_text().split("  protonets_lake:")[0]),
            r"recipes/protonets.yaml: no section papers.protonets_lake; params.yaml lists the experiment "
            r"'protonets_lake' of paper 'protonets'",
        ),
        (
            lambda params, recipe: recipe.write_text(
                recipe.read_text().replace("papers:\n", "papers:\n  x: 1\n")
            ),
            r"recipes/protonets.yaml: papers.x: params.yaml's papers lists no experiment 'x'",
        ),
        (
            lambda params, recipe: recipe.write_text("- protonets\n"),
            r"recipes/protonets.yaml: expected a mapping at the top level, got list",
        ),
    ],
    ids=["recipe-in-params", "unlisted-experiment", "missing-section", "stray-key", "not-a-mapping"],
)
def test_the_two_files_must_agree(tmp_path, edit, message):
    edit(shipped_files(tmp_path) / "params.yaml", tmp_path / "recipes/protonets.yaml")
    with pytest.raises(ParamsError, match=message):
        load_params(tmp_path / "params.yaml")


def test_gradient_accumulation_reaches_the_trainer(tmp_path):
    """`trainer.accumulate_grad_batches`: a paper's effective batch on a device that holds only part of it."""
    from pipelines.runs import build_trainer

    params = load_params(
        write_params(tmp_path, tiny_params(trainer={"accumulate_grad_batches": 4})) / "params.yaml"
    )
    settings = params.recipe("protonets").trainer
    assert settings.accumulate_grad_batches == 4
    trainer = build_trainer(settings, tmp_path, logger=False, callbacks=[], accelerator="cpu")
    assert trainer.accumulate_grad_batches == 4


def test_processes_share_the_cores_instead_of_thrashing():
    from pipelines.processes import cpu_threads

    assert [cpu_threads(n, cores=2) for n in (1, 2, 4)] == [2, 1, 1]
    assert cpu_threads(2, cores=16) == 8
