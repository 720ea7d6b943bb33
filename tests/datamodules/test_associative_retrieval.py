"""Associative retrieval: the generator's format, determinism, the official sizes, and a bad line named."""

import numpy as np
import pytest

from datamodules.associative_retrieval import AssociativeRetrieval, samples, synthesize
from datamodules.files import DataError
from datamodules.shards import read_meta, write_split
from tests.helpers import synthetic_shards


def test_the_default_sizes_are_the_papers():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(synthesize).parameters.items()}
    assert (defaults["train"], defaults["val"], defaults["test"]) == (100_000, 10_000, 20_000)


def test_every_query_key_is_one_of_the_sequences_keys_and_the_value_matches(tmp_path):
    synthesize(tmp_path, 0, pairs=3, train=200, val=10, test=10)
    for sample in samples(tmp_path, "train"):
        text, value = sample["txt"], sample["cls"]
        pairs = dict(zip(text[:6:2], text[1:6:2]))
        assert len(pairs) == 3 and text[6:8] == "??" and pairs[text[8]] == str(value)
    synthesize(tmp_path / "again", 0, pairs=3, train=200, val=10, test=10)
    assert (tmp_path / "train.txt").read_text() == (tmp_path / "again" / "train.txt").read_text()


def test_round_trip_batches(tmp_path):
    shards = synthetic_shards(AssociativeRetrieval, tmp_path, pairs=4, train=300, val=20, test=40)
    assert {s: v["samples"] for s, v in read_meta(shards)["splits"].items()} == {
        "train": 300,
        "val": 20,
        "test": 40,
    }
    tokens, values = next(iter(AssociativeRetrieval(shards, 0, batch_size=16).train_dataloader()))
    assert tokens.shape == (16, 11) and values.max() <= 9 and np.all(tokens[:, 8:10].numpy() == 36)  # "??"


def test_a_malformed_line_is_named(tmp_path):
    synthesize(tmp_path, 0, pairs=2, train=5, val=5, test=5)
    (tmp_path / "test.txt").write_text("a1b2??a\t1\nnot a sequence\t7\n")
    with pytest.raises(DataError, match=r"test.txt:2: not 'pairs\?\?key<TAB>digit'"):
        write_split(samples(tmp_path, "test"), tmp_path / "out", "test", raw_dir=tmp_path, shard_size=10)
