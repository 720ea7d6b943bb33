"""Omniglot's class splits: `splits/vinyals/{train,val,test}.txt`, the split of Vinyals et al. (2016) as the
Prototypical Networks code ships it (one `Alphabet/characterNN/rotDDD` class per line), which a download
brings; or, for a copy that has none (the official archives as they unpack), `splits/derived/`: the
background characters for training, every VAL_EVERY-th of them (sorted) held out for validation, the
evaluation characters for test, each in the four rotations. The derived split is Lake's background /
evaluation division, not Vinyals': a run on it is not the paper's protocol, and its meta.json says which split
it read."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from datamodules.files import DataError

SPLITS = ("train", "val", "test")
ROTATIONS = (0, 90, 180, 270)
VINYALS_FRACTIONS = (1028 / 1623, 172 / 1623)  # train, val; test is the rest
BACKGROUND = ("images_background", "images_background_small1", "images_background_small2")
EVALUATION = ("images_evaluation",)
VAL_EVERY = 10


def split_dir(raw_dir: Path) -> Path:
    """The Vinyals split where the copy has it, else the derived one."""
    vinyals = raw_dir / "splits" / "vinyals"
    return vinyals if vinyals.is_dir() else raw_dir / "splits" / "derived"


def split_file(raw_dir: Path, split: str) -> Path:
    return split_dir(raw_dir) / f"{split}.txt"


def write(folder: Path, parts: dict[str, list[str]]) -> None:
    """Split files in the official format: every character in the four rotations."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in parts.items():
        lines = [f"{name}/rot{r:03d}" for name in sorted(names) for r in ROTATIONS]
        (folder / f"{split}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def write_vinyals_style(raw_dir: Path, characters: list[str], rng: np.random.Generator) -> None:
    """The synthetic replica's split: the official proportions, over shuffled characters."""
    order = [characters[i] for i in rng.permutation(len(characters))]
    n_train, n_val = (round(len(order) * f) for f in VINYALS_FRACTIONS)
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    write(raw_dir / "splits" / "vinyals", parts)


def characters(raw_dir: Path, sets: tuple[str, ...]) -> list[str]:
    """`Alphabet/characterNN` of every character folder in `sets`, once each (the two small background sets
    share Greek and Latin), sorted; stray files (a .DS_Store) are no characters."""
    found = {
        f"{alphabet.name}/{character.name}"
        for name in sets
        if (raw_dir / name).is_dir()
        for alphabet in (raw_dir / name).iterdir()
        if alphabet.is_dir()
        for character in alphabet.iterdir()
        if character.is_dir()
    }
    return sorted(found)


def derive(raw_dir: Path) -> None:
    """splits/derived/ from the folders themselves, for a copy that brings no split files."""
    background = characters(raw_dir, BACKGROUND)
    if not background:
        raise DataError(f"{raw_dir}: no character folders under {' or '.join(BACKGROUND)}")
    val = background[::VAL_EVERY]
    parts = {
        "train": [c for c in background if c not in set(val)],
        "val": val,
        "test": characters(raw_dir, EVALUATION),
    }
    write(raw_dir / "splits" / "derived", parts)


def read_split(raw_dir: Path, split: str) -> dict[str, list[int]]:
    """{"Alphabet/characterNN": [rotations]} for a split, from its split file."""
    path, rotations = split_file(raw_dir, split), defaultdict(list)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            alphabet, character, rot = line.strip().split("/")
            rotations[f"{alphabet}/{character}"].append(int(rot.removeprefix("rot")))
        except ValueError:
            raise DataError(f"{path}:{number}: expected Alphabet/characterNN/rotDDD, got {line!r}") from None
    return dict(sorted(rotations.items()))


def classes(raw_dir: Path, split: str) -> list[str]:
    return [f"{name}/rot{r:03d}" for name, rots in read_split(raw_dir, split).items() for r in rots]
