"""`reprozoo bench` at its tiny size: every section measures both sides of its ratio, states its target and
whether it held, and the results reach reports/bench.json and MLflow. No timing is asserted (that is the
bench's job)."""

import json

import pytest
from mlflow.tracking import MlflowClient

from pipelines.bench import SECTIONS, TARGETS, flat_metrics, run_bench
from pipelines.bench.common import steady_rate
from tests.helpers import cli


def positive(*values) -> bool:
    return all(isinstance(v, float) and v > 0 for v in values)


def test_steady_rate_leaves_out_the_warmup_steps():
    stamps = [0.0, 5.0, 6.0, 7.0, 8.0]  # a slow first step, then one step a second
    assert steady_rate(stamps, items_per_stamp=32, warmup=1) == 32.0


def test_loader_framework_and_pipeline_sections_measure_both_sides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: the no-op repro says it was skipped
    results = run_bench("tiny", ["loader", "framework", "pipeline", "gpu"], report=tmp_path / "bench.json")
    loader = results["loader"]
    assert set(loader["workers"]) == {"1", "2"} and positive(loader["decode_limit_samples_per_s"])
    for row in loader["workers"].values():
        assert positive(row["webdataset_samples_per_s"], row["imagefolder_samples_per_s"])
        assert row["vs_imagefolder"] == row["webdataset_samples_per_s"] / row["imagefolder_samples_per_s"]
    framework = results["framework"]
    assert positive(framework["plain_steps_per_s"], framework["lightning_steps_per_s"])
    assert framework["holds"] == (framework["lightning_overhead"] <= TARGETS["framework_overhead"])
    pipeline = results["pipeline"]
    assert positive(pipeline["copy_megabytes_per_s"], pipeline["shard_megabytes_per_s"])
    assert pipeline["noop_repro"] == {"skipped": "no dvc.yaml in the current folder"}
    assert "skipped" in results["gpu"] or positive(*results["gpu"]["images_per_s"].values())
    assert json.loads((tmp_path / "bench.json").read_text()) == json.loads(json.dumps(results))
    metrics = flat_metrics(results)
    assert "loader/workers/2/per_worker_vs_decode_limit" in metrics and "framework/holds" in metrics


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray cluster at a time on 2 cores
def test_ddp_and_tune_sections_and_the_cli(project):
    """Two spawned gloo processes and real Ray Tune trials; then the verb end to end with its MLflow run."""
    results = run_bench("tiny", ["ddp", "tune"], report=project / "reports/bench.json")
    ddp, tune = results["ddp"], results["tune"]
    assert positive(ddp["one_process_1_thread_samples_per_s"], ddp["two_processes_samples_per_s"])
    assert (
        ddp["speedup_vs_one_process_1_thread"]
        == ddp["two_processes_samples_per_s"] / ddp["one_process_1_thread_samples_per_s"]
    )
    assert positive(
        tune["one_trial_wall_seconds"], tune["two_trials_wall_seconds"], tune["trial_compute_seconds"]
    )
    assert isinstance(tune["holds"], bool)

    output = cli(project, "bench", "--size", "tiny", "--only", "framework").stdout
    assert "Lightning overhead" in output and "reports/bench.json" in output
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("reprozoo.bench").experiment_id])
    assert "framework/lightning_overhead" in run.data.metrics and run.data.tags["size"] == "tiny"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["bench.json"]


@pytest.mark.slow
def test_an_unknown_section_is_named_before_anything_runs(project):
    result = cli(project, "bench", "--only", "gpus", check=False)
    assert result.returncode == 2 and "--only: unknown section gpus" in result.stderr
    assert set(SECTIONS) == {"loader", "framework", "ddp", "tune", "pipeline", "gpu", "workflow"}
