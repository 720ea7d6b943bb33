"""train → evaluate → report in-process on the tiny synthetic project: outputs, MLflow, claim statuses."""

import json
import os
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipelines import paths
from pipelines.claims import claim_tables
from pipelines.config import load_params
from pipelines.errors import StageError
from pipelines.evaluate import evaluate_experiment
from pipelines.report import markdown, measured_without_claims, rows, write_report
from pipelines.train import train_experiment


@pytest.fixture
def trained(project):
    params = load_params()
    return params, train_experiment(params, "protonets")


def test_train_writes_checkpoints_and_a_finished_record(trained):
    _, run = trained
    record = json.loads(paths.run_record("protonets").read_text())
    assert record["finished"] and record["global_step"] == 20 and record["mlflow_run_id"] == run.mlflow_run_id
    assert (paths.model_dir("protonets") / "last.ckpt").exists() and (
        paths.model_dir("protonets") / "best.ckpt"
    ).exists()
    history = MlflowClient(f"sqlite:///{Path('mlflow.db').resolve()}").get_metric_history(
        run.mlflow_run_id, "train/loss"
    )
    assert len(history) >= 2  # per-step training curve


@pytest.mark.slow
def test_train_scores_the_untrained_floor_on_the_first_test_batches_and_evaluate_reads_it(
    project, monkeypatch
):
    from lightning_modules.protonets import ProtoNets
    from pipelines import runs

    params = load_params()
    scored = []  # a test episode each: the untrained net's in train, then the trained net's in evaluate
    test_step = ProtoNets.test_step

    def counted(self, *args, **kwargs):
        scored.append(1)
        return test_step(self, *args, **kwargs)

    monkeypatch.setattr(ProtoNets, "test_step", counted)
    monkeypatch.setattr(runs, "UNTRAINED_BATCHES", 3)
    train_experiment(params, "protonets")
    data = params.recipe("protonets").data
    episodes, settings = data["test_episodes"], len(data["test_settings"])  # an episode per (way, shot) batch
    assert episodes > 3 and len(scored) == settings * 3  # before the first step
    record = json.loads(paths.run_record("protonets").read_text())
    assert record["untrained_test_batches"] == 3 and "test/acc_5way_1shot" in record["untrained_metrics"]
    result = evaluate_experiment(params, "protonets")
    assert len(scored) == settings * 3 + settings * episodes  # the trained net only: no second pass
    assert result["untrained_metrics"] == record["untrained_metrics"]
    assert result["untrained_test_batches"] == 3


def test_evaluate_judges_every_claim_and_logs_to_the_same_run(trained):
    params, run = trained
    tracking_uri_before, default = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    result = evaluate_experiment(params, "protonets")
    saved = json.loads(paths.metrics("protonets").read_text())
    assert saved == result and saved["mlflow_run_id"] == run.mlflow_run_id
    assert set(saved) >= {
        "experiment",
        "paper",
        "profile",
        "data_source",
        "mlflow_run_id",
        "metrics",
        "claims",
    }
    assert saved["experiment"] == saved["paper"] == "protonets"
    assert {c["metric"] for c in saved["claims"]} <= set(saved["metrics"])
    assert all(c["status"] == "not_comparable" for c in saved["claims"])  # smoke on synthetic data
    assert 0.2 < saved["metrics"]["test/acc_5way_5shot"] <= 1.0
    # The smoke floor: the same net at its seeded initialisation, on the same episodes.
    assert set(saved["untrained_metrics"]) == set(saved["metrics"])
    assert saved["untrained_metrics"] != saved["metrics"]
    assert all(c["untrained"] == saved["untrained_metrics"][c["metric"]] for c in saved["claims"])
    logged = MlflowClient(f"sqlite:///{Path('mlflow.db').resolve()}").get_run(run.mlflow_run_id)
    assert (
        logged.data.metrics["untrained/test/acc_5way_1shot"]
        == saved["untrained_metrics"]["test/acc_5way_1shot"]
    )
    assert logged.data.metrics["claimed/test/acc_5way_1shot"] == 0.988
    assert (
        "gap/test/acc_20way_5shot" in logged.data.metrics
        and "test/acc_20way_5shot_ci95" in logged.data.metrics
    )
    assert logged.data.tags["data_source"] == "synthetic" and logged.data.tags["profile"] == "smoke"
    seconds = {k.removeprefix("evaluate/seconds/") for k in logged.data.metrics if "/seconds/" in k}
    assert seconds == {"load", "test pass", "figures", "export", "tracking"}
    assert logged.data.params["hparams.lr"] == "0.001"
    client = MlflowClient(f"sqlite:///{Path('mlflow.db').resolve()}")
    assert client.get_experiment(logged.info.experiment_id).name == "protonets"
    assert {a.path for a in client.list_artifacts(run.mlflow_run_id, "figures")} == {
        "figures/held_out_episode.png"
    }
    model = client.get_logged_model(saved["model_uri"].removeprefix("models:/"))
    assert model.source_run_id == run.mlflow_run_id
    served = mlflow.pytorch.load_model(model.artifact_location)  # the logged model: image → embedding
    assert served(torch.zeros(3, 1, 28, 28)).shape == (3, 64)
    # No hidden state: the store was handed around, never set process-wide for later callers to inherit.
    assert (
        os.environ.get("MLFLOW_TRACKING_URI") == tracking_uri_before and mlflow.get_tracking_uri() == default
    )


@pytest.mark.slow
def test_the_workflow_bench_reads_each_evaluations_phases_and_makes_timings(trained):
    """Where an evaluate stage's time went, from its MLflow run; `make`'s records beside their targets, and
    what to run where one is missing."""
    from pipelines.bench.workflow import TIMINGS, bench_workflow

    params, _ = trained
    evaluate_experiment(params, "protonets")
    TIMINGS.mkdir(parents=True)
    (TIMINGS / "make-repro.json").write_text('{"seconds": 840, "cores": 2}')
    found = bench_workflow()
    stage = found["evaluate"]["stages"]["protonets"]
    assert stage["overhead"] == pytest.approx(sum(stage["phases"].values()) - stage["phases"]["test pass"])
    assert 0 < stage["overhead"] < sum(stage["phases"].values())
    assert found["first_command"]["minutes"] == 14 and found["first_command"]["holds"]
    assert "run `make test`" in found["test_suite"]["skipped"]
    assert found["evaluate"]["holds"] == (stage["overhead"] <= 5.0) and found["help_import"]["seconds"] > 0

    # Where `reprozoo repro` recorded the stage's wall time, the overhead is the whole stage's beyond its test
    # pass: process start and DVC's checks and records are part of what a user waits for.
    (TIMINGS / "stages.json").write_text(json.dumps({"evaluate@protonets": 30.0}))
    stage = bench_workflow()["evaluate"]["stages"]["protonets"]
    assert stage["stage_seconds"] == 30.0
    assert stage["overhead"] == pytest.approx(30.0 - stage["phases"]["test pass"])


def test_the_workflow_bench_on_a_fresh_clone_says_what_to_run(project):
    """The committed baseline's metrics name runs of another MLflow store: not an error, a hint."""
    from pipelines.bench.workflow import bench_workflow

    paths.metrics("protonets").parent.mkdir()
    paths.metrics("protonets").write_text(json.dumps({"mlflow_run_id": "0" * 32, "metrics": {}}))
    found = bench_workflow()
    assert "run `make repro`" in found["evaluate"]["skipped"]
    assert "run `make repro`" in found["first_command"]["skipped"]


@pytest.mark.slow
def test_an_evaluation_can_be_run_again_on_the_same_training_run(trained):
    params, _ = trained
    first, again = evaluate_experiment(params, "protonets"), evaluate_experiment(params, "protonets")
    assert first["mlflow_run_id"] == again["mlflow_run_id"] and first["metrics"] == again["metrics"]


def test_a_checkpoint_is_never_judged_against_another_recipe(trained):
    """Trained on the smoke profile, then params.yaml switched to the paper's: evaluate refuses, naming both,
    and writes nothing (a smoke model judged against the paper would be a wrong verdict)."""
    params, _ = trained
    switched = params.model_copy(update={"profile": "paper"})
    with pytest.raises(
        StageError, match=r"another recipe \(profile smoke, .*the params' now \(profile paper"
    ):
        evaluate_experiment(switched, "protonets")
    assert not paths.metrics("protonets").exists()


@pytest.mark.slow
def test_report_has_one_row_per_claim(trained):
    params, _ = trained
    evaluate_experiment(params, "protonets")
    table = write_report(params)
    assert [r["setting"] for r in table] == [
        "test/acc_5way_1shot",
        "test/acc_5way_5shot",
        "test/acc_20way_1shot",
        "test/acc_20way_5shot",
    ]
    text = paths.REPORT_MD.read_text()
    assert text.count("| protonets |") == 4 and "not_comparable" in text
    assert paths.REPORT_PNG.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = list(
        (paths.REPORT_FIGURES / "protonets").rglob("*.png")
    )  # copied from the run's MLflow artifacts
    assert figures and f"figures/protonets/figures/{figures[0].name}" in text


def test_papers_without_a_claim_are_reported_beside_their_untrained_net():
    result = {
        "experiment": "p",
        "paper": "p",
        "profile": "smoke",
        "data_source": "synthetic",
        "mlflow_run_id": "r",
        "claims": [],
        "metrics": {"test/ssim": 0.43},
        "untrained_metrics": {"test/ssim": 0.05},
    }
    assert "| `test/ssim` | 0.43 | 0.05 |" in measured_without_claims([result])


def test_report_rows_show_the_confidence_interval():
    result = {
        "experiment": "p",
        "paper": "p",
        "profile": "paper",
        "data_source": "local",
        "mlflow_run_id": "r",
        "metrics": {"test/acc": 0.95, "test/acc_ci95": 0.01},
        "claims": [
            {
                "metric": "test/acc",
                "claimed": 0.96,
                "reproduced": 0.95,
                "status": "reproduced",
                "source": "Table 1",
                "verified": True,
            }
        ],
    }
    assert (
        "| p | `test/acc` | 0.9600 | 0.9500 ± 0.0100 | — | reproduced | Table 1 | local | paper | `r` |"
        in markdown(rows([result]))
    )
    unverified = {**result, "claims": [{**result["claims"][0], "verified": False}]}
    assert "| reproduced | Table 1 (unverified) | local |" in markdown(rows([unverified]))


def test_metrics_files_written_before_the_experiment_field_still_load(tmp_path):
    """Old files named the experiment `paper`; the report reads them with the paper looked up from params."""
    from pipelines.config import load_params
    from pipelines.report import read_result
    from tests.helpers import ROOT, chdir

    params = load_params(ROOT / "params.yaml")
    old = {
        "paper": "resnet_cifar",
        "profile": "smoke",
        "data_source": "synthetic",
        "mlflow_run_id": "r",
        "metrics": {},
        "claims": [
            {
                "metric": "test/top1_err_cifar_resnet20",
                "claimed": 0.0875,
                "reproduced": 0.5,
                "status": "not_comparable",
                "source": "Table 6",
            }
        ],
    }
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "resnet_cifar.json").write_text(json.dumps(old))
    with chdir(tmp_path):
        result = read_result(params, "resnet_cifar")
    assert result["experiment"] == "resnet_cifar" and result["paper"] == "resnet"
    assert [c["verified"] for c in result["claims"]] == [True]


def test_claims_that_name_a_cell_are_rebuilt_as_the_papers_table():
    claims = [
        {
            "metric": f"test/err_{m}_r{r}",
            "claimed": c,
            "reproduced": c + 0.1,
            "status": "not_comparable",
            "source": "Table 1",
            "row": m,
            "column": f"R={r}",
        }
        for m, r, c in (("lstm", 20, 0.6), ("lstm", 50, 0.02), ("fw", 20, 0.0181))
    ]
    grid = claim_tables(claims)["Table 1"].splitlines()
    assert grid[2:] == [
        "| | R=20 | R=50 |",
        "|---|---|---|",
        "| lstm | 0.7000 (0.6000) | 0.1200 (0.0200) |",
        "| fw | 0.1181 (0.0181) | — |",
    ]


def test_evaluate_before_train_names_the_stage_to_run(project):
    with pytest.raises(StageError, match="reprozoo train protonets"):
        evaluate_experiment(load_params(), "protonets")


@pytest.mark.slow
def test_a_finished_run_is_retrained_from_scratch_and_an_interrupted_one_resumes(trained):
    params, first = trained
    again = train_experiment(params, "protonets")  # DVC re-runs a finished stage only after a change
    assert not again.resumed and again.mlflow_run_id != first.mlflow_run_id
    record = json.loads(paths.run_record("protonets").read_text())
    paths.run_record("protonets").write_text(json.dumps({**record, "finished": False}))  # as if killed
    resumed = train_experiment(params, "protonets")
    assert resumed.resumed and resumed.mlflow_run_id == again.mlflow_run_id  # the run is continued
