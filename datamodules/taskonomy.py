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
from torchvision import tv_tensors
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError
from datamodules.images import open_image
from datamodules.rooms import occlusion_edges, random_scene, render
from datamodules.synthetic import encode

DOMAINS = ("rgb", "depth_zbuffer", "normal", "edge_occlusion", "segment_semantic")
CLASSES = ("floor", "wall", "ceiling", "sphere", "box")
DEPTH_UNIT, NO_SURFACE = 512.0, 65535  # Taskonomy's z-buffer: 1/512 m per step


# ---- the synthetic replica: rooms ray-cast by datamodules/rooms.py ----------------------------------


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
    points: PositiveInt = 20,
    views: PositiveInt = 4,
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


def resized(view: dict[str, torch.Tensor], size: int | None) -> dict[str, torch.Tensor]:
    """Every domain at size × size (None: as stored): the photograph smoothly, the labels (depth, normals,
    edges, classes) as masks, by nearest neighbour, so that no label is invented (a depth between a wall and
    the void behind it, a class between two)."""
    if size is None:
        return view
    wrapped = {n: tv_tensors.Image(t) if n == "rgb" else tv_tensors.Mask(t) for n, t in view.items()}
    return {n: t.as_subclass(torch.Tensor) for n, t in v2.Resize((size, size))(wrapped).items()}


class Taskonomy(ShardDataModule):
    """Batches are dicts of the decoded domains (see `decode_view`), at `size` × `size` (the paper's networks
    take 256 × 256) or, with `size: null`, at the stored resolution."""

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
        batch_size: PositiveInt = 32,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 1000,
        budget: NonNegativeInt = 0,
        size: PositiveInt | None = None,
    ):
        """`budget` > 0: training batches also carry a `budget` batch drawn from only the first `budget`
        training views: the small labelled set the paper trains transfers (and the from-scratch baselines)
        on."""
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.budget, self.size = budget, size

    def sample(self, split: str):
        return lambda sample: resized(decode_view(sample), self.size)

    def train_dataloader(self):
        full = super().train_dataloader()
        if not self.budget:
            return full
        from pytorch_lightning.utilities import CombinedLoader

        view = self.sample("train")
        views = [view(s) for s, _ in zip(self.read_all("train"), range(self.budget))]
        budget = torch.utils.data.DataLoader(
            views,
            batch_size=min(self.batch_size, self.budget),
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return CombinedLoader({"full": full, "budget": budget}, mode="max_size_cycle")
