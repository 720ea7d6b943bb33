"""`reprozoo <verb>` (also `python -m pipelines <verb>`): one small function per DVC stage.

Heavy imports (torch, Lightning, MLflow) happen inside the verbs, so `reprozoo --help` stays fast.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape

from pipelines.choices import Dataset, Experiment
from pipelines.errors import USER_ERRORS

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Reproduce classic deep-learning papers: fetch → shard → train → evaluate → report.",
)
console = Console()


def params():
    from pipelines.config import load_params

    return load_params()


EXPERIMENT = typer.Argument(..., show_default=False, help="an experiment: a key of papers: in params.yaml")
DATASET = typer.Argument(..., show_default=False, help="a dataset: a key of datasets: in params.yaml")


@app.command()
def fetch(dataset: Dataset = DATASET) -> None:
    """Write data/raw/<dataset>/ from its configured source (synthetic, download, local)."""
    from pipelines.fetch import fetch_dataset

    console.print(f"fetched {dataset} → {fetch_dataset(params(), dataset)}")


@app.command()
def shard(dataset: Dataset = DATASET) -> None:
    """Write data/shards/<dataset>/<split>-NNNNNN.tar and meta.json from data/raw/<dataset>/."""
    from pipelines.shard import describe, shard_dataset

    console.print(f"sharded {describe(shard_dataset(params(), dataset))}")


@app.command()
def train(experiment: Experiment = EXPERIMENT) -> None:
    """Train one experiment; writes models/<experiment>/{best,last}.ckpt and run.json, logs curves to
    MLflow."""
    from pytorch_lightning.utilities import rank_zero_only

    from pipelines.train import train_experiment

    run = train_experiment(params(), experiment)
    if rank_zero_only.rank == 0:
        console.print(
            f"trained {experiment}{' (resumed)' if run.resumed else ''}: {run.checkpoint}  (MLflow run "
            f"{run.mlflow_run_id})"
        )


@app.command()
def evaluate(experiment: Experiment = EXPERIMENT) -> None:
    """Test one experiment's best checkpoint; writes metrics/<experiment>.json and logs claims to its MLflow
    run."""
    import time

    from pipelines.timing import EVALUATE_WORK, Phases

    start = time.perf_counter()
    from pipelines.evaluate import evaluate_experiment  # torch, Lightning, MLflow: most of a stage

    phases = Phases(imports=time.perf_counter() - start)
    result = evaluate_experiment(params(), experiment, phases)
    for claim in result["claims"]:
        console.print(
            f"{experiment} {claim['metric']}: {claim['reproduced']:.4f} (paper {claim['claimed']}) "
            f"{claim['status']}"
        )
    console.print(
        f"evaluate {experiment}: {phases.overhead(EVALUATE_WORK):.1f} s beyond the {EVALUATE_WORK} "
        f"({phases.line()})"
    )


@app.command()
def report() -> None:
    """Write reports/reproductions.md and .png from every metrics/<experiment>.json."""
    from pipelines import paths
    from pipelines.report import write_report

    rows = write_report(params())
    console.print(f"report: {len(rows)} claims → {paths.REPORT_MD}, {paths.REPORT_PNG}")


@app.command()
def publish(
    experiment: Experiment = EXPERIMENT,
    notes: str = typer.Option("", help="what a reader should know: why a cell is not reproduced, a fix"),
    set_aside: list[str] = typer.Option(None, help="METRIC=why: a claim this run cannot judge (repeatable)"),
) -> None:
    """Write results/<experiment>/<profile>-<source>-<date>.json: the evaluated run as evidence (recipe,
    deviations, data checksums, commit, hardware, wall time, each claim judged), figures beside it."""
    from pipelines.publish import publish as publish_run

    console.print(f"published: {publish_run(params(), experiment, notes=notes, set_aside=set_aside or [])}")


@app.command()
def preflight(
    experiments: list[Experiment] = typer.Argument(None, help="experiments (default: all)"),
    profile: str = typer.Option("paper", help="the recipe to size: paper (default) or smoke"),
    steps: int = typer.Option(3, min=2, help="training steps to time (the first is warm-up)"),
    max_batch: int = typer.Option(None, min=1, help="cap each batch (else: halved until it fits)"),
    memory_gib: float = typer.Option(None, min=1, help="CPU: size for this memory (80%% of RAM)"),
    random_weights: bool = typer.Option(False, help="no weight files: random values"),
    readme: bool = typer.Option(False, help="put the report's table into README.md (maintainers)"),
) -> None:
    """Step each recipe at its real shapes here: s/step, peak memory, projected time; reports/preflight.*"""
    from pipelines.preflight import REPORT, preflight, table, update_readme

    keys = [str(k) for k in experiments or []]
    found = preflight(params(), keys, profile, steps, max_batch, memory_gib, random_weights)
    console.print(table(found), markup=False)
    console.print(f"{REPORT}.json, {REPORT}.md", highlight=False)
    if readme:
        update_readme()


@app.command()
def retrain(
    experiment: list[str] = typer.Option(
        None, "--experiment", "--paper", help="only these experiments (repeatable); default: all"
    ),
    max_age: float = typer.Option(
        None, min=0, help="also re-run experiments whose champion is older than this many days"
    ),
    dry_run: bool = typer.Option(False, help="say what would re-run, run nothing"),
) -> None:
    """Re-run what DVC says is stale, then promote each new model to champion only if it beats the old one."""
    import time

    from pipelines.retrain import retrain as run_retrain
    from pipelines.retrain import summary

    started = time.time()
    decisions = run_retrain(params(), experiment or None, max_age, dry_run)
    console.print(summary(decisions, time.time() - started), highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(1 if any(d.action == "failed" for d in decisions) else 0)


@app.command()
def bench(
    size: str = typer.Option("default", help="tiny (seconds; what the tests run) or default"),
    only: list[str] = typer.Option(
        None,
        "--only",
        help="sections to run (repeatable); default: all of loader, framework, ddp, tune, pipeline, gpu",
    ),
) -> None:
    """Loader vs decode limit, Lightning vs a plain loop, DDP, Ray Tune and pipeline overheads, as ratios with
    their targets; writes reports/bench.json and logs an MLflow run in `reprozoo.bench`."""
    from pipelines.bench import REPORT, check_request, log_to_mlflow, results_table, run_bench

    sections, say = check_request(size, only), lambda name: console.print(f"bench {name} …", highlight=False)
    loaded = params()  # a bad params.yaml fails before the benches run
    results = run_bench(size, sections, progress=say)
    run_id = log_to_mlflow(loaded, results, REPORT)
    console.print(results_table(results, sections))
    console.print(f"reports/bench.json  (MLflow run {run_id})", highlight=False)


@app.command()
def ui(
    port: int = typer.Option(5000, help="loopback port"),
    host: str = typer.Option("127.0.0.1", help="the interface to bind; any but loopback exposes every run"),
) -> None:
    """The MLflow UI over this project's tracking store, on 127.0.0.1; prints the URL."""
    import subprocess

    from pipelines.ui import ui_command

    command, uri = ui_command(params(), host, port)
    if command is None:
        console.print(f"the runs live on a tracking server: open {uri}")
        return
    console.print(
        f"MLflow UI for {uri}: http://{host}:{port}  (Ctrl-C stops it)", soft_wrap=True, highlight=False
    )
    raise typer.Exit(subprocess.call(command))


@app.command()
def recipe(
    experiment: Experiment = EXPERIMENT,
    profile: str = typer.Option(None, help="smoke or paper (default: params.yaml's profile)"),
) -> None:
    """Print an experiment's whole recipe as it would run: the paper's defaults with recipes/<paper>.yaml's
    changes."""
    from pipelines.listing import full_recipe

    console.print_json(json.dumps(full_recipe(params(), experiment, profile), default=list))


@app.command()
def deps(
    check: bool = typer.Option(False, help="only compare deps/ with the imports; exit 1 if they differ"),
) -> None:
    """Rewrite deps/ (each paper's and dataset's code, as dvc.yaml's stages depend on it) from the imports."""
    from pipelines.deps import stale, write

    if check:
        problems = stale()
        for problem in problems:
            console.print(problem, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1 if problems else 0)
    console.print(f"deps/: {write()} folders written from the import graph")


@app.command(name="list")
def list_() -> None:
    """Experiments and datasets, with what has been produced for each so far."""
    from pipelines.listing import datasets_table, experiments_table

    loaded = params()
    console.print(experiments_table(loaded), datasets_table(loaded))


# The verbs that run work on a Ray cluster (tune, submit, repro) live beside these, on the same app.
from pipelines import cli_cluster  # noqa: E402, F401


def main() -> None:
    """The CLI, here (`reprozoo` is pipelines/__main__.py's `main`, which first offers a stage's command to
    the warm server)."""
    try:
        app()
    except USER_ERRORS as error:  # one line, no traceback, naming the file or key; escaped: `[5, 1]` is
        # not markup; unwrapped: one line whatever the terminal's width
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True, soft_wrap=True
        )
        raise SystemExit(2) from None
