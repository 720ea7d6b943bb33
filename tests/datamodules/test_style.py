"""The style dataset: every content image paired with every style image, in real pictures, through the
shards."""

import pytest
import torch

from datamodules.files import DataError
from datamodules.style import Style, classes, pairs
from tests.helpers import synthetic_shards


def test_the_replica_pairs_every_content_with_every_style_image(tmp_path):
    Style.synthesize(tmp_path / "raw", contents=2, styles=3, size=32)
    assert len(pairs(tmp_path / "raw")) == 6
    assert classes(tmp_path / "raw", "train")[0] == "astronaut+brick"


def test_a_batch_holds_each_pair_resized_in_unit_range(tmp_path):
    shards = synthetic_shards(Style, tmp_path, contents=2, styles=2, size=40)
    data = Style(shards, 0, size=24)
    data.setup("fit")
    contents, styles, index = next(iter(data.train_dataloader()))
    assert contents.shape == styles.shape == (4, 3, 24, 24) and sorted(index.tolist()) == [0, 1, 2, 3]
    assert 0 <= contents.min() and contents.max() <= 1 and not torch.equal(contents, styles)


def test_a_missing_or_empty_folder_is_named(tmp_path):
    (tmp_path / "content").mkdir()
    (tmp_path / "style").mkdir()
    (tmp_path / "content" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="style: expected a folder of"):
        Style.check_layout(tmp_path)
