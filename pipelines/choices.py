"""The keys a user names on the command line, as typer choices: `--help` lists them, a typo is refused before
any import, and shell completion offers them. Read cheaply (no torch): params.yaml's experiments, the dataset
registry's keys."""

from __future__ import annotations

import enum
from pathlib import Path

import yaml


def experiment_keys() -> list[str]:
    """params.yaml's experiments, for `--help` and shell completion; `load_params` validates the file
    itself."""
    try:
        return list(
            (yaml.load(Path("params.yaml").read_text(), Loader=yaml.CSafeLoader) or {}).get("papers") or {}
        )
    except (OSError, yaml.YAMLError, AttributeError):
        return []


def dataset_keys() -> list[str]:
    from datamodules import DATASETS  # a lazy registry: its keys import no dataset

    return sorted(DATASETS)


def choices(name: str, keys: list[str]) -> type:
    """The keys as typer choices (a StrEnum's members are the strings themselves); plain text where there are
    none (no params.yaml here: `load_params` then says so, naming the file)."""
    return enum.StrEnum(name, {key: key for key in keys}) if keys else str


Experiment = choices("Experiment", experiment_keys())


Dataset = choices("Dataset", dataset_keys())
