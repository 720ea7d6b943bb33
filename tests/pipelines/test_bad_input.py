"""Damaged files the project itself wrote, met by the CLI: one line naming the file and what to do, exit 2, no
traceback, and nothing else touched."""

import pytest

from tests.helpers import cli, tiny_params, write_params

DAMAGED = {
    "data/shards/omniglot/meta.json": (["train", "protonets"], "run `reprozoo shard omniglot` again"),
    "metrics/protonets.json": (["report"], "run `reprozoo evaluate protonets` again"),
    "data/raw/omniglot/source.json": (["shard", "omniglot"], "run `reprozoo fetch omniglot` again"),
}


@pytest.mark.slow
@pytest.mark.parametrize("damaged", list(DAMAGED))
def test_a_truncated_json_file_is_named_with_its_remedy(tmp_path, damaged):
    write_params(tmp_path, tiny_params())
    path = tmp_path / damaged
    path.parent.mkdir(parents=True)
    path.write_text('{"splits": {"train": ')  # cut mid-write
    args, remedy = DAMAGED[damaged]
    result = cli(tmp_path, *args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path.relative_to(tmp_path)}: not valid JSON" in result.stderr and remedy in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == '{"splits": {"train": '


def test_a_sweep_without_shards_stops_before_ray_starts(tmp_path):
    """A fresh clone's `reprozoo tune` used to start Ray and dump every trial's traceback."""
    import ray

    from datamodules.files import DataError
    from pipelines.config import load_params
    from pipelines.tune import run_sweep
    from tests.helpers import chdir

    write_params(tmp_path, tiny_params())
    with (
        chdir(tmp_path),
        pytest.raises(DataError, match="meta.json: missing; run `reprozoo shard omniglot` first"),
    ):
        run_sweep(load_params(), "protonets")
    assert not ray.is_initialized()


def test_a_malformed_coco_annotation_file_is_named(tmp_path):
    from datamodules.coco import annotation_file, samples, synthesize
    from datamodules.files import DataError

    synthesize(tmp_path, 0, train=2, val=2)
    annotation_file(tmp_path, "train").write_text('{"images": [')
    with pytest.raises(
        DataError, match=r"instances_train2017.json: not valid JSON .*fetch the dataset again"
    ):
        list(samples(tmp_path, "train"))


def test_a_truncated_voc_annotation_is_named_as_its_record(tmp_path):
    from datamodules.files import DataError
    from datamodules.shards import write_split
    from datamodules.voc import samples, synthesize

    synthesize(tmp_path, 0, voc2007_trainval=2, voc2007_test=2, voc2012_trainval=2)
    first = (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt").read_text().split()[0]
    xml = tmp_path / "VOCdevkit/VOC2007/Annotations" / f"{first}.xml"
    xml.write_text(xml.read_text()[:40])
    with pytest.raises(DataError, match=rf"{xml}: not a valid VOC annotation \(ParseError"):
        write_split(samples(tmp_path, "train"), tmp_path / "shards", "train", raw_dir=tmp_path, shard_size=10)
