"""What a retried `reprozoo repro` stage relies on: an earlier try's processes stopped, and a training's last
checkpoint mirrored to the DVC remote, restored into a new checkout, removed when the stage is done."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from pipelines import stage_tries
from pipelines.processes import dvc
from pipelines.stage_tries import mirrored, stop_earlier_tries


def test_an_earlier_tries_processes_are_stopped_and_no_others(tmp_path):
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    (checkout / "models").mkdir(parents=True)
    elsewhere.mkdir()
    orphan = subprocess.Popen(["sleep", "60"], cwd=checkout / "models")  # a training left by a dead worker
    bystander = subprocess.Popen(["sleep", "60"], cwd=elsewhere)
    try:
        assert stop_earlier_tries(checkout) == [orphan.pid]
        orphan.wait(timeout=5)  # gone (reaped by the stop, so its exit status reads 0 here)
        assert bystander.poll() is None
        assert stop_earlier_tries(checkout) == []
    finally:
        bystander.kill()


class Remote(NamedTuple):
    url: str
    settings: dict[str, str]  # `dvc remote modify` options: an S3 endpoint


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 server in this process (moto), standing in for the MinIO of infra/ that a cluster shares."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=["folder", "s3"])
def remote(request, tmp_path, monkeypatch) -> Remote:
    """A local folder (one machine, tests) or an S3 bucket (a cluster): DVC's filesystem hides which."""
    if request.param == "folder":
        return Remote(str(tmp_path / "remote"), {})
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in {"AWS_ACCESS_KEY_ID": "reprozoo", "AWS_SECRET_ACCESS_KEY": "secret"}.items():
        monkeypatch.setenv(name, value)  # DVC and the stage processes read credentials as on a cluster
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = tmp_path.name.lower().replace("_", "-")[-40:].strip("-")
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return Remote(f"s3://{bucket}/dvc", {"endpointurl": endpoint})


def checkout_with_remote(folder: Path, remote: Remote) -> Path:
    folder.mkdir()
    steps = [["init", "--no-scm", "-q"], ["remote", "add", "-d", "shared", remote.url]]
    steps += [["remote", "modify", "shared", key, value] for key, value in remote.settings.items()]
    for args in steps:
        assert dvc(*args, cwd=folder).returncode == 0, args
    return folder


@pytest.mark.slow
def test_a_training_is_mirrored_to_the_remote_and_restored_on_another_node(tmp_path, remote, monkeypatch):
    monkeypatch.setattr(stage_tries, "MIRROR_EVERY_S", 0.05)
    first = checkout_with_remote(tmp_path / "node-a", remote)
    fs, mirror = stage_tries.remote_folder(first, "0123456789abcdef", "train@fpn")
    assert mirror.endswith("reprozoo-resume/0123456789ab/train-fpn")

    def exists(path: str) -> bool:
        fs.fs.invalidate_cache()  # s3fs caches listings: ask the remote as another node would
        return fs.exists(path)

    def mirrored_checkpoint() -> bytes | None:
        path = fs.join(mirror, "last.ckpt")
        return fs.cat_file(path) if exists(path) else None

    models = first / "models" / "fpn"
    with pytest.raises(RuntimeError), mirrored(first, "0123456789abcdef", "train@fpn") as restored:
        assert not restored
        models.mkdir(parents=True)
        (models / "run.json").write_text('{"finished": false}')
        (models / "last.ckpt").write_bytes(b"step 10")
        deadline = time.monotonic() + 10
        while mirrored_checkpoint() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        (models / "last.ckpt").write_bytes(b"step 20 and more")  # a newer checkpoint replaces it
        while mirrored_checkpoint() != b"step 20 and more" and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("the node is lost")
    assert mirrored_checkpoint() == b"step 20 and more"  # kept: the stage did not finish
    assert sorted(fs.name(f) for f in fs.ls(mirror)) == ["last.ckpt", "run.json"]  # no .partial left
    assert fs.cat_file(fs.join(mirror, "run.json")) == b'{"finished": false}'

    second = checkout_with_remote(tmp_path / "node-b", remote)
    with mirrored(second, "0123456789abcdef", "train@fpn") as restored:
        assert restored
        assert (second / "models/fpn/last.ckpt").read_bytes() == b"step 20 and more"
        assert (second / "models/fpn/run.json").read_text() == '{"finished": false}'
    assert not exists(mirror)  # done: the stage's outputs and lock entry take over

    with mirrored(second, "0123456789abcdef", "evaluate@fpn") as restored:  # only trainings are mirrored
        assert not restored
        assert not exists(stage_tries.remote_folder(second, "0123456789abcdef", "evaluate@fpn")[1])


@pytest.mark.slow
@pytest.mark.parametrize("remote", ["s3"], indirect=True)  # a folder remote: the repro tests
def test_a_stages_outputs_travel_between_nodes_through_an_s3_remote(tmp_path, remote):
    """What `reprozoo repro` asks of the remote between nodes: `dvc push <stage>` on one, `dvc pull` of the
    stages it reads on another (here: an output `dvc add`ed, its record carried as the lock entry is)."""
    first, second = (checkout_with_remote(tmp_path / node, remote) for node in ("node-a", "node-b"))
    (first / "shards").mkdir()
    (first / "shards" / "shard-000000.tar").write_bytes(b"a shard" * 1000)
    for args in (["add", "-q", "shards"], ["push", "-q"]):
        done = dvc(*args, cwd=first)
        assert done.returncode == 0, done.stderr
    (second / "shards.dvc").write_text((first / "shards.dvc").read_text())
    done = dvc("pull", "-q", cwd=second)
    assert done.returncode == 0, done.stderr
    assert (second / "shards" / "shard-000000.tar").read_bytes() == b"a shard" * 1000
