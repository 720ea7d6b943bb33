"""SSD: Single Shot MultiBox Detector (Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg, ECCV 2016, arXiv:1512.02325).

Paper:    one network predicts, at every location of six feature maps of a VGG-16 trunk (conv4_3, the dilated
          fc7, and four extra layers; 38, 19, 10, 5, 3, 1 cells for 300×300 input), class scores and box
          offsets for a few default boxes of fixed scales and aspect ratios. Training matches defaults to
          truths at IoU 0.5, keeps the hardest negatives at 3 per positive, and sums a softmax loss and a
          smooth-L1 box loss; inference keeps the top 200 after NMS at 0.45.
Faithful: torchvision's SSD300 (its VGG-16 trunk with fc6/fc7 as dilated convolutions, heads, matcher, 3:1
          hard negative mining, smooth-L1 + cross-entropy, NMS 0.45, 200 detections), with the default boxes
          re-made at the paper's scales (§2.2: s_k from 0.2 to 0.9, 0.1 for conv4_3, ratios {1, 2, 1/2} or
          {1, 2, 3, 1/2, 1/3} plus s'_k = √(s_k s_{k+1}) → 8732 boxes); VOC's SSD augmentation (photometric
          distortion, zoom-out, min-IoU crops, flips; datamodules/voc.py); SGD lr 1e-3 (1e-4 and 1e-5 after
          80k and 100k iterations), momentum 0.9, weight decay 5e-4, batch 32; VOC07+12 trainval → VOC07 test
          scored by the VOC2007 11-point mAP with `difficult` objects ignored.
Differs:  SSD512 is not built (torchvision has no SSD512); IoU uses continuous coordinates, not the devkit's
          +1-pixel convention; under DDP validation mAP is computed on each rank's share (evaluate runs on one
          process, so the judged number is exact). The replica is `not_comparable`.
"""
from __future__ import annotations

from typing import Annotated

import pytorch_lightning as pl
import torch
from annotated_types import Ge, Gt
from torch import Tensor
from torchvision.models import VGG16_Weights
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

from lightning_modules.common import sgd_with_milestones, voc07_average_precision
from lightning_modules.paper import Claim, Paper

PAPER = Paper(
    key="ssd", title="SSD: Single Shot MultiBox Detector", authors="Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg",
    year=2016, arxiv="1512.02325", dataset="voc",
    claims=(Claim("test/map_voc07_ssd300", claimed=0.743, source="Table 1 (VOC2007 test, 07+12)", tolerance=0.01),),
)
# §2.2 and §3: conv4_3 at 0.1, then six scales evenly from 0.2 to 0.9; the 7th only makes s'_6 = √(0.9 · 1.075).
PAPER_SCALES = [0.1, 0.2, 0.375, 0.55, 0.725, 0.9, 1.075]
ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]            # 4 or 6 boxes per location
STEPS = [8, 16, 32, 64, 100, 300]


def default_boxes() -> DefaultBoxGenerator:
    return DefaultBoxGenerator(ASPECT_RATIOS, scales=PAPER_SCALES, steps=STEPS)


class SSD(pl.LightningModule):
    paper = PAPER
    exportable = False      # NMS keeps a data-dependent number of boxes; the run's checkpoint is the model

    def __init__(self, *, num_classes: Annotated[int, Gt(1)] = 20, pretrained: bool = False,
                 lr: Annotated[float, Gt(0)] = 1e-3, momentum: Annotated[float, Ge(0)] = 0.9,
                 weight_decay: Annotated[float, Ge(0)] = 5e-4, milestones: tuple[int, ...] = (80_000, 100_000)):
        super().__init__()
        self.save_hyperparameters()
        # num_classes counts objects; torchvision's class 0 is the background.
        self.net = ssd300_vgg16(weights=None, weights_backbone=VGG16_Weights.IMAGENET1K_FEATURES if pretrained else None,
                                num_classes=num_classes + 1)
        self.net.anchor_generator = default_boxes()
        self.monitor = ("val/map_voc07_ssd300", "max")
        self.example_input_array = torch.zeros(2, 3, 300, 300)
        self._detections: list[dict] = []
        self._truths: list[dict] = []

    def forward(self, images: Tensor) -> list[dict]:
        """(B, 3, 300, 300) in [0, 1] → per image {boxes, scores, labels} with labels 0..num_classes−1."""
        return [{**d, "labels": d["labels"] - 1} for d in self.net(list(images))]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.net(images, [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets])
        loss = losses["bbox_regression"] + losses["classification"]
        self.log_dict({"train/loss": loss, "train/box_loss": losses["bbox_regression"],
                       "train/cls_loss": losses["classification"]}, batch_size=len(images), prog_bar=True)
        return loss

    def evaluation_step(self, batch) -> None:
        images, targets = batch
        self._detections += [{k: v.cpu() for k, v in d.items()} for d in self(torch.stack(images))]
        self._truths += [{k: t[k].cpu() for k in ("boxes", "labels", "difficult")} for t in targets]

    def log_map(self, stage: str) -> None:
        ap = voc07_average_precision(self._detections, self._truths, self.hparams.num_classes)
        measured = [v for v in ap.values() if v == v]                     # classes with a truth
        self.log(f"{stage}/map_voc07_ssd300", sum(measured) / max(len(measured), 1))
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
        return sgd_with_milestones(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                                   weight_decay=self.hparams.weight_decay, milestones=list(self.hparams.milestones))

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
            for col, (boxes, colour, name) in enumerate(((target["boxes"], "lime", "truth"),
                                                         (found["boxes"][confident], "red", "prediction (score > 0.3)"))):
                axes[row, col].imshow(draw_bounding_boxes(pixels, boxes, colors=colour, width=2).permute(1, 2, 0))
                axes[row, col].set_title(name, fontsize=8)
                axes[row, col].axis("off")
        figure.tight_layout()
        return {"test_detections": figure}
