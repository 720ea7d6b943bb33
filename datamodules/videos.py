"""A user's videos as frames and poses: frames from a video file (torchvision.io, which needs PyAV) or a
folder of images, and each frame's most confident person as 17 COCO keypoints from torchvision's Keypoint
R-CNN (standing in for the OpenPose of Everybody Dance Now)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from datamodules.files import DataError, pretrained

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


def read_frames(where: Path) -> list[np.ndarray]:
    """A folder of frames, or a video file decoded by torchvision.io (which needs PyAV)."""
    if where.is_dir():
        return [
            np.asarray(Image.open(p).convert("RGB"))
            for p in sorted(where.iterdir())
            if p.suffix.lower() in (".png", ".jpg", ".jpeg")
        ]
    try:
        from torchvision.io import read_video

        return list(read_video(str(where), pts_unit="sec", output_format="THWC")[0].numpy())
    except ImportError as error:
        raise DataError(
            f"{where}: decoding a video needs PyAV (`pip install av`), or give a folder of frames ({error})"
        ) from None


def detect_poses(frames: list[np.ndarray], *, batch: int = 4) -> list[np.ndarray]:
    """The most confident person's 17 keypoints in each frame, from torchvision's COCO Keypoint R-CNN."""
    from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn

    detector = keypointrcnn_resnet50_fpn(weights=pretrained(KeypointRCNN_ResNet50_FPN_Weights.COCO_V1)).eval()
    found = []
    with torch.no_grad():
        for start in range(0, len(frames), batch):
            images = [
                TF.to_dtype(TF.to_image(f), torch.float32, scale=True) for f in frames[start : start + batch]
            ]
            for out in detector(images):
                best = out["keypoints"][0].numpy() if len(out["keypoints"]) else np.zeros((17, 3))
                found.append(np.concatenate([best[:, :2], (best[:, 2:] > 0).astype(float)], 1))
    return found


def locate(path: Path, name: str) -> Path:
    candidates = [path / name, *(path / f"{name}{s}" for s in VIDEO_SUFFIXES)]
    if found := [c for c in candidates if c.exists()]:
        return found[0]
    raise DataError(
        f"{path}: expected {name}/ (frames) or {name}.mp4 (or {', '.join(VIDEO_SUFFIXES[1:])}): the {name} "
        "dancer's video"
    )
