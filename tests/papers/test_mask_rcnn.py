"""Mask R-CNN: RoIAlign is not RoIPool on a sub-pixel box, the mask loss reads only the true class's mask, and
the COCO mask metric equals pycocotools' own evaluation on a fixture."""

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import roi_align, roi_pool

from lightning_modules.mask_rcnn import MaskRCNN


def test_roi_align_samples_sub_pixel_boxes_that_roi_pool_quantises():
    features = torch.arange(64.0).view(1, 1, 8, 8)
    box = torch.tensor([[0, 1.1, 1.1, 3.6, 3.6]])  # a box off the pixel grid
    aligned = roi_align(features, box, output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    pooled = roi_pool(features, box, output_size=2, spatial_scale=1.0)
    assert not torch.allclose(aligned, pooled)
    shifted = roi_align(
        features, box + torch.tensor([[0, 0.2, 0, 0.2, 0]]), output_size=2, sampling_ratio=2, aligned=True
    )
    assert not torch.allclose(aligned, shifted)  # RoIAlign sees a fifth of a pixel
    assert torch.equal(roi_pool(features, box + torch.tensor([[0, 0.2, 0, 0.2, 0]]), output_size=2), pooled)


def test_the_mask_loss_reads_only_the_ground_truth_class():
    logits = torch.randn(2, 5, 28, 28)
    proposals = [torch.tensor([[0.0, 0, 20, 20], [5, 5, 25, 25]])]
    masks, labels, matched = [torch.ones(1, 32, 32)], [torch.tensor([3])], [torch.tensor([0, 0])]
    loss = maskrcnn_loss(logits, proposals, masks, labels, matched)
    other = logits.clone()
    other[:, [0, 1, 2, 4]] = torch.randn(2, 4, 28, 28) * 10  # every other class's mask changes
    assert torch.equal(maskrcnn_loss(other, proposals, masks, labels, matched), loss)
    other[:, 3] += 1.0
    assert not torch.equal(maskrcnn_loss(other, proposals, masks, labels, matched), loss)


def test_mask_head_is_28_by_28_per_class():
    model = MaskRCNN(num_classes=10, min_size=128, max_size=192)
    assert model.net.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 11
    assert tuple(model.net.roi_heads.mask_roi_pool.output_size) == (14, 14)  # ×2 by the deconvolution → 28


def test_the_papers_network_is_torchvisions_resnet50_fpn_and_a_narrow_one_narrows_every_head():
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from tests.papers.helpers import shapes

    theirs = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=11)
    assert shapes(MaskRCNN(num_classes=10).net) == shapes(theirs)
    narrow = MaskRCNN(num_classes=10, backbone="resnet18", fpn_channels=64).net.roi_heads
    assert {m.out_channels for m in narrow.mask_head.modules() if isinstance(m, torch.nn.Conv2d)} == {64}
    assert narrow.mask_predictor.conv5_mask.out_channels == 64
    assert narrow.mask_predictor.mask_fcn_logits.out_channels == 11
    assert narrow.box_predictor.cls_score.out_features == 11


def test_torchmetrics_mask_ap_equals_pycocotools_on_a_fixture():
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval
    from torchmetrics.detection import MeanAveragePrecision

    truth = np.zeros((2, 32, 32), bool)
    truth[0, 2:12, 2:12], truth[1, 15:30, 10:25] = True, True
    found = np.zeros((3, 32, 32), bool)
    found[0, 3:12, 2:13], found[1, 16:29, 9:25], found[2, 0:5, 20:30] = True, True, True
    scores, labels = [0.9, 0.8, 0.7], [0, 1, 1]
    metric = MeanAveragePrecision(iou_type="segm", backend="pycocotools")
    metric.update(
        [{"masks": torch.from_numpy(found), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}],
        [{"masks": torch.from_numpy(truth), "labels": torch.tensor([0, 1])}],
    )
    ours = float(metric.compute()["map"])
    rle = lambda m: {
        **mask_utils.encode(np.asfortranarray(m.astype(np.uint8))),
        "counts": mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode(),
    }
    api = CocoApi()
    api.dataset = {
        "images": [{"id": 1, "height": 32, "width": 32}],
        "categories": [{"id": 0}, {"id": 1}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": c,
                "segmentation": rle(m),
                "iscrowd": 0,
                "area": float(m.sum()),
                "bbox": list(mask_utils.toBbox(rle(m))),
            }
            for i, (m, c) in enumerate(zip(truth, [0, 1]))
        ],
    }
    api.createIndex()
    detections = api.loadRes(
        [
            {"image_id": 1, "category_id": c, "segmentation": rle(m), "score": s}
            for m, c, s in zip(found, labels, scores)
        ]
    )
    evaluation = COCOeval(api, detections, "segm")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert abs(ours - evaluation.stats[0]) < 1e-6


@pytest.mark.slow
def test_trains_and_scores_box_and_mask_ap(tmp_path):
    from datamodules.coco import COCO
    from tests.helpers import synthetic_shards
    from tests.papers.helpers import trainer

    shards = synthetic_shards(COCO, tmp_path, train=6, val=4)
    data = COCO(shards, 0, batch_size=2, masks=True)
    model = MaskRCNN(num_classes=10, min_size=128, max_size=192, lr=0.005)
    trainer(3).fit(model, datamodule=data)
    metrics = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert {"test/box_ap_mask_rcnn", "test/mask_ap_mask_rcnn"} <= set(metrics)
