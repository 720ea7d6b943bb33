"""What a retried `reprozoo repro` stage relies on: an earlier try's processes stopped, and a training's last
checkpoint mirrored to the DVC remote, restored into a new checkout, removed when the stage is done."""

import subprocess
import time

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


def checkout_with_remote(folder, remote):
    folder.mkdir()
    for args in (["init", "--no-scm", "-q"], ["remote", "add", "-d", "shared", str(remote)]):
        assert dvc(*args, cwd=folder).returncode == 0
    return folder


def test_a_training_is_mirrored_to_the_remote_and_restored_on_another_node(tmp_path, monkeypatch):
    monkeypatch.setattr(stage_tries, "MIRROR_EVERY_S", 0.05)
    remote = tmp_path / "remote"
    first = checkout_with_remote(tmp_path / "node-a", remote)
    mirror = remote / "reprozoo-resume" / "0123456789ab" / "train-fpn"
    models = first / "models" / "fpn"
    with pytest.raises(RuntimeError), mirrored(first, "0123456789abcdef", "train@fpn") as restored:
        assert not restored
        models.mkdir(parents=True)
        (models / "run.json").write_text('{"finished": false}')
        (models / "last.ckpt").write_bytes(b"step 10")
        deadline = time.monotonic() + 10
        while not (mirror / "last.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        (models / "last.ckpt").write_bytes(b"step 20 and more")  # a newer checkpoint replaces it
        while (mirror / "last.ckpt").read_bytes() != b"step 20 and more" and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("the node is lost")
    assert (mirror / "last.ckpt").read_bytes() == b"step 20 and more"  # kept: the stage did not finish
    assert sorted(p.name for p in mirror.iterdir()) == ["last.ckpt", "run.json"]  # no .partial left

    second = checkout_with_remote(tmp_path / "node-b", remote)
    with mirrored(second, "0123456789abcdef", "train@fpn") as restored:
        assert restored
        assert (second / "models/fpn/last.ckpt").read_bytes() == b"step 20 and more"
        assert (second / "models/fpn/run.json").read_text() == '{"finished": false}'
    assert not mirror.exists()  # done: the stage's outputs and lock entry take over

    with mirrored(second, "0123456789abcdef", "evaluate@fpn") as restored:  # only trainings are mirrored
        assert not restored and not (remote / "reprozoo-resume" / "0123456789ab" / "evaluate-fpn").exists()
