"""Everybody Dance Now's pose handling: global pose normalisation between two dancers (§3.3), the face crops
of the face GAN, and the pose distance of re-detected keypoints (Table 1)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NOSE, ANKLES, HEAD = 0, (15, 16), slice(0, 5)


def pose_statistics(keypoints: np.ndarray, near: float = 0.05) -> dict[str, float]:
    """A video's closest and farthest ankle heights (image y) and the tallest figure within `near` of each.

    keypoints (frames, 17, 3) in pixels; a figure's height runs from its highest head point to its lower
    ankle.
    """
    ankle = keypoints[:, ANKLES, 1].max(1)
    height = ankle - keypoints[:, HEAD, 1].min(1)
    close, far = ankle.max(), ankle.min()
    span = max(close - far, 1e-6)
    return {
        "close": float(close),
        "far": float(far),
        "height_close": float(height[ankle >= close - near * span].max()),
        "height_far": float(height[ankle <= far + near * span].max()),
    }


def normalise_pose(keypoints: np.ndarray, source: dict[str, float], target: dict[str, float]) -> np.ndarray:
    """§3.3: the ankle's relative place between the source's far and close positions sets the target's ankle
    position (translation) and interpolates the target/source height ratios at far and close (scale)."""
    ankle = keypoints[ANKLES, 1].max()
    alpha = (ankle - source["far"]) / max(source["close"] - source["far"], 1e-6)
    new_ankle = target["far"] + alpha * (target["close"] - target["far"])
    scale_far, scale_close = (
        target["height_far"] / source["height_far"],
        target["height_close"] / source["height_close"],
    )
    scale = scale_far + alpha * (scale_close - scale_far)
    out = keypoints.copy()
    centre_x = keypoints[:, 0].mean()
    out[:, 0] = centre_x + scale * (keypoints[:, 0] - centre_x)
    out[:, 1] = new_ankle + scale * (keypoints[:, 1] - ankle)
    return out


def face_boxes(keypoints: Tensor, size: int, fraction: float) -> list[tuple[int, int, int]]:
    """A square of side `fraction` · size centred on the nose, kept inside the frame: (top, left, side)."""
    side = max(4, round(fraction * size))
    return [
        (int(min(max(y - side / 2, 0), size - side)), int(min(max(x - side / 2, 0), size - side)), side)
        for x, y in keypoints[:, NOSE, :2].tolist()
    ]


def crop(images: Tensor, boxes, out: int) -> Tensor:
    return torch.cat(
        [
            F.interpolate(
                im[None, :, top : top + s, left : left + s],
                size=(out, out),
                mode="bilinear",
                align_corners=False,
            )
            for im, (top, left, s) in zip(images, boxes)
        ]
    )


def paste(images: Tensor, faces: Tensor, boxes) -> Tensor:
    out = images.clone()
    for i, (top, left, s) in enumerate(boxes):
        out[i, :, top : top + s, left : left + s] = F.interpolate(
            faces[i : i + 1], size=(s, s), mode="bilinear", align_corners=False
        )[0]
    return out


def pose_distance(images: Tensor, keypoints: Tensor) -> Tensor:
    """Mean pixel distance between the input keypoints and those Keypoint R-CNN finds in the generated
    frames."""
    from datamodules.videos import detect_poses

    found = torch.tensor(
        np.stack(detect_poses([(im.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8) for im in images])),
        dtype=torch.float32,
    )
    seen = (found[..., 2] > 0) & (keypoints[..., 2].cpu() > 0)
    return (found[..., :2] - keypoints[..., :2].cpu()).norm(dim=-1)[seen].mean()
