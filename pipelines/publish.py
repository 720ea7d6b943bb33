"""publish <experiment>: its evaluated run as a committed evidence record,
results/<experiment>/<profile>-<source>-<date>.json, with the figures the run logged beside it.

Only the checkpoint that params.yaml's recipe trained, evaluated, from committed code: the record names the
commit, and a reader who checks it out and applies `params_changes` runs the same recipe on data with the
same checksums. Each claim's status follows the rules in pipelines/evidence.py, so a smoke or synthetic run
is published as `not_comparable` and nothing else."""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from datamodules import DATASETS
from datamodules.files import SOURCE_RECORD, atomic_dir, atomic_write, read_json
from datamodules.shards import read_meta
from lightning_modules import PAPERS
from pipelines import checks, evidence, paths, tracking
from pipelines.config import Params, load_params
from pipelines.errors import StageError
from pipelines.params_files import Reader, read_tree
from pipelines.processes import changed_since_head, git
from pipelines.runs import read_record

# Files a run's record carries itself, so they may differ from the commit.
CARRIED = ("params.yaml", "recipes/", "dvc.lock", "metrics/", "reports/", "results/")
# Settings that cannot move a number, each with why.
HARMLESS = {
    "trainer.log_every_n_steps": "how often training curves are logged",
    "trainer.checkpoint_every_n_steps": "how often a resumable checkpoint is written; resuming is exact",
    "data.num_workers": "loader processes: every sample is read the same, whatever the count (tested)",
}
PACKAGES = ("torch", "torchvision", "pytorch-lightning", "torchmetrics", "numpy", "scipy", "webdataset")
PACKAGES += ("mlflow", "dvc", "pydantic", "scikit-learn", "pycocotools")
MANIFEST_ABOVE = 64  # raw copies of more files are recorded as one manifest hash per top-level folder


def committed_code() -> str:
    """HEAD's commit, refusing a tree whose code differs from it."""
    try:
        commit, changed = changed_since_head(CARRIED)
    except (OSError, subprocess.CalledProcessError) as error:
        raise StageError(f"publish needs the project's git repository: {error}") from None
    if changed:
        raise StageError(
            f"publishing from a dirty tree: {', '.join(changed)} changed since {commit[:12]}; commit first "
            f"(only {', '.join(CARRIED)} may differ: the record carries them)"
        )
    return commit


def dotted(values: object, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} → {"a.b": 1}."""
    if isinstance(values, dict) and values:
        return {
            k: v
            for name, inner in values.items()
            for k, v in dotted(inner, f"{prefix}.{name}" if prefix else str(name)).items()
        }
    return {prefix: values}


def at_commit(commit: str) -> Reader:
    """The settings' files as `commit` has them (None for one it lacks)."""

    def read(path: Path) -> str | None:
        try:
            return git("show", f"{commit}:{path.as_posix()}")
        except subprocess.CalledProcessError:
            return None

    return read


def params_changes(commit: str) -> dict[str, dict]:
    """params.yaml and recipes/ now against at `commit`: {dotted key: {"committed": a, "ran": b}}."""
    # the settings' own reader: PyYAML's safe_load reads `1e-05` (what `dvc exp run -S` writes) as a string
    before = dotted(read_tree(paths.PARAMS, at_commit(commit))[0])
    now = dotted(read_tree(paths.PARAMS)[0])
    return {
        k: {"committed": before.get(k), "ran": now.get(k)}
        for k in sorted(before.keys() | now.keys())
        if before.get(k) != now.get(k)
    }


def committed_params(commit: str) -> Params:
    return load_params(paths.PARAMS, read=at_commit(commit))


def differs_from_paper(params: Params, key: str, commit: str) -> list[dict]:
    """Every way this run departs from the paper: each setting that is not the committed paper recipe's
    (steps, batch, ...), then the paper recipe's own deviations as its paper file states them."""
    ran, paper_recipe = params.recipe(key).flat(), committed_params(commit).recipe(key, "paper").flat()
    found = [
        {
            "what": f"{name}: {ran.get(name)!r} where the paper's recipe has {paper_recipe.get(name)!r}",
            "moves_number": name not in HARMLESS,
            "why": HARMLESS.get(name, ""),
            "affects": "",
        }
        for name in sorted(ran.keys() | paper_recipe.keys())
        if ran.get(name) != paper_recipe.get(name)
    ]
    paper = PAPERS[params.papers[key].paper].paper
    found += [
        {"what": d.what, "moves_number": d.moves_number, "why": d.why, "affects": d.affects}
        for d in paper.deviations
    ]
    if departs := getattr(DATASETS[params.papers[key].dataset], "departs", None):  # the dataset's own split
        found.append({"what": departs[0], "moves_number": False, "why": departs[1], "affects": ""})
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_files(dataset: str) -> dict[str, str]:
    """sha256 of every raw file read (the IDX files, the archives' contents); a copy of many small files
    (Omniglot's drawings) gives one manifest hash per top-level folder: sha256 of its sorted `path hash`
    lines, which `sha256sum` over the same files reproduces."""
    raw = paths.raw(dataset)
    files = sorted(p for p in raw.rglob("*") if p.is_file() and p.name != SOURCE_RECORD)
    if not files:
        raise StageError(f"{raw}: no raw files; run `reprozoo fetch {dataset}`")
    if len(files) <= MANIFEST_ABOVE:
        return {p.relative_to(raw).as_posix(): sha256(p) for p in files}
    folders: dict[str, list[str]] = {}
    for p in files:
        name = p.relative_to(raw)
        folders.setdefault(name.parts[0], []).append(f"{name.as_posix()} {sha256(p)}\n")
    return {
        f"{folder}/ ({len(lines)} files, manifest)": hashlib.sha256("".join(lines).encode()).hexdigest()
        for folder, lines in folders.items()
    }


def is_rate(metric: str) -> bool:
    """An error or accuracy over test examples (`test/err_…`, `test/top1_acc_…`): a binomial proportion. A
    margin between two of them (`…_minus_…`) or a ratio (`…_over_…`) is not one."""
    name = metric.rsplit("/", 1)[-1]
    return name.split("_")[0] in ("err", "acc", "top1", "top5") and not {"minus", "over"} & set(
        name.split("_")
    )


def interval(metric: str, value: float | None, metrics: dict, examples: int | None) -> tuple:
    """The claim's 95% half-width: the one the run logged (over test episodes; a training error's over the
    training examples), else a binomial one over the test examples for a rate; None where the run keeps no
    per-example values (a mean distortion)."""
    if f"{metric}_ci95" in metrics:
        return metrics[f"{metric}_ci95"], "training examples" if "/train_err" in metric else "test episodes"
    if value is not None and examples and is_rate(metric) and 0 <= value <= 1:
        return 1.96 * (value * (1 - value) / examples) ** 0.5, "test examples"
    return None, None


def claims(result: dict, paper: str, examples: int | None) -> list[dict]:
    """Each judged claim with its interval and the other published figures on the same protocol: the
    paper's and the dataset's own (a benchmark's baselines)."""
    references = {}
    for ref in PAPERS[paper].paper.references:
        references.setdefault(ref.metric, []).append({"value": ref.value, "source": ref.source})
    for metric, found in getattr(DATASETS[result["dataset"]], "references", {}).items():
        references.setdefault(metric, []).extend({"value": v, "source": s} for v, s in found)
    verified = {c.metric: c.verified for c in PAPERS[paper].paper.claims}
    out = []
    for c in result["claims"]:
        ci95, over = interval(c["metric"], c["reproduced"], result["metrics"], examples)
        out.append(
            {
                **{k: c[k] for k in ("metric", "claimed", "reproduced", "tolerance", "higher_is_better")},
                "ci95": ci95,
                "ci95_over": over,
                "status": "not_comparable",  # set by the rules below
                "source": c["source"],
                "verified": verified.get(c["metric"], False),
                "references": references.get(c["metric"], []),
            }
        )
    return out


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def publish(
    params: Params, key: str, today: datetime.date | None = None, notes: str = "", set_aside: list[str] = ()
) -> Path:
    """`set_aside`: `METRIC=why` for each claim this run cannot judge (then not_comparable, with why)."""
    if bad := [item for item in set_aside if "=" not in item]:
        raise StageError(f"--set-aside {bad[0]!r}: expected METRIC=why")
    aside = dict(item.split("=", 1) for item in set_aside)
    recipe = params.recipe(key)
    checks.own_checkpoint(recipe)  # this recipe's finished training, or a clear refusal
    record, commit = read_record(key), committed_code()
    result = read_json(paths.metrics(key), f"run `reprozoo evaluate {key}`")
    if result.get("mlflow_run_id") != record["mlflow_run_id"]:
        raise StageError(
            f"{paths.metrics(key)}: the evaluation of run {result.get('mlflow_run_id')}, not of the "
            f"checkpoint {paths.run_record(key)} names ({record['mlflow_run_id']}); run `reprozoo evaluate "
            f"{key}`"
        )
    meta = read_meta(paths.shards(recipe.dataset))
    run = tracking.store(params).client.get_run(record["mlflow_run_id"])
    hardware = {k.removeprefix("hardware."): v for k, v in run.data.tags.items() if k.startswith("hardware.")}
    examples = meta["splits"].get("test", {}).get("samples")
    draft = {
        "key": key,
        "paper": recipe.paper,
        "profile": recipe.profile,
        "published": (today or datetime.date.today()).isoformat(),
        "recipe": recipe.flat(),
        "params_changes": params_changes(commit),
        "differs_from_paper": differs_from_paper(params, key, commit),
        "fingerprint": record["fingerprint"],
        "git_commit": commit,
        "versions": versions(),
        "hardware": hardware,
        "data": {
            "dataset": recipe.dataset,
            "source": meta["source"]["source"],
            "settings": {k: v for k, v in meta["source"].items() if k != "source"},
            "files": data_files(recipe.dataset),
        },
        "wall_time_s": ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000,
        "evaluate_s": sum(v for k, v in run.data.metrics.items() if k.startswith("evaluate/seconds/")),
        "steps": record["global_step"],
        "seeds": [recipe.seed],
        "claims": claims(result, recipe.paper, examples),
        "mlflow_run_id": record["mlflow_run_id"],
        "figures": [],
        "notes": notes,
        "set_aside": aside,
    }
    unknown = sorted(set(aside) - {c["metric"] for c in draft["claims"]})
    if unknown:
        raise StageError(f"--set-aside {', '.join(unknown)}: not a claim this run measured")
    parsed = evidence.Record.model_validate(draft)
    for claim in parsed.claims:
        claim.status = evidence.expected_status(parsed, claim)
    stem = f"{recipe.profile}-{parsed.data.source}-{parsed.published}"
    folder = evidence.RESULTS / key
    parsed.figures = copy_figures(params, record["mlflow_run_id"], folder / stem)
    path = folder / f"{stem}.json"
    atomic_write(path, json.dumps(evidence.check(parsed, str(path)).model_dump(), indent=2) + "\n")
    return path


def copy_figures(params: Params, run_id: str, folder: Path) -> list[str]:
    """The figures evaluate logged to the run, as PNGs beside the record."""
    with atomic_dir(folder) as scratch:
        names = tracking.download_figures(tracking.store(params), run_id, scratch)
    return sorted((folder / "figures" / name).as_posix() for name in names)
