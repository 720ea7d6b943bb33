"""Bad input, wrong state and faults, tried as a hostile new user would: one table, every case through the
real CLI and its one error boundary (`pipelines.cli.main`, in process: a case costs no interpreter start).

Each case asserts the exit code, that no traceback came out (an exception escaping the boundary fails the
case), that the message names the file, key or value and what was expected, and that every file the project
held before is byte-for-byte what it was. Faults that need a process of their own (a file-size limit)
run through `tests.helpers.cli`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pipelines.processes import free_port
from tests.helpers import cli, merge, tiny_params, write_params

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    says: tuple[str, ...]  # what the message must hold: the file, key or value, and what was expected
    setup: Setup = lambda project: None
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


# ---- setups ------------------------------------------------------------------------------------------------


def params_with(change: dict) -> Setup:
    """params.yaml = the tiny params with `change` merged in (dotted sections as nested dicts)."""
    return lambda project: write_params(project, merge(tiny_params(), change))


def protonets(**section) -> dict:
    return {"papers": {"protonets": section}}


def omniglot(**section) -> dict:
    return {"datasets": {"omniglot": section}}


def params_text(text: str) -> Setup:
    return lambda project: (project / "params.yaml").write_text(text)


def then(*setups: Setup) -> Setup:
    def run(project: Path) -> None:
        for setup in setups:
            setup(project)

    return run


def own_data(project: Path) -> Path:
    """Copies of the session's raw Omniglot and its shards (the project's links point at shared ones), for a
    case to damage or a stage to write over; returns the shards."""
    for part in ("raw", "shards"):
        link = project / "data" / part
        source = link.resolve()
        link.unlink()
        shutil.copytree(source, link)
    return project / "data/shards/omniglot"


def damaged_shards(damage: Callable[[Path], None]) -> Setup:
    return lambda project: damage(own_data(project))


def first_shard(shards: Path) -> Path:
    return shards / json.loads((shards / "meta.json").read_text())["splits"]["train"]["shards"][0]


def cut(path_of: Callable[[Path], Path], keep: int = 40) -> Callable[[Path], None]:
    return lambda shards: path_of(shards).write_bytes(path_of(shards).read_bytes()[:keep])


def shard_member(suffix: str, payload: bytes) -> Callable[[Path], None]:
    """A shard whose first sample is `suffix` only (a pickle, a .pth): webdataset must never unpickle it."""

    def damage(shards: Path) -> None:
        shard = first_shard(shards)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo(f"evil.{suffix}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        shard.write_bytes(out.getvalue())
        meta = json.loads((shards / "meta.json").read_text())
        meta["splits"]["train"]["bytes"][shard.name] = len(out.getvalue())
        (shards / "meta.json").write_text(json.dumps(meta))

    return damage


def edit_meta(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(shards: Path) -> None:
        meta = json.loads((shards / "meta.json").read_text())
        change(meta)
        (shards / "meta.json").write_text(json.dumps(meta))

    return damage


def record(**fields) -> Setup:
    """models/protonets/run.json as a finished training of today's recipe would leave it, changed by
    `fields` (`fingerprint=None`: today's)."""

    def write(project: Path) -> None:
        from pipelines.config import load_params
        from tests.helpers import chdir

        with chdir(project):
            fingerprint = load_params().recipe("protonets").fingerprint()
        folder = project / "models/protonets"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "best.ckpt").write_bytes(b"PK not really a checkpoint")
        values = {
            "experiment": "protonets",
            "finished": True,
            "fingerprint": fingerprint,
            "profile": "smoke",
            "best": "models/protonets/best.ckpt",
            "mlflow_run_id": "0" * 32,
        }
        (folder / "run.json").write_text(json.dumps({**values, **fields}))

    return write


def written(relative: str, content: str | bytes) -> Setup:
    def write(project: Path) -> None:
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return write


def local_copy(make: Callable[[Path], None], dataset: str = "omniglot") -> Setup:
    """datasets.<dataset>: source local, path: a folder beside the project, `make` fills it (Omniglot's
    starts as the session's replica in the official layout)."""

    def setup(project: Path) -> None:
        copy = project.parent / f"{project.name}-copy"
        if dataset == "omniglot":
            shutil.copytree(project / "data/raw/omniglot", copy)
        copy.mkdir(exist_ok=True)
        make(copy)
        params_with({"datasets": {dataset: {"source": "local", "path": str(copy)}}})(project)

    return setup


def fetched(dataset: str, damage: Callable[[Path], None]) -> Setup:
    """data/raw/<dataset>: the tiny replica, made by the real fetch stage, then `damage`d."""

    def setup(project: Path) -> None:
        from pipelines.config import load_params
        from pipelines.fetch import fetch_dataset
        from tests.helpers import chdir

        for part in ("raw", "shards"):  # the session's Omniglot stays as it is
            (project / "data" / part).unlink()
        with chdir(project):
            damage(fetch_dataset(load_params(), dataset))

    return setup


def coco_annotation(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        from datamodules.coco import annotation_file

        path = annotation_file(raw, "train")
        content = json.loads(path.read_text())
        change(content["annotations"][0])
        path.write_text(json.dumps(content))

    return damage


def camvid_label(change: Callable) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        from PIL import Image

        label = sorted((raw / "CamVid/trainannot").glob("*.png"))[0]
        with Image.open(label) as mask:
            changed = change(mask)
        changed.save(label)

    return damage


def imagenet_member(name: str) -> Callable[[Path], None]:
    """ILSVRC2012_img_train.tar with one more member, `name`."""

    def damage(raw: Path) -> None:
        with tarfile.open(raw / "ILSVRC2012_img_train.tar", "a") as tar:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))

    return damage


def stray_files(raw: Path) -> None:
    for folder in (raw / "images_background", next((raw / "images_background").iterdir())):
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def experiment_created_at(relative: str) -> Setup:
    """The MLflow experiment `protonets` already exists, created when mlflow.artifact_location said
    `relative` (under the project): a corrected setting does not move it."""

    def setup(project: Path) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{project}/mlflow.db")
        client.create_experiment("protonets", artifact_location=(project / relative).as_uri())

    return setup


def dead_server() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


A_FILE = "params.yaml"  # a file in every project: a folder "under" it cannot be made

# ---- the table ---------------------------------------------------------------------------------------------

CASES: dict[str, Case] = {
    # params.yaml: strict, every value named by its dotted path
    "num_workers -1": Case(
        ("recipe", "protonets"),
        ("papers.protonets.data.num_workers", "-1"),
        params_with(protonets(data={"num_workers": -1})),
    ),
    "bool for an int": Case(
        ("recipe", "protonets"),
        ("papers.protonets.hparams.hidden", "valid integer, got True"),
        params_with(protonets(hparams={"hidden": True})),
    ),
    "string for a float": Case(
        ("recipe", "protonets"),
        ("papers.protonets.hparams.lr", "0.1"),
        params_with(protonets(hparams={"lr": "0.1"})),
    ),
    "negative lr": Case(
        ("recipe", "protonets"),
        ("papers.protonets.hparams.lr", "greater than 0"),
        params_with(protonets(hparams={"lr": -1})),
    ),
    "unknown hparam": Case(
        ("recipe", "protonets"), ("papers.protonets.hparams.lrr",), params_with(protonets(hparams={"lrr": 1}))
    ),
    "unknown data setting": Case(
        ("recipe", "protonets"), ("papers.protonets.data.ways",), params_with(protonets(data={"ways": 5}))
    ),
    "unknown paper": Case(
        ("list",), ("papers.protonets.paper", "protonet"), params_with(protonets(paper="protonet"))
    ),
    "unknown dataset of a paper": Case(
        ("list",), ("papers.protonets.dataset", "omniglott"), params_with(protonets(dataset="omniglott"))
    ),
    "unknown profile": Case(("list",), ("profile", "fast"), params_with({"profile": "fast"})),
    "seed not an int": Case(("list",), ("seed", "abc"), params_with({"seed": "abc"})),
    "max_steps 0": Case(("list",), ("trainer.max_steps", "0"), params_with({"trainer": {"max_steps": 0}})),
    "devices 0": Case(("list",), ("trainer.devices", "0"), params_with({"trainer": {"devices": 0}})),
    "unknown precision": Case(
        ("list",), ("trainer.precision", "bf17"), params_with({"trainer": {"precision": "bf17"}})
    ),
    "accumulate 0": Case(
        ("list",),
        ("trainer.accumulate_grad_batches", "0"),
        params_with({"trainer": {"accumulate_grad_batches": 0}}),
    ),
    "unknown trainer key": Case(("list",), ("trainer.max_step",), params_with({"trainer": {"max_step": 10}})),
    "unknown source": Case(
        ("fetch", "omniglot"), ("datasets.omniglot.source", "ftp"), params_with(omniglot(source="ftp"))
    ),
    "unknown on_error": Case(
        ("list",), ("datasets.omniglot.on_error", "ignore"), params_with(omniglot(on_error="ignore"))
    ),
    "shard_size 0": Case(
        ("list",), ("datasets.omniglot.shard_size", "0"), params_with(omniglot(shard_size=0))
    ),
    "replica size unknown": Case(
        ("fetch", "omniglot"),
        ("datasets.omniglot.synthetic", "letters"),
        params_with(omniglot(synthetic={"letters": 3})),
    ),
    "local without a path": Case(
        ("fetch", "omniglot"), ("datasets.omniglot", "path"), params_with(omniglot(source="local"))
    ),
    "local path missing": Case(
        ("fetch", "omniglot"),
        ("/nowhere/omniglot",),
        params_with(omniglot(source="local", path="/nowhere/omniglot")),
    ),
    "password in the tracking uri": Case(
        ("list",),
        ("mlflow.tracking_uri", "MLFLOW_TRACKING_PASSWORD"),
        params_with({"mlflow": {"tracking_uri": "http://me:secret@mlflow:5000"}}),
    ),
    "bad search space": Case(
        ("tune", "protonets", "--dry-run"),
        ("papers.protonets.tune.space", "hparams.lr"),
        params_with(protonets(tune={"space": {"hparams.lr": {"loguniform": [1e-2, 1e-4]}}})),
    ),
    "space over an unknown hparam": Case(
        ("tune", "protonets", "--dry-run"),
        ("papers.protonets.tune.space", "hparams.lrr"),
        params_with(protonets(tune={"space": {"hparams.lrr": {"loguniform": [1e-4, 1e-2]}}})),
    ),
    "duplicate key": Case(
        ("list",),
        ("seed", "line"),
        lambda project: (project / "params.yaml").write_text(
            yaml.safe_dump(tiny_params(), sort_keys=False) + "seed: 1\n"
        ),
    ),
    "params not YAML": Case(("list",), ("params.yaml", "not valid YAML"), params_text("papers: [\n")),
    "params a list": Case(("list",), ("params.yaml", "mapping"), params_text("- 1\n- 2\n")),
    "params missing": Case(
        ("list",), ("params.yaml", "not found"), lambda project: (project / "params.yaml").unlink()
    ),
    "recipe not YAML": Case(
        ("list",),
        ("recipes/protonets.yaml", "not valid YAML"),
        lambda project: (project / "recipes/protonets.yaml").write_text("papers: [\n"),
    ),
    "recipe missing": Case(
        ("list",),
        ("recipes/protonets.yaml", "no section papers.protonets"),
        lambda project: (project / "recipes/protonets.yaml").unlink(),
    ),
    # the command line: choices and ranges named before anything runs
    "unknown experiment": Case(("train", "protonet"), ("protonet",)),
    "unknown dataset": Case(("fetch", "omniglott"), ("omniglott",)),
    "retrain negative age": Case(("retrain", "--max-age", "-5"), ("--max-age", "greater than or equal to 0")),
    "tune zero samples": Case(("tune", "protonets", "--num-samples", "0", "--dry-run"), ("--num-samples",)),
    "bench unknown section": Case(("bench", "--only", "gpus"), ("--only", "gpus")),
    "bench unknown size": Case(("bench", "--size", "huge"), ("--size", "huge")),
    # stages out of order: the stage to run first is named
    "shard before fetch": Case(
        ("shard", "mnist"), ("data/raw/mnist", "reprozoo fetch mnist"), params_with({})
    ),
    "train before shard": Case(
        ("train", "protonets"),
        ("data/shards/omniglot/meta.json", "reprozoo shard omniglot"),
        lambda project: (project / "data/shards").unlink(),
    ),
    "evaluate before train": Case(("evaluate", "protonets"), ("models/protonets/run.json", "reprozoo train")),
    "evaluate an unfinished training": Case(
        ("evaluate", "protonets"),
        ("no finished training", "reprozoo train protonets"),
        record(finished=False),
    ),
    "evaluate under another recipe": Case(
        ("evaluate", "protonets"),
        ("another recipe", "profile smoke", "fingerprint 0123"),
        record(fingerprint="0123"),
    ),
    "evaluate a checkpoint outside models/": Case(
        ("evaluate", "protonets"), ("/etc/passwd", "outside models/"), record(best="/etc/passwd")
    ),
    "run record not JSON": Case(
        ("evaluate", "protonets"),
        ("models/protonets/run.json", "not valid JSON"),
        written("models/protonets/run.json", '{"finished": tr'),
    ),
    # damaged files the project wrote
    "meta.json cut (train)": Case(
        ("train", "protonets"),
        ("meta.json", "not valid JSON", "reprozoo shard omniglot"),
        damaged_shards(cut(lambda shards: shards / "meta.json")),
    ),
    "meta.json cut (list)": Case(
        ("list",), ("meta.json", "not valid JSON"), damaged_shards(cut(lambda shards: shards / "meta.json"))
    ),
    "a shard missing": Case(
        ("train", "protonets"),
        ("missing", "reprozoo shard omniglot"),
        damaged_shards(lambda s: first_shard(s).unlink()),
    ),
    "a shard cut": Case(
        ("train", "protonets"),
        ("truncated or altered", "reprozoo shard omniglot"),
        damaged_shards(cut(first_shard, 700)),
    ),
    "a shard empty": Case(
        ("train", "protonets"), ("empty", "reprozoo shard omniglot"), damaged_shards(cut(first_shard, 0))
    ),
    "a split missing from meta": Case(
        ("train", "protonets"),
        ("meta.json", "no split 'val'"),
        damaged_shards(edit_meta(lambda meta: meta["splits"].pop("val"))),
    ),
    "a pickle in a shard": Case(
        ("train", "protonets"), ("evil.pickle",), damaged_shards(shard_member("pickle", b"cos\nsystem\n."))
    ),
    "a .pth in a shard": Case(
        ("train", "protonets"), ("evil.pth",), damaged_shards(shard_member("pth", b"PK\x03\x04"))
    ),
    "metrics file cut": Case(
        ("report",), ("metrics/protonets.json", "not valid JSON"), written("metrics/protonets.json", '{"clai')
    ),
    "source.json cut": Case(
        ("shard", "omniglot"),
        ("source.json", "not valid JSON", "reprozoo fetch omniglot"),
        then(
            lambda project: (project / "data/raw").unlink(),
            written("data/raw/omniglot/source.json", '{"sour'),
        ),
    ),
    # the tracking store and its artifacts: checked before any compute, named, within seconds
    "tracking server down (train)": Case(
        ("train", "protonets"),
        ("MLflow tracking server http://127.0.0.1:", "not reachable"),
        env={"MLFLOW_TRACKING_URI": "dead"},
    ),
    "tracking server down (tune)": Case(
        ("tune", "protonets"),
        ("MLflow tracking server http://127.0.0.1:", "not reachable"),
        env={"MLFLOW_TRACKING_URI": "dead"},
    ),
    "tracking server down (retrain)": Case(
        ("retrain", "--dry-run"),
        ("MLflow tracking server", "not reachable"),
        env={"MLFLOW_TRACKING_URI": "dead"},
    ),
    "tracking server down (evaluate)": Case(
        ("evaluate", "protonets"),
        ("MLflow tracking server", "not reachable"),
        record(),
        env={"MLFLOW_TRACKING_URI": "dead"},
    ),
    "sqlite under a file": Case(
        ("train", "protonets"),
        ("MLflow tracking URI sqlite:///", "params.yaml/mlflow.db", "cannot write"),
        params_with({"mlflow": {"tracking_uri": f"sqlite:///{A_FILE}/mlflow.db"}}),
    ),
    "artifacts under a file": Case(
        ("train", "protonets"),
        ("artifact location", "params.yaml/artifacts", "cannot write"),
        params_with({"mlflow": {"artifact_location": f"{A_FILE}/artifacts"}}),
    ),
    "an experiment created at a location now unwritable": Case(
        ("train", "protonets"),
        ("params.yaml/old-artifacts", "keeps the location it was created with", "mlflow experiments delete"),
        experiment_created_at(f"{A_FILE}/old-artifacts"),
    ),
    # sources: a user's copy and archives are never followed outside their folder
    "local copy links outside": Case(
        ("fetch", "omniglot"),
        ("a symlink to /etc/hostname", "outside the local copy"),
        local_copy(lambda copy: (copy / "secret.png").symlink_to("/etc/hostname")),
    ),
    "local MNIST not the official files": Case(
        ("fetch", "mnist"),
        ("train-images-idx3-ubyte.gz", "sha256"),
        local_copy(
            lambda copy: [
                (copy / name).write_bytes(gzip.compress(b"not mnist"))
                for name in (
                    "train-images-idx3-ubyte.gz",
                    "train-labels-idx1-ubyte.gz",
                    "t10k-images-idx3-ubyte.gz",
                    "t10k-labels-idx1-ubyte.gz",
                )
            ],
            "mnist",
        ),
    ),
    # formats: each parser checks what its format promises, and names the file and record
    "COCO box outside its image": Case(
        ("shard", "coco"),
        ("instances_train2017.json", "is not inside its"),
        fetched("coco", coco_annotation(lambda a: a.update(bbox=[10.0, 10.0, 5000.0, 20.0]))),
    ),
    "COCO negative box": Case(
        ("shard", "coco"),
        ("instances_train2017.json", "[-40.0, 10.0, 20.0, 20.0]"),
        fetched("coco", coco_annotation(lambda a: a.update(bbox=[-40.0, 10.0, 20.0, 20.0]))),
    ),
    "COCO unknown category": Case(
        ("shard", "coco"),
        ("instances_train2017.json", "category_id 999"),
        fetched("coco", coco_annotation(lambda a: a.update(category_id=999))),
    ),
    "COCO annotations not JSON": Case(
        ("shard", "coco"),
        ("instances_train2017.json", "not valid JSON"),
        fetched(
            "coco", lambda raw: (raw / "annotations/instances_train2017.json").write_text('{"images": [')
        ),
    ),
    "CamVid label of another size": Case(
        ("shard", "camvid"),
        ("trainannot", "not its image's"),
        fetched("camvid", camvid_label(lambda mask: mask.resize((mask.width // 2, mask.height // 2)))),
    ),
    "CamVid class id out of range": Case(
        ("shard", "camvid"),
        ("trainannot", "class id 200"),
        fetched("camvid", camvid_label(lambda mask: mask.point(lambda _: 200))),
    ),
    "VOC annotation cut": Case(
        ("shard", "voc"),
        ("Annotations", ".xml"),
        fetched(
            "voc",
            lambda raw: next(raw.rglob("Annotations/*.xml")).write_text("<annotation><object><name>dog"),
        ),
    ),
    "ImageNet member leaving the tar": Case(
        ("shard", "imagenet"),
        ("ILSVRC2012_img_train.tar", "'../n00000000.tar'", "<wnid>.tar"),
        fetched("imagenet", imagenet_member("../n00000000.tar")),
    ),
    "stray files in an Omniglot copy": Case(
        ("shard", "omniglot"), ("sharded omniglot",), fetched("omniglot", stray_files), code=0
    ),
    "local MNIST missing a file": Case(
        ("fetch", "mnist"),
        ("-copy: no train-images-idx3-ubyte", "expected MNIST's files"),
        local_copy(lambda copy: None, "mnist"),
    ),
}


def resolve_env(env: dict[str, str]) -> dict[str, str]:
    return {k: dead_server() if v == "dead" else v for k, v in env.items()}


def snapshot(project: Path) -> dict[str, str]:
    """Every regular file under the project (links followed into the session's data), by content."""
    found = {}
    for folder, _, files in os.walk(project, followlinks=True):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and "mlflow.db" not in name:
                found[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def reprozoo(*args: str) -> int:
    """The CLI in this process, through its error boundary; the exit code. An exception that escapes is a
    traceback a user would have seen."""
    from pipelines.cli import main

    argv = sys.argv
    sys.argv = ["reprozoo", *args]
    try:
        main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except Exception as error:
        pytest.fail(f"reprozoo {' '.join(args)}: a traceback ({type(error).__name__}: {error})")
    finally:
        sys.argv = argv
    return 0


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_or_fault_gets_one_clear_error(name, project, monkeypatch, capsys):
    case = CASES[name]
    case.setup(project)
    for key, value in resolve_env(case.env).items():
        monkeypatch.setenv(key, value)
    before = snapshot(project)
    code = reprozoo(*case.args)
    out, err = capsys.readouterr()
    message = " ".join((out + err).split())  # one line, whatever the terminal's width
    assert code == case.code, f"exit {code}: {out}{err}"
    assert "Traceback" not in out + err
    for fragment in case.says:
        assert fragment in message, f"{fragment!r} not in: {message}"
    after = snapshot(project)
    assert {path: after.get(path) for path in before} == before  # nothing produced before is lost or changed


@pytest.mark.slow
def test_a_shard_stage_that_runs_out_of_space_names_it_and_keeps_the_shards_there_were(project):
    """A file-size limit (EFBIG: what a full disk looks like to a writer) in the shard stage's own process:
    one clear error, exit 2, the previous shards untouched."""
    own_data(project)
    before = snapshot(project)

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # below one shard

    result = cli(project, "shard", "omniglot", check=False, preexec=limited)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    message = " ".join(result.stderr.split())
    assert "data/shards/omniglot: File too large" in message and "nothing already produced" in message
    after = snapshot(project)
    assert {path: after.get(path) for path in before} == before


def test_a_checkpoint_that_cannot_be_written_is_named_and_leaves_no_partial_file(
    project, monkeypatch, capsys
):
    """A disk that fills while Lightning saves: the checkpoint is named, the half-written file removed (a
    resume would otherwise fail on it), and every file that was there before is left as it was."""
    import errno

    from lightning_fabric.plugins.io import torch_io

    def full(checkpoint, path) -> None:
        Path(path).write_bytes(b"half a checkpo")  # what a writer leaves when the disk fills
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    before = snapshot(project)
    monkeypatch.setattr(torch_io, "_atomic_save", full)
    assert reprozoo("train", "protonets") == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "models/protonets/" in message and ".ckpt: No space left on device while writing it" in message
    assert not [p.name for p in (project / "models/protonets").iterdir() if "ckpt" in p.name]
    after = snapshot(project)
    assert {path: after.get(path) for path in before} == before
