"""Dance videos: the synthetic dancer is deterministic, samples are consecutive frame pairs with their poses,
the stick figure is drawn on the keypoints, a local copy is split and posed, and broken inputs are named."""

import json

import numpy as np
import pytest

from datamodules import dance
from datamodules.dance import Dance, render_pose, samples, synthesize
from datamodules.files import DataError
from tests.helpers import synthetic_shards


def test_the_synthetic_dancer_is_deterministic_and_split_by_time(tmp_path):
    synthesize(tmp_path / "a", 0, frames=40, source_frames=6, size=32)
    synthesize(tmp_path / "b", 0, frames=40, source_frames=6, size=32)
    assert (tmp_path / "a/train/poses.json").read_text() == (tmp_path / "b/train/poses.json").read_text()
    counts = {
        s: len(json.loads((tmp_path / "a" / s / "poses.json").read_text())["keypoints"]) for s in dance.SPLITS
    }
    assert counts == {"train": 32, "val": 4, "test": 4, "source": 6}


def test_a_sample_is_two_consecutive_frames_with_both_poses(tmp_path):
    synthesize(tmp_path, 0, frames=40, source_frames=6, size=32)
    pairs = list(samples(tmp_path, "train"))
    assert len(pairs) == 31
    assert (
        pairs[0]["png"] == pairs[1]["prev.png"]
        and pairs[0]["json"]["keypoints"][1] == pairs[1]["json"]["keypoints"][0]
    )


def test_the_stick_figure_is_drawn_on_the_limbs_only():
    keypoints = np.zeros((17, 3))
    keypoints[5], keypoints[7] = (5, 5, 1), (25, 5, 1)  # a left upper arm, horizontal at y = 5
    image = render_pose(keypoints, 32, width=1)
    assert image[5, 10:20].any() and not image[20:].any()


def test_batches_hold_pose_images_frames_and_keypoints(tmp_path):
    shards = synthetic_shards(Dance, tmp_path, frames=40, source_frames=6, size=48)
    poses, frames, keypoints = next(iter(Dance(shards, 0, size=32, batch_size=4).train_dataloader()))
    assert poses.shape == frames.shape == (4, 2, 3, 32, 32) and keypoints.shape == (4, 2, 17, 3)
    assert float(keypoints[..., :2].max()) <= 32 and 0 <= float(frames.min()) and float(frames.max()) <= 1


def test_a_local_copy_is_split_and_posed(tmp_path, monkeypatch):
    synthesize(tmp_path / "synthetic", 0, frames=30, source_frames=4, size=32)
    for name, split in (("target", "train"), ("source", "source")):
        (tmp_path / "mine" / name).mkdir(parents=True)
        for frame in (tmp_path / "synthetic" / split / "frames").iterdir():
            (tmp_path / "mine" / name / frame.name).write_bytes(frame.read_bytes())
    # Keypoint R-CNN's COCO weights cannot be downloaded here: the detector is replaced by a fixed pose.
    monkeypatch.setattr(dance, "detect_poses", lambda frames: [np.ones((17, 3))] * len(frames))
    Dance.import_local(tmp_path / "mine", tmp_path / "raw")
    Dance.check_layout(tmp_path / "raw")
    assert len(json.loads((tmp_path / "raw/test/poses.json").read_text())["keypoints"]) == 2


def test_missing_and_mismatched_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="target.mp4"):
        Dance.import_local(tmp_path, tmp_path / "raw")
    synthesize(tmp_path / "raw", 0, frames=20, source_frames=3, size=32)
    next((tmp_path / "raw/val/frames").iterdir()).unlink()
    with pytest.raises(DataError, match="val/poses.json: 2 poses for 1 frames"):
        list(samples(tmp_path / "raw", "val"))
