"""BERT's pretraining examples (Devlin et al. 2018, §3.1 and Appendix A.1) from articles of running text:
sentence pairs, half of them consecutive (next-sentence prediction), and masked-LM batches with the 80/10/10
rule."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
from torch.utils.data import IterableDataset

from datamodules.episodes import evaluation_share, rank_and_world

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def sentences(article: str) -> list[str]:
    """Paragraph lines split after sentence-ending punctuation; headings stay whole."""
    return [s for line in article.splitlines() for s in SENTENCE_END.split(line) if s.strip()]


def sentence_pairs(
    documents: list[list[list[int]]], max_length: int, rng: np.random.Generator
) -> list[tuple[list[int], list[int], int]]:
    """(segment A, segment B, next-sentence label) from tokenised documents (lists of sentences of ids), as
    BERT's create_pretraining_data: sentences fill a chunk up to max_length − 3 ([CLS], [SEP], [SEP]); A is a
    random prefix of the chunk; half the time B is the rest (label 0, IsNext), half the time B is taken from
    another document (label 1, NotNext) and the unused sentences go back to the stream."""
    target, pairs = max_length - 3, []
    for d, document in enumerate(documents):
        chunk, i = [], 0
        while i < len(document):
            chunk.append(document[i])
            if i == len(document) - 1 or sum(map(len, chunk)) >= target:
                cut = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
                a = [t for s in chunk[:cut] for t in s]
                if len(documents) > 1 and (len(chunk) == 1 or rng.random() < 0.5):
                    other = documents[int(rng.choice([k for k in range(len(documents)) if k != d]))]
                    start = int(rng.integers(len(other)))
                    b = [t for s in other[start:] for t in s][: max(1, target - len(a))]
                    label, i = 1, i - (len(chunk) - cut)  # the sentences not used are not wasted
                else:
                    b, label = [t for s in chunk[cut:] for t in s], 0
                while (
                    len(a) + len(b) > target
                ):  # trim the longer segment at a random end, as the paper's code
                    (a if len(a) > len(b) else b).pop(0 if rng.random() < 0.5 else -1)
                if a and b:
                    pairs.append((a, b, label))
                chunk = []
            i += 1
    return pairs


class PretrainingBatches(IterableDataset):
    """Masked sentence-pair batches; batch k is a pure function of (seed, rank, k), so a resumed run continues
    exactly, and the masks of a held-out batch are the same at every evaluation.

    Training streams endlessly from batch `start`, drawing pairs at `max_length` and, from step `long_after`
    on, at `long_max_length` (the paper's last 10% of steps at 512). Held-out batches (`batches` set) go
    go through every pair in order, the last batch partial, each batch on one rank's worker only.
    """

    def __init__(
        self,
        pairs: dict[int, list],
        tokenizer,
        *,
        batch_size: int,
        seed: int,
        max_length: int,
        long_max_length: int | None = None,
        long_after: int | None = None,
        start: int = 0,
        batches: int | None = None,
    ):
        from transformers import DataCollatorForLanguageModeling

        self.pairs, self.tokenizer, self.batch_size, self.seed = pairs, tokenizer, batch_size, seed
        self.max_length, self.long_max_length, self.long_after = max_length, long_max_length, long_after
        self.start, self.batches = start, batches
        # §3.1: 15% of WordPiece positions chosen (never [CLS]/[SEP]/[PAD]); 80% [MASK], 10% random, 10% kept.
        # A masker per batch, seeded by the batch: the masks are then a function of (seed, rank, k) too.
        self.masker = partial(
            DataCollatorForLanguageModeling,
            tokenizer,
            mlm_probability=0.15,
            mask_replace_prob=0.8,
            random_replace_prob=0.1,
        )

    def batch(self, chosen: list[tuple[list[int], list[int], int]], stream: int, k: int) -> dict:
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        encoded = [
            {
                "input_ids": [cls, *a, sep, *b, sep],
                "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
                "special_tokens_mask": [1] + [0] * len(a) + [1] + [0] * len(b) + [1],
            }
            for a, b, _ in chosen
        ]
        seed = hash((self.seed, stream, k)) & 0x7FFF_FFFF_FFFF_FFFF
        masker = self.masker(seed=seed)
        # In a DataLoader worker, transformers seeds with seed + worker id, so a batch's masks would depend on
        # which worker drew it (and on num_workers); the generator is set here, as the main process would.
        masker.generator, masker._generator_pid = torch.Generator().manual_seed(seed), os.getpid()
        batch = masker(encoded)  # pads, then masks input_ids; labels −100 elsewhere
        batch["next_sentence_label"] = torch.tensor([label for *_, label in chosen])
        return dict(batch)

    def __iter__(self) -> Iterator[dict]:
        rank, _ = rank_and_world()
        if self.batches is None:
            k = self.start
            while True:
                length = (
                    self.long_max_length
                    if self.long_after is not None and k >= self.long_after
                    else self.max_length
                )
                g = torch.Generator().manual_seed(hash((self.seed, rank, k)) & 0x7FFF_FFFF_FFFF_FFFF)
                pool = self.pairs[length]
                yield self.batch(
                    [pool[i] for i in torch.randint(len(pool), (self.batch_size,), generator=g)], rank, k
                )
                k += 1
        pool = self.pairs[self.max_length]
        for k in evaluation_share(self.batches):
            yield self.batch(pool[k * self.batch_size : (k + 1) * self.batch_size], -1, k)
