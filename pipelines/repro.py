"""`reprozoo repro [TARGETS]`: `dvc repro` across a Ray cluster, as wide as the DAG allows.

DVC's own graph and status say what is stale (no second copy of the pipeline): a stage is stale when DVC
says it changed or when it reads a stage that is. Each stale stage runs as a Ray task once the stages it
reads are done, in its own checkout of this commit on its node: the task writes the lock entries of the
stages it reads into the checkout, pulls their outputs from the DVC remote, runs `dvc repro --single-item`,
pushes its outputs and hands back its lock entry (and the small uncached outputs, metrics). The driver
writes the entries into the local dvc.lock and pulls the outputs, so a local `dvc repro` afterwards has
nothing to do. A failed stage stops only the stages that read it; a task whose worker dies is retried by
Ray, and a retried training resumes from its last checkpoint, on the same node or another
(pipelines/stage_tries.py).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import paths
from pipelines.errors import ReprozooError
from pipelines.processes import changed_since_head, dvc, git


class ReproError(ReprozooError):
    """The tree is dirty, no DVC remote is set, or a stage failed."""


@dataclass
class Plan:
    commit: str
    order: list[str]  # the stale stages, each after the stages it reads
    reads: dict[str, list[str]]  # stage → every stage whose outputs it reads (stale or not)
    resources: dict[str, dict[str, float]] = field(default_factory=dict)


def check_tree(root: Path) -> str:
    """HEAD, when every tracked file but DVC's own records is as committed: the workers check out HEAD."""
    commit, dirty = changed_since_head(("dvc.lock", "metrics/"), cwd=root)
    if dirty:
        raise ReproError(f"commit first: the workers run HEAD, and these differ from it: {', '.join(dirty)}")
    return commit


def plan(root: Path, targets: list[str], resources, committed: bool = True) -> Plan:
    """`resources(stage_name)` gives a stage's Ray resources. `committed`: the stages will run from HEAD
    (on Ray's nodes), so the tree must be as committed; in this workspace it need not be."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    commit = check_tree(root) if committed else ""
    with Repo(str(root)) as repo, repo.lock:  # DVC checks a stage's status under its repository lock
        graph = get_active_graph(repo.index.graph)  # edges run from a stage to the stages it reads
        chosen = collect_stages(repo, targets) if targets else None
        stale: list = []
        for stage in plan_repro(graph, chosen):  # dependencies first
            if any(read in stale for read in graph.successors(stage)) or stage.changed():
                stale.append(stage)
        reads = {s.addressing: [r.addressing for r in graph.successors(s)] for s in stale}
    order = [s.addressing for s in stale]
    return Plan(commit, order, reads, {name: resources(name) for name in order})


def read_lock(root: Path) -> dict:
    """DVC's own YAML reader (YAML 1.2): PyYAML's 1.1 reads DVC's `1e-06` as a string, and the local
    dvc.lock would then say the experiment's params changed."""
    from dvc.utils.serialize import load_yaml

    lock = root / "dvc.lock"
    return (load_yaml(lock) or {}).get("stages", {}) if lock.exists() else {}


def write_lock(root: Path, entries: dict) -> None:
    """DVC's own YAML writer, in place of the file's entries for these stages (the others are kept)."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(root / "dvc.lock") as lock:
        lock.setdefault("schema", "2.0")
        lock.setdefault("stages", {}).update(entries)


def run_stage(
    stage: str, commit: str, origin: str, checkouts: str, locks: dict, files: dict, env: dict
) -> dict:
    """One stage in this node's checkout of `commit`: its inputs pulled, run, its outputs pushed."""
    from pipelines.stage_tries import mirrored, stop_earlier_tries

    started, checkout = time.time(), Path(checkouts) / commit[:12] / stage.replace("@", "-")
    stop_earlier_tries(checkout)
    if not (checkout / ".git").exists():  # kept between tries: a retried training resumes from last.ckpt
        checkout.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--no-checkout", origin, str(checkout)], check=True)
        git("checkout", "-q", commit, cwd=checkout)
    for path, text in files.items():  # outputs DVC keeps out of its cache (metrics) of the stages read
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text(text)
    write_lock(checkout, locks)
    steps = [["pull", *sorted(locks)]] if locks else []
    steps += [["repro", "--single-item", stage], ["push", stage]]
    with mirrored(checkout, commit, stage) as resumed:
        for step in steps:  # PYTHONPATH: the stage's `reprozoo` runs the checkout's code
            done = dvc(*step, cwd=checkout, env={**env, "PYTHONPATH": str(checkout)})
            if done.returncode:
                raise ReproError(f"`dvc {' '.join(step)}` failed:\n{(done.stdout + done.stderr)[-3000:]}")
    import ray

    return {
        "stage": stage,
        "resumed": resumed,
        "lock": read_lock(checkout)[stage],
        "files": uncached_outputs(checkout, stage),
        "node": ray.util.get_node_ip_address(),
        "seconds": time.time() - started,
    }


def uncached_outputs(checkout: Path, stage: str) -> dict[str, str]:
    from dvc.repo import Repo

    with Repo(str(checkout)) as repo:
        (found,) = repo.stage.collect(stage)
        paths = [out.def_path for out in found.outs if not out.use_cache]
    return {path: (checkout / path).read_text() for path in paths if (checkout / path).is_file()}


def check_remote(root: Path) -> None:
    done = dvc("remote", "default")
    if done.returncode or not done.stdout.strip():
        raise ReproError(
            "reprozoo repro needs a DVC remote that every node reaches (outputs travel through it): "
            "`dvc remote add -d shared <path or s3://bucket/path>`"
        )


def default_checkouts() -> str:
    return str(Path(tempfile.gettempdir()) / "reprozoo-checkouts")


def stage_resources(params):
    """A stage's Ray resources: a train stage's from `papers.<key>.resources`, else a CPU and, on a GPU
    accelerator, the trainer's devices; every other stage a CPU."""

    def resources(stage: str) -> dict[str, float]:
        verb, _, key = stage.partition("@")
        if verb != "train" or key not in params.papers:
            return {"cpu": 1, "gpu": 0}
        given, trainer = params.papers[key].resources, params.recipe(key).trainer
        if given is not None:
            return {"cpu": given.cpu, "gpu": given.gpu}
        on_gpu = trainer.accelerator in ("gpu", "cuda") and isinstance(trainer.devices, int)
        return {"cpu": 1, "gpu": trainer.devices if on_gpu else 0}

    return resources


def drive(the_plan: Plan, start, wait, show, slots: int | None = None) -> tuple[dict, dict]:
    """Every stale stage started once the stages it reads are done, at most `slots` at a time (None: as many
    as are ready; Ray queues them for resources). `start(name)` returns a handle; `wait(handles)` returns
    (handle, result dict) for one that ended, the result an Exception where the stage failed;
    `show(state, results)` after each change. Returns each stage's state (done, failed, skipped) and its
    result or error."""
    stale = set(the_plan.order)
    state, results, running = dict.fromkeys(the_plan.order, "queued"), {}, {}
    while True:
        for name in the_plan.order:
            waits = [r for r in the_plan.reads[name] if r in stale]
            if state[name] != "queued":
                continue
            if any(state[r] in ("failed", "skipped") for r in waits):
                state[name], results[name] = "skipped", {"error": "a stage it reads did not finish"}
            elif all(state[r] == "done" for r in waits) and (slots is None or len(running) < slots):
                running[start(name)], state[name] = name, "running"
        show(state, results)
        if not running:
            return state, results
        handle, result = wait(list(running))
        name = running.pop(handle)
        if isinstance(result, Exception):
            state[name], results[name] = "failed", {"error": str(getattr(result, "cause", None) or result)}
        else:
            state[name], results[name] = "done", result


def on_ray(root: Path, the_plan: Plan, origin: str, checkouts: str, env: dict, show) -> tuple[dict, dict]:
    """`drive` with each stage a Ray task in a checkout of its own, inputs and outputs through the remote."""
    import ray

    task = ray.remote(max_retries=2)(run_stage)  # retried when its worker dies, not when the stage fails
    locks, files = read_lock(root), {}

    def start(name: str):
        inputs = {r: locks[r] for r in the_plan.reads[name] if r in locks}
        cpus, gpus = the_plan.resources[name]["cpu"], the_plan.resources[name]["gpu"]
        threads = {"OMP_NUM_THREADS": str(max(1, int(cpus)))}
        return task.options(num_cpus=cpus, num_gpus=gpus).remote(
            name, the_plan.commit, origin, checkouts, inputs, dict(files), {**env, **threads}
        )

    def wait(refs: list):
        (ready,), _ = ray.wait(refs, num_returns=1)
        try:
            result = ray.get(ready)
        except Exception as error:  # the stage's own failure, or its worker lost more often than retried
            return ready, error
        locks[result["stage"]] = result["lock"]
        files.update(result["files"])
        return ready, result

    return drive(the_plan, start, wait, show)


def push_inputs(root: Path, the_plan: Plan) -> None:
    """The outputs of up-to-date stages that stale ones read, from here to the remote the workers pull
    from."""
    inputs = sorted({r for name in the_plan.order for r in the_plan.reads[name]} - set(the_plan.order))
    done = dvc("push", *inputs) if inputs else None
    if done is not None and done.returncode:
        raise ReproError(f"`dvc push {' '.join(inputs)}` failed:\n{(done.stdout + done.stderr)[-2000:]}")


def collect(root: Path, state: dict, results: dict) -> None:
    """The finished stages' lock entries into dvc.lock, their uncached outputs written, their outputs
    pulled: a local `dvc repro` then has nothing to do for them."""
    finished = [name for name, s in state.items() if s == "done"]
    if not finished:
        return
    write_lock(root, {name: results[name]["lock"] for name in finished})
    for name in finished:
        for path, text in results[name]["files"].items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
    done = dvc("pull", *finished)
    if done.returncode:
        raise ReproError(f"`dvc pull` of the finished stages failed:\n{(done.stdout + done.stderr)[-2000:]}")


def record_times(root: Path, state: dict, results: dict) -> None:
    """Each stage this run finished, with its wall time (DVC's checks and records included), over those of
    earlier runs: `reprozoo bench --only workflow` reads an evaluate stage's beside its test pass."""
    from datamodules.files import atomic_write

    path = root / paths.STAGE_TIMES
    times = json.loads(path.read_text()) if path.exists() else {}
    times.update({name: results[name]["seconds"] for name, s in state.items() if s == "done"})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(dict(sorted(times.items())), indent=1) + "\n")


def default_origin(root: Path) -> str:
    """git's `origin` (what every node of a cluster can reach), else this repository (one machine)."""
    done = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else str(root)


def table(state: dict, results: dict):
    """The live view: each stage, its state, its node and wall time once done, failures' first line."""
    from rich.table import Table

    view = Table("stage", "state", "node", "seconds")
    view.add_column("note", no_wrap=True, overflow="ellipsis", max_width=60)
    for name, now in state.items():
        found = results.get(name, {})
        seconds = f"{found['seconds']:.0f}" if "seconds" in found else ""
        note = found.get("error", "").strip().splitlines()[:1] or (
            ["resumed from the checkpoint on the DVC remote"] if found.get("resumed") else []
        )
        view.add_row(name, now, found.get("node", ""), seconds, note[0] if note else "")
    return view


def viewer(live, console):
    """`show` for `drive`: the live table; where it is not a terminal (a log, CI), where the table is printed
    only at the end, also a line per stage that starts or ends."""
    seen: dict[str, str] = {}

    def show(state: dict, results: dict) -> None:
        live.update(table(state, results), refresh=True)
        if console.is_terminal:
            return
        for name, now in state.items():
            if now != seen.get(name, "queued"):
                seconds = results.get(name, {}).get("seconds")
                took = f" ({seconds:.0f} s)" if seconds is not None else ""
                console.print(
                    f"{time.strftime('%H:%M:%S')} {name}: {now}{took}", markup=False, highlight=False
                )
        seen.update(state)

    return show
