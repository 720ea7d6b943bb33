"""evaluate@<experiment>: metrics/<experiment>.json with every claim judged, logged to the training's MLflow
run."""

from __future__ import annotations

import json

from datamodules import DATASETS
from datamodules.files import atomic_write
from datamodules.shards import read_meta
from pipelines import checks, paths, registry, tracking
from pipelines.claims import claim_tables, judge
from pipelines.config import Params
from pipelines.processes import numerics
from pipelines.runs import loading_safely, paper_class, read_record, test_metrics, tester
from pipelines.timing import EVALUATE_WORK, Phases


def evaluate_experiment(params: Params, key: str, phases: Phases | None = None) -> dict:
    """`phases` collects the wall time of each step; its `test pass` is the stage's job, the rest its
    overhead (logged to the run as `evaluate/seconds/<phase>`)."""
    phases = phases or Phases()
    recipe, store = params.recipe(key), tracking.store(params)
    checkpoint, record = checks.own_checkpoint(recipe), read_record(key)
    checks.check_store(store, key)  # before the test pass, not after it
    shards = paths.shards(recipe.dataset)
    meta = read_meta(shards)
    data_source = meta["source"]["source"]
    cls = paper_class(recipe)
    with phases("load"), loading_safely(checkpoint):
        model = cls.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    data = DATASETS[recipe.dataset](shards, recipe.seed, **recipe.data)
    with phases(EVALUATE_WORK):
        metrics = test_metrics(tester(recipe), model, data)
    untrained = record.get("untrained_metrics")  # scored by train before its first step (smoke only)
    run_id = record["mlflow_run_id"]
    with phases("figures"):  # and claims read off the training curves, as a paper reads its figures
        reads_curves = hasattr(cls, "figures") or hasattr(cls, "curve_metrics")
        history = tracking.training_curves(store, run_id) if reads_curves else {}
        if hasattr(cls, "curve_metrics"):
            metrics = dict(sorted({**metrics, **model.curve_metrics(history)}.items()))
        figures = model.figures(data, history) if hasattr(cls, "figures") else {}
    claims = judge(recipe, metrics, data_source, untrained)
    with phases("export"):
        model_uri = tracking.log_model(store, run_id, model) if cls.exportable else None
    result = {
        "experiment": key,
        "paper": recipe.paper,
        "profile": recipe.profile,
        "dataset": recipe.dataset,
        "data_source": data_source,
        "checkpoint": str(checkpoint),
        "mlflow_run_id": run_id,
        "model_uri": model_uri,
        "metrics": metrics,
        "untrained_metrics": untrained,
        **({"untrained_test_batches": record["untrained_test_batches"]} if untrained is not None else {}),
        "claims": claims,
        "hardware": numerics(),  # a baseline equals a re-run bit for bit only on a machine that agrees here
    }
    with phases("tracking"):
        tracking.log_evaluation(store, run_id, metrics, claims, figures, claim_tables(claims))
        registry.register(store, result)  # a new `challenger` version of reprozoo.<key>
    tracking.log_numbers(store, run_id, {f"evaluate/seconds/{k}": v for k, v in phases.seconds.items()})
    atomic_write(
        paths.metrics(key), json.dumps(result, indent=2) + "\n"
    )  # last: its presence means all is logged
    return result
