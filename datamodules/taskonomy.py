"""Taskonomy (Zamir et al. 2018): indoor views with their 3D labels, from which the paper's tasks are built.

Raw layout (what `omnitools.download <domain> --components taskonomy` writes, the data's current
distribution): <domain>/taskonomy/<building>/point_<p>_view_<v>_domain_<domain>.png for the domains rgb,
depth_zbuffer (uint16, 1/512 m, 65535 = no surface), normal (RGB, 127-centred, camera frame), edge_occlusion
(uint16) and segment_semantic (uint8 class index), plus splits.csv (the `train_val_test_*.csv` format:
id,train,val,test with 1 marking each building's split). Sources: `synthetic` (below) and `local` (your
download under `path:`). The synthetic replica ray-casts procedural rooms: a floor and walls textured with
scikit-image's real textures, spheres and boxes on the floor, a point light with hard shadows, a camera that
turns and tilts; it gives the true depth, normals, occlusion edges and segmentation of every pixel. Tasks
computed from the image alone (autoencoding, denoising, colourisation, 2D edges, 2D keypoints, inpainting) are
made by the model file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import NonNegativeInt, PositiveInt, conint

from datamodules.base import ShardDataModule, open_image
from datamodules.files import DataError
from datamodules.synthetic import encode, photo

DOMAINS = ("rgb", "depth_zbuffer", "normal", "edge_occlusion", "segment_semantic")
CLASSES = ("floor", "wall", "ceiling", "sphere", "box")
DEPTH_UNIT, NO_SURFACE = 512.0, 65535  # Taskonomy's z-buffer: 1/512 m per step
Positive = PositiveInt


# ---- the synthetic replica: ray casting a room -------------------------------------------------------------


def planes_hit(origin: np.ndarray, rays: np.ndarray, room: dict) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(distance, normal, class) per pixel for the floor, ceiling, back and side walls (inward normals)."""
    found = []
    for axis, value, sign, cls in (
        (1, room["floor"], 1, 0),
        (1, room["ceiling"], -1, 2),
        (2, room["back"], -1, 1),
        (0, -room["side"], 1, 1),
        (0, room["side"], -1, 1),
    ):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - origin[..., axis]) / rays[..., axis]
        normal = np.zeros(3)
        normal[axis] = sign
        found.append((np.where(t > 1e-4, t, np.inf), np.broadcast_to(normal, rays.shape), cls))
    return found


def spheres_hit(origin: np.ndarray, rays: np.ndarray, spheres: list[tuple[np.ndarray, float]]):
    found = []
    for centre, radius in spheres:
        oc = origin - centre
        b, c = (rays * oc).sum(-1), (oc * oc).sum(-1) - radius**2
        disc = b * b - c
        t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
        t = np.where(t > 1e-4, t, np.inf)
        normal = (origin + t[..., None] * rays - centre) / radius
        found.append((t, np.nan_to_num(normal), 3))
    return found


def boxes_hit(origin: np.ndarray, rays: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]):
    """Axis-aligned boxes by the slab method; the normal is the axis of the slab entered last."""
    found = []
    for low, high in boxes:
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (low - origin) / rays, (high - origin) / rays
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_in, t_out = near.max(-1), far.min(-1)
        t = np.where((t_in <= t_out) & (t_in > 1e-4), t_in, np.inf)
        axis = near.argmax(-1)
        normal = -np.sign(np.take_along_axis(rays, axis[..., None], -1)) * np.eye(3)[axis]
        found.append((t, normal, 4))
    return found


def cast(
    origin: np.ndarray, rays: np.ndarray, scene: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit per ray: distance, normal, class, and which surface (for colouring)."""
    hits = (
        planes_hit(origin, rays, scene["room"])
        + spheres_hit(origin, rays, scene["spheres"])
        + boxes_hit(origin, rays, scene["boxes"])
    )
    distances = np.stack([h[0] for h in hits])
    which = distances.argmin(0)
    distance = np.take_along_axis(distances, which[None], 0)[0]
    normal = np.take_along_axis(np.stack([h[1] for h in hits]), which[None, ..., None], 0)[0]
    cls = np.array([h[2] for h in hits])[which]
    return distance, normal, cls, which


def texture(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    image = photo(name).astype(np.float32) / 255
    ys, xs = (np.abs(v * 40).astype(int) % image.shape[0]), (np.abs(u * 40).astype(int) % image.shape[1])
    return image[ys, xs]


def random_scene(rng: np.random.Generator) -> dict:
    room = {"floor": -1.0, "ceiling": 1.6, "back": rng.uniform(5, 8), "side": rng.uniform(2.5, 4)}
    spheres = [
        (np.array([rng.uniform(-1.8, 1.8), -1.0 + r, rng.uniform(2.5, 5)]), r)
        for r in rng.uniform(0.3, 0.7, rng.integers(1, 3))
    ]
    boxes = []
    for _ in range(rng.integers(1, 3)):
        x, z, (hx, height, hz) = rng.uniform(-1.8, 1.8), rng.uniform(2.5, 5), rng.uniform(0.25, 0.6, 3)
        boxes.append(
            (np.array([x - hx, -1.0, z - hz]), np.array([x + hx, -1.0 + 2 * height, z + hz]))
        )  # on the floor
    colours = rng.uniform(0.2, 1.0, (len(spheres) + len(boxes), 3))
    return {
        "room": room,
        "spheres": spheres,
        "boxes": boxes,
        "colours": colours,
        "light": np.array([rng.uniform(-1.5, 1.5), 1.4, rng.uniform(1, 3)]),
        "walls": ("brick", "gravel", "grass")[rng.integers(3)],
    }


def render(scene: dict, size: int, yaw: float, pitch: float) -> dict[str, np.ndarray]:
    """One view: rgb (uint8), depth (z-buffer, metres), normal (camera frame), segment (class), as arrays."""
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    camera_rays = np.stack(
        [(j + 0.5 - size / 2) / size, -(i + 0.5 - size / 2) / size, np.ones_like(j, float)], -1
    )
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rotation = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array(
        [[1, 0, 0], [0, cp, -sp], [0, sp, cp]]
    )
    rays = camera_rays @ rotation.T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    origin = np.zeros(3)
    distance, normal, cls, which = cast(origin, rays, scene)
    points = origin + distance[..., None] * rays
    to_light = scene["light"] - points
    light_distance = np.linalg.norm(to_light, axis=-1, keepdims=True)
    to_light /= light_distance
    blocked = cast(points + 1e-3 * normal, to_light, scene)[0] < light_distance[..., 0]
    lambert = np.clip((normal * to_light).sum(-1), 0, 1) * ~blocked
    albedo = np.where(
        (cls == 0)[..., None],
        texture("gravel", points[..., 0], points[..., 2]),
        texture(scene["walls"], points[..., 0] + points[..., 2], points[..., 1]),
    )
    objects = which - 5  # the first five surfaces are the room's planes
    for k, colour in enumerate(scene["colours"]):
        albedo[objects == k] = colour
    rgb = np.clip(albedo * (0.25 + 0.75 * lambert[..., None]), 0, 1)
    z = distance * (
        camera_rays[..., 2] / np.linalg.norm(camera_rays, axis=-1)
    )  # the z-buffer, not the ray length
    return {
        "rgb": (rgb * 255).astype(np.uint8),
        "depth": z,
        "normal": normal @ rotation,
        "segment": cls.astype(np.uint8),
    }


def occlusion_edges(depth: np.ndarray) -> np.ndarray:
    """3D edges: where depth departs from its neighbours' straight-line prediction (a second difference) by
    more
    than ~3% of itself, as Taskonomy's edge_occlusion marks; a floor receding smoothly is not an edge."""
    padded = np.pad(depth, 1, mode="edge")
    across = np.abs(padded[1:-1, 2:] - 2 * depth + padded[1:-1, :-2])
    down = np.abs(padded[2:, 1:-1] - 2 * depth + padded[:-2, 1:-1])
    return np.clip((np.maximum(across, down) / depth - 0.03) * 25, 0, 1)


def encode_domains(view: dict[str, np.ndarray]) -> dict[str, bytes]:
    depth = np.clip(view["depth"] * DEPTH_UNIT, 0, NO_SURFACE - 1).astype(np.uint16)
    return {
        "rgb": encode(view["rgb"], "PNG"),
        "depth_zbuffer": encode(Image.fromarray(depth), "PNG"),
        "normal": encode(((view["normal"] + 1) * 127.5).clip(0, 255).astype(np.uint8), "PNG"),
        "edge_occlusion": encode(
            Image.fromarray((occlusion_edges(view["depth"]) * 65535).astype(np.uint16)), "PNG"
        ),
        "segment_semantic": encode(view["segment"], "PNG"),
    }


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    buildings: conint(ge=3) = 6,
    points: Positive = 20,
    views: Positive = 4,
    size: conint(ge=16) = 64,
) -> None:
    """`buildings` rooms (one val, one test, the rest train), `points` layouts each seen from `views`
    angles."""
    rng = np.random.default_rng(seed)
    names = [f"synthetic{b:03d}" for b in range(buildings)]
    for building in names:
        for point in range(points):
            scene = random_scene(rng)
            for view in range(views):
                files = encode_domains(render(scene, size, rng.uniform(-0.35, 0.35), rng.uniform(-0.3, 0.05)))
                for domain, data in files.items():
                    folder = raw_dir / domain / "taskonomy" / building
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / f"point_{point}_view_{view}_domain_{domain}.png").write_bytes(data)
    with (raw_dir / "splits.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "train", "val", "test"])
        for index, name in enumerate(names):
            writer.writerow(
                [name, int(index < buildings - 2), int(index == buildings - 2), int(index == buildings - 1)]
            )


# ---- reading the layout ------------------------------------------------------------------------------------


def buildings_of(raw_dir: Path, split: str) -> list[str]:
    with (raw_dir / "splits.csv").open() as f:
        return [row["id"] for row in csv.DictReader(f) if row.get(split, "0").strip() == "1"]


def check_layout(raw_dir: Path) -> None:
    if not (raw_dir / "splits.csv").exists():
        raise DataError(
            f"{raw_dir}/splits.csv: missing; expected Taskonomy's id,train,val,test building split"
        )
    if missing := [d for d in DOMAINS if not (raw_dir / d / "taskonomy").is_dir()]:
        raise DataError(
            f"{raw_dir}: missing {', '.join(f'{d}/taskonomy/' for d in missing)} (omnitools.download's "
            "layout)"
        )


def classes(raw_dir: Path, split: str) -> list[str]:
    return list(CLASSES)


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    """One sample per (building, point, view) with every domain; a view missing a domain is named."""
    check_layout(raw_dir)
    for building in buildings_of(raw_dir, split):
        for rgb in sorted((raw_dir / "rgb" / "taskonomy" / building).glob("*_domain_rgb.png")):
            stem = rgb.name.removesuffix("_domain_rgb.png")
            paths = {d: raw_dir / d / "taskonomy" / building / f"{stem}_domain_{d}.png" for d in DOMAINS}
            key = f"{split}/{building}/{stem}"
            if missing := [str(p) for p in paths.values() if not p.exists()]:
                yield {"__key__": key, "__error__": f"{rgb}: no {', '.join(missing)}"}
                continue
            yield {"__key__": key, **{f"{d}.png": p.read_bytes() for d, p in paths.items()}}


def decode_view(sample: dict) -> dict[str, torch.Tensor]:
    """rgb (3, H, W) in [0, 1], depth (1, H, W) in metres (0 where no surface), normal (3, H, W) in [-1, 1],
    edges (1, H, W) in [0, 1], segment (H, W) class indices."""
    array = {d: np.asarray(open_image(sample[f"{d}.png"])) for d in DOMAINS}
    depth = array["depth_zbuffer"].astype(np.float32)
    return {
        "rgb": torch.from_numpy(array["rgb"][..., :3].copy()).permute(2, 0, 1).float() / 255,
        "depth": torch.from_numpy(np.where(depth >= NO_SURFACE, 0, depth / DEPTH_UNIT))[None].float(),
        "normal": torch.from_numpy(array["normal"][..., :3].copy()).permute(2, 0, 1).float() / 127.5 - 1,
        "edges": torch.from_numpy(array["edge_occlusion"].astype(np.float32) / 65535)[None],
        "segment": torch.from_numpy(array["segment_semantic"].astype(np.int64)),
    }


class Taskonomy(ShardDataModule):
    """Batches are dicts of the decoded domains (see `decode_view`), all at the stored resolution."""

    name = "taskonomy"
    sources = ("synthetic", "local")
    decode_keys = ()  # 16-bit PNGs: decoded in decode_view, never through webdataset's RGB
    collate = staticmethod(torch.utils.data.default_collate)  # dict samples → a dict of batched tensors
    synthesize, samples, classes, check_layout = map(
        staticmethod, (synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: Positive = 32,
        num_workers: int = 0,
        shuffle_buffer: Positive = 1000,
        budget: NonNegativeInt = 0,
    ):
        """`budget` > 0: training batches also carry a `budget` batch drawn from only the first `budget`
        training
        views: the small labelled set the paper trains transfers (and the from-scratch baselines) on."""
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.budget = budget

    def sample(self, split: str):
        return decode_view

    def train_dataloader(self):
        full = super().train_dataloader()
        if not self.budget:
            return full
        from pytorch_lightning.utilities import CombinedLoader

        views = [decode_view(s) for s, _ in zip(self.read_all("train"), range(self.budget))]
        budget = torch.utils.data.DataLoader(
            views,
            batch_size=min(self.batch_size, self.budget),
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return CombinedLoader({"full": full, "budget": budget}, mode="max_size_cycle")
