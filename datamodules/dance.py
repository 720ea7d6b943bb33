"""Dance videos for Everybody Dance Now (Chan, Ginosar, Zhou & Efros 2018): a target dancer's frames with
their 2D poses, and a source dancer whose poses are transferred onto the target.

Raw layout: {train,val,test,source}/frames/NNNNNN.png and {split}/poses.json = {"width", "height",
"keypoints": [[[x, y, visibility] × 17 COCO keypoints] per frame]}. train/val/test are consecutive stretches
of the target's video (the held-out frames at the end are what the paper scores), `source` is the other
dancer. Sources:
- `synthetic`: an articulated figure animated by smooth joint-angle curves and rendered over a real photograph
  (fixed camera, as the paper's videos), with its true keypoints; the source dancer moves differently and
  stands farther from the camera, so pose normalisation has work to do.
- `local`: your `target.<video>` and `source.<video>` (or `target/` and `source/` folders of frames): frames
  are extracted (torchvision.io, which needs PyAV) and poses detected with torchvision's COCO Keypoint R-CNN,
  as the paper does with OpenPose.
A sample is a pair of consecutive frames (the temporal discriminator and smoothing need t−1 and t); pose
images are the keypoints drawn as a stick figure, rendered when read.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import NonNegativeInt, PositiveInt, conint
from torchvision.transforms.v2 import functional as TF

from datamodules.base import ShardDataModule
from datamodules.files import DataError
from datamodules.images import open_image
from datamodules.synthetic import background, encode
from datamodules.videos import detect_poses, locate, read_frames

# fmt: off
SKELETON = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12),
            (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))  # limbs between COCO keypoints
# fmt: on
LIMB_COLOURS = [
    tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / len(SKELETON), 1, 1)) for i in range(len(SKELETON))
]
SPLITS = ("train", "val", "test", "source")


def render_pose(keypoints: np.ndarray, size: int, width: int = 2) -> np.ndarray:
    """The stick figure the generator is conditioned on: each limb in its own colour on black, (size, size,
    3)."""
    canvas = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(canvas)
    for (a, b), colour in zip(SKELETON, LIMB_COLOURS):
        if keypoints[a, 2] > 0 and keypoints[b, 2] > 0:
            draw.line([tuple(keypoints[a, :2]), tuple(keypoints[b, :2])], fill=colour, width=width)
    return np.asarray(canvas)


def dancer_pose(t: float, motion: np.ndarray, centre: tuple[float, float], height: float) -> np.ndarray:
    """The 17 keypoints (x, y, 1) of a figure `height` pixels tall whose hips sit at `centre` at time t.

    `motion` (8, 3) holds amplitude, frequency and phase of the eight joint angles (two shoulders, two elbows,
    two hips, two knees): smooth, periodic dancing.
    """
    a = motion[:, 0] * np.sin(motion[:, 1] * t + motion[:, 2])
    cx, cy = centre[0] + 0.1 * height * np.sin(0.21 * t), centre[1]
    unit = height / 8
    neck, hips = np.array([cx, cy - 3 * unit]), np.array([cx, cy])
    head = neck + [0, -1.2 * unit]

    def limb(start, angle, length):
        return start + length * np.array([np.sin(angle), np.cos(angle)])

    shoulders = [neck + [s * unit, 0.2 * unit] for s in (1, -1)]  # the figure faces the camera
    elbows = [limb(shoulders[i], s * (0.4 + a[i]), 1.4 * unit) for i, s in enumerate((1, -1))]
    wrists = [limb(elbows[i], s * (0.6 + a[2 + i]), 1.3 * unit) for i, s in enumerate((1, -1))]
    hip_points = [hips + [s * 0.6 * unit, 0] for s in (1, -1)]
    knees = [limb(hip_points[i], s * (0.1 + a[4 + i]), 1.9 * unit) for i, s in enumerate((1, -1))]
    ankles = [limb(knees[i], s * (0.05 - abs(a[6 + i])), 1.9 * unit) for i, s in enumerate((1, -1))]
    face = [
        head,
        head + [0.3 * unit, -0.2 * unit],
        head + [-0.3 * unit, -0.2 * unit],
        head + [0.6 * unit, 0],
        head + [-0.6 * unit, 0],
    ]
    points = face + shoulders + elbows + wrists + hip_points + knees + ankles
    return np.concatenate([np.array(points), np.ones((17, 1))], 1)


def render_dancer(
    keypoints: np.ndarray, scenery: np.ndarray, clothes: list[tuple[int, int, int]]
) -> np.ndarray:
    """The dancer drawn as thick limbs (shirt, trousers), a head with eyes, over the fixed background."""
    canvas = Image.fromarray(scenery.copy())
    draw = ImageDraw.Draw(canvas)
    unit = abs(keypoints[15, 1] - keypoints[0, 1]) / 7
    xy = [tuple(p) for p in keypoints[:, :2]]
    draw.polygon([xy[5], xy[6], xy[12], xy[11]], fill=clothes[0])  # torso
    for a, b, colour in (
        (5, 7, 0),
        (7, 9, 2),
        (6, 8, 0),
        (8, 10, 2),
        (11, 13, 1),
        (13, 15, 1),
        (12, 14, 1),
        (14, 16, 1),
    ):
        draw.line([xy[a], xy[b]], fill=clothes[colour], width=max(2, int(0.7 * unit)))
    r = 0.8 * unit
    draw.ellipse([xy[0][0] - r, xy[0][1] - r, xy[0][0] + r, xy[0][1] + r], fill=clothes[2])
    for eye in (1, 2):
        draw.ellipse([xy[eye][0] - 1, xy[eye][1] - 1, xy[eye][0] + 1, xy[eye][1] + 1], fill=(20, 20, 20))
    return np.asarray(canvas)


def write_video(split_dir: Path, frames: list[np.ndarray], keypoints: list[np.ndarray]) -> None:
    (split_dir / "frames").mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        (split_dir / "frames" / f"{index:06d}.png").write_bytes(encode(frame, "PNG"))
    height, width = frames[0].shape[:2]
    (split_dir / "poses.json").write_text(
        json.dumps(
            {"width": width, "height": height, "keypoints": [np.round(k, 2).tolist() for k in keypoints]}
        )
    )


def split_video(
    raw_dir: Path, frames: list[np.ndarray], keypoints: list[np.ndarray], held_out: float = 0.1
) -> None:
    """train / val / test as consecutive stretches: the paper scores frames of the target it never trained
    on."""
    n = len(frames)
    cut = max(2, int(n * held_out))
    bounds = {"train": (0, n - 2 * cut), "val": (n - 2 * cut, n - cut), "test": (n - cut, n)}
    for split, (lo, hi) in bounds.items():
        write_video(raw_dir / split, frames[lo:hi], keypoints[lo:hi])


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    frames: conint(ge=20) = 240,
    source_frames: conint(ge=2) = 40,
    size: conint(ge=32) = 64,
) -> None:
    rng = np.random.default_rng(seed)
    scenery = background(rng, size, size)
    clothes = [tuple(int(c) for c in rng.integers(60, 255, 3)) for _ in range(3)]
    for name, count, centre, height in (
        ("target", frames, (0.5, 0.55), 0.8),
        ("source", source_frames, (0.45, 0.5), 0.55),
    ):
        motion = np.stack(
            [rng.uniform(0.2, 0.9, 8), rng.uniform(0.15, 0.4, 8), rng.uniform(0, 2 * np.pi, 8)], 1
        )
        poses = [
            dancer_pose(t, motion, (centre[0] * size, centre[1] * size), height * size) for t in range(count)
        ]
        images = [render_dancer(p, scenery, clothes) for p in poses]
        if name == "target":
            split_video(raw_dir, images, poses)
        else:
            write_video(raw_dir / "source", images, poses)


def import_local(path: Path, raw_dir: Path) -> None:
    """Your videos → frames and detected poses in the raw layout (the paper's OpenPose step, done by Keypoint
    R-CNN)."""
    target, source = read_frames(locate(path, "target")), read_frames(locate(path, "source"))
    if len(target) < 20:
        raise DataError(
            f"{locate(path, 'target')}: {len(target)} frames; at least 20 are needed for train/val/test"
        )
    split_video(raw_dir, target, detect_poses(target))
    write_video(raw_dir / "source", source, detect_poses(source))


def check_layout(raw_dir: Path) -> None:
    if missing := [
        s
        for s in SPLITS
        if not (raw_dir / s / "poses.json").exists() or not (raw_dir / s / "frames").is_dir()
    ]:
        raise DataError(f"{raw_dir}: missing {', '.join(f'{s}/frames/ and {s}/poses.json' for s in missing)}")


def classes(raw_dir: Path, split: str) -> list[str]:
    return []


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    """Every pair of consecutive frames (t − 1, t) with both poses."""
    check_layout(raw_dir)
    poses_path = raw_dir / split / "poses.json"
    poses = json.loads(poses_path.read_text())
    frames = sorted((raw_dir / split / "frames").glob("*.png"))
    if len(frames) != len(poses["keypoints"]):
        raise DataError(
            f"{poses_path}: {len(poses['keypoints'])} poses for {len(frames)} frames in "
            f"{raw_dir / split / 'frames'}"
        )
    for t in range(1, len(frames)):
        keypoints = [poses["keypoints"][t - 1], poses["keypoints"][t]]
        if any(np.shape(k) != (17, 3) for k in keypoints):
            yield {
                "__key__": f"{split}/{t:06d}",
                "__error__": f"{poses_path}: frame {t}: expected 17 × (x, y, visibility)",
            }
            continue
        yield {
            "__key__": f"{split}/{t:06d}",
            "prev.png": frames[t - 1].read_bytes(),
            "png": frames[t].read_bytes(),
            "json": {"keypoints": keypoints, "width": poses["width"], "height": poses["height"], "frame": t},
        }


class Dance(ShardDataModule):
    """(poses (2, 3, S, S), frames (2, 3, S, S) in [0, 1], keypoints (2, 17, 3) in pixels of S): frames t − 1
    and t."""

    name = "dance"
    sources = ("synthetic", "local")
    splits = SPLITS
    decode_keys = ("json",)
    in_memory = True  # one video: a few hundred small frames
    synthesize, import_local = staticmethod(synthesize), staticmethod(import_local)
    samples, classes, check_layout = map(staticmethod, (samples, classes, check_layout))

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        size: PositiveInt = 64,
        batch_size: PositiveInt = 8,
        num_workers: NonNegativeInt = 0,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=1000
        )
        self.size = size

    def sample(self, split: str):
        def pair(s: dict):
            info = s["json"]
            scale = np.array([self.size / info["width"], self.size / info["height"], 1.0])
            keypoints = np.array(info["keypoints"]) * scale
            frames = [
                TF.to_dtype(
                    TF.resize(
                        TF.to_image(open_image(s[k]).convert("RGB")), [self.size, self.size], antialias=True
                    ),
                    torch.float32,
                    scale=True,
                )
                for k in ("prev.png", "png")
            ]
            poses = [
                torch.from_numpy(render_pose(k, self.size).copy()).permute(2, 0, 1).float() / 255
                for k in keypoints
            ]
            return torch.stack(poses), torch.stack(frames), torch.tensor(keypoints, dtype=torch.float32)

        return pair

    def source_loader(self):
        """The source dancer's frames, in order, for the transfer figure."""
        return self.memory_loader("source")
