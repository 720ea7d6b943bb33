"""The settings' files read as one tree: params.yaml lists every experiment (`papers.<key>`: its paper and
dataset), and recipes/<paper>.yaml holds the rest of each of that paper's experiments under the same dotted
path (`papers.<key>.hparams`, `.data`, `.trainer`, `.smoke`, `.tune`, `.resources`).

Why two places: DVC re-reads a stage's params file for every stage that names it (no cache), so with every
recipe in params.yaml a no-op `dvc repro` spent most of its time parsing one large file 64 times. Each
training now depends on its paper's small file and on params.yaml's few global keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from pipelines import paths
from pipelines.errors import ParamsError
from pipelines.validation import UniqueKeys

NAMED_IN_PARAMS = ("paper", "dataset")  # an experiment's keys in params.yaml; the rest are its paper file's
Reader = Callable[[Path], "str | None"]  # a file's text by its path under the root; None where it is absent


def has_file(paper: object) -> bool:
    """Whether `paper` could name a recipe file: papers are module names (lightning_modules/<paper>.py)."""
    return isinstance(paper, str) and paper.isidentifier()


def on_disk(root: Path) -> Reader:
    return lambda path: (root / path).read_text() if (root / path).is_file() else None


def parse(text: str, where: Path) -> dict:
    try:
        raw = yaml.load(text, Loader=UniqueKeys)
    except yaml.YAMLError as error:
        raise ParamsError(f"{where}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def read_tree(path: Path, read: Reader | None = None) -> tuple[dict, dict[str, Path]]:
    """params.yaml (at `path`) with each experiment's recipe merged into its entry, as if one file held them
    all, and the file under `path`'s folder each experiment's recipe came from (absent: its paper has no file;
    `load_params` says so once it knows the paper is real). `read`: the files' source, by their relative path
    (default: the disk)."""
    root = path.parent
    read = read or on_disk(root)
    text = read(Path(path.name))
    if text is None:
        raise ParamsError(f"{path}: not found in {Path.cwd()}; run reprozoo from the repository root")
    raw = parse(text, path)
    entries = raw.get("papers")
    if not isinstance(entries, dict):
        return raw, {}  # validation names what is wrong with it
    files: dict[str, dict] = {}  # paper → its file's sections
    sources: dict[str, Path] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict) or not has_file(paper := entry.get("paper")):
            continue  # not an experiment's entry, or no paper that could be: validation names what is wrong
        if extra := sorted(set(entry) - set(NAMED_IN_PARAMS)):
            raise ParamsError(
                f"{path}: papers.{key}.{extra[0]}: params.yaml names only an experiment's paper "
                f"and dataset; its {', '.join(extra)} belong in {paths.recipes(paper)} under papers.{key}"
            )
        if paper not in files:
            files[paper] = _sections(read, root, paper, entries)
        if key in files[paper]:
            entries[key] = {**entry, **files[paper][key]}
            sources[key] = paths.recipes(paper)
    return raw, sources


def _sections(read: Reader, root: Path, paper: str, entries: dict) -> dict:
    """recipes/<paper>.yaml's `papers:` sections, each for an experiment params.yaml gives this paper."""
    path = paths.recipes(paper)
    text = read(path)
    if text is None:
        return {}
    raw = parse(text, root / path)
    if set(raw) != {"papers"} or not isinstance(raw["papers"], dict):
        raise ParamsError(f"{root / path}: expected one key, papers:, mapping experiments to their recipes")
    for key, section in raw["papers"].items():
        if key not in entries or not isinstance(entries[key], dict) or entries[key].get("paper") != paper:
            raise ParamsError(
                f"{root / path}: papers.{key}: params.yaml's papers lists no experiment {key!r} of paper "
                f"{paper!r}; add `{key}: {{paper: {paper}, dataset: <dataset>}}` there"
            )
        if not isinstance(section, dict):
            raise ParamsError(
                f"{root / path}: papers.{key}: expected a mapping, got {type(section).__name__}"
            )
        if named := sorted(set(section) & set(NAMED_IN_PARAMS)):
            raise ParamsError(
                f"{root / path}: papers.{key}.{named[0]}: named in params.yaml's papers.{key}, not here"
            )
    return raw["papers"]


_DOTTED = re.compile(r"^papers\.([^.:\s]+)\.([^.:\s]+)")


def locate(message: str, path: Path, sources: dict[str, Path]) -> str:
    """Each line of a validation message prefixed with the file its dotted path is written in: params.yaml
    (at `path`) or, for an experiment's recipe, its paper's file beside it."""

    def where(line: str) -> Path:
        found = _DOTTED.match(line)
        if found and found[1] in sources and found[2] not in NAMED_IN_PARAMS:
            return path.parent / sources[found[1]]
        return path

    return "\n".join(f"{where(line)}: {line}" for line in message.splitlines())
