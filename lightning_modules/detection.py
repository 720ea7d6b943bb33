"""What the COCO papers built on torchvision's two-stage detectors share (fpn, mask_rcnn): the ResNet-FPN
backbone, the training step over torchvision's loss dictionary, COCO AP through torchmetrics (pycocotools
underneath), SGD with steps, and predictions drawn beside the truth. A paper file builds the network and names
its metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchvision.models import get_model, get_model_weights
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from datamodules.files import pretrained as pretrained_weights
from lightning_modules.common import sgd_with_milestones
from lightning_modules.paper import Mode

COCO_SUMMARY = {
    "map": "ap",
    "map_50": "ap50",
    "map_75": "ap75",
    "map_small": "ap_s",
    "map_medium": "ap_m",
    "map_large": "ap_l",
}


Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]


def resnet_fpn(backbone: Backbone, channels: int, pretrained: bool) -> BackboneWithFPN:
    """P2–P6 over a ResNet's four stages, as torchvision's `*_resnet50_fpn` builds them, at any depth and
    width (the papers: ResNet-50, 256 channels). Width is what a CPU step pays for: a Mask R-CNN step at
    128 × 192 took 1.37 s at ResNet-50/256, 1.27 s at ResNet-18/256 and 0.28 s at ResNet-18/64."""
    weights = pretrained_weights(get_model_weights(backbone).IMAGENET1K_V1) if pretrained else None
    body = get_model(backbone, weights=weights, norm_layer=FrozenBatchNorm2d if weights else nn.BatchNorm2d)
    if weights:  # as torchvision: ImageNet's stem and first stage stay as they are, the rest fine-tunes
        for name, parameter in body.named_parameters():
            parameter.requires_grad_(name.startswith(("layer2", "layer3", "layer4")))
    widths = [body.inplanes // 8 * 2**stage for stage in range(4)]  # 64… (ResNet-18/34) or 256… (50, 101)
    return BackboneWithFPN(
        body,
        {f"layer{stage + 1}": str(stage) for stage in range(4)},
        widths,
        channels,
        extra_blocks=LastLevelMaxPool(),
    )


def coco_metric(iou_type: str = "bbox", max_detections: tuple[int, int, int] = (1, 10, 100)):
    """COCO's AP as pycocotools' COCOeval computes it. Its IoU and recall grids are float64 (numpy's
    linspace); torchmetrics' defaults are float32 (0.550000011920929), so a recall landing on a grid point
    picked another precision and AP50 moved by up to 0.004."""
    from torchmetrics.detection import MeanAveragePrecision

    return MeanAveragePrecision(
        iou_type=iou_type,
        max_detection_thresholds=list(max_detections),
        backend="pycocotools",
        iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
        rec_thresholds=np.linspace(0.0, 1.0, 101).tolist(),
    )


def to_torchvision(targets: list[dict]) -> list[dict]:
    """Contiguous labels 0..C−1 → torchvision's 1..C (0 is its background); masks as uint8."""
    return [
        {**t, "labels": t["labels"] + 1, **({"masks": t["masks"].to(torch.uint8)} if "masks" in t else {})}
        for t in targets
    ]


class TorchvisionDetector(pl.LightningModule):
    """`self.net` is a torchvision detector; `iou_types` ("bbox", and "segm" for masks) are scored on COCO's
    AP."""

    iou_types: tuple[str, ...] = ("bbox",)
    net: nn.Module
    exportable = False  # NMS keeps a data-dependent number of boxes: torch.export cannot trace it; the
    # checkpoint logged with the run is the model

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return (f"val/box_ap_{cls.paper.key}", "max")

    def setup_metrics(self, name: str) -> None:
        self.name = name
        self.metrics = nn.ModuleDict(
            {f"{stage}_{kind}": coco_metric(kind) for stage in ("val", "test") for kind in self.iou_types}
        )
        self.example_input_array = torch.zeros(2, 3, 128, 128)

    def forward(self, images: Tensor) -> list[dict]:
        """(B, 3, H, W) in [0, 1] → per image {boxes, scores, labels 0..C−1[, masks (n, 1, H, W)]}."""
        return [{**d, "labels": d["labels"] - 1} for d in self.net(list(images))]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.net(images, to_torchvision(targets))
        loss = sum(losses.values())
        self.log_dict(
            {"train/loss": loss, **{f"train/{k}": v for k, v in losses.items()}},
            batch_size=len(images),
            prog_bar=False,
        )
        return loss

    def evaluation_step(self, batch, stage: str) -> None:
        images, targets = batch
        # One image at a time, as Detectron2 evaluates: batched, torchvision pads each image to its batch's
        # largest, so its detections (and an untrained net's AP) would depend on its batch-mates, and so on
        # the batch size and on DDP's split.
        found = [self.net([image])[0] for image in images]
        truths = to_torchvision(targets)
        for kind in self.iou_types:
            if kind == "segm":  # torchmetrics takes boolean (n, H, W) masks; the net gives soft (n, 1, H, W)
                found = [{**d, "masks": d["masks"][:, 0] > 0.5} for d in found]
                truths = [{**t, "masks": t["masks"].bool()} for t in truths]
            self.metrics[f"{stage}_{kind}"].update(
                found,
                [
                    # COCO's own `area` (of the mask), which AP_small/medium/large bin by, not the box's
                    {
                        k: t[k]
                        for k in (
                            "boxes",
                            "labels",
                            "iscrowd",
                            "area",
                            *(("masks",) if kind == "segm" else ()),
                        )
                        if k in t
                    }
                    for t in truths
                ],
            )

    def log_ap(self, stage: str) -> None:
        for kind in self.iou_types:
            values = self.metrics[f"{stage}_{kind}"].compute()
            prefix = "box" if kind == "bbox" else "mask"
            self.log_dict(
                {
                    f"{stage}/{prefix}_{short}_{self.name}": values[key].float()
                    for key, short in COCO_SUMMARY.items()
                }
            )
            self.metrics[f"{stage}_{kind}"].reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_ap("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_ap("test")

    def configure_optimizers(self):
        h = self.hparams
        return sgd_with_milestones(
            [p for p in self.parameters() if p.requires_grad],
            lr=h.lr,
            momentum=h.momentum,
            weight_decay=h.weight_decay,
            milestones=list(h.milestones),
            warmup_steps=h.warmup_steps,
        )

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        import matplotlib.pyplot as plt
        from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

        images, targets = next(iter(data.test_dataloader()))
        self.eval()
        found = self.net(list(images[:3]))
        figure, axes = plt.subplots(len(found), 2, figsize=(8, 4 * len(found)), squeeze=False)
        for row, (image, target, pred) in enumerate(zip(images, targets, found)):
            confident = pred["scores"] > 0.3
            for col, (boxes, masks, colour, title) in enumerate(
                (
                    (target["boxes"], target.get("masks"), "lime", "truth"),
                    (
                        pred["boxes"][confident],
                        pred["masks"][confident][:, 0] > 0.5 if "masks" in pred else None,
                        "red",
                        "prediction (score > 0.3)",
                    ),
                )
            ):
                pixels = (image * 255).to(torch.uint8)
                if masks is not None and len(masks):
                    pixels = draw_segmentation_masks(pixels, masks.bool(), alpha=0.4)
                axes[row, col].imshow(
                    draw_bounding_boxes(pixels, boxes, colors=colour, width=2).permute(1, 2, 0)
                )
                axes[row, col].set_title(title, fontsize=8)
                axes[row, col].axis("off")
        figure.tight_layout()
        return {"test_detections": figure}
