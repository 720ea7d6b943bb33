"""WikiText-103 (Merity et al. 2016): 28,475 Wikipedia articles, 103M tokens; the raw (untokenised) release.

Raw layout: wikitext-103-raw/wiki.{train,valid,test}.raw, articles headed by " = Title = " lines, sections by
" = = Section = = ", paragraphs separated by blank lines. A sample is one article (`txt`). The shard stage
also learns a WordPiece vocabulary (BERT's tokeniser; datamodules/wordpiece.py) on the training split and
writes it beside the shards as vocab.txt. The replica is real English text: the Python standard library's
documentation topics (pydoc_data), set out as WikiText articles.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveInt, conint
from torch.utils.data import DataLoader

from datamodules.base import ShardDataModule
from datamodules.files import DataError, extract
from datamodules.files import download as fetch_url
from datamodules.pretraining import PretrainingBatches, sentence_pairs, sentences
from datamodules.wordpiece import vocabulary

URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip"
ARCHIVE_BYTES = 191_984_949  # no md5 is published; the release's size is checked instead
FILES = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}
SPLITS_ORDER = tuple(FILES)
TITLE = re.compile(r"^ = [^=].* = $")  # " = Title = ", not " = = Section = = "
VOCAB, SPECIAL = "vocab.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def folder(raw_dir: Path) -> Path:
    return raw_dir / "wikitext-103-raw"


def download(raw_dir: Path, downloads: Path) -> None:
    archive = fetch_url(URL, downloads / "wikitext-103-raw-v1.zip", None)
    if archive.stat().st_size != ARCHIVE_BYTES:
        archive.unlink()
        raise DataError(f"{URL}: expected {ARCHIVE_BYTES} bytes; the download was deleted")
    extract(archive, raw_dir)


def check_layout(raw_dir: Path) -> None:
    if missing := [f for f in FILES.values() if not (folder(raw_dir) / f).exists()]:
        raise DataError(f"{folder(raw_dir)}: not WikiText-103 (raw); missing {', '.join(missing)}")


def articles(path: Path) -> Iterator[tuple[str, str]]:
    """(title, text) per article; text keeps the section headings and paragraphs, without the blank lines."""
    title, lines = None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if TITLE.match(line):
            if title is not None:
                yield title, "\n".join(lines)
            title, lines = line.strip(" =").strip(), []
        elif line.strip():
            lines.append(line.strip())
    if title is not None:
        yield title, "\n".join(lines)


def classes(raw_dir: Path, split: str) -> list[str]:
    return []


def samples(raw_dir: Path, split: str) -> Iterator[dict]:
    check_layout(raw_dir)
    for number, (title, text) in enumerate(articles(folder(raw_dir) / FILES[split])):
        yield {"__key__": f"{split}/{number:06d}", "txt": text, "json": {"title": title}}


def extras(raw_dir: Path, out_dir: Path) -> dict:
    """A BERT-style WordPiece vocabulary (30,000 pieces, the paper's size) from the training text, the same
    on every run (datamodules/wordpiece.py)."""
    texts = (text for _, text in articles(folder(raw_dir) / FILES["train"]))
    vocab = vocabulary(texts, size=30_000, min_frequency=2, special=SPECIAL)
    (out_dir / VOCAB).write_text("\n".join(vocab) + "\n")
    return {"vocab": VOCAB, "vocab_size": len(vocab)}


STDLIB = (
    "argparse",
    "asyncio",
    "calendar",
    "collections",
    "csv",
    "datetime",
    "decimal",
    "email",
    "fractions",
    "functools",
    "http.client",
    "inspect",
    "itertools",
    "json",
    "logging",
    "pathlib",
    "random",
    "shutil",
    "sqlite3",
    "statistics",
    "string",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "zipfile",
)


def _documentation() -> list[tuple[str, str]]:
    """(title, text): pydoc's documentation topics, then the docstrings of some standard-library modules."""
    import importlib
    import inspect
    from pydoc_data.topics import topics

    docs = sorted(topics.items())
    for name in STDLIB:
        module = importlib.import_module(name)
        members = [
            inspect.getdoc(obj)
            for _, obj in sorted(vars(module).items())
            if not _.startswith("_")
            and getattr(obj, "__module__", None) == module.__name__
            and inspect.getdoc(obj)
        ]
        docs.append((f"{name} module", "\n\n".join([inspect.getdoc(module) or name, *members])))
    return docs


def synthesize(
    raw_dir: Path, seed: int = 0, *, val_fraction: float = 0.05, test_fraction: float = 0.05
) -> None:
    """Each documentation topic becomes an article; its indented blocks become sections, in WikiText's
    format."""
    rng = np.random.default_rng(seed)
    topics = _documentation()
    order = rng.permutation(len(topics))
    n_val, n_test = max(1, int(len(topics) * val_fraction)), max(1, int(len(topics) * test_fraction))
    parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    folder(raw_dir).mkdir(parents=True)
    for split, chosen in parts.items():
        out = []
        for i in sorted(chosen):
            title, text = topics[i]
            out += ["", f" = {title.replace('-', ' @-@ ')} = ", ""]  # WikiText writes hyphens as " @-@ "
            for k, paragraph in enumerate(p for p in re.split(r"\n\s*\n", text) if p.strip()):
                if k and k % 4 == 0:
                    out += [f" = = Part {k // 4} = = ", ""]
                out += [" " + " ".join(paragraph.split()) + " ", ""]
        (folder(raw_dir) / FILES[split]).write_text("\n".join(out) + "\n", encoding="utf-8")


class WikiText103(ShardDataModule):
    """Articles as text (`layout: articles`), or BERT's masked sentence-pair batches (`layout:
    pretraining`)."""

    name = "wikitext103"
    decode_keys = ("txt", "json")
    collate = staticmethod(list)  # a batch of articles is a list of strings
    download, synthesize, samples, classes, check_layout, extras = map(
        staticmethod, (download, synthesize, samples, classes, check_layout, extras)
    )

    def __init__(
        self,
        shards_dir: Path,
        seed: int = 0,
        *,
        batch_size: PositiveInt = 32,
        num_workers: NonNegativeInt = 0,
        shuffle_buffer: PositiveInt = 1000,
        layout: Literal["articles", "pretraining"] = "articles",
        max_length: conint(gt=8) = 128,
        long_max_length: conint(gt=8) | None = None,
        long_after_step: NonNegativeInt | None = None,
    ):
        super().__init__(
            shards_dir, seed, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer
        )
        self.vocab = self.shards_dir / self.meta["vocab"]
        self.layout, self.max_length = layout, max_length
        self.long_max_length, self.long_after_step = long_max_length, long_after_step
        self._pairs: dict[tuple[str, int], list] = {}
        self._documents: dict[str, list] = {}

    def sample(self, split: str):
        return lambda s: s["txt"]

    def tokenizer(self):
        from transformers import BertTokenizer

        # transformers 5 takes the vocabulary as `vocab=` (a `vocab_file=` is silently ignored: all [UNK]).
        return BertTokenizer(vocab=str(self.vocab), do_lower_case=True)

    def documents(self, split: str) -> list[list[list[int]]]:
        """The split's articles as sentences of WordPiece ids, read and tokenised once (both lengths use
        them)."""
        if split not in self._documents:
            tokenizer = self.tokenizer()
            # One batched (Rust) call per article: per-sentence calls would take hours on the real corpus.
            tokenised = (
                tokenizer(sentences(sample["txt"]), add_special_tokens=False)["input_ids"]
                for sample in self.read_all(split)
            )
            self._documents[split] = [d for d in tokenised if d]
        return self._documents[split]

    def pairs(self, split: str, max_length: int) -> list[tuple[list[int], list[int], int]]:
        """The split's sentence pairs at one length, built once per (split, length) with a seeded
        generator."""
        if (split, max_length) not in self._pairs:
            rng = np.random.default_rng([self.seed, max_length, SPLITS_ORDER.index(split)])
            self._pairs[split, max_length] = sentence_pairs(self.documents(split), max_length, rng)
            if not self._pairs[split, max_length]:
                raise DataError(
                    f"{self.shards_dir}: split {split!r} yields no sentence pair of at most {max_length} "
                    "tokens"
                )
        return self._pairs[split, max_length]

    def pretraining(self, split: str) -> DataLoader:
        lengths = [self.max_length] + (
            [self.long_max_length] if split == "train" and self.long_max_length else []
        )
        pairs = {length: self.pairs(split, length) for length in lengths}
        if split == "train":
            start = self.trainer.global_step if self.trainer is not None else 0
            stream = PretrainingBatches(
                pairs,
                self.tokenizer(),
                batch_size=self.batch_size,
                seed=self.seed,
                max_length=self.max_length,
                long_max_length=self.long_max_length,
                long_after=self.long_after_step,
                start=start,
            )
        else:
            batches = -(-len(pairs[self.max_length]) // self.batch_size)  # every pair, the last batch partial
            stream = PretrainingBatches(
                pairs,
                self.tokenizer(),
                batch_size=self.batch_size,
                seed=self.seed,
                max_length=self.max_length,
                batches=batches,
            )
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers)

    @property
    def seeks_by_step(self) -> bool:
        return self.layout == "pretraining"  # batch i of pretraining is a function of (seed, i)

    def split_loader(self, split: str):
        return self.pretraining(split) if self.layout == "pretraining" else super().split_loader(split)
