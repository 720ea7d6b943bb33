"""VOC: torchvision's parsers on the replica and on hand-written XML; 07+12; difficult; the 255 border."""

import pytest
import torch

from datamodules.files import DataError
from datamodules.shards import read_meta, write_split
from datamodules.voc import CLASSES, IGNORE, VOC, samples, voc_root
from datamodules.voc_replica import synthesize
from tests.helpers import synthetic_shards

XML = """<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>
<size><width>100</width><height>80</height><depth>3</depth></size><segmented>0</segmented>
<object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>
<object><name>bottle</name><pose>Unspecified</pose><truncated>1</truncated><difficult>1</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>10</ymin><xmax>60</xmax><ymax>30</ymax></bndbox></object></annotation>"""


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    synthesize(root, 0, voc2007_trainval=6, voc2007_test=4, voc2012_trainval=8)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(
        VOC, tmp_path_factory.mktemp("vocshards"), voc2007_trainval=6, voc2007_test=4, voc2012_trainval=8
    )


def test_07_plus_12_trainval_for_training_and_07_test_for_testing(shards):
    counts = {s: v["samples"] for s, v in read_meta(shards)["splits"].items()}
    assert counts == {"train": 6 + 8, "test": 4, "seg_train": 2, "seg_val": 2}


def test_hand_written_annotation_gives_zero_based_boxes_and_difficult(raw, tmp_path):
    first = (voc_root(raw, "2007") / "ImageSets/Main/test.txt").read_text().split()[0]
    (voc_root(raw, "2007") / "Annotations" / f"{first}.xml").write_text(XML.format(name=first, xmin=20))
    target = next(s for s in samples(raw, "test") if s["__key__"].endswith(first))["json"]
    assert target["boxes"] == [[0.0, 0.0, 50.0, 40.0], [19.0, 9.0, 60.0, 30.0]]
    assert target["labels"] == [CLASSES.index("dog"), CLASSES.index("bottle")] and target["difficult"] == [
        0,
        1,
    ]


def test_a_box_that_is_not_positive_is_named_or_skipped(raw, tmp_path):
    first = (voc_root(raw, "2007") / "ImageSets/Main/test.txt").read_text().split()[0]
    (voc_root(raw, "2007") / "Annotations" / f"{first}.xml").write_text(XML.format(name=first, xmin=70))
    with pytest.raises(DataError, match=rf"{first}.xml: object 2 \(bottle\) has an invalid box"):
        write_split(samples(raw, "test"), tmp_path / "a", "test", raw_dir=raw, shard_size=10)
    assert (
        write_split(
            samples(raw, "test"), tmp_path / "b", "test", raw_dir=raw, shard_size=10, on_error="skip"
        )["skipped"]
        == 1
    )


def test_segmentation_masks_keep_class_indices_and_the_255_border(shards):
    _, masks = next(iter(VOC(shards, 0, task="segmentation", batch_size=2).val_dataloader()))
    values = torch.cat([m.flatten() for m in masks]).unique().tolist()
    assert IGNORE in values and all(v == IGNORE or 0 <= v <= 20 for v in values)


def test_ssd_augmentation_keeps_boxes_labels_and_difficult_aligned(shards):
    data = VOC(shards, 0, batch_size=4, size=300)
    for images, targets in data.train_dataloader():
        for image, target in zip(images, targets):
            assert image.shape == (3, 300, 300) and image.dtype == torch.float32
            assert len(target["boxes"]) == len(target["labels"]) == len(target["difficult"])
            assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()


def test_evaluation_keeps_difficult_objects_flagged(shards):
    flags = [t["difficult"] for _, ts in VOC(shards, 0, batch_size=4).test_dataloader() for t in ts]
    in_shards = sum(sum(s["json"]["difficult"]) for s in VOC(shards, 0).read_all("test"))
    assert in_shards > 0 and sum(int(f.sum()) for f in flags) == in_shards
