"""SSD: 8732 default boxes at the paper's scales, labels shifted past torchvision's background, one training
step on VOC-format scenes, and the VOC07 metric in the test loop."""
import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from datamodules.voc import VOC
from lightning_modules.ssd import SSD
from tests.papers.helpers import trainer


@pytest.fixture(scope="module")
def model():
    return SSD(num_classes=20)


def test_ssd300_has_8732_default_boxes_at_the_papers_scales(model):
    images = torch.zeros(1, 3, 300, 300)
    features = list(model.net.backbone(images).values())
    assert [f.shape[-1] for f in features] == [38, 19, 10, 5, 3, 1]
    boxes = model.net.anchor_generator(ImageList(images, [(300, 300)]), features)[0]
    assert boxes.shape == (8732, 4)
    first = boxes[: 38 * 38 * 4].view(38, 38, 4, 4)[0, 0]            # the 4 boxes of conv4_3's first cell
    sides = (first[:, 2:] - first[:, :2]).round()
    assert sides[0].tolist() == [30.0, 30.0]                          # s = 0.1 · 300, ratio 1
    assert sides[1].tolist() == [round((0.1 * 0.2) ** 0.5 * 300)] * 2   # s' = √(0.1 · 0.2)


def test_the_heads_predict_background_plus_the_object_classes(model):
    assert model.net.head.classification_head.num_columns == 21


@pytest.mark.slow
def test_trains_and_scores_voc07_map_on_the_replica(tmp_path):
    from tests.conftest import synthetic_shards
    shards = synthetic_shards(VOC, tmp_path, voc2007_trainval=4, voc2007_test=4, voc2012_trainval=4)
    data = VOC(shards, 0, task="detection", batch_size=2)
    model = SSD(num_classes=20)
    trainer(3).fit(model, datamodule=data)
    metrics = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert 0.0 <= metrics["test/map_voc07_ssd300"] <= 1.0
