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
    first = boxes[: 38 * 38 * 4].view(38, 38, 4, 4)[0, 0]  # the 4 boxes of conv4_3's first cell
    sides = (first[:, 2:] - first[:, :2]).round()
    assert sides[0].tolist() == [30.0, 30.0]  # s = 0.1 · 300, ratio 1
    assert sides[1].tolist() == [round((0.1 * 0.2) ** 0.5 * 300)] * 2  # s' = √(0.1 · 0.2)


def test_ssd512_has_the_papers_seven_maps_and_24564_default_boxes():
    model = SSD(num_classes=20, size=512, width=0.125)
    images = torch.zeros(1, 3, 512, 512)
    features = list(model.net.backbone(images).values())
    assert [f.shape[-1] for f in features] == [64, 32, 16, 8, 4, 2, 1]
    boxes = model.net.anchor_generator(ImageList(images, [(512, 512)]), features)[0]
    assert boxes.shape == (24564, 4)
    assert (boxes[0, 2:] - boxes[0, :2]).round().tolist() == [round(0.07 * 512)] * 2  # conv4_3 at s = 0.07


def test_at_full_width_the_net_is_torchvisions_ssd300_parameter_for_parameter(model):
    from torchvision.models.detection import ssd300_vgg16

    theirs = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).state_dict()
    assert {k: v.shape for k, v in model.net.state_dict().items()} == {k: v.shape for k, v in theirs.items()}


def test_a_thinned_net_keeps_the_layout_with_fewer_channels(model):
    thin = SSD(num_classes=20, width=0.125)
    images = torch.zeros(1, 3, 300, 300)
    assert [f.shape[-2:] for f in thin.net.backbone(images).values()] == [
        f.shape[-2:] for f in model.net.backbone(images).values()
    ]
    assert sum(p.numel() for p in thin.parameters()) < sum(p.numel() for p in model.parameters()) / 30


def test_imagenet_weights_exist_only_at_full_width():
    with pytest.raises(ValueError, match="hparams.width"):
        SSD(num_classes=20, pretrained=True, width=0.5)
    with pytest.raises(ValueError, match="hparams.batch_norm"):
        SSD(num_classes=20, pretrained=True, batch_norm=True)


def test_the_heads_predict_background_plus_the_object_classes(model):
    assert model.net.head.classification_head.num_columns == 21


@pytest.mark.slow
def test_trains_and_scores_voc07_map_on_the_replica(tmp_path):
    from tests.helpers import synthetic_shards

    shards = synthetic_shards(VOC, tmp_path, voc2007_trainval=4, voc2007_test=4, voc2012_trainval=4)
    data = VOC(shards, 0, task="detection", batch_size=2)
    model = SSD(num_classes=20)
    trainer(3).fit(model, datamodule=data)
    metrics = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert 0.0 <= metrics["test/map_voc07_ssd300"] <= 1.0
