"""Omniglot's small sets and Lake's one-shot runs: the replica's layout, the runs' pairing read into episodes,
the sources (download with md5s, local zips or folders), and the real copy in ../shared/data/omniglot."""

import hashlib
import shutil

import pytest
import torch

from datamodules.files import DataError
from datamodules.omniglot_lake import (
    RUNS,
    SMALL,
    URLS,
    OmniglotLake,
    classes,
    download,
    import_local,
    pairs,
    samples,
    synthesize,
)
from datamodules.omniglot_splits import read_split
from datamodules.shards import write_dataset
from tests.helpers import ROOT

REAL = ROOT.parent / "shared" / "data" / "omniglot"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/omniglot (the real copy) is absent")


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    raw = tmp_path_factory.mktemp("lake") / "raw"
    synthesize(raw, 1, alphabets=4, characters=10, runs=3)
    return raw


def test_the_replica_has_the_small_sets_and_runs_layout(replica):
    assert all((replica / s).is_dir() for s in (*SMALL, RUNS))
    runs = sorted((replica / RUNS).iterdir())
    assert [r.name for r in runs] == ["run01", "run02", "run03"]
    for run in runs:
        items, trained = pairs(run), sorted(p.name for p in (run / "training").iterdir())
        assert sorted(c for _, c in items) == trained  # every class paired with exactly one item
        assert len(list((run / "test").iterdir())) == len(items) == 10
    train, val = read_split(replica, "train"), read_split(replica, "val")
    assert val and train and not set(train) & set(val)


def episodes_of(raw, tmp_path, **data):
    shards = tmp_path / "shards"
    write_dataset(OmniglotLake, raw, shards, source={"source": "test"}, shard_size=200)
    return OmniglotLake(shards, 0, **data).runs()


def test_each_run_is_one_episode_whose_queries_carry_their_paired_class(replica, tmp_path):
    episodes = episodes_of(replica, tmp_path, shot=1)
    assert len(episodes) == 3
    for run, episode in zip(sorted((replica / RUNS).iterdir()), episodes):
        assert episode.support.shape[:2] == (10, 1) and episode.query.shape[:2] == (10, 1)
        # item k is labelled with the index of its paired class among the run's sorted classes
        order = sorted(p.name for p in (run / "training").iterdir())
        assert episode.query_labels.tolist() == [order.index(c) for _, c in sorted(pairs(run))]
    # the test loader shares the runs over ranks without repeats
    assert sum(1 for _ in OmniglotLake(tmp_path / "shards", 0).test_dataloader()) == 3


def test_a_pairing_that_names_a_missing_class_is_an_error(replica, tmp_path):
    broken = tmp_path / "raw"
    shutil.copytree(replica, broken)
    labels = broken / RUNS / "run01" / "class_labels.txt"
    labels.write_text(labels.read_text().replace("class01.png", "class99.png"))
    with pytest.raises(DataError, match="run01/class_labels.txt: pairs test/item.* missing training/class99"):
        list(samples(broken, "test"))


def test_download_checks_the_archives_md5s(replica, tmp_path, monkeypatch):
    """The real download path from file:// URLs: the three archives, unpacked as the official ones are."""
    server = tmp_path / "server"
    for part in SMALL:
        shutil.make_archive(str(server / part), "zip", replica, part)
    shutil.make_archive(str(server / RUNS), "zip", replica / RUNS)
    import datamodules.omniglot_lake as lake

    urls = {n: ((server / n).as_uri(), hashlib.md5((server / n).read_bytes()).hexdigest()) for n in URLS}
    monkeypatch.setattr(lake, "URLS", urls)
    download(tmp_path / "raw", tmp_path / "downloads")
    assert classes(tmp_path / "raw", "test") == classes(replica, "test")
    assert read_split(tmp_path / "raw", "val") == read_split(replica, "val")
    monkeypatch.setattr(lake, "URLS", {n: (u, "0" * 32) for n, (u, _) in urls.items()})
    with pytest.raises(DataError, match="checksum mismatch"):
        download(tmp_path / "raw2", tmp_path / "downloads2")


def test_a_local_copy_may_hold_folders_or_zips_and_names_what_is_missing(replica, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(replica / SMALL[0], copy / SMALL[0])
    with pytest.raises(DataError, match=f"neither {SMALL[1]}/ nor {SMALL[1]}.zip"):
        import_local(copy, tmp_path / "raw")
    shutil.make_archive(str(copy / SMALL[1]), "zip", replica, SMALL[1])
    shutil.make_archive(str(copy / RUNS), "zip", replica / RUNS)
    import_local(copy, tmp_path / "raw2")
    assert classes(tmp_path / "raw2", "test") == classes(replica, "test")


@needs_real
def test_the_real_copy_is_lakes_and_reads_as_twenty_runs(tmp_path):
    """The archives' md5s are the official ones; 242 distinct characters (Greek and Latin in both sets);
    20 runs of 20 classes; run01's item01 is paired with class08 (its class_labels.txt's first line)."""
    for name, (_, md5) in URLS.items():
        assert hashlib.md5((REAL / name).read_bytes()).hexdigest() == md5, name
    import_local(REAL, tmp_path / "raw")
    train, val = read_split(tmp_path / "raw", "train"), read_split(tmp_path / "raw", "val")
    assert len(train) + len(val) == 242 and len(val) == 25
    episodes = episodes_of(tmp_path / "raw", tmp_path)
    assert len(episodes) == 20 and all(e.support.shape[:2] == (20, 1) for e in episodes)
    assert episodes[0].query_labels[0].item() == 7
    # a pixel-space nearest neighbour is far from perfect on them (Lake et al. report ~80% error)
    errors = [
        (torch.cdist(e.query.flatten(1), e.support.flatten(1)).argmin(1) != e.query_labels).float().mean()
        for e in episodes
    ]
    assert 0.6 < float(torch.stack(errors).mean()) < 0.9
