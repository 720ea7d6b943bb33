"""`reprozoo repro --jobs 2` (what `make repro` runs): the stale stages in this workspace, two at a time, each
run by DVC itself, on a copy of the repository with three small experiments, one made to fail. Trainings
overlap; the failure skips only what reads it; the rest is recorded in dvc.lock as a sequential `dvc repro`
records it, so DVC has nothing left to do for it."""

import json
from copy import deepcopy as copy_of

import pytest

from tests.helpers import copy_repository, intervals, run_in, tiny_params, write_params

pytestmark = pytest.mark.slow


def test_stale_stages_run_two_at_a_time_here_and_dvc_records_them(tmp_path):
    params = tiny_params()
    # Three experiments on one dataset: their trainings are ready at once, and two slots take the first two.
    params["papers"] = {
        name: copy_of(params["papers"]["protonets"]) for name in ("protonets", "twin", "broken")
    }
    params["papers"]["broken"]["data"]["shot"] = 500  # more drawings than a character has: its training fails
    params["datasets"] = {"omniglot": params["datasets"]["omniglot"]}
    project = copy_repository(tmp_path / "project")
    (project / "dvc.lock").unlink(missing_ok=True)
    write_params(project, params)

    done = run_in(project, "reprozoo", "repro", "--jobs", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "train@broken: " in done.stdout and "not done: " in done.stdout
    undone = {s.strip(",") for s in done.stdout.split("not done: ")[1].split()[0:3]}
    assert undone == {"train@broken", "evaluate@broken", "report"}
    (a_start, a_end), (b_start, b_end) = intervals(project, ["protonets", "twin"]).values()
    assert a_start < b_end and b_start < a_end  # two trainings at the same time
    for key in ("protonets", "twin"):
        assert json.loads((project / f"metrics/{key}.json").read_text())["experiment"] == key
        log = (project / f".dvc/tmp/reprozoo/train-{key}.log").read_text()
        assert f"Running stage 'train@{key}'" in log
    # The stages' `reprozoo` ran as forks of the warm server once it was serving (pipelines/warm.py), and a
    # fork computes what a process of its own computes: twin's recipe is protonets', and so are its numbers.
    served = (project / ".dvc/tmp/reprozoo/warm.log").read_text()
    assert "serving on" in served and "runs reprozoo evaluate" in served, served
    metrics = [json.loads((project / f"metrics/{key}.json").read_text()) for key in ("protonets", "twin")]
    assert metrics[0]["metrics"] == metrics[1]["metrics"]
    finished = [f"{verb}@{key}" for verb in ("train", "evaluate") for key in ("protonets", "twin")]
    status = run_in(project, "dvc", "status", *finished)
    assert "up to date" in status.stdout, status.stdout  # recorded in dvc.lock: nothing left to do
