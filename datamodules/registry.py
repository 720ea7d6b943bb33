"""A registry that reads as a plain dict of classes but imports each module only when its key is used.

Importing twenty papers (and torchvision's detection models) on every CLI call would make `reprozoo --help`
take seconds; the values are written as "module:Class" strings and resolved here, in one place.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(Mapping[str, type[T]], Generic[T]):
    def __init__(self, entries: dict[str, str]):
        self.entries = entries

    def __getitem__(self, key: str) -> type[T]:
        module, name = self.entries[key].split(":")
        return getattr(importlib.import_module(module), name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
