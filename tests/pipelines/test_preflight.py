"""preflight: every experiment's recipe builds and steps (here the smoke recipe on tiny data, capped to a
batch of 2, so that no recipe can stop building unnoticed), with the figures a user sizes a job by; a recipe
that cannot build is a row saying why, not a crash."""

import json

import pytest

from pipelines.config import load_params
from pipelines.preflight import preflight, probe, table
from tests.helpers import ROOT, chdir, tiny_params, write_params

EXPERIMENTS = list(load_params(ROOT / "params.yaml").papers)


@pytest.fixture
def tiny_project(all_data, tmp_path):
    write_params(tmp_path, tiny_params())
    (tmp_path / "data").symlink_to(all_data / "data")
    with chdir(tmp_path):
        yield tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_recipe_builds_and_steps(tiny_project, experiment):
    found = probe(experiment, "smoke", 2, 2)
    assert found["builds"], found.get("error")
    assert found["step_s"] > 0 and found["samples_per_s"] > 0 and found["peak_memory_gib"] > 0
    assert found["batch"] is None or found["batch"] <= 2
    if found["paper_batch"] and found["paper_batch"] > 2:  # capped: accumulation reaches the recipe's batch
        assert found["accumulate_to_paper_batch"] == -(-found["paper_batch"] // 2)
    assert found["projected_hours"] == pytest.approx(
        found["step_s"] * found["accumulate_to_paper_batch"] * found["recipe_steps"] / 3600
    )


def test_a_recipe_that_cannot_build_is_a_row_saying_why(tiny_project):
    """Missing shards: the child process's one-line error is the row; the report files are written."""
    (tiny_project / "data").unlink()
    [row] = preflight(load_params(), ["protonets"], "smoke", 2, None)
    assert not row["builds"] and "meta.json" in row["error"]
    assert json.loads((tiny_project / "reports" / "preflight.json").read_text()) == [row]
    assert "| protonets | no: " in table([row])
