"""Omniglot: the replica's layout and determinism, the split parser, the shard round trip, episodes,
sources."""

import hashlib
import shutil
import zipfile

import pytest
import torch
from PIL import Image

from datamodules.files import DataError
from datamodules.omniglot import (
    Omniglot,
    check_layout,
    classes,
    download,
    import_local,
    read_split,
    samples,
    split_file,
    synthesize,
)
from datamodules.shards import read_meta, write_dataset, write_split


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    synthesize(raw, 3, alphabets=5, characters=6, drawers=20)
    return raw


def test_replica_has_the_official_layout(replica):
    pngs = sorted(replica.glob("images_*/*/character*/*_*.png"))
    assert len(pngs) == 5 * 6 * 20
    assert {p.parts[-4] for p in pngs} == {"images_background", "images_evaluation"}
    image = Image.open(pngs[0])
    assert image.size == (105, 105) and image.mode == "1"  # binary scans, like the real ones
    assert all(split_file(replica, s).exists() for s in ("train", "val", "test"))


def test_replica_is_deterministic_by_seed(tmp_path, replica):
    synthesize(tmp_path / "again", 3, alphabets=5, characters=6, drawers=20)
    synthesize(tmp_path / "other", 4, alphabets=5, characters=6, drawers=20)
    digest = lambda root: hashlib.md5(
        b"".join(p.read_bytes() for p in sorted(root.rglob("*.png")))
    ).hexdigest()
    assert digest(tmp_path / "again") == digest(replica) != digest(tmp_path / "other")


def test_vinyals_split_is_disjoint_with_four_rotations_and_official_proportions(replica):
    splits = {s: read_split(replica, s) for s in ("train", "val", "test")}
    assert sum(len(v) for v in splits.values()) == 30
    assert len(splits["train"]) == round(30 * 1028 / 1623) and len(splits["val"]) == round(30 * 172 / 1623)
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["train"]) & set(splits["test"])
    assert all(rotations == [0, 90, 180, 270] for split in splits.values() for rotations in split.values())
    assert len(classes(replica, "train")) == 4 * len(splits["train"])


def test_split_file_in_the_protonets_format_is_parsed(tmp_path):
    path = split_file(tmp_path, "test")
    path.parent.mkdir(parents=True)
    path.write_text("Mkhedruli_(Georgian)/character01/rot000\nMkhedruli_(Georgian)/character01/rot180\n\n")
    assert read_split(tmp_path, "test") == {"Mkhedruli_(Georgian)/character01": [0, 180]}
    path.write_text("Greek/character01\n")
    with pytest.raises(DataError, match=r"test.txt:1: expected Alphabet/characterNN/rotDDD"):
        read_split(tmp_path, "test")


def test_shard_round_trip_keeps_every_drawing_of_its_split(tmp_path, replica):
    written = write_dataset(Omniglot, replica, tmp_path, source={"source": "synthetic"}, shard_size=50)[
        "splits"
    ]["test"]
    assert written["samples"] == 20 * len(read_split(replica, "test")) and len(written["shards"]) >= 2
    data = Omniglot(tmp_path, 0)
    keys = [s["__key__"] for s in data.read_all("test")]
    assert len(keys) == len(set(keys)) == written["samples"]
    images = data.class_images("test")
    assert len(images) == len(classes(replica, "test"))
    assert all(c.shape == (20, 1, 28, 28) for c in images)
    assert torch.equal(images[1], torch.rot90(images[0], 1, dims=(-2, -1)))  # class 2 is class 1 turned 90°
    assert 0 < images[0].mean() < 0.5  # strokes are 1 on a 0 background


def test_episodes_have_the_shapes_of_the_setting(omniglot_shards):
    data = Omniglot(omniglot_shards, 0, train_way=5, shot=5, query=5)
    episode = next(iter(data.train_dataloader()))
    assert episode.support.shape == (5, 5, 1, 28, 28) and episode.query.shape == (5, 5, 1, 28, 28)
    assert episode.query_labels.tolist() == sorted(episode.query_labels.tolist())
    tests = data.test_dataloader()
    assert [next(iter(t)).support.shape[:2] for t in tests] == [(5, 1), (5, 5), (20, 1), (20, 5)]


def test_an_impossible_episode_is_refused_before_training(omniglot_shards):
    data = Omniglot(omniglot_shards, 0, val_way=500)
    with pytest.raises(DataError, match="500-way"):
        data.val_dataloader()


def test_a_corrupt_drawing_is_named_or_skipped(tmp_path, replica):
    broken = tmp_path / "raw"
    import shutil

    shutil.copytree(replica, broken)
    victim = sorted(broken.glob("images_*/*/character*/*.png"))[0]
    character = f"{victim.parts[-3]}/{victim.parts[-2]}"
    split = next(s for s in ("train", "val", "test") if character in read_split(broken, s))
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated PNG
    with pytest.raises(DataError, match=victim.stem):
        write_split(samples(broken, split), tmp_path / "out", split, raw_dir=broken, shard_size=100)
    skipped = write_split(
        samples(broken, split), tmp_path / "out2", split, raw_dir=broken, shard_size=100, on_error="skip"
    )
    assert skipped["skipped"] == 1


def test_a_local_copy_missing_parts_says_what_is_missing(tmp_path):
    (tmp_path / "images_background").mkdir()
    with pytest.raises(DataError, match="missing .*images_evaluation"):
        check_layout(tmp_path)
    (tmp_path / "images_evaluation").mkdir()
    with pytest.raises(DataError, match="missing .*train.txt"):
        check_layout(tmp_path)


def test_a_copy_as_the_archives_unpack_gets_a_derived_split(tmp_path, replica):
    """No split files (a user's copy never has them): background characters train, every 10th of them held
    out for validation, evaluation characters test; each in four rotations, none in two splits."""
    copy = tmp_path / "copy"
    for name in ("images_background", "images_evaluation"):
        shutil.copytree(replica / name, copy / name)
    (copy / "images_background" / ".DS_Store").write_bytes(b"")
    import_local(copy, tmp_path / "raw")
    check_layout(tmp_path / "raw")
    parts = {s: read_split(tmp_path / "raw", s) for s in ("train", "val", "test")}
    background = sorted(
        f"{a.name}/{c.name}" for a in (replica / "images_background").iterdir() for c in a.iterdir()
    )
    assert len(background) == 3 * 6 and set(parts["val"]) == set(
        background[::10]
    )  # the replica's 3 background alphabets
    assert set(parts["train"]) | set(parts["val"]) == set(background)
    assert set(parts["test"]) == {
        f"{a.name}/{c.name}" for a in (replica / "images_evaluation").iterdir() for c in a.iterdir()
    }
    assert all(r == [0, 90, 180, 270] for part in parts.values() for r in part.values())
    assert split_file(tmp_path / "raw", "train").parent.name == "derived"
    assert sum(1 for _ in samples(tmp_path / "raw", "test")) == 20 * len(parts["test"])


def test_download_verifies_checksums_and_deletes_a_bad_file(tmp_path, monkeypatch, replica):
    """The real download path, fed from file:// URLs: a wrong md5 deletes the partial file and says so."""
    archives = tmp_path / "server"
    archives.mkdir()
    for name in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(archives / f"{name}.zip", "w") as zf:
            for p in (replica / name).rglob("*.png"):
                zf.write(p, p.relative_to(replica))
    for split in ("train", "val", "test"):
        (archives / f"{split}.txt").write_text(split_file(replica, split).read_text())
    import datamodules.omniglot as omniglot

    urls = {
        n: ((archives / n).as_uri(), hashlib.md5((archives / n).read_bytes()).hexdigest())
        for n in omniglot.URLS
    }
    monkeypatch.setattr(omniglot, "URLS", urls)
    monkeypatch.setattr(omniglot, "SPLIT_URL", archives.as_uri() + "/{}.txt")
    download(tmp_path / "raw", tmp_path / "downloads")
    check_layout(tmp_path / "raw")
    assert read_split(tmp_path / "raw", "val") == read_split(replica, "val")

    bad = {n: (url, "0" * 32) for n, (url, _) in urls.items()}
    monkeypatch.setattr(omniglot, "URLS", bad)
    with pytest.raises(DataError, match="checksum mismatch.*deleted"):
        download(tmp_path / "raw2", tmp_path / "downloads2")
    assert not list((tmp_path / "downloads2").glob("*.part"))


def test_meta_lists_counts_and_classes(omniglot_shards):
    meta = read_meta(omniglot_shards)
    assert set(meta["splits"]) == {"train", "val", "test"}
    assert meta["source"]["source"] == "synthetic"
    for info in meta["splits"].values():
        assert info["samples"] == 20 * len(info["classes"]) // 4 and info["shards"]
