"""Associative retrieval (Ba, Hinton, Mnih, Leibo & Ionescu 2016, §4.1): the task the fast-weights paper
defines.

A sequence lists key-value pairs (keys are distinct letters, values digits), then "??" and one of the keys;
the target is that key's value: "c9k8j3f1??c" → 9. The task is defined by its generator, so the generated
data *is* the paper's data (source `generated`), and results on it are comparable with Table 1.
Raw layout: {train,val,test}.txt, one "sequence<TAB>value" line per example (100,000 / 10,000 / 20,000).
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import NonNegativeInt, PositiveInt

from datamodules.base import ShardDataModule
from datamodules.files import DataError

VOCABULARY = string.ascii_lowercase + string.digits + "?"
SPLITS = ("train", "val", "test")


def example(rng: np.random.Generator, pairs: int) -> tuple[str, int]:
    keys = rng.choice(26, pairs, replace=False)
    values = rng.integers(0, 10, pairs)
    asked = int(rng.integers(pairs))
    text = "".join(f"{string.ascii_lowercase[k]}{v}" for k, v in zip(keys, values))
    return f"{text}??{string.ascii_lowercase[keys[asked]]}", int(values[asked])


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    pairs: PositiveInt = 4,
    train: PositiveInt = 100_000,
    val: PositiveInt = 10_000,
    test: PositiveInt = 20_000,
) -> None:
    """The paper's generator; `pairs` = 4 gives its example's length, 11 characters."""
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split, count in zip(SPLITS, (train, val, test)):
        lines = ("\t".join(map(str, example(rng, pairs))) for _ in range(count))
        (raw_dir / f"{split}.txt").write_text("\n".join(lines) + "\n")


def check_layout(raw_dir: Path) -> None:
    if missing := [f"{s}.txt" for s in SPLITS if not (raw_dir / f"{s}.txt").exists()]:
        raise DataError(f"{raw_dir}: missing {', '.join(missing)}")


def classes(raw_dir: Path, split: str) -> list[str]:
    return list(string.digits)


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    path = raw_dir / f"{split}.txt"
    for number, line in enumerate(path.read_text().splitlines()):
        text, value = line.split("\t")
        if "??" not in text or set(text) - set(VOCABULARY) or not value.isdigit():
            yield {
                "__key__": f"{split}/{number:06d}",
                "__error__": f"{path}:{number + 1}: not 'pairs??key<TAB>digit': {line!r}",
            }
            continue
        yield {"__key__": f"{split}/{number:06d}", "txt": text, "cls": int(value)}


class AssociativeRetrieval(ShardDataModule):
    """(token indices (T,), value) per example; tokens index VOCABULARY."""

    name = "associative_retrieval"
    sources = ("generated",)
    decode_keys = ("txt", "cls")
    in_memory = True  # 130,000 sequences of 11 characters
    synthesize, samples, classes, check_layout = map(
        staticmethod, (synthesize, samples, classes, check_layout)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 128,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 10_000,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )

    def sample(self, split: str):
        return lambda s: (torch.tensor([VOCABULARY.index(c) for c in s["txt"]]), s["cls"])
