"""FPN: P2–P6 at 256 channels, one anchor scale per level × 3 ratios, and the COCO scores on the replica."""

import pytest
import torch

from lightning_modules.fpn import FPN
from tests.papers.helpers import shapes


@pytest.fixture(scope="module")
def model():
    return FPN(num_classes=10, min_size=128, max_size=192).eval()


def test_pyramid_levels_and_channels(model):
    features = model.net.backbone(torch.zeros(1, 3, 128, 128))
    assert list(features) == ["0", "1", "2", "3", "pool"]  # P2, P3, P4, P5 and P6 ("pool")
    assert all(f.shape[1] == 256 for f in features.values())
    assert [f.shape[-1] for f in features.values()] == [32, 16, 8, 4, 2]  # strides 4 … 64


def test_the_papers_network_is_torchvisions_resnet50_fpn():
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    theirs = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=11)
    assert shapes(FPN(num_classes=10).net) == shapes(theirs)


def test_a_narrow_pyramid_keeps_the_levels_and_strides_at_its_width():
    narrow = FPN(num_classes=10, min_size=128, max_size=192, backbone="resnet18", fpn_channels=64).eval()
    features = narrow.net.backbone(torch.zeros(1, 3, 128, 128))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape[1:]) for f in features.values()] == [(64, s, s) for s in (32, 16, 8, 4, 2)]
    assert narrow.net.roi_heads.box_head.fc6.in_features == 64 * 7 * 7


def test_a_pretrained_backbone_keeps_its_stem_first_stage_and_statistics_as_torchvision_does(monkeypatch):
    from torchvision.models import resnet18
    from torchvision.ops import FrozenBatchNorm2d

    import lightning_modules.detection as detection

    # no weights file here: the same architecture, taken as if it had been loaded
    monkeypatch.setattr(detection, "pretrained_weights", lambda weights: weights)
    loaded = lambda name, weights, norm_layer: resnet18(norm_layer=norm_layer)
    monkeypatch.setattr(detection, "get_model", loaded)
    body = detection.resnet_fpn("resnet18", 64, pretrained=True).body
    trained = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trained == {"layer2", "layer3", "layer4"}
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    scratch = detection.resnet_fpn("resnet18", 64, pretrained=False).body
    assert all(p.requires_grad for p in scratch.parameters())


def test_one_anchor_scale_per_level_and_three_ratios(model):
    generator = model.net.rpn.anchor_generator
    assert generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert all(r == (0.5, 1.0, 2.0) for r in generator.aspect_ratios)
    assert generator.num_anchors_per_location() == [3] * 5


@pytest.mark.slow
def test_trains_and_scores_box_ap_and_rpn_recall(tmp_path):
    from datamodules.coco import COCO
    from tests.helpers import synthetic_shards
    from tests.papers.helpers import trainer

    shards = synthetic_shards(COCO, tmp_path, train=6, val=4)
    data = COCO(shards, 0, batch_size=2, masks=False)
    model = FPN(num_classes=10, min_size=128, max_size=192, lr=0.005)
    trainer(3).fit(model, datamodule=data)
    metrics = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert {"test/box_ap_fpn", "test/box_ap_s_fpn", "test/rpn_ar1000_fpn"} <= set(metrics)
    assert 0.0 <= metrics["test/rpn_ar1000_fpn"] <= 1.0


def test_the_learning_rate_warms_up_linearly_then_steps_down_at_the_milestones():
    from lightning_modules.common import sgd_with_milestones

    schedule = sgd_with_milestones(
        [torch.nn.Parameter(torch.zeros(1))],
        lr=0.3,
        momentum=0.9,
        weight_decay=0,
        milestones=[20],
        warmup_steps=10,
    )["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(25):
        rates.append(schedule.get_last_lr()[0])
        schedule.optimizer.step(), schedule.step()
    assert (
        rates[0] == pytest.approx(0.1)
        and rates[5] == pytest.approx(0.2)
        and rates[10:20] == pytest.approx([0.3] * 10)
    )
    assert rates[20:] == pytest.approx([0.03] * 5)
