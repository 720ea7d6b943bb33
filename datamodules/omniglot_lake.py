"""Omniglot's two small background sets and Lake's 20 official one-shot runs (Lake, Salakhutdinov & Tenenbaum
2015): a protocol of its own on real data. Training reads images_background_small1 + small2 (242 distinct
characters: Greek and Latin are in both), each in the four rotations Vinyals' protocol makes classes of; every
10th character (sorted) is held out for validation; the test is the 20 within-alphabet 20-way 1-shot runs of
all_runs.zip, whose characters come from the evaluation alphabets, none of them in the small sets.

Raw layout: images_background_small{1,2}/<Alphabet>/characterNN/*.png, all_runs/runNN/{training/classNN.png,
test/itemNN.png, class_labels.txt} (each line pairs a test item with its training class), splits/derived/.
Sources: download (the three archives from Lake's repository, md5-checked), local (a folder holding the three
zips or their unpacked folders), synthetic (a replica of both)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import PositiveInt

from datamodules import omniglot
from datamodules.episodes import Episode, rank_and_world
from datamodules.files import DataError, copy_tree, extract
from datamodules.files import download as fetch_url
from datamodules.omniglot import LAKE, Omniglot, to_input
from datamodules.omniglot_splits import derive, split_file

SMALL = ("images_background_small1", "images_background_small2")
RUNS = "all_runs"
URLS = {  # (url, md5), as ../shared/data/README.md and the repository give them
    "images_background_small1.zip": (
        LAKE + "images_background_small1.zip",
        "e704a628b5459e08445c13499850abc4",
    ),
    "images_background_small2.zip": (
        LAKE + "images_background_small2.zip",
        "b75a71a51d3b13f821f212756fe481fd",
    ),
    "all_runs.zip": (LAKE + "one-shot-classification/all_runs.zip", "e8996daecdf12afeeb4a53a179f06b19"),
}


def unpack(archive: Path, raw_dir: Path) -> None:
    """The small sets' zips hold their own top folder; all_runs.zip holds run01/ … at its root."""
    extract(archive, raw_dir / RUNS if archive.name == f"{RUNS}.zip" else raw_dir)


def download(raw_dir: Path, downloads: Path) -> None:
    for name, (url, md5) in URLS.items():
        unpack(fetch_url(url, downloads / name, md5), raw_dir)
    derive(raw_dir)


def import_local(path: Path, raw_dir: Path) -> None:
    """Each part as its folder (as the archive unpacks) or as the zip itself."""
    for part in (*SMALL, RUNS):
        if (path / part).is_dir():
            copy_tree(path / part, raw_dir / part)
        elif (path / f"{part}.zip").is_file():
            unpack(path / f"{part}.zip", raw_dir)
        else:
            raise DataError(
                f"{path}: neither {part}/ nor {part}.zip; expected Lake's small sets and all_runs"
            )
    derive(raw_dir)


def check_layout(raw_dir: Path) -> None:
    missing = [str(raw_dir / p) for p in (*SMALL, RUNS) if not (raw_dir / p).is_dir()]
    missing += [str(split_file(raw_dir, s)) for s in ("train", "val") if not split_file(raw_dir, s).exists()]
    if missing:
        raise DataError(f"{raw_dir}: not Lake's small sets and runs; missing {', '.join(missing)}")


def pairs(run: Path) -> list[tuple[str, str]]:
    """(test item, training class) file names of a run, from its class_labels.txt."""
    found = []
    for number, line in enumerate((run / "class_labels.txt").read_text().splitlines(), 1):
        if line.strip():
            try:
                item, cls = line.split()
            except ValueError:
                raise DataError(
                    f"{run / 'class_labels.txt'}:{number}: expected two paths, got {line!r}"
                ) from None
            found.append((Path(item).name, Path(cls).name))
    return found


def run_folders(raw_dir: Path) -> list[Path]:
    return sorted(p for p in (raw_dir / RUNS).glob("run*") if p.is_dir())


def classes(raw_dir: Path, split: str) -> list[str]:
    if split != "test":
        return omniglot.classes(raw_dir, split)
    return [
        f"{run.name}/{png.stem}" for run in run_folders(raw_dir) for png in sorted(run.glob("training/*.png"))
    ]


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    """Drawings for train and val; for test, every run's training images (its classes) and test items,
    each item's `cls` the class its class_labels.txt pairs it with."""
    check_layout(raw_dir)
    if split != "test":
        yield from omniglot.drawings(raw_dir, split)
        return
    index = {name: i for i, name in enumerate(classes(raw_dir, "test"))}
    for run in run_folders(raw_dir):
        for png in sorted(run.glob("training/*.png")):
            cls = index[f"{run.name}/{png.stem}"]
            yield {"__key__": f"{RUNS}/{run.name}/training/{png.stem}", "png": png.read_bytes(), "cls": cls}
        for item, paired in pairs(run):
            key = f"{run.name}/{Path(paired).stem}"
            if key not in index or not (run / "test" / item).exists():
                raise DataError(
                    f"{run / 'class_labels.txt'}: pairs test/{item} with a missing training/{paired}"
                )
            png = (run / "test" / item).read_bytes()
            yield {"__key__": f"{RUNS}/{run.name}/test/{Path(item).stem}", "png": png, "cls": index[key]}


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    alphabets: PositiveInt = 8,
    characters: PositiveInt = 12,
    drawers: PositiveInt = 20,
    runs: PositiveInt = 4,
) -> None:
    """The replica: Omniglot's, its background alphabets split into the two small sets, runs drawn from its
    evaluation alphabets (up to 20 classes each; run r's classes by drawer 2r, its items by drawer 2r + 1)."""
    if 2 * runs > drawers:
        raise DataError(
            f"datasets.omniglot_lake.synthetic: {runs} runs need {2 * runs} drawers, not {drawers}"
        )
    replica, rng = raw_dir / "replica", np.random.default_rng(seed)
    omniglot.synthesize(replica, seed, alphabets=alphabets, characters=characters, drawers=drawers)
    background = sorted((replica / "images_background").iterdir())
    for i, alphabet in enumerate(background):
        shutil.move(alphabet, raw_dir / SMALL[i % 2] / alphabet.name)
    evaluation = sorted((replica / "images_evaluation").iterdir())
    for r in range(runs):
        run, chars = (
            raw_dir / RUNS / f"run{r + 1:02d}",
            sorted(evaluation[r % len(evaluation)].iterdir())[:20],
        )
        lines = []
        for i, position in enumerate(rng.permutation(len(chars))):
            drawings = sorted(chars[position].glob("*.png"))
            for role, name, drawing in (
                ("training", f"class{position + 1:02d}", 2 * r),
                ("test", f"item{i + 1:02d}", 2 * r + 1),
            ):
                (run / role).mkdir(parents=True, exist_ok=True)
                shutil.copy(drawings[drawing], run / role / f"{name}.png")
            lines.append(
                f"{run.name}/test/item{i + 1:02d}.png {run.name}/training/class{position + 1:02d}.png"
            )
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    shutil.rmtree(replica)
    derive(raw_dir)


class OmniglotLake(Omniglot):
    """Omniglot's episodes for training and validation; the test is Lake's runs, one episode each."""

    name = "omniglot_lake"
    # Other published figures on these 20 runs (errors as accuracies), shown beside a record's 20-way 1-shot
    # number by `reprozoo publish`.
    references = {
        "test/acc_20way_1shot": (
            (
                1 - 0.388,
                "Modified Hausdorff distance on these runs (Lake's omniglot repository): 38.8% error",
            ),
            (1 - 0.045, "people, Lake, Salakhutdinov & Tenenbaum 2015: 4.5% error"),
        )
    }
    download, synthesize, samples, classes, check_layout, import_local = map(
        staticmethod, (download, synthesize, samples, classes, check_layout, import_local)
    )

    def runs(self) -> list[Episode]:
        """Each run as a way-way 1-shot episode: its classes in order, its items as queries labelled with
        the class they are paired with."""
        support, queries = defaultdict(dict), defaultdict(list)
        for sample in self.read_all("test"):
            run, role, name = sample["__key__"].split("/")[1:]
            image = to_input(sample["png"], self.image_size)
            if role == "training":
                support[run][name] = (image, sample["cls"])
            else:
                queries[run].append((name, image, sample["cls"]))
        episodes = []
        for run in sorted(support):
            classes = [support[run][name] for name in sorted(support[run])]
            label = {cls: i for i, (_, cls) in enumerate(classes)}
            items = sorted(queries[run], key=lambda q: q[0])
            episodes.append(
                Episode(
                    torch.stack([image for image, _ in classes])[:, None],
                    torch.stack([image for _, image, _ in items])[:, None],
                    torch.tensor([label[cls] for _, _, cls in items]),
                )
            )
        return episodes

    def test_dataloader(self):
        rank, world = rank_and_world()  # each run scored by one rank; a map-style loader shares it by workers
        return torch.utils.data.DataLoader(
            self.runs()[rank::world], batch_size=None, num_workers=self.num_workers
        )
