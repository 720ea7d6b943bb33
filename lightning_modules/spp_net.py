"""Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition (He, Zhang, Ren & Sun,
ECCV 2014, arXiv:1406.4729).

Paper:    max-pool the last conv maps into a fixed pyramid of n×n bins ({6, 3, 2, 1}: 50 bins), so the
          fully connected layers get a fixed-length vector from any input size; train at several sizes.
Faithful: the ZF-5 trunk (conv1 96@7×7/2, conv2 256@5×5/2, conv3-5 384/384/256@3×3, max-pools 3×3/2;
          13×13 conv5 maps for 224 input, 10×10 for 180), the {6,3,2,1} pyramid, fc6/fc7 4096 with dropout;
          multi-size training alternating 224 and 180 inputs (the 224 crop resized); the no-SPP baseline
          (pool5 3×3/2 → 6×6) trained on the same batches, for the paper's with/without comparison.
Differs:  bins use adaptive max pooling (bin i spans ⌊ia/n⌋…⌈(i+1)a/n⌉), which equals the paper's window
          ⌈a/n⌉ / stride ⌊a/n⌋ wherever that gives n bins (a = 13) and still gives n bins where it does not
          (a = 10, n = 6 would give 9); LRN after conv1/conv2 is omitted; testing uses the 224 centre view,
          not the full image. Results on synthetic data are `not_comparable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn

from lightning_modules.common import classification_step, log_classification_errors, sgd_from_hparams
from lightning_modules.paper import Claim, Mode, Paper

PAPER = Paper(
    key="spp_net",
    title="Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2014,
    arxiv="1406.4729",
    dataset="imagenet",
    claims=(  # Table 2, ZF-5, ImageNet 2012 val (paper-claims.md marks these "verify"); errors as fractions
        Claim(
            "test/top1_err_spp",
            claimed=0.3460,
            source="Table 2 (ZF-5, multi-size)",
            tolerance=0.01,
            higher_is_better=False,
            verified=False,
        ),
        Claim(
            "test/top5_err_spp",
            claimed=0.1364,
            source="Table 2 (ZF-5, multi-size)",
            tolerance=0.01,
            higher_is_better=False,
            verified=False,
        ),
        Claim(
            "test/top1_err_no_spp",
            claimed=0.3599,
            source="Table 2 (ZF-5, no SPP)",
            tolerance=0.01,
            higher_is_better=False,
            verified=False,
        ),
        Claim(
            "test/top5_err_no_spp",
            claimed=0.1476,
            source="Table 2 (ZF-5, no SPP)",
            tolerance=0.01,
            higher_is_better=False,
            verified=False,
        ),
    ),
)


class SpatialPyramidPool(nn.Module):
    """(n, C, H, W) → (n, C × Σ levels²): max over each bin of each pyramid level (§2.3)."""

    def __init__(self, levels: tuple[int, ...] = (6, 3, 2, 1)):
        super().__init__()
        self.levels = tuple(levels)

    def forward(self, maps: Tensor) -> Tensor:
        return torch.cat([F.adaptive_max_pool2d(maps, n).flatten(1) for n in self.levels], dim=1)


def zf5_trunk(width: float = 1.0) -> nn.Sequential:
    """ZF-5's five conv layers (Table 1 of the paper); `width` scales the channels (1.0 is the paper's)."""
    c = [max(8, int(w * width)) for w in (96, 256, 384, 384, 256)]
    return nn.Sequential(
        nn.Conv2d(3, c[0], 7, stride=2, padding=3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, stride=2, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1),
        nn.ReLU(inplace=True),
    )


def classifier(features: int, hidden: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(hidden, classes),
    )


class SPPNet(pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/top1_err_spp", "min")

    def __init__(
        self,
        *,
        num_classes: PositiveInt = 1000,
        levels: list[PositiveInt] = [6, 3, 2, 1],  # noqa: B006 -- 50 bins (§2.3)
        width: PositiveFloat = 1.0,
        hidden: PositiveInt = 4096,
        sizes: list[PositiveInt] = [224, 180],  # noqa: B006 -- multi-size training (§2.4)
        size_every: PositiveInt = 10_000,  # one epoch of 1.28M images at batch 128 per size
        lr: PositiveFloat = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        # Deviation: fixed steps where the paper divided at plateaus
        milestones: list[int] = [300_000, 500_000],  # noqa: B006 -- a recipe value, never mutated
    ):
        super().__init__()
        self.save_hyperparameters()
        channels = max(8, int(256 * width))
        self.spp = nn.Sequential(
            zf5_trunk(width),
            SpatialPyramidPool(tuple(levels)),
            classifier(channels * sum(n * n for n in levels), hidden, num_classes),
        )
        # The baseline: the same trunk with pool5 (3×3, stride 2: 13×13 → 6×6 at 224), so its input size is
        # fixed.
        trunk = nn.Sequential(zf5_trunk(width), nn.MaxPool2d(3, 2), nn.Flatten())
        with torch.no_grad():
            features = trunk(torch.zeros(1, 3, sizes[0], sizes[0])).shape[1]
        self.no_spp = nn.Sequential(trunk, classifier(features, hidden, num_classes))
        self.example_input_array = torch.zeros(2, 3, sizes[0], sizes[0])

    def forward(self, images: Tensor) -> Tensor:
        return self.spp(images)

    def training_size(self) -> int:
        """Multi-size training: the sizes take turns, each for `size_every` steps (the paper: an epoch
        each)."""
        return self.hparams.sizes[(self.global_step // self.hparams.size_every) % len(self.hparams.sizes)]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, labels = batch
        size = self.training_size()
        resized = (
            images
            if size == images.shape[-1]
            else F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        )
        loss_spp, top1_spp, _ = classification_step(self.spp, resized, labels)
        loss_base, top1_base, _ = classification_step(
            self.no_spp, images, labels
        )  # fixed size, as it must be
        self.log_dict(
            {
                "train/loss_spp": loss_spp,
                "train/top1_err_spp": top1_spp,
                "train/loss_no_spp": loss_base,
                "train/top1_err_no_spp": top1_base,
                "train/size": float(size),
            },
            prog_bar=True,
        )
        return loss_spp + loss_base  # disjoint parameters: the sum trains both nets independently

    def validation_step(self, batch, batch_idx: int) -> None:
        log_classification_errors(self, [("spp", self.spp), ("no_spp", self.no_spp)], batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        log_classification_errors(self, [("spp", self.spp), ("no_spp", self.no_spp)], batch, "test")

    def configure_optimizers(self):
        return sgd_from_hparams(self)
