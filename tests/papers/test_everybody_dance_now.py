"""Everybody Dance Now: pose normalisation on hand-made keypoints, the temporal generator and discriminator
see two consecutive frames, the face crop stays in the frame, feature matching, and SSIM rising with
training."""

import numpy as np
import pytest
import torch

from lightning_modules.everybody_dance_now import EverybodyDanceNow
from lightning_modules.pix2pixhd import MultiscaleDiscriminator, feature_matching
from lightning_modules.pose_transfer import face_boxes, normalise_pose, pose_statistics

SMALL = dict(
    ngf=8,
    downsamplings=2,
    blocks=1,
    ndf=8,
    scales=2,
    face_size=16,
    pretrained=False,
    lpips=False,
    pose_distance=False,
)


def figure(ankle_y: float, height: float) -> np.ndarray:
    """Hand-made keypoints: head at ankle_y - height, ankles at ankle_y, everything else in between."""
    keypoints = np.ones((17, 3))
    keypoints[:, 0] = 10
    keypoints[:, 1] = ankle_y - height / 2
    keypoints[:5, 1], keypoints[15:, 1] = ankle_y - height, ankle_y
    return keypoints


def test_pose_normalisation_maps_the_sources_range_onto_the_targets():
    source = pose_statistics(
        np.stack([figure(40, 20), figure(60, 30)])
    )  # far: ankle 40, 20 tall; close: 60, 30
    target = pose_statistics(np.stack([figure(100, 80), figure(140, 120)]))
    assert source == {"close": 60, "far": 40, "height_close": 30, "height_far": 20}
    far, close, middle = (
        normalise_pose(figure(y, h), source, target) for y, h in ((40, 20), (60, 30), (50, 25))
    )
    assert far[15, 1] == 100 and far[15, 1] - far[0, 1] == pytest.approx(80)  # scale 4 at the far end
    assert close[15, 1] == 140 and close[15, 1] - close[0, 1] == pytest.approx(120)
    assert middle[15, 1] == 120 and middle[15, 1] - middle[0, 1] == pytest.approx(
        25 * 4
    )  # ratio interpolated


def test_the_temporal_model_depends_on_the_previous_pose_and_the_frame_model_does_not():
    torch.manual_seed(0)
    model = EverybodyDanceNow(**SMALL).eval()
    poses = torch.rand(1, 2, 3, 32, 32)
    changed = poses.clone()
    changed[:, 0] = torch.rand(1, 3, 32, 32)  # only frame t − 1's pose differs
    a, b = model.generate(poses), model.generate(changed)
    assert torch.equal(a["frame"][:, 1], b["frame"][:, 1]) and not torch.allclose(
        a["temporal"][:, 1], b["temporal"][:, 1]
    )


def test_the_temporal_discriminator_judges_pairs_of_frames():
    model = EverybodyDanceNow(**SMALL)
    assert model.discriminators["temporal"].scales[0].stages[0][0].in_channels == 12  # 2 poses + 2 frames
    assert model.discriminators["frame"].scales[0].stages[0][0].in_channels == 6


def test_face_boxes_follow_the_nose_and_stay_in_the_frame():
    keypoints = torch.zeros(2, 17, 3)
    keypoints[0, 0, :2] = torch.tensor([16.0, 16.0])
    keypoints[1, 0, :2] = torch.tensor([1.0, 31.0])
    assert face_boxes(keypoints, 32, 0.25) == [(12, 12, 8), (24, 0, 8)]  # (top, left, side)


def test_feature_matching_vanishes_for_identical_features_only():
    d = MultiscaleDiscriminator(6, 8, 2)
    x = torch.rand(2, 6, 32, 32)
    assert feature_matching(d(x), d(x)) == 0 and feature_matching(d(x), d(x + 0.5)) > 0


@pytest.mark.slow
def test_ssim_of_held_out_frames_rises_with_training(tmp_path):
    from datamodules.dance import Dance
    from tests.helpers import synthetic_shards
    from tests.papers.helpers import fit_and_score

    shards = synthetic_shards(Dance, tmp_path, frames=60, source_frames=6, size=32)
    torch.manual_seed(0)
    model = EverybodyDanceNow(**{**SMALL, "ngf": 16, "face_after_step": 25})
    before, after = fit_and_score(
        model, Dance(shards, 0, size=32, batch_size=8), steps=30, metric="test/ssim_full"
    )
    assert after > before + 0.05


def test_the_perceptual_loss_takes_the_temporal_gans_frame_pairs():
    """At the paper profile the VGG loss sees the temporal GAN's 6-channel frame pairs (it crashed on them,
    hidden by the smoke profile's pixel loss): each frame goes through VGG on its own, so a pair's loss is its
    frames'."""
    from torchvision.models import vgg19

    from lightning_modules.pix2pixhd import Perceptual

    torch.manual_seed(0)
    loss = Perceptual(pretrained=False)
    loss.vgg, loss.cuts = vgg19(weights=None).features[:30].eval().requires_grad_(False), (2, 7, 12, 21, 30)
    fake, real = torch.rand(2, 6, 32, 32), torch.rand(2, 6, 32, 32)
    pair = loss(fake, real)
    frames = [loss(fake[:, i : i + 3].contiguous(), real[:, i : i + 3].contiguous()) for i in (0, 3)]
    assert torch.allclose(pair, sum(frames) / 2, rtol=1e-5)
