"""Labeled Faces in the Wild (Huang et al. 2007): 13,233 face photos of 5,749 people, 250×250 JPEG.

Raw layout: lfw/<Person_Name>/<Person_Name>_0001.jpg; pairs.txt (View 2: a "10<TAB>300" header, then per
fold 300 matched lines "name n1 n2" and 300 mismatched lines "name1 n1 name2 n2"); pairsDevTrain.txt and
pairsDevTest.txt (View 1: a count header, matched then mismatched lines). The parser is this file's own:
torchvision's LFWPeople/LFWPairs insist on the official archive's md5, which a local copy may not have.
Splits: `test` = every image a View 2 pair uses; `train` = people in no View 2 pair (identities disjoint
from the test, as face verification needs). The pairs, with their folds, go into meta.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import NonNegativeInt, PositiveInt
from torchvision.datasets.lfw import _LFW
from torchvision.transforms import v2

from datamodules.base import ShardDataModule
from datamodules.files import DataError, extract
from datamodules.files import download as fetch_url
from datamodules.held_out import verification_pairs
from datamodules.identity_batches import IdentityBatches
from datamodules.images import classification_sample
from datamodules.synthetic import background, encode

URL = _LFW.download_url_prefix
ARCHIVE = _LFW.file_dict["original"]  # (folder, archive name, md5)
PAIR_FILES = {"pairs": "pairs.txt", "dev_train": "pairsDevTrain.txt", "dev_test": "pairsDevTest.txt"}


def person(key: str) -> str:
    return key.split("/")[0]


def image_key(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}"


def download(raw_dir: Path, downloads: Path) -> None:
    folder, archive, md5 = ARCHIVE
    extract(fetch_url(URL + archive, downloads / archive, md5), raw_dir)
    for name in PAIR_FILES.values():
        (raw_dir / name).write_bytes(
            fetch_url(URL + name, downloads / name, _LFW.checksums[name]).read_bytes()
        )


def check_layout(raw_dir: Path) -> None:
    needed = [raw_dir / "lfw", *(raw_dir / f for f in PAIR_FILES.values())]
    if missing := [str(p) for p in needed if not p.exists()]:
        raise DataError(f"{raw_dir}: not an LFW copy; missing {', '.join(missing)}")


def read_pairs(path: Path) -> list[dict]:
    """Pairs with their fold: View 2 has a "folds<TAB>n" header, View 1 a single count."""
    lines = path.read_text().splitlines()
    header = lines[0].split()
    folds, per_fold = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    pairs = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        fold = (number - 2) // (2 * per_fold)
        if len(fields) == 3:
            pairs.append(
                {
                    "fold": fold,
                    "a": image_key(fields[0], int(fields[1])),
                    "b": image_key(fields[0], int(fields[2])),
                    "same": True,
                }
            )
        elif len(fields) == 4:
            pairs.append(
                {
                    "fold": fold,
                    "a": image_key(fields[0], int(fields[1])),
                    "b": image_key(fields[2], int(fields[3])),
                    "same": False,
                }
            )
        elif fields:
            raise DataError(f"{path}:{number}: expected 3 (matched) or 4 (mismatched) fields, got {line!r}")
    if len(pairs) != folds * 2 * per_fold:
        raise DataError(f"{path}: the header promises {folds * 2 * per_fold} pairs, found {len(pairs)}")
    return pairs


def people(raw_dir: Path, split: str) -> list[str]:
    tested = {
        key.split("/")[0]
        for pair in read_pairs(raw_dir / PAIR_FILES["pairs"])
        for key in (pair["a"], pair["b"])
    }
    everyone = sorted(p.name for p in (raw_dir / "lfw").iterdir() if p.is_dir())
    return [p for p in everyone if (p in tested) == (split == "test")]


def classes(raw_dir: Path, split: str) -> list[str]:
    return people(raw_dir, split)


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    for cls, name in enumerate(people(raw_dir, split)):
        for image in sorted((raw_dir / "lfw" / name).glob(f"{name}_*.jpg")):
            yield {
                "__key__": f"{name}/{image.stem}",
                "jpg": image.read_bytes(),
                "cls": cls,
                "json": {"name": name},
            }


def extras(raw_dir: Path, out_dir: Path) -> dict:
    """The verification pairs of both views, keyed like the samples, for the 10-fold protocol."""
    return {"pairs": {view: read_pairs(raw_dir / file) for view, file in PAIR_FILES.items()}}


# ---- the synthetic replica ---------------------------------------------------------------------------------


def identity(rng: np.random.Generator) -> dict:
    """What stays the same across one person's photos."""
    return {
        "skin": rng.uniform(90, 230, 3),
        "hair": rng.uniform(10, 200, 3),
        "eyes": rng.uniform(0, 120, 3),
        "width": rng.uniform(0.26, 0.36),
        "height": rng.uniform(0.36, 0.46),
        "eye_gap": rng.uniform(0.07, 0.13),
        "mouth": rng.uniform(0.05, 0.12),
        "fringe": rng.uniform(0.05, 0.2),
        "beard": rng.random() < 0.3,
    }


def face(rng: np.random.Generator, who: dict, size: int = 250) -> np.ndarray:
    """One photo: the identity's face, moved, scaled and lit differently each time, on a real photo
    background."""
    image = Image.fromarray(background(rng, size, size))
    pen = ImageDraw.Draw(image)
    scale, light = size * rng.uniform(0.9, 1.1), rng.uniform(0.75, 1.15)
    cx, cy = size / 2 + rng.normal(0, 6), size / 2 + rng.normal(0, 6)
    tint = lambda c: tuple(int(v) for v in np.clip(c * light, 0, 255))  # noqa: E731
    w, h = who["width"] * scale, who["height"] * scale
    pen.ellipse([cx - w * 1.05, cy - h * 1.1, cx + w * 1.05, cy + h * 0.4], fill=tint(who["hair"]))
    pen.ellipse([cx - w, cy - h + who["fringe"] * scale, cx + w, cy + h], fill=tint(who["skin"]))
    if who["beard"]:
        pen.chord([cx - w, cy, cx + w, cy + h], 0, 180, fill=tint(who["hair"]))
    gap, eye_y = who["eye_gap"] * scale, cy - 0.1 * h
    for side in (-1, 1):
        pen.ellipse([cx + side * gap - 9, eye_y - 5, cx + side * gap + 9, eye_y + 5], fill=(240, 240, 240))
        pen.ellipse([cx + side * gap - 4, eye_y - 4, cx + side * gap + 4, eye_y + 4], fill=tint(who["eyes"]))
    mouth = who["mouth"] * scale
    pen.line([cx - mouth, cy + 0.45 * h, cx + mouth, cy + 0.45 * h], fill=(120, 40, 40), width=4)
    return np.asarray(image.rotate(rng.normal(0, 5), resample=Image.Resampling.BILINEAR))


NAMES = ("Aaron", "Jean_Claude", "Maria", "Li", "Oscar", "Ana_Paula", "George_W", "Yuki", "Kofi", "Elena")


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    people: PositiveInt = 60,
    pairs_per_fold: PositiveInt = 6,
    dev_pairs: PositiveInt = 20,
) -> None:
    """Names with several underscores, 1-6 photos each, and the three pair files in the official format."""
    rng = np.random.default_rng(seed)
    names = [f"{NAMES[i % len(NAMES)]}_Synthetic_{i:03d}" for i in range(people)]
    counts = {n: int(rng.integers(2, 7)) if i % 4 else 1 for i, n in enumerate(names)}
    for name in names:
        who = identity(rng)
        (raw_dir / "lfw" / name).mkdir(parents=True)
        for k in range(1, counts[name] + 1):
            (raw_dir / "lfw" / name / f"{name}_{k:04d}.jpg").write_bytes(
                encode(face(rng, who), "JPEG", quality=90)
            )
    # The last third of the people are the verification identities, split across ten folds.
    tested = names[2 * people // 3 :]
    folds = [tested[f::10] for f in range(10)]
    lines = [f"10\t{pairs_per_fold}"]
    for fold in folds:
        lines += _pairs(rng, fold or tested, counts, pairs_per_fold)
    (raw_dir / "pairs.txt").write_text("\n".join(lines) + "\n")
    for file, group in (("pairsDevTrain.txt", tested[::2]), ("pairsDevTest.txt", tested[1::2])):
        (raw_dir / file).write_text(
            "\n".join([str(dev_pairs), *_pairs(rng, group, counts, dev_pairs)]) + "\n"
        )


def _pairs(rng: np.random.Generator, group: list[str], counts: dict[str, int], n: int) -> list[str]:
    several = [p for p in group if counts[p] > 1] or [p for p in counts if counts[p] > 1]
    matched = []
    for _ in range(n):
        person = several[rng.integers(len(several))]
        a, b = rng.choice(np.arange(1, counts[person] + 1), 2, replace=False)
        matched.append(f"{person}\t{a}\t{b}")
    mismatched = []
    for _ in range(n):
        p, q = rng.choice(group if len(group) > 1 else list(counts), 2, replace=False)
        mismatched.append(f"{p}\t{rng.integers(1, counts[p] + 1)}\t{q}\t{rng.integers(1, counts[q] + 1)}")
    return matched + mismatched


class LFW(ShardDataModule):
    """(image, identity) for embedding training; `pairs` (from meta.json) for the verification protocol."""

    name = "lfw"
    # FaceNet reports the View 2 pairs: checkpoints are chosen on pairs of 1 in 10 training people, held out.
    held_out_every = 10
    splits = ("train", "test")
    image_mode = "pilrgb"
    download, synthesize, samples, classes, check_layout, extras = map(
        staticmethod, (download, synthesize, samples, classes, check_layout, extras)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 1800,  # faces per training batch (§3.2), and per evaluation batch
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 2000,
        size: PositiveInt = 160,
        crop: PositiveInt = 250,
        identities_per_batch: PositiveInt = 45,
        faces_per_identity: PositiveInt = 40,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.size, self.crop = size, crop
        self.identities_per_batch, self.faces_per_identity = identities_per_batch, faces_per_identity
        self.pairs = self.meta["pairs"]
        self.held_out_people = set(self.meta["splits"]["train"]["classes"][:: self.held_out_every])

    def transform(self, split: str) -> v2.Compose:
        # FaceNet's "fixed centre crop" variant: a central crop scaled to the network's input, flips in
        # training.
        steps = [v2.CenterCrop(self.crop), v2.Resize(self.size, antialias=True)]
        steps += [v2.RandomHorizontalFlip()] if split == "train" else []
        return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True)])

    def sample(self, split: str):
        if split == "train":
            return classification_sample(self.transform(split))
        transform = self.transform(split)
        return lambda s: (transform(s["jpg"]), s["__key__"])  # keys let the protocol find each pair's images

    def images(self, split: str) -> dict[str, torch.Tensor]:
        """Every image of a split by key, for embedding all pair members once."""
        transform = self.transform("test")
        return {s["__key__"]: transform(s["jpg"]) for s in self.read_all(split)}

    seeks_by_step = True  # batch i is an episode: a function of (seed, rank, i)

    def train_loader(self):
        """FaceNet's batches (§3.2): `batch_size` faces, up to `faces_per_identity` of each of
        `identities_per_batch` people, the rest random negatives (datamodules/identity_batches.py)."""
        by_identity: dict[int, list[torch.Tensor]] = {}
        resize = v2.Compose([v2.ToImage(), v2.CenterCrop(self.crop), v2.Resize(self.size, antialias=True)])
        for s in self.read_all("train", held_out=False):
            by_identity.setdefault(s["cls"], []).append(resize(s["jpg"]))
        batches = IdentityBatches(
            [torch.stack(faces) for faces in by_identity.values()],
            identities=self.identities_per_batch,
            faces=self.faces_per_identity,
            size=self.batch_size,
            seed=self.seed,
            start=self.trainer.global_step if self.trainer else 0,
        )
        return torch.utils.data.DataLoader(batches, batch_size=None, num_workers=self.num_workers)

    def is_held_out(self, key: str, position: int) -> bool:
        return person(key) in self.held_out_people  # whole people: a held-out face is never trained on

    def val_dataloader(self):
        return self.loader("train", self.sample("test"), held_out=True)

    def verification_pairs(self, stage: str, faces: Iterable[str]) -> list[dict]:
        """test: LFW's View 2 pairs; val: pairs of the held-out people's `faces`, shaped alike."""
        if stage == "test":
            return self.pairs["pairs"]
        return verification_pairs(faces, person, self.seed)
