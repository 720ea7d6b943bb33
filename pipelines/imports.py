"""The project's import graph: which code files an experiment's weights depend on.

A paper's file and a dataset's file import shared modules of lightning_modules/ and datamodules/; the closure
of those imports is the code that shapes an experiment's trained weights. Two consumers share this one
derivation: `reprozoo deps` mirrors it as DVC dependencies, and the recipe fingerprint hashes it, so DVC
re-trains exactly when `evaluate` would refuse the old checkpoint."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lightning_modules", "datamodules")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """`datamodules.voc` → datamodules/voc.py, for the packages whose code shapes results; None otherwise."""
    parts = name.split(".")
    if parts[0] not in PACKAGES or len(parts) != 2:
        return None
    path = root / parts[0] / f"{parts[1]}.py"
    return path if path.exists() else None


def imports_of(path: Path, root: Path = ROOT) -> set[Path]:
    """The project modules `path` imports anywhere in it (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {file for name in names if (file := module_file(name, root))}
    return found - {path}


def closure(*start: Path, root: Path = ROOT) -> set[Path]:
    """`start` and everything it imports, transitively."""
    seen, todo = set(), list(start)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += imports_of(path, root)
    return seen


def dataset_code(name: str, root: Path = ROOT) -> set[Path]:
    return closure(root / "datamodules" / f"{name}.py", root=root)


def paper_code(paper: str, root: Path = ROOT) -> set[Path]:
    return closure(root / "lightning_modules" / f"{paper}.py", root=root)


# The code that shapes trained weights: the experiment's paper and dataset files with everything they import,
# and the training verb's own code. Exactly what its DVC train stage depends on (deps/ mirrors the same
# closure), so an edit of one paper's file changes only its experiments' fingerprints: DVC re-trains those,
# and evaluate refuses no checkpoint that DVC considers up to date.
TRAINING_CODE = ("pipelines/train.py", "pipelines/runs.py")


def training_code_hash(paper: str, dataset: str, root: Path = ROOT) -> str:
    files = paper_code(paper, root) | dataset_code(dataset, root) | {root / part for part in TRAINING_CODE}
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
