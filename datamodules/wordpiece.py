"""A WordPiece vocabulary learned the same way on every run: BERT's text normalisation and word splitting
(the `tokenizers` library's), then byte-pair merges of word pieces ("##" marks a piece inside a word), the
most frequent pair first, equal counts in the order of the pair's text.

`tokenizers`' own trainer (BertWordPieceTokenizer.train) breaks ties between equally frequent pairs by the
order of a Rust hash map seeded anew in every process: two runs on the same text gave vocabularies of 5,385
and 5,386 pieces, in different orders, so the shards' checksum and every BERT number changed from run to run.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

CONTINUES = "##"


def words(texts: Iterable[str]) -> Counter[str]:
    """Each word's count, as BERT's tokeniser splits text: lower-cased, accents stripped, split at whitespace
    and punctuation."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer, splitter = BertNormalizer(lowercase=True), BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def vocabulary(texts: Iterable[str], size: int, min_frequency: int, special: list[str]) -> list[str]:
    """`special`, then every character (first of a word, then inside one), then merged pieces in the order
    they were learned, until `size` pieces or no pair occurs `min_frequency` times."""
    counts = words(texts)
    pieces = {word: [word[0], *(CONTINUES + c for c in word[1:])] for word in sorted(counts)}
    alphabet = sorted({piece for split in pieces.values() for piece in split})
    vocab = [*special, *(p for p in alphabet if p not in special)]
    known = set(vocab)
    pairs: Counter[tuple[str, str]] = Counter()
    holders: defaultdict[tuple[str, str], set[str]] = defaultdict(set)  # pair → words that contain it
    for word, split in pieces.items():
        for pair in zip(split, split[1:], strict=False):
            pairs[pair] += counts[word]
            holders[pair].add(word)
    heap = [(-count, pair) for pair, count in pairs.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < size:
        count, pair = heapq.heappop(heap)
        if -count != pairs.get(pair, 0):
            continue  # a stale entry: the pair's count changed since it was pushed
        if -count < min_frequency:
            break
        merged = pair[0] + pair[1].removeprefix(CONTINUES)
        if merged not in known:  # "ab" + "##c" and "a" + "##bc" make one piece
            vocab.append(merged)
            known.add(merged)
        changed = set()
        for word in sorted(holders.pop(pair)):
            split, weight = pieces[word], counts[word]
            for old in zip(split, split[1:], strict=False):
                pairs[old] -= weight
                changed.add(old)
            pieces[word] = split = merge(split, pair, merged)
            for new in zip(split, split[1:], strict=False):
                pairs[new] += weight
                holders[new].add(word)
                changed.add(new)
        for touched in sorted(changed):
            if pairs[touched] > 0:
                heapq.heappush(heap, (-pairs[touched], touched))
            else:
                del pairs[touched]
    return vocab


def merge(split: list[str], pair: tuple[str, str], merged: str) -> list[str]:
    out, i = [], 0
    while i < len(split):
        if i + 1 < len(split) and (split[i], split[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(split[i])
            i += 1
    return out
