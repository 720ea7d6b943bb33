"""preflight: every experiment's recipe builds and steps (here the smoke recipe on tiny data, capped to a
batch of 2, so that no recipe can stop building unnoticed), with the figures a user sizes a job by; a recipe
that cannot build is a row saying why, not a crash."""

import json

import pytest

from pipelines import preflight as preflight_module
from pipelines.config import load_params
from pipelines.preflight import fitted, on_nodes, out_of_memory, preflight, probe, readme_section, table
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


@pytest.mark.slow
def test_a_recipe_that_cannot_build_is_a_row_saying_why(tiny_project):
    """Missing shards: the child process's one-line error is the row; the report files are written."""
    (tiny_project / "data").unlink()
    [row] = preflight(load_params(), ["protonets"], "smoke", 2, None)
    assert not row["builds"] and "meta.json" in row["error"]
    assert json.loads((tiny_project / "reports" / "preflight.json").read_text()) == [row]
    assert "| protonets | no: " in table([row])


def test_re_probing_one_experiment_keeps_the_others_rows(tmp_path, monkeypatch):
    """After a fix, `preflight fpn` replaces fpn's row; the rest of the report (in params' order) stays."""

    def fitted(args, memory_gib):
        return {"key": args["key"], "profile": args["profile"], "run": len(calls)}

    monkeypatch.setattr(preflight_module, "fitted", fitted)
    calls = []
    write_params(tmp_path, tiny_params())
    monkeypatch.chdir(tmp_path)
    preflight(load_params(), ["resnet", "fpn", "protonets"], "paper", 3, None)
    calls.append(1)
    [row] = preflight(load_params(), ["fpn"], "paper", 3, None)
    report = json.loads((tmp_path / "reports" / "preflight.json").read_text())
    assert [(r["key"], r["run"]) for r in report] == [("protonets", 0), ("resnet", 0), ("fpn", 1)]
    preflight(load_params(), ["fpn"], "smoke", 3, None)  # another profile's report starts afresh
    assert [r["key"] for r in json.loads((tmp_path / "reports" / "preflight.json").read_text())] == ["fpn"]


def test_a_batch_that_does_not_fit_is_halved_until_one_does(monkeypatch):
    """BERT's 256 × 512 or Taskonomy's 32 cannot fit a CPU: the row is the largest batch that fits, with the
    accumulation that reaches the paper's and the batches that did not fit."""
    tried = []

    def child(args, memory_gib):
        batch = min(args["max_batch"] or 256, 256)
        tried.append((batch, memory_gib))
        return {"key": "k", "builds": True, "paper_batch": 256, "batch": batch, "fits": batch <= 48}

    monkeypatch.setattr(preflight_module, "child_probe", child)
    row = fitted({"key": "k", "max_batch": None}, 12.0)
    assert tried == [(256, 12.0), (128, 12.0), (64, 12.0), (32, 12.0)]
    assert row["fits"] and row["batch"] == 32 and row["did_not_fit"] == [256, 128, 64]
    tried.clear()
    monkeypatch.setattr(preflight_module, "child_probe", lambda args, gib: child(args, gib) | {"fits": False})
    row = fitted({"key": "k", "max_batch": 2}, None)  # not even a batch of 1: said, not looped on
    assert [b for b, _ in tried] == [2, 1] and not row["fits"]
    assert "| k | yes | does not fit at batch 1 |" in table([row])


def test_what_counts_as_out_of_memory():
    import torch

    with pytest.raises(RuntimeError) as refused:
        torch.empty(2**60, dtype=torch.uint8)  # the CPU allocator's refusal, as under preflight's cap
    assert out_of_memory(refused.value) and out_of_memory(MemoryError())
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not out_of_memory(RuntimeError("expected input to have 3 channels, but got 6"))


def test_the_readmes_table_is_the_committed_report():
    """README.md shows the maintainers' measured run (`reprozoo preflight --readme`), not a hand-edit."""
    rows = json.loads((ROOT / "reports" / "preflight.json").read_text())
    assert len(rows) == len(EXPERIMENTS) and all("hardware" in row for row in rows if row.get("builds"))
    assert (ROOT / "reports" / "preflight.md").read_text() == table(rows)
    text = (ROOT / "README.md").read_text()
    assert readme_section(text, rows) == text, "run `reprozoo preflight --readme` and commit README.md"


def test_the_projection_over_a_cluster():
    """Longest first onto the machine free soonest: the longest training bounds the wall time."""
    assert on_nodes([10, 1, 1, 1], 8) == 10
    assert on_nodes([5, 4, 3, 3, 3], 2) == 10  # the best schedule is 9 ({5, 4}, {3, 3, 3}): within 4/3
    assert on_nodes([2.0] * 16, 8) == 4.0 and on_nodes([], 8) == 0
