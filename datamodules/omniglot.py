"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015): 1623 handwritten characters from 50 alphabets, 20 drawers
each.

Raw layout (real and synthetic alike):
images_{background,evaluation}/<Alphabet>/characterNN/<id>_<drawer>.png, 105×105 binary PNGs, plus
splits/vinyals/{train,val,test}.txt, the split of Vinyals et al. (2016) as the Prototypical Networks code
ships it: one `Alphabet/characterNN/rotDDD` class per line (1028 / 172 / 423 characters, each in four
rotations); a local copy without split files gets a derived split (datamodules/omniglot_splits.py). Shards
hold each drawing once; rotations are applied when loading.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import NonNegativeInt, PositiveInt
from torch import Tensor
from torchvision.transforms.functional import to_tensor

from datamodules.base import ShardDataModule
from datamodules.episodes import EpisodeSampler
from datamodules.files import DataError, copy_tree, extract
from datamodules.files import download as fetch_url
from datamodules.omniglot_splits import (
    BACKGROUND,
    EVALUATION,
    SPLITS,
    classes,
    derive,
    read_split,
    split_file,
    write_vinyals_style,
)

SETS = ("images_background", "images_evaluation")
LAKE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
URLS = {  # (url, md5); the md5s are the ones torchvision.datasets.Omniglot verifies
    "images_background.zip": (LAKE + "images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation.zip": (LAKE + "images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
}
SPLIT_URL = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/{}.txt"


# ---- sources --------------------------------------------------------------------------------------------


def download(raw_dir: Path, downloads: Path) -> None:
    """The two official archives (md5-checked, resumable) and the Vinyals split files."""
    for name, (url, md5) in URLS.items():
        extract(fetch_url(url, downloads / name, md5), raw_dir)
    for split in SPLITS:
        target = raw_dir / "splits" / "vinyals" / f"{split}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(
            fetch_url(SPLIT_URL.format(split), downloads / f"vinyals-{split}.txt", None).read_bytes()
        )


def check_copy(path: Path, sets: tuple[str, ...] = SETS) -> None:
    """A local copy: the archives' folders as they unpack; split files are optional (derived if absent)."""
    missing = [str(path / s) for s in sets if not (path / s).is_dir()]
    if missing:
        raise DataError(f"{path}: not an Omniglot copy; missing {', '.join(missing)} (the official archives)")


def import_local(path: Path, raw_dir: Path) -> None:
    """Your copy, mirrored; without split files, the split is derived from its folders (omniglot_splits)."""
    check_copy(path)
    copy_tree(path, raw_dir)
    if not (raw_dir / "splits" / "vinyals").is_dir():
        derive(raw_dir)


def check_layout(raw_dir: Path) -> None:
    """The raw copy: the archives' folders and a split (Vinyals' or the derived one)."""
    check_copy(raw_dir)
    missing = [str(split_file(raw_dir, s)) for s in SPLITS if not split_file(raw_dir, s).exists()]
    if missing:
        raise DataError(f"{raw_dir}: missing {', '.join(missing)}; run `reprozoo fetch` again")


def _character(rng: np.random.Generator, strokes: int) -> list[np.ndarray]:
    """A character is a few strokes, each a polyline of 2-4 control points in the unit square."""
    return [rng.uniform(0.18, 0.82, size=(rng.integers(2, 5), 2)) for _ in range(strokes)]


def _chaikin(points: np.ndarray, rounds: int) -> np.ndarray:
    """Corner cutting: turns a polyline into the smooth pen path a drawer would make."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        points = np.concatenate(
            [points[:1], np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], 1).reshape(-1, 2), points[-1:]]
        )
    return points


def _draw(
    strokes: list[np.ndarray], rng: np.random.Generator, curviness: int, size: int = 105
) -> Image.Image:
    """One drawer's rendition: control points jittered, the whole glyph slightly rotated, scaled and
    shifted."""
    angle, scale, shift = rng.normal(0, 0.15), 1 + rng.normal(0, 0.1), rng.normal(0, 0.06, 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    image = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(image)
    width = int(rng.integers(2, 6))
    for stroke in strokes:
        path = _chaikin(stroke + rng.normal(0, 0.045, stroke.shape), curviness)
        path = (path - 0.5) @ rotation.T + 0.5 + shift
        pen.line([tuple(p) for p in path * size], fill=0, width=width, joint="curve")
    return image.convert("1")  # binary, like the real scans


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    alphabets: PositiveInt = 8,
    characters: PositiveInt = 12,
    drawers: PositiveInt = 20,
) -> None:
    """A replica in the real layout: alphabets differ in stroke count and curviness, characters in strokes."""
    rng = np.random.default_rng(seed)
    names = []
    for a in range(alphabets):
        image_set = (
            SETS[0] if a < max(1, round(alphabets * 30 / 50)) else SETS[1]
        )  # 30 of 50 alphabets are "background"
        alphabet, strokes, curviness = (
            f"Alphabet_{a + 1:02d}",
            int(rng.integers(1, 4)),
            int(rng.integers(0, 4)),
        )
        for c in range(characters):
            glyph = _character(rng, strokes + int(rng.integers(0, 2)))
            folder = raw_dir / image_set / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(drawers):
                _draw(glyph, rng, curviness).save(folder / f"{a * characters + c + 1:04d}_{d + 1:02d}.png")
            names.append(f"{alphabet}/character{c + 1:02d}")
    write_vinyals_style(raw_dir, names, rng)


# ---- the parser (one for real and synthetic) -------------------------------------------------------------


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    """One WebDataset sample per drawing; `cls` indexes the split's characters, json carries the rotations."""
    check_layout(raw_dir)
    yield from drawings(raw_dir, split)


def drawings(raw_dir: Path, split: str) -> Iterator[dict]:
    """The drawings of a split's characters, wherever their image set is."""
    sets = [raw_dir / s for s in (*BACKGROUND, *EVALUATION) if (raw_dir / s).exists()]
    # folders only: a copy made on a Mac or by hand carries stray files (.DS_Store) that are no part of it
    folders = {f"{a.name}/{c.name}": c for s in sets for a in s.iterdir() if a.is_dir() for c in a.iterdir()}
    folders = {name: c for name, c in folders.items() if c.is_dir()}
    for cls, (character, rotations) in enumerate(read_split(raw_dir, split).items()):
        if character not in folders:
            raise DataError(
                f"{split_file(raw_dir, split)}: lists {character}, which is in none of {', '.join(sets)}"
            )
        for png in sorted(folders[character].glob("*.png")):
            yield {
                "__key__": str(png.relative_to(raw_dir).with_suffix("")),
                "png": png.read_bytes(),
                "cls": cls,
                "json": {"character": character, "rotations": rotations},
            }


def to_input(image: Image.Image, size: int) -> Tensor:
    """105×105 binary scan → (1, size, size) float, strokes 1 and paper 0 as in the ProtoNets code."""
    return 1.0 - to_tensor(image.convert("L").resize((size, size), Image.Resampling.LANCZOS))


# ---- the DataModule ----------------------------------------------------------------------------------------


class Omniglot(ShardDataModule):
    """Episodes over rotated character classes, read once from the shards into memory (Omniglot fits)."""

    name = "omniglot"
    download, synthesize, samples, classes, check_layout, import_local = map(
        staticmethod, (download, synthesize, samples, classes, check_layout, import_local)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        train_way: PositiveInt = 60,
        shot: PositiveInt = 5,
        query: PositiveInt = 5,
        val_way: PositiveInt = 5,
        val_episodes: PositiveInt = 100,
        test_query: PositiveInt = 15,
        test_settings: list[tuple[PositiveInt, PositiveInt]] = [(5, 1), (5, 5), (20, 1), (20, 5)],  # noqa: B006
        test_episodes: PositiveInt = 1000,
        image_size: PositiveInt = 28,
        layout: Literal["episodes", "sequences"] = "episodes",
        batch_size: PositiveInt = 1,
        num_workers: NonNegativeInt = 0,
    ):
        super().__init__(shards_dir, seed, batch_size=batch_size, num_workers=num_workers)
        self.layout = layout  # episodes: support/query sets (ProtoNets); sequences: batches of streams (MANN)
        self.train_way, self.shot, self.query, self.val_way, self.val_episodes = (
            train_way,
            shot,
            query,
            val_way,
            val_episodes,
        )
        self.test_query, self.test_settings, self.test_episodes = (
            test_query,
            [tuple(s) for s in test_settings],
            test_episodes,
        )
        self.image_size, self.index = image_size, {}

    def class_images(self, split: str) -> list[Tensor]:
        """One (n, 1, size, size) tensor per rotated class, in a fixed order."""
        if split not in self.index:
            drawings, rotations = defaultdict(list), {}
            for sample in self.read_all(split):
                drawings[sample["cls"]].append(to_input(sample["png"], self.image_size))
                rotations[sample["cls"]] = sample["json"]["rotations"]
            self.index[split] = [
                torch.rot90(torch.stack(drawings[c]), r // 90, dims=(-2, -1))
                for c in sorted(drawings)
                for r in rotations[c]
            ]
        return self.index[split]

    def sample(self, split: str):
        return lambda s: (to_input(s["png"], self.image_size), s["cls"])

    def episodes(
        self, split: str, way: int, shot: int, query: int, count: int | None, start: int = 0
    ) -> torch.utils.data.DataLoader:
        sequences = self.layout == "sequences"
        sampler = EpisodeSampler(
            self.class_images(split),
            way=way,
            shot=shot,
            query=0 if sequences else query,
            seed=self.seed,
            episodes=count,
            start=start,
            sequence=sequences,
        )
        # An Episode is a batch in itself; sequences are stacked `batch_size` at a time (B, L, C, H, W).
        return torch.utils.data.DataLoader(
            sampler, batch_size=self.batch_size if sequences else None, num_workers=self.num_workers
        )

    seeks_by_step = (
        True  # episode i is a function of (seed, rank, i): starting at the restored step resumes exactly
    )

    def train_loader(self):
        start = (
            self.trainer.global_step * (self.batch_size if self.layout == "sequences" else 1)
            if self.trainer is not None
            else 0
        )
        return self.episodes("train", self.train_way, self.shot, self.query, None, start)

    def val_dataloader(self):
        return self.episodes("val", self.val_way, self.shot, self.query, self.val_episodes)

    def test_dataloader(self):
        return [
            self.episodes("test", way, shot, self.test_query, self.test_episodes)
            for way, shot in self.test_settings
        ]
