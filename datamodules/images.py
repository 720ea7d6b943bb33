"""What the image datasets share: decoding members, classification samples, and uint8 batches made float once
per batch on the device; list batches for detection."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

IMAGE_KEYS = ("png", "jpg")


def image_of(sample: dict) -> Any:
    return sample["jpg"] if "jpg" in sample else sample["png"]


def open_image(data: bytes) -> Image.Image:
    """For members left undecoded: webdataset's "pil" decoding converts to RGB, which would wreck label
    PNGs."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def classification_sample(transform: Callable) -> Callable[[dict], tuple]:
    """Decoded sample → (transformed image, class index): what every image classifier consumes."""
    return lambda sample: (transform(image_of(sample)), sample["cls"])


def float_images(
    images: torch.Tensor, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> torch.Tensor:
    """A uint8 image batch (..., C, H, W) → float32 in [0, 1], normalised per channel when mean and std are
    given."""
    images = images.float().div_(255)
    if mean is not None:
        shape = (-1, 1, 1)
        images = images.sub_(images.new_tensor(mean).view(shape)).div_(images.new_tensor(std).view(shape))
    return images


def list_collate(samples: list[tuple]) -> tuple[list, ...]:
    """Detection batches: images and targets stay lists (boxes per image differ in number)."""
    return tuple(map(list, zip(*samples)))
