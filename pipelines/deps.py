"""Each stage's code dependencies, derived from the import graph, as DVC can see them.

DVC cannot template a list into a stage's `deps`, so each paper's and dataset's code is mirrored as a folder
of symbolic links under deps/: deps/papers/<paper>/ links every file of lightning_modules/ and datamodules/
that the paper's file imports (directly or through each other), deps/datasets/<name>/ those of the dataset's
file. An experiment's stages depend on its paper's and its dataset's folders (a new experiment of a registered
paper needs nothing generated), and DVC hashes a folder's links by their targets' content: an edit of
lightning_modules/detection.py re-runs the detection experiments only. `reprozoo deps` rewrites the folders; a
test fails when they no longer match the imports.

Package registries (`__init__.py`) are left out: they name the classes, and editing one is not a change to any
experiment's code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.imports import ROOT, dataset_code, paper_code

DEPS = Path("deps")


def wanted() -> dict[Path, set[Path]]:
    """deps/<kind>/<key>/ → the code files it must link: one folder per registered paper and dataset."""
    from datamodules import DATASETS
    from lightning_modules import PAPERS

    folders = {DEPS / "datasets" / name: dataset_code(name) for name in DATASETS}
    return folders | {DEPS / "papers" / paper: paper_code(paper) for paper in PAPERS}


def linked(folder: Path) -> set[Path]:
    """The files a deps folder links to now."""
    if not folder.is_dir():
        return set()
    return {(link.parent / os.readlink(link)).resolve() for link in folder.rglob("*.py") if link.is_symlink()}


def stale(root: Path = Path()) -> list[str]:
    """The deps folders that do not match the imports, with what differs; empty when all match."""
    problems = []
    folders = wanted()
    for folder, files in folders.items():
        have = linked(root / folder)
        if have != files:
            missing = sorted(str(f.relative_to(ROOT)) for f in files - have)
            extra = sorted(str(f.relative_to(ROOT)) for f in have - files)
            problems.append(f"{folder}: missing {missing or 'nothing'}, extra {extra or 'nothing'}")
    known = {folder.relative_to(DEPS) for folder in folders}
    for kind in ("datasets", "papers"):
        for folder in sorted((root / DEPS / kind).glob("*")) if (root / DEPS / kind).is_dir() else []:
            if folder.relative_to(root / DEPS) not in known:
                problems.append(f"{DEPS / kind / folder.name}: no such {kind[:-1]} registered")
    return problems


def write(root: Path = Path()) -> int:
    """Rewrite deps/ from the import graph; return how many folders were written."""
    folders = wanted()
    scratch = root / f".{DEPS}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    for folder, files in folders.items():
        for file in sorted(files):
            relative = file.relative_to(ROOT)
            link = scratch / folder.relative_to(DEPS) / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(root.resolve() / relative, link.parent.resolve()))
    shutil.rmtree(root / DEPS, ignore_errors=True)
    scratch.rename(root / DEPS)
    return len(folders)
