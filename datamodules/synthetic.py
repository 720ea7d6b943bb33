"""Drawing pieces the synthetic replicas share: class-conditional shapes on real photographs.

A class has a look (a polygon kind and a colour) that a model can learn; objects are polygons, so the same
drawing yields an exact mask, a box and a COCO polygon. Backgrounds are crops of real photographs and
textures from scikit-image, so images are not flat colour fields.
"""

from __future__ import annotations

import colorsys
import io
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
)
SIDES = (3, 4, 5, 6, 32, 10)  # triangle, square, pentagon, hexagon, ellipse, star (alternating radii)


@cache
def photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of a real photograph, dimmed so that objects stand out: (H, W, 3) uint8."""
    source = photo(PHOTOS[rng.integers(len(PHOTOS))])
    scale = rng.uniform(0.3, 1.0)
    h, w = max(8, int(source.shape[0] * scale)), max(8, int(source.shape[1] * scale))
    y, x = rng.integers(0, source.shape[0] - h + 1), rng.integers(0, source.shape[1] - w + 1)
    crop = Image.fromarray(source[y : y + h, x : x + w]).resize((width, height), Image.Resampling.BILINEAR)
    return (np.asarray(crop, dtype=np.float32) * 0.55).astype(np.uint8)


def colour(cls: int, classes: int) -> tuple[int, int, int]:
    """Evenly spaced hues, alternating brightness, so neighbouring classes differ visibly."""
    r, g, b = colorsys.hsv_to_rgb((cls * 0.618034) % 1.0, 0.85, 1.0 if cls % 2 else 0.75)
    return int(r * 255), int(g * 255), int(b * 255)


def polygon(cls: int, box: tuple[float, float, float, float], rng: np.random.Generator) -> np.ndarray:
    """The outline (k, 2) of an object of class `cls` filling `box` = (x0, y0, x1, y1)."""
    sides = SIDES[cls % len(SIDES)]
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False) + rng.normal(0, 0.08) - np.pi / 2
    radii = np.where(np.arange(sides) % 2, 0.5, 1.0) if sides == 10 else np.ones(sides)
    (x0, y0, x1, y1) = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], axis=1)


def rasterize(outline: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in outline], fill=1)
    return np.asarray(canvas, dtype=bool)


def paint(image: np.ndarray, mask: np.ndarray, cls: int, classes: int, rng: np.random.Generator) -> None:
    """Fill `mask` with the class colour, shaded and noisy like a lit surface."""
    shade = np.linspace(0.8, 1.1, image.shape[0])[:, None, None]
    noise = rng.normal(0, 12, image.shape)
    coloured = np.clip(np.array(colour(cls, classes)) * shade + noise, 0, 255).astype(np.uint8)
    image[mask] = coloured[mask]


def random_box(
    rng: np.random.Generator, height: int, width: int, low: float, high: float
) -> tuple[float, float, float, float]:
    w, h = width * rng.uniform(low, high), height * rng.uniform(low, high)
    x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
    return x0, y0, x0 + w, y0 + h


def scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: int,
    objects: int,
    sizes: tuple[float, float] = (0.15, 0.5),
) -> tuple[np.ndarray, list[dict]]:
    """An image with `objects` shapes; each object: cls, polygon (k, 2), visible mask, box (xyxy) of that
    mask."""
    image, taken, drawn = background(rng, height, width), np.zeros((height, width), bool), []
    for _ in range(objects):
        cls = int(rng.integers(classes))
        outline = polygon(cls, random_box(rng, height, width, *sizes), rng)
        mask = rasterize(outline, height, width)
        paint(image, mask, cls, classes, rng)
        for earlier in drawn:  # later objects occlude earlier ones
            earlier["mask"] &= ~mask
        taken |= mask
        drawn.append({"cls": cls, "polygon": outline, "mask": mask})
    for obj in drawn:
        ys, xs = np.nonzero(obj["mask"])
        obj["box"] = (
            (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)) if len(xs) else None
        )
    return image, [o for o in drawn if o["box"] is not None]


def object_image(rng: np.random.Generator, cls: int, classes: int, height: int, width: int) -> np.ndarray:
    """A classification image: one object of class `cls` on a photograph, at a random place and scale."""
    image = background(rng, height, width)
    mask = rasterize(polygon(cls, random_box(rng, height, width, 0.45, 0.9), rng), height, width)
    paint(image, mask, cls, classes, rng)
    return image


def encode(image: np.ndarray | Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(
        buffer, format=format, **options
    )
    return buffer.getvalue()
