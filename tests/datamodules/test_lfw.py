"""LFW: the pair files' format (headers, 3- and 4-field lines, long names), disjoint identities, pairs in
meta."""

import pytest

from datamodules.files import DataError
from datamodules.lfw import LFW, read_pairs
from datamodules.shards import read_meta
from tests.helpers import synthetic_shards


def test_pairs_file_in_the_official_format(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(
        "2\t1\nJean_Claude_Van_Damme\t1\t3\nAaron_Peirsol\t1\tAbdullah_bin_Al_Hussein\t2\n"
        "Zico\t2\t4\nAbel_Pacheco\t1\tJean_Claude_Van_Damme\t2\n"
    )
    pairs = read_pairs(path)
    assert pairs[0] == {
        "fold": 0,
        "a": "Jean_Claude_Van_Damme/Jean_Claude_Van_Damme_0001",
        "b": "Jean_Claude_Van_Damme/Jean_Claude_Van_Damme_0003",
        "same": True,
    }
    assert pairs[1]["b"] == "Abdullah_bin_Al_Hussein/Abdullah_bin_Al_Hussein_0002" and not pairs[1]["same"]
    assert [p["fold"] for p in pairs] == [0, 0, 1, 1]


def test_dev_view_header_is_a_single_count(tmp_path):
    path = tmp_path / "pairsDevTest.txt"
    path.write_text("1\nA_B\t1\t2\nA_B\t1\tC_D\t1\n")
    assert [p["same"] for p in read_pairs(path)] == [True, False]


@pytest.mark.parametrize(
    ("text", "message"),
    [("1\nA\t1\n", "expected 3 .* or 4"), ("2\nA\t1\t2\nA\t1\tB\t1\n", "promises 4 pairs, found 2")],
)
def test_malformed_pair_files_are_named(tmp_path, text, message):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_pairs(tmp_path / "pairs.txt")


def test_round_trip_identities_are_disjoint_and_pairs_point_at_test_images(tmp_path):
    shards = synthetic_shards(LFW, tmp_path, people=30, pairs_per_fold=2, dev_pairs=4)
    meta = read_meta(shards)
    assert not set(meta["splits"]["train"]["classes"]) & set(meta["splits"]["test"]["classes"])
    assert len(meta["pairs"]["pairs"]) == 10 * 2 * 2 and {p["fold"] for p in meta["pairs"]["pairs"]} == set(
        range(10)
    )
    data = LFW(shards, 0, batch_size=8, size=96, identities_per_batch=3, faces_per_identity=2)
    test_images = data.images("test")
    assert all(p["a"] in test_images and p["b"] in test_images for p in meta["pairs"]["pairs"])
    assert next(iter(test_images.values())).shape == (3, 96, 96)
    images, labels = next(iter(data.train_dataloader()))  # 3 people × 2 faces, then 2 random negatives
    assert images.shape == (8, 3, 96, 96) and len(labels[:6].unique()) == 3
    assert not set(labels[6:].tolist()) & set(labels[:6].tolist())
