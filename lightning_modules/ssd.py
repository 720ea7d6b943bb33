"""SSD: Single Shot MultiBox Detector (Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg, ECCV 2016,
arXiv:1512.02325).

Paper:    one network predicts, at every location of six feature maps of a VGG-16 trunk (conv4_3, the dilated
          fc7, and four extra layers; 38, 19, 10, 5, 3, 1 cells for 300×300 input), class scores and box
          offsets for a few default boxes of fixed scales and aspect ratios. Training matches defaults to
          truths at IoU 0.5, keeps the hardest negatives at 3 per positive, and sums a softmax loss and a
          smooth-L1 box loss; inference keeps the top 200 after NMS at 0.45.
Faithful: torchvision's SSD pieces (its VGG-16 trunk with fc6/fc7 as dilated convolutions and conv4_3
          L2-normalised, the extra layers, one more for SSD512; heads, matcher, 3:1 hard negative mining,
          smooth-L1 + cross-entropy, NMS 0.45, 200 detections), with the default boxes made at the paper's
          scales (§2.2: SSD300 s_k from 0.2 to 0.9, 0.1 for conv4_3, ratios {1, 2, 1/2} or {1, 2, 3, 1/2, 1/3}
          plus s'_k = √(s_k s_{k+1}) → 8732 boxes; SSD512 from 0.15 to 0.9 with 0.07 for conv4_3 on seven maps
          → 24564 boxes); VOC's SSD augmentation (photometric distortion, zoom-out, min-IoU crops, flips;
          datamodules/voc.py); SGD lr 1e-3 (1e-4 and 1e-5 after 80k and 100k iterations), momentum 0.9, weight
          decay 5e-4, batch 32; VOC07+12 trainval → VOC07 test scored by the VOC2007 11-point mAP with
          `difficult` objects ignored. Under DDP each rank's detections are gathered before scoring.
Differs:  smoke runs train from random initialisation on a CPU: `width` < 1 thins every convolution and
          `batch_norm` uses VGG-16-BN, since without ImageNet weights a plain VGG SSD diverges and its ReLUs
          die (ScratchDet, Zhu et al. 2019, makes the same point); the paper profile uses neither. IoU uses
          continuous coordinates, not the devkit's +1-pixel convention. The replica is `not_comparable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import pytorch_lightning as pl
import torch
from pydantic import NonNegativeFloat, PositiveFloat, confloat, conint
from torch import Tensor, nn
from torchvision.models import VGG16_Weights, vgg16, vgg16_bn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD as TorchvisionSSD
from torchvision.models.detection.ssd import _vgg_extractor

from datamodules.files import pretrained as pretrained_weights
from lightning_modules.common import gather_lists, sgd_with_milestones, thin_convolutions
from lightning_modules.paper import Claim, Mode, Paper
from lightning_modules.voc07 import voc07_average_precision

PAPER = Paper(
    key="ssd",
    title="SSD: Single Shot MultiBox Detector",
    authors="Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg",
    year=2016,
    arxiv="1512.02325",
    dataset="voc",
    claims=(
        Claim("test/map_voc07_ssd300", claimed=0.743, source="Table 1 (VOC2007 test, 07+12)", tolerance=0.01),
        Claim("test/map_voc07_ssd512", claimed=0.768, source="Table 1 (VOC2007 test, 07+12)", tolerance=0.01),
    ),
)


class Layout(NamedTuple):
    """Where the default boxes go (§2.2, §3.1 and footnote 5): a scale per feature map, and one past the last
    only to make its s'_k = √(s_k s_{k+1}); extra ratios per map (1 and s'_k are always there); strides in
    pixels."""

    scales: list[float]
    ratios: list[list[int]]
    steps: list[int]


LAYOUTS = {
    300: Layout(
        [0.1, 0.2, 0.375, 0.55, 0.725, 0.9, 1.075],
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        [8, 16, 32, 64, 100, 300],
    ),
    512: Layout(
        [0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05],
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        [8, 16, 32, 64, 128, 256, 512],
    ),
}
# torchvision's VGG-16 SSD input scaling: its IMAGENET1K_FEATURES weights take 0–255 pixels minus the mean. A
# net trained from random initialisation gets unit-scale inputs instead: 0–255 inputs blow up its first
# activations.
VGG_FEATURES_SCALING = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0] * 3}
UNIT_SCALING = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def default_boxes(size: int) -> DefaultBoxGenerator:
    layout = LAYOUTS[size]
    return DefaultBoxGenerator(layout.ratios, scales=layout.scales, steps=layout.steps)


def paper_ssd512_extras(extractor: nn.Module) -> None:
    """torchvision's high-resolution extras end in maps of 6, 4 and 1 cells; the paper's SSD512 (its released
    Caffe net) halves with 3×3 stride-2 convolutions to 4 and 2, then a 4×4 convolution padded by 1 gives the
    last cell."""
    for block in extractor.extra[3:5]:
        block[2].stride, block[2].padding = (2, 2), (1, 1)
    extractor.extra[5][2].padding = (1, 1)


def ssd_vgg16(
    size: int, num_classes: int, pretrained: bool, width: float, batch_norm: bool
) -> TorchvisionSSD:
    """SSD300 or SSD512 as torchvision's `ssd300_vgg16` assembles it, at either of the paper's sizes."""
    if pretrained and (width != 1.0 or batch_norm):
        raise ValueError(
            f"hparams.width, hparams.batch_norm: the ImageNet VGG-16 features exist for width 1.0 "
            f"without batch norm only, got width {width}, batch_norm {batch_norm}"
        )
    trunk = (
        vgg16_bn(weights=None)
        if batch_norm
        else vgg16(weights=pretrained_weights(VGG16_Weights.IMAGENET1K_FEATURES) if pretrained else None)
    )
    extractor = _vgg_extractor(trunk, highres=size == 512, trainable_layers=4 if pretrained else 5)
    if size == 512:
        paper_ssd512_extras(extractor)
    if width != 1.0:
        thin_convolutions(extractor, width)
        conv4_3 = [layer for layer in extractor.features if isinstance(layer, nn.Conv2d)][-1]
        extractor.scale_weight = nn.Parameter(torch.ones(conv4_3.out_channels) * 20)
    # num_classes counts objects; torchvision's class 0 is the background.
    return TorchvisionSSD(
        extractor,
        default_boxes(size),
        (size, size),
        num_classes + 1,
        **(VGG_FEATURES_SCALING if pretrained else UNIT_SCALING),
    )


class SSD(pl.LightningModule):
    paper = PAPER
    exportable = False  # NMS keeps a data-dependent number of boxes; the run's checkpoint is the model

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return (f"val/map_voc07_ssd{hparams['size']}", "max")

    def __init__(
        self,
        *,
        num_classes: conint(gt=1) = 20,
        size: Literal[300, 512] = 300,
        pretrained: bool = False,
        width: confloat(gt=0, le=1) = 1.0,
        batch_norm: bool = False,
        lr: PositiveFloat = 1e-3,
        momentum: NonNegativeFloat = 0.9,
        weight_decay: NonNegativeFloat = 5e-4,
        milestones: tuple[int, ...] = (80_000, 100_000),
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = ssd_vgg16(size, num_classes, pretrained, width, batch_norm)
        self.name = f"ssd{size}"
        self.example_input_array = torch.zeros(2, 3, size, size)
        self._detections: list[dict] = []
        self._truths: list[dict] = []

    def forward(self, images: Tensor) -> list[dict]:
        """(B, 3, size, size) in [0, 1] → per image {boxes, scores, labels} with labels 0..num_classes−1."""
        return [{**d, "labels": d["labels"] - 1} for d in self.net(list(images))]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.net(images, [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets])
        loss = losses["bbox_regression"] + losses["classification"]
        self.log_dict(
            {
                "train/loss": loss,
                "train/box_loss": losses["bbox_regression"],
                "train/cls_loss": losses["classification"],
            },
            batch_size=len(images),
            prog_bar=True,
        )
        return loss

    def evaluation_step(self, batch) -> None:
        images, targets = batch
        self._detections += [{k: v.cpu() for k, v in d.items()} for d in self(torch.stack(images))]
        self._truths += [{k: t[k].cpu() for k in ("boxes", "labels", "difficult")} for t in targets]

    def log_map(self, stage: str) -> None:
        detections, truths = gather_lists(self._detections), gather_lists(self._truths)
        ap = voc07_average_precision(detections, truths, self.hparams.num_classes)
        measured = [v for v in ap.values() if v == v]  # classes with a truth
        self.log(f"{stage}/map_voc07_{self.name}", sum(measured) / max(len(measured), 1))
        self._detections, self._truths = [], []

    def validation_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch)

    def on_validation_epoch_end(self) -> None:
        self.log_map("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch)

    def on_test_epoch_end(self) -> None:
        self.log_map("test")

    def configure_optimizers(self):
        return sgd_with_milestones(
            self.parameters(),
            lr=self.hparams.lr,
            momentum=self.hparams.momentum,
            weight_decay=self.hparams.weight_decay,
            milestones=list(self.hparams.milestones),
        )

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        import matplotlib.pyplot as plt
        from torchvision.utils import draw_bounding_boxes

        images, targets = next(iter(data.test_dataloader()))
        self.eval()
        detections = self(torch.stack(images[:3]))
        figure, axes = plt.subplots(len(detections), 2, figsize=(8, 4 * len(detections)), squeeze=False)
        for row, (image, target, found) in enumerate(zip(images, targets, detections)):
            pixels = (image * 255).to(torch.uint8)
            confident = found["scores"] > 0.3
            for col, (boxes, colour, name) in enumerate(
                (
                    (target["boxes"], "lime", "truth"),
                    (found["boxes"][confident], "red", "prediction (score > 0.3)"),
                )
            ):
                axes[row, col].imshow(
                    draw_bounding_boxes(pixels, boxes, colors=colour, width=2).permute(1, 2, 0)
                )
                axes[row, col].set_title(name, fontsize=8)
                axes[row, col].axis("off")
        figure.tight_layout()
        return {"test_detections": figure}
