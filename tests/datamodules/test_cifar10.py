"""CIFAR-10: the pickle batches are checksummed before reading and can only hold arrays."""

import os
import pickle

import pytest
import torch

from datamodules.cifar10 import CIFAR10, FOLDER, REPLICA_MD5S, load_batch, samples, synthesize
from datamodules.files import DataError, md5sum
from datamodules.shards import read_meta
from tests.helpers import synthetic_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(CIFAR10, tmp_path_factory.mktemp("cifar"), train=100, test=20)


def test_round_trip_keeps_the_45k_5k_style_split(shards):
    assert {s: v["samples"] for s, v in read_meta(shards)["splits"].items()} == {
        "train": 90,
        "val": 10,
        "test": 20,
    }
    images, labels = next(iter(CIFAR10(shards, 0, batch_size=4).train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.shape == (4,) and images.dtype == torch.uint8
    raw = CIFAR10(shards, 0, normalize=False).on_after_batch_transfer((images, labels), 0)[0]
    assert raw.dtype == torch.float32 and raw.min() >= 0 and raw.max() <= 1  # pixelcnn's [0, 1] pixels
    assert torch.allclose(raw * 255, images.float(), atol=1e-4)
    assert read_meta(shards)["splits"]["test"]["classes"][0] == "airplane"


def test_a_changed_batch_is_not_unpickled(tmp_path):
    synthesize(tmp_path, 0, train=10, test=5)
    path = tmp_path / FOLDER / "test_batch"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the pixel data
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="matches neither the official checksum"):
        list(samples(tmp_path, "test"))


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_batch_that_would_run_code_is_refused_even_with_a_matching_checksum(tmp_path):
    synthesize(tmp_path, 0, train=10, test=5)
    path = tmp_path / FOLDER / "test_batch"
    path.write_bytes(pickle.dumps({"data": Boom(), "labels": []}))
    (tmp_path / FOLDER / REPLICA_MD5S).write_text(f"{md5sum(path)}  test_batch\n")
    with pytest.raises(DataError, match="refused to unpickle posix.system"):
        load_batch(tmp_path, "test_batch")
