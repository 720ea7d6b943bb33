"""CamVid: the SegNet folder pairing, the 367/101/233 split, void ignored."""

import numpy as np
import pytest

from datamodules.camvid import IGNORE, VOID, CamVid, classes, samples
from datamodules.files import DataError
from datamodules.shards import read_meta, write_split
from datamodules.synthetic import encode
from tests.helpers import synthetic_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(CamVid, tmp_path_factory.mktemp("camvid"), train=4, val=2, test=2)


def test_round_trip_has_eleven_classes_and_void_becomes_ignore(shards):
    meta = read_meta(shards)
    assert {s: v["samples"] for s, v in meta["splits"].items()} == {"train": 4, "val": 2, "test": 2}
    assert len(meta["splits"]["train"]["classes"]) == 11
    images, masks = next(iter(CamVid(shards, 0, batch_size=2, crop=64).train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and masks.shape == (2, 64, 64)
    _, full = next(iter(CamVid(shards, 0, batch_size=2).test_dataloader()))
    values = full.unique().tolist()
    assert VOID not in values and IGNORE in values and max(v for v in values if v != IGNORE) <= 10


def test_the_segnet_layout_with_the_papers_split_sizes(tmp_path):
    tiny_image, tiny_label = (
        encode(np.zeros((2, 2, 3), np.uint8), "PNG"),
        encode(np.zeros((2, 2), np.uint8), "PNG"),
    )
    for split, count in (("train", 367), ("val", 101), ("test", 233)):
        for folder, content in ((split, tiny_image), (f"{split}annot", tiny_label)):
            (tmp_path / "CamVid" / folder).mkdir(parents=True)
            for n in range(count):
                (tmp_path / "CamVid" / folder / f"Seq05VD_f{n:05d}.png").write_bytes(content)
    assert [len(list(samples(tmp_path, s))) for s in ("train", "val", "test")] == [367, 101, 233]
    assert classes(tmp_path, "train")[0] == "Sky"


def test_a_frame_without_its_label_image_is_named(tmp_path):
    for folder in ("train", "trainannot", "val", "valannot", "test", "testannot"):
        (tmp_path / "CamVid" / folder).mkdir(parents=True)
    (tmp_path / "CamVid" / "train" / "a.png").write_bytes(encode(np.zeros((2, 2, 3), np.uint8), "PNG"))
    with pytest.raises(DataError, match="a.png: no label image"):
        write_split(samples(tmp_path, "train"), tmp_path / "out", "train", raw_dir=tmp_path, shard_size=5)


@pytest.mark.parametrize("height, width", [(360, 480), (120, 160), (60, 80)])
def test_the_replica_draws_a_street_at_any_size(height, width):
    """The smoke profile draws CamVid at a third of its size: every part of the street scales with it (the
    fixed offsets of 360 rows left no room for a car at 120)."""
    from datamodules.camvid import street

    for seed in range(20):
        image, label = street(np.random.default_rng(seed), height, width)
        assert image.shape == (height, width, 3) and label.shape == (height, width)
        assert {0, 1, 3}.issubset(np.unique(label))  # sky, buildings and road in every frame
