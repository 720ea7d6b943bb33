"""Every experiment in params.yaml: its smoke recipe trains a few steps and evaluates, in process, on tiny
synthetic (or bundled) data made by the real fetch → shard path; the claim keys it measures are logged."""

import json

import pytest

from pipelines import paths
from pipelines.claims import headline, judge
from pipelines.config import load_params
from pipelines.evaluate import evaluate_experiment
from pipelines.train import train_experiment
from tests.helpers import ROOT, chdir, tiny_params, write_params

EXPERIMENTS = list(load_params(ROOT / "params.yaml").papers)
# Smoke recipes that measure none of their paper's numeric claims (BERT's claims are at the paper's sizes
# only): any other experiment measuring none means a metric key drifted from its claim's.
MEASURE_NO_CLAIM = {"bert"}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_smoke_recipe_trains_and_evaluates(all_data, tmp_path, experiment):
    override = {
        "trainer": {
            "max_steps": 4,
            "val_check_interval": 2,
            "checkpoint_every_n_steps": 2,
            "log_every_n_steps": 1,
        }
    }
    params = tiny_params(papers={experiment: {"smoke": override}})
    write_params(tmp_path, params)
    (tmp_path / "data").symlink_to(all_data / "data")
    with chdir(tmp_path):
        loaded = load_params()
        train_experiment(loaded, experiment)
        result = evaluate_experiment(loaded, experiment)
        saved = json.loads(paths.metrics(experiment).read_text())
    assert saved["metrics"] and all(c["status"] == "not_comparable" for c in saved["claims"])
    recipe = loaded.recipe(experiment)
    judged = judge(recipe, result["metrics"], saved["data_source"], result["untrained_metrics"])
    assert saved["claims"] == json.loads(
        json.dumps(judged)
    )  # the file holds exactly what evaluate's judge says
    assert (headline(recipe.paper, result["metrics"]) is None) == (experiment in MEASURE_NO_CLAIM)
