"""COCO: pycocotools parsing of polygons, crowd RLE, empty images, degenerate boxes and keypoints."""

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from datamodules.coco import COCO, annotation_file, samples, synthesize
from datamodules.coco_format import decode_masks
from datamodules.files import DataError
from datamodules.shards import read_meta, write_split
from datamodules.synthetic import encode
from tests.helpers import synthetic_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(COCO, tmp_path_factory.mktemp("coco"), train=14, val=6)


def fixture(root, annotations: list[dict], images=(1, 2)) -> None:
    """A hand-written val2017 with non-contiguous category ids (1 and 90), as in the real file."""
    for folder in ("train2017", "val2017", "annotations"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id in images:
        (root / "val2017" / f"{image_id:012d}.jpg").write_bytes(
            encode(np.zeros((20, 30, 3), np.uint8), "JPEG")
        )
    content = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 20, "width": 30} for i in (1, 2)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}],
    }
    for split in ("train", "val"):
        annotation_file(root, split).write_text(json.dumps(content))


def test_round_trip_with_keypoints_crowds_and_empty_images(shards):
    meta = read_meta(shards)
    assert {s: v["samples"] for s, v in meta["splits"].items()} == {"train": 14, "val": 6}
    train = list(COCO(shards, 0).read_all("train"))
    assert any(not s["json"]["boxes"] for s in train)  # images with no annotation
    assert any(1 in s["json"]["iscrowd"] for s in train)
    assert any(
        k is not None and len(k) == 51 for s in train for k in s["json"]["keypoints"]
    )  # 17 × (x, y, v)
    assert sum(s["json"]["degenerate"] for s in train) == 1


def test_training_batches_skip_empty_images_and_carry_masks(shards):
    for images, targets in COCO(shards, 0, batch_size=4).train_dataloader():
        for image, target in zip(images, targets):
            assert len(target["boxes"]) > 0 and target["masks"].shape == (
                len(target["boxes"]),
                *image.shape[-2:],
            )


def test_hand_written_file_maps_ids_decodes_rle_and_drops_degenerate_boxes(tmp_path):
    crowd = np.zeros((20, 30), np.uint8)
    crowd[5:10, 3:9] = 1
    rle = coco_mask.encode(np.asfortranarray(crowd))
    annotations = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 90,
            "bbox": [2, 3, 10, 5],
            "area": 50,
            "iscrowd": 0,
            "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "bbox": [3, 5, 6, 5],
            "area": 30,
            "iscrowd": 1,
            "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()},
        },
        {
            "id": 3,
            "image_id": 1,
            "category_id": 1,
            "bbox": [4, 4, 0.5, 3],
            "area": 1,
            "iscrowd": 0,
            "segmentation": [[4, 4, 4, 7, 4, 5]],
        },
    ]
    fixture(tmp_path, annotations)
    first, empty = list(samples(tmp_path, "val"))
    target = first["json"]
    assert target["labels"] == [1, 0] and target["boxes"] == [[2, 3, 12, 8], [3, 5, 9, 10]]  # 90 → 1, 1 → 0
    assert target["iscrowd"] == [0, 1] and target["degenerate"] == 1
    masks = decode_masks(target["segmentation"], 20, 30)
    assert np.array_equal(masks[1], crowd) and masks[0].sum() > 0
    assert empty["json"]["boxes"] == []


def test_an_annotated_image_that_is_missing_is_named(tmp_path):
    fixture(tmp_path, [], images=(1,))
    with pytest.raises(DataError, match=r"instances_val2017.json: image 2 \(000000000002.jpg\) is missing"):
        write_split(samples(tmp_path, "val"), tmp_path / "out", "val", raw_dir=tmp_path, shard_size=10)


def test_replica_crowd_regions_are_uncompressed_rle(tmp_path):
    synthesize(tmp_path, 0, train=6, val=2)
    annotations = json.loads(annotation_file(tmp_path, "train").read_text())["annotations"]
    crowds = [a for a in annotations if a["iscrowd"]]
    assert crowds and all(isinstance(a["segmentation"]["counts"], list) for a in crowds)
    for a in crowds:
        assert decode_masks([a["segmentation"]], *a["segmentation"]["size"]).sum() == a["area"]


def test_evaluation_targets_carry_cocos_own_area(shards):
    """AP_small/medium/large bin objects by COCO's `area` (the mask's), which a box's area overstates."""
    data = COCO(shards, 0, batch_size=4, masks=True)
    images, targets = next(iter(data.test_dataloader()))  # COCO reports val
    annotations = [s["json"] for s in data.read_all("val")]
    assert [t["area"].tolist() for t in targets] == ([a["area"] for a in annotations[: len(targets)]])
    boxes = targets[0]["boxes"]
    assert (targets[0]["area"] <= (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + 1).all()
