"""The verbs that spread work over a Ray cluster: `tune` (a sweep), `submit` (any command as a job) and
`repro` (`dvc repro` with every stale stage a task). Registered on the one `reprozoo` app."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipelines.choices import Experiment
from pipelines.cli import EXPERIMENT, app, console, params


@app.command(name="tune")
def tune_(
    experiment: Experiment = EXPERIMENT,
    address: str = typer.Option(
        None, help="a Ray cluster (ray://… or host:port); default: RAY_ADDRESS, else a local Ray"
    ),
    num_cpus: int = typer.Option(None, help="CPUs for a local Ray (default: all)"),
    num_samples: int = typer.Option(None, help="override papers.<experiment>.tune.num_samples"),
    dry_run: bool = typer.Option(
        False, help="resolve the sweep (space, metric, rungs) and print it; start no Ray"
    ),
) -> None:
    """Ray Tune sweep over papers.<experiment>.tune; best config → reports/tune/<experiment>.json, trials as
    nested MLflow runs."""
    from pipelines import paths
    from pipelines.tune import plan, run_sweep, trials_table

    if dry_run:
        console.print(json.dumps(plan(params(), experiment, num_samples).describe(experiment), indent=2))
        return
    summary = run_sweep(params(), experiment, address=address, num_cpus=num_cpus, num_samples=num_samples)
    console.print(trials_table(summary, experiment))
    console.print(
        f"best {summary['metric']} {summary['best_value']:.4f}: {json.dumps(summary['best_config'])} → "
        f"{paths.tune_report(experiment)}  (MLflow parent run {summary['mlflow_parent_run_id']})"
    )


@app.command()
def submit(
    command: list[str] = typer.Argument(None, help="after --: the command the job runs"),
    address: str = typer.Option(
        None,
        help="the cluster's dashboard, e.g. http://head:8265 (default: RAY_ADDRESS, else 127.0.0.1:8265)",
    ),
    wait: bool = typer.Option(True, help="stream the logs, exit with the job's status; --no-wait: its id"),
    env: str = typer.Option("lock", help="lock: install constraints.txt in the job; cluster: its Python"),
    cwd: str = typer.Option(None, help="run in this checkout on the cluster, not an upload of this tree"),
    cpus: float = typer.Option(None, help="CPUs the command needs (Ray places it on a node with them)"),
    gpus: float = typer.Option(None, help="GPUs the command needs (a `dvc repro` or `train` on a GPU node)"),
    status: str = typer.Option(None, help="print the status of job ID"),
    logs: str = typer.Option(None, help="print the logs of job ID"),
    stop: str = typer.Option(None, help="stop job ID"),
) -> None:
    """Run a reprozoo command (tune, train, `dvc repro …`) as a Ray job: `reprozoo submit -- reprozoo tune
    protonets`."""
    from pipelines import submit as jobs

    if status or logs or stop:
        for line in jobs.manage(address, status=status, logs=logs, stop=stop):
            console.print(line, end="", markup=False, highlight=False)
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
def repro(
    targets: list[str] = typer.Argument(None, help="stages as `dvc repro` takes them; default: every stage"),
    jobs: int = typer.Option(
        None, min=1, help="run here, this many stages at a time, without Ray or a remote (make repro: 2)"
    ),
    address: str = typer.Option(
        None, help="a Ray cluster (ray://head:10001); default: RAY_ADDRESS, else local"
    ),
    num_cpus: int = typer.Option(None, help="CPUs of a local Ray: its slots for one-CPU stages"),
    origin: str = typer.Option(None, help="where nodes clone this commit (default: git's origin, else here)"),
    checkouts: str = typer.Option(None, help="each node's folder for stage checkouts (default: its temp)"),
) -> None:
    """`dvc repro` as wide as the DAG allows: every stale stage started once the stages it reads are done, as
    a Ray task (outputs through the DVC remote, lock entries back into dvc.lock) or, with --jobs, here."""
    from pipelines import repro as cluster
    from pipelines import tracking

    here = jobs is not None
    if here and (address or num_cpus or origin or checkouts):
        raise typer.BadParameter(
            "--jobs runs here: it takes no --address, --num-cpus, --origin or --checkouts"
        )
    root, loaded = Path.cwd(), params()
    if not here:
        cluster.check_remote(root)
    the_plan = cluster.plan(root, targets or [], cluster.stage_resources(loaded), committed=not here)
    if not the_plan.order:
        console.print("nothing stale: every stage is up to date")
        return
    # Made before any stage starts: two trainings creating one SQLite store at once race on its schema, and
    # experiments made here keep their artifacts here, not in a checkout.
    store = tracking.store(loaded)
    for key in {name.partition("@")[2] for name in the_plan.order if name.startswith("train@")}:
        tracking.experiment_id(store, key)
    env = {"MLFLOW_TRACKING_URI": store.uri}
    if here:
        state, results = _repro_here(root, the_plan, env, jobs)
    else:
        state, results = _repro_on_ray(root, the_plan, env, address, num_cpus, origin, checkouts)
    cluster.record_times(root, state, results)
    for name in [n for n, s in state.items() if s == "done" and results[n].get("resumed")]:
        console.print(f"{name}: resumed from the checkpoint mirrored on the DVC remote", highlight=False)
    for name in [n for n, s in state.items() if s == "failed"]:
        console.print(f"{name}: {results[name]['error']}", markup=False, highlight=False, soft_wrap=True)
    unfinished = [n for n, s in state.items() if s != "done"]
    if unfinished:
        console.print(f"not done: {', '.join(unfinished)}", markup=False, highlight=False)
    raise typer.Exit(1 if unfinished else 0)


def _repro_here(root: Path, the_plan, env: dict[str, str], jobs: int) -> tuple[dict, dict]:
    from rich.live import Live

    from pipelines import repro as cluster
    from pipelines import repro_here

    env = {**env, **repro_here.threads(jobs)}
    with repro_here.warm_server(root, env) as server, Live(console=console, auto_refresh=False) as live:
        start = repro_here.starter(root, {**env, **server})
        return cluster.drive(the_plan, start, repro_here.wait, cluster.viewer(live, console), jobs)


def _repro_on_ray(root: Path, the_plan, env, address, num_cpus, origin, checkouts) -> tuple[dict, dict]:
    from rich.live import Live

    from pipelines import repro as cluster
    from pipelines.processes import connect_ray

    cluster.push_inputs(root, the_plan)
    with Live(console=console, auto_refresh=False) as live:
        connect_ray(address, num_cpus)
        origin = origin or cluster.default_origin(root)
        checkouts = checkouts or cluster.default_checkouts()
        state, results = cluster.on_ray(root, the_plan, origin, checkouts, env, cluster.viewer(live, console))
    cluster.collect(root, state, results)
    return state, results
