"""`reprozoo <verb>` (also `python -m pipelines <verb>`): one small function per DVC stage.

Heavy imports (torch, Lightning, MLflow) happen inside the verbs, so `reprozoo --help` stays fast.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


@app.command()
def fetch(dataset: str) -> None:
    """Write data/raw/<dataset>/ from its configured source (synthetic, download, local)."""
    from pipelines.fetch import fetch_dataset

    console.print(f"fetched {dataset} → {fetch_dataset(params(), dataset)}")


@app.command()
def shard(dataset: str) -> None:
    """Write data/shards/<dataset>/<split>-NNNNNN.tar and meta.json from data/raw/<dataset>/."""
    from pipelines.shard import describe, shard_dataset

    console.print(f"sharded {describe(shard_dataset(params(), dataset))}")


@app.command()
def train(paper: str) -> None:
    """Train one paper; writes models/<paper>/{best,last}.ckpt and run.json, logs curves to MLflow."""
    from pytorch_lightning.utilities import rank_zero_only

    from pipelines.train import train_paper

    run = train_paper(params(), paper)
    if rank_zero_only.rank == 0:
        console.print(
            f"trained {paper}{' (resumed)' if run.resumed else ''}: {run.checkpoint}  (MLflow run {run.mlflow_run_id})"
        )


@app.command()
def evaluate(paper: str) -> None:
    """Test one paper's best checkpoint; writes metrics/<paper>.json and logs claims to its MLflow run."""
    from pipelines.evaluate import evaluate_paper

    result = evaluate_paper(params(), paper)
    for claim in result["claims"]:
        console.print(
            f"{paper} {claim['metric']}: {claim['reproduced']:.4f} (paper {claim['claimed']}) {claim['status']}"
        )


@app.command()
def report() -> None:
    """Write reports/reproductions.md and .png from every metrics/<paper>.json."""
    from pipelines import paths
    from pipelines.report import write_report

    rows = write_report(params())
    console.print(f"report: {len(rows)} claims → {paths.REPORT_MD}, {paths.REPORT_PNG}")


@app.command(name="tune")
def tune_(
    paper: str,
    address: str = typer.Option(
        None, help="a Ray cluster (ray://… or host:port); default: RAY_ADDRESS, else a local Ray"
    ),
    num_cpus: int = typer.Option(None, help="CPUs for a local Ray (default: all)"),
    num_samples: int = typer.Option(None, help="override papers.<paper>.tune.num_samples"),
) -> None:
    """Ray Tune sweep over papers.<paper>.tune; best config → reports/tune/<paper>.json, trials as nested MLflow runs."""
    from pipelines import paths
    from pipelines.tune import run_sweep

    summary = run_sweep(params(), paper, address=address, num_cpus=num_cpus, num_samples=num_samples)
    trials = Table(
        "trial",
        "config",
        "status",
        "validations",
        summary["metric"],
        title=f"tune {paper} ({summary['wall_seconds']:.0f} s)",
    )
    for trial in summary["trials"]:
        value = trial[summary["metric"]]
        config = " ".join(
            f"{k.split('.', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
            for k, v in trial["config"].items()
        )
        trials.add_row(
            trial["trial_id"],
            config,
            trial["status"],
            str(trial["validations"]),
            "—" if value is None else f"{value:.4f}",
        )
    console.print(trials)
    console.print(
        f"best {summary['metric']} {summary['best_value']:.4f}: {json.dumps(summary['best_config'])} → {paths.tune_report(paper)}"
        f"  (MLflow parent run {summary['mlflow_parent_run_id']})"
    )


@app.command()
def submit(
    command: list[str] = typer.Argument(None, help="after --: the command the job runs"),
    address: str = typer.Option(
        None,
        help="the cluster's dashboard, e.g. http://head:8265 (default: RAY_ADDRESS, else 127.0.0.1:8265)",
    ),
    wait: bool = typer.Option(
        True, help="stream the logs and exit with the job's status; --no-wait prints the job id"
    ),
    env: str = typer.Option(
        "lock", help="lock: install constraints.txt in the job; cluster: the cluster's Python as is"
    ),
    cwd: str = typer.Option(
        None, help="run in this checkout on the cluster instead of uploading this working tree"
    ),
    cpus: float = typer.Option(
        None, help="CPUs the command itself needs (Ray places it on a node with them)"
    ),
    gpus: float = typer.Option(
        None, help="GPUs the command itself needs (a `dvc repro` or `train` on a GPU node)"
    ),
    status: str = typer.Option(None, help="print the status of job ID"),
    logs: str = typer.Option(None, help="print the logs of job ID"),
    stop: str = typer.Option(None, help="stop job ID"),
) -> None:
    """Run a reprozoo command (tune, train, `dvc repro …`) as a Ray job: `reprozoo submit -- reprozoo tune protonets`."""
    from pipelines import submit as jobs

    if status or logs or stop:
        client = jobs.client(address)
        if status:
            console.print(client.get_job_status(jobs.known(client, status)).value)
        if logs:
            console.print(
                client.get_job_logs(jobs.known(client, logs)), end="", markup=False, highlight=False
            )
        if stop:
            console.print(
                f"{stop}: {'stop requested' if client.stop_job(jobs.known(client, stop)) else 'already finished'}"
            )
        return
    if env not in ("lock", "cluster"):
        raise typer.BadParameter(f"--env: expected lock or cluster, got {env!r}")
    client, job_id = jobs.submit(command or [], address, env, cwd, cpus, gpus)
    if not wait:
        console.print(job_id)
        return
    console.print(f"submitted {job_id}; following its logs (Ctrl-C stops following, not the job)")
    final = jobs.follow(client, job_id)
    console.print(f"{job_id}: {final.value}")
    raise typer.Exit(0 if final.value == "SUCCEEDED" else 1)


@app.command()
def retrain(
    paper: list[str] = typer.Option(
        None, "--paper", help="only these experiments (repeatable); default: all"
    ),
    max_age: float = typer.Option(
        None, help="also re-run experiments whose champion is older than this many days"
    ),
    dry_run: bool = typer.Option(False, help="say what would re-run, run nothing"),
) -> None:
    """Re-run what DVC says is stale, then promote each new model to champion only if it beats the old one."""
    import time

    from pipelines.retrain import retrain as run_retrain
    from pipelines.retrain import summary

    started = time.time()
    decisions = run_retrain(params(), paper or None, max_age, dry_run)
    console.print(
        summary(decisions, time.time() - started), highlight=False, markup=False, soft_wrap=True
    )  # one line per paper, for logs
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
    """Loader vs decode limit, Lightning vs a plain loop, DDP, Ray Tune and pipeline overheads, as ratios with their
    targets; writes reports/bench.json and logs an MLflow run in `reprozoo.bench`."""
    from pipelines.bench import REPORT, SECTIONS, SIZES, log_to_mlflow, run_bench
    from pipelines.errors import ParamsError

    if size not in SIZES:
        raise ParamsError(f"--size: {size!r}; expected one of {', '.join(SIZES)}")
    if unknown := sorted(set(only or []) - set(SECTIONS)):
        raise ParamsError(
            f"--only: unknown section {', '.join(unknown)}; expected any of {', '.join(SECTIONS)}"
        )
    loaded = params()
    results = run_bench(
        size, only or SECTIONS, progress=lambda name: console.print(f"bench {name} …", highlight=False)
    )
    run_id = log_to_mlflow(loaded, results, REPORT)
    table = Table("section", "result", "target", "holds")
    for name in only or SECTIONS:
        section = results[name]
        table.add_row(
            name,
            section.get("skipped") or headline(name, section),
            section.get("target", ""),
            "—" if "holds" not in section else ("yes" if section["holds"] else "no"),
        )
    console.print(table)
    console.print(f"reports/bench.json  (MLflow run {run_id})", highlight=False)


def headline(name: str, section: dict) -> str:
    """The one number of a bench section a person looks at first."""
    if name == "loader":
        return ", ".join(
            f"{w} workers: {r['per_worker_vs_decode_limit']:.2f} of decode limit/worker, "
            f"{r['vs_imagefolder']:.2f}x ImageFolder"
            for w, r in section["workers"].items()
        )
    if name == "framework":
        return f"Lightning overhead {section['lightning_overhead']:+.1%}"
    if name == "ddp":
        return f"2 processes {section['speedup_vs_one_process_1_thread']:.2f}x one"
    if name == "tune":
        return f"2 trials {section['two_over_one']:.2f}x one; start-up {section['per_trial_startup_seconds']:.1f} s/trial"
    if name == "pipeline":
        return (
            f"shard {section['shard_megabytes_per_s']:.0f} MB/s vs copy {section['copy_megabytes_per_s']:.0f} MB/s; "
            f"{section['noop_repro'].get('command', 'dvc')} {section['noop_repro'].get('seconds', float('nan')):.1f} s"
        )
    return json.dumps(section.get("images_per_s", {}))[:120]


@app.command()
def ui(
    port: int = typer.Option(5000, help="loopback port"),
    host: str = typer.Option(
        "127.0.0.1", help="the interface to bind; anything but loopback exposes every run"
    ),
) -> None:
    """The MLflow UI over this project's tracking store, on 127.0.0.1; prints the URL."""
    import subprocess
    import sys
    from pathlib import Path

    from pipelines import tracking

    loaded = params()
    uri = tracking.tracking_uri(loaded)
    if uri.startswith(("http://", "https://")):
        console.print(f"the runs live on a tracking server: open {uri}")
        return
    artifacts = (
        Path(loaded.mlflow.artifact_location).resolve()
        if "://" not in loaded.mlflow.artifact_location
        else loaded.mlflow.artifact_location
    )
    console.print(
        f"MLflow UI for {uri}: http://{host}:{port}  (Ctrl-C stops it)", soft_wrap=True, highlight=False
    )
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
    ]
    raise typer.Exit(subprocess.call(command))


@app.command(name="list")
def list_() -> None:
    """Papers and datasets, with what has been produced for each so far."""
    from pipelines import paths

    loaded = params()
    papers = Table(
        "experiment",
        "paper",
        "dataset",
        "claims judged",
        "status",
        title=f"papers (profile: {loaded.profile})",
    )
    for key, section in loaded.papers.items():
        path = paths.metrics(key)
        statuses = [c["status"] for c in json.loads(path.read_text())["claims"]] if path.exists() else []
        summary = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))) or "not evaluated"
        papers.add_row(key, section.paper, section.dataset, str(len(statuses)), summary)
    datasets = Table("dataset", "source", "raw", "shards", title="datasets")
    for name, settings in loaded.datasets.items():
        meta = paths.shards(name) / "meta.json"
        counts = json.loads(meta.read_text())["splits"] if meta.exists() else {}
        datasets.add_row(
            name,
            settings.source,
            "yes" if paths.raw(name).exists() else "no",
            ", ".join(f"{s} {v['samples']}" for s, v in counts.items()) or "no",
        )
    console.print(papers, datasets)


def main() -> None:
    try:
        app()
    except USER_ERRORS as error:  # one clear line, no traceback: the message names the file or key
        # escaped: a message quoting `[5, 1]` is not markup; unwrapped: one line, whatever the terminal's width
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True, soft_wrap=True
        )
        raise SystemExit(2) from None
