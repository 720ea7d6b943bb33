"""MNIST: IDX files in and out, the bundled real digits, a local copy checked, the recurrent views."""

import gzip
import hashlib

import numpy as np
import pytest
import torch

from datamodules.files import DataError
from datamodules.mnist import (
    FILES,
    MNIST,
    OFFICIAL_SHA256,
    bundled,
    check_layout,
    idx_dir,
    import_local,
    samples,
    write_idx,
    write_split_files,
)
from datamodules.shards import read_meta
from tests.helpers import ROOT, synthetic_shards


def test_idx_header_is_the_official_one(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8))
    assert (tmp_path / "x").read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28])


def test_hand_made_idx_files_are_read_by_torchvisions_parser(tmp_path):
    images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28) % 251
    for split in ("train", "test"):
        write_split_files(tmp_path, split, images, np.array([3, 1, 4, 1]))
    parsed = list(samples(tmp_path, "test"))
    assert [s["cls"] for s in parsed] == [3, 1, 4, 1]
    import io

    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(parsed[2]["png"]))), images[2])


def test_bundled_source_writes_the_5000_real_digits_with_a_fixed_split(tmp_path):
    bundled(tmp_path)
    test_labels = [s["cls"] for s in samples(tmp_path, "test")]
    train = len(list(samples(tmp_path, "train"))) + len(list(samples(tmp_path, "val")))
    assert train == 4000 and len(test_labels) == 1000
    assert np.bincount(test_labels).tolist() == [100] * 10  # stratified
    bundled(tmp_path / "again")
    assert (idx_dir(tmp_path) / FILES["test"][0]).read_bytes() == (
        idx_dir(tmp_path / "again") / FILES["test"][0]
    ).read_bytes()


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        check_layout(tmp_path)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(MNIST, tmp_path_factory.mktemp("mnist"), train=120, test=40)


def test_round_trip_and_views(shards):
    meta = read_meta(shards)
    assert {s: v["samples"] for s, v in meta["splits"].items()} == {"train": 110, "val": 10, "test": 40}
    images, labels = next(iter(MNIST(shards, 0, batch_size=8).test_dataloader()))
    assert (
        images.shape == (8, 1, 28, 28)
        and 0 <= images.min()
        and images.max() <= 1
        and labels.dtype == torch.int64
    )
    sequence, _ = next(iter(MNIST(shards, 0, batch_size=8, view="sequence").test_dataloader()))
    assert torch.equal(sequence, images.reshape(8, 784, 1))
    permuted = MNIST(shards, 0, batch_size=8, view="permuted")
    shuffled, _ = next(iter(permuted.test_dataloader()))
    assert torch.equal(shuffled, images.reshape(8, 784, 1)[:, permuted.permutation])
    assert torch.equal(
        permuted.permutation, MNIST(shards, 0, view="permuted").permutation
    )  # fixed by the seed
    rows, _ = next(
        iter(MNIST(shards, 0, batch_size=8, view="sequence", pixels_per_step=28).test_dataloader())
    )
    assert torch.equal(rows, images.reshape(8, 28, 28))  # row by row


def test_the_permutation_travels_with_the_checkpoint_and_a_foreign_one_is_refused(shards):
    trained = MNIST(shards, 0, view="permuted")
    MNIST(shards, 0, view="permuted").load_state_dict(trained.state_dict())
    with pytest.raises(DataError, match="another pixel permutation"):
        MNIST(shards, 1, view="permuted").load_state_dict(trained.state_dict())


SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason="the real MNIST files live in ../shared/data/mnist, absent here"
)
def test_a_local_copy_as_it_ships_is_read_and_checked_against_the_official_checksums(tmp_path):
    """The four official `*-ubyte.gz` files in one folder (how MNIST ships, and ../shared/data/mnist):
    decompressed, each checked against the official sha256, then read as the complete 60,000 / 10,000."""
    import_local(SHARED_MNIST, tmp_path)
    for name in (f for files in FILES.values() for f in files):
        assert hashlib.sha256((idx_dir(tmp_path) / name).read_bytes()).hexdigest() == OFFICIAL_SHA256[name]
    labels = [s["cls"] for s in samples(tmp_path, "test")]
    assert len(labels) == 10_000 and np.bincount(labels).tolist()[:3] == [
        980,
        1135,
        1032,
    ]  # MNIST's own counts


def test_a_copy_that_is_not_mnist_is_refused_naming_the_file(tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for images, labels in FILES.values():  # real IDX files, but not MNIST's digits
        write_idx(copy / images, np.zeros((3, 28, 28), np.uint8))
        write_idx(copy / labels, np.zeros(3, np.uint8))
    with gzip.open(
        copy / "train-images-idx3-ubyte.gz", "wb"
    ) as out:  # .gz and plain side by side: one is read
        out.write((copy / "train-images-idx3-ubyte").read_bytes())
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte: sha256 \w+ of its train-images-idx3-ubyte is not"
    ):
        import_local(copy, tmp_path / "raw")
    (copy / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        import_local(copy, tmp_path / "raw2")
