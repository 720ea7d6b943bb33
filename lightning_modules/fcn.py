"""Fully Convolutional Networks for Semantic Segmentation (Long, Shelhamer & Darrell, CVPR 2015,
arXiv:1411.4038).

Paper:    VGG-16 with its fully connected layers cast as convolutions (fc6 7×7, fc7 1×1) scores a coarse map;
          transposed convolutions upsample it to the input. Skips add finer predictions: FCN-16s fuses a score
          of pool4, FCN-8s also one of pool3. Nets are trained in stages, 32s → 16s → 8s, each starting from
          the previous one with its new score layer zero-initialised.
Faithful: the reference Caffe net's geometry: conv1_1 padded by 100, ceil-mode pooling, and the crop offsets
          (19; 5 and 27; 9 and 31) that align every map with the input; score layers zero-initialised;
          upsampling initialised to bilinear interpolation, learned for the 2× layers and fixed for the final
          one; 255 ignored; SGD momentum 0.99, weight decay 5e-4, batch 1 with the unnormalised (summed) loss.
          One run trains the stages in order: at each boundary of `stage_steps` the next skip switches on,
          which is the paper's "initialise 16s from 32s" with the zero-initialised layer already in place;
          the momentum restarts at each boundary, as a new solver's would.
          Metrics: pixel accuracy, mean accuracy, mean IU and frequency-weighted IU (§5), of the last stage.
Differs:  smoke runs train from random initialisation on a CPU: `width` < 1 thins every VGG layer and
          `batch_norm` adds VGG-16-BN's normalisation, without which the thin net's ReLUs die before it learns
          (the paper profile uses neither); the replica, or
          VOC 2012 val instead of the paper's VOC 2011 val subset, is `not_comparable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, conint
from torch import Tensor, nn
from torchvision.models import VGG16_Weights, vgg16

from datamodules.files import pretrained as pretrained_weights
from lightning_modules.common import (
    SegmentationEvaluation,
    segmentation_figure,
    segmentation_scores,
    thin_vgg16,
)
from lightning_modules.paper import Claim, Mode, Paper

Variant = Literal["32s", "16s", "8s"]
PAPER = Paper(
    key="fcn",
    title="Fully Convolutional Networks for Semantic Segmentation",
    authors="Long, Shelhamer, Darrell",
    year=2015,
    arxiv="1411.4038",
    dataset="voc",
    claims=tuple(  # Table 2: skip ablation on a VOC 2011 val subset (fractions, verify)
        Claim(
            f"test/{score}_fcn{variant}",
            claimed=value,
            source="Table 2",
            tolerance=0.02,
            row=f"FCN-{variant}",
            column=score,
            verified=False,
        )
        for variant, row in {
            "32s": (0.891, 0.733, 0.594, 0.814),
            "16s": (0.900, 0.757, 0.624, 0.830),
            "8s": (0.903, 0.759, 0.627, 0.832),
        }.items()
        for score, value in zip(("pixel_acc", "mean_acc", "mean_iu", "fw_iu"), row)
    ),
    primary_metric="test/mean_iu_fcn8s",  # the paper's headline: FCN-8s mean IU
)
IGNORE = 255


def bilinear_kernel(channels: int, size: int) -> Tensor:
    """Weights making a (channels → channels) transposed convolution bilinear upsampling (FCN's
    surgery.py)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


def upsampler(channels: int, factor: int, learned: bool) -> nn.ConvTranspose2d:
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    layer.weight.data.copy_(bilinear_kernel(channels, 2 * factor))
    layer.weight.requires_grad_(learned)
    return layer


def crop(x: Tensor, offset: int, like: Tensor) -> Tensor:
    """Caffe's Crop layer: the window of `like`'s size starting `offset` pixels in."""
    return x[:, :, offset : offset + like.shape[2], offset : offset + like.shape[3]]


def score_layer(channels: int, classes: int) -> nn.Conv2d:
    layer = nn.Conv2d(channels, classes, 1)
    nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)
    return layer


class FCNVGG16(nn.Module):
    def __init__(self, classes: int, pretrained: bool = False, width: float = 1.0, batch_norm: bool = False):
        super().__init__()
        if pretrained and (width != 1.0 or batch_norm):
            raise ValueError(
                f"hparams.width, hparams.batch_norm: ImageNet weights exist for width 1.0 without batch "
                f"norm only, got width {width}, batch_norm {batch_norm}"
            )
        vgg = (
            vgg16(weights=pretrained_weights(VGG16_Weights.IMAGENET1K_V1) if pretrained else None)
            if width == 1.0 and not batch_norm
            else thin_vgg16(width, batch_norm)
        )
        features = vgg.features
        features[0].padding = (100, 100)  # so that fc6's 7×7 sees any input size
        for layer in features:
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True  # Caffe's pooling: the crop offsets assume it
        pools = [i + 1 for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        self.to_pool3, self.to_pool4, self.to_pool5 = (
            features[: pools[2]],
            features[pools[2] : pools[3]],
            features[pools[3] :],
        )
        pool3_channels = [layer for layer in self.to_pool3 if isinstance(layer, nn.Conv2d)][-1].out_channels
        fc, trunk = vgg.classifier[0].weight.shape
        fc6, fc7 = nn.Conv2d(trunk // 49, fc, 7), nn.Conv2d(fc, fc, 1)
        fc6.weight.data.copy_(
            vgg.classifier[0].weight.data.view(fc, trunk // 49, 7, 7)
        )  # "cast as convolutions"
        fc6.bias.data.copy_(vgg.classifier[0].bias.data)
        fc7.weight.data.copy_(vgg.classifier[3].weight.data.view(fc, fc, 1, 1))
        fc7.bias.data.copy_(vgg.classifier[3].bias.data)
        self.fc = nn.Sequential(
            fc6, nn.ReLU(inplace=True), nn.Dropout2d(), fc7, nn.ReLU(inplace=True), nn.Dropout2d()
        )
        self.score_fr = score_layer(fc, classes)
        self.score_pool4, self.score_pool3 = (
            score_layer(trunk // 49, classes),
            score_layer(pool3_channels, classes),
        )
        self.upscore32, self.upscore16, self.upscore8 = (
            upsampler(classes, f, learned=False) for f in (32, 16, 8)
        )
        self.upscore2, self.upscore_pool4 = (
            upsampler(classes, 2, learned=True),
            upsampler(classes, 2, learned=True),
        )

    def forward(self, images: Tensor, variant: Variant = "8s") -> Tensor:
        """(B, 3, H, W) → (B, classes, H, W) for any H, W."""
        pool3 = self.to_pool3(images)
        pool4 = self.to_pool4(pool3)
        scores = self.score_fr(self.fc(self.to_pool5(pool4)))
        if variant == "32s":
            return crop(self.upscore32(scores), 19, images)
        fused = self.upscore2(scores)
        fused = fused + crop(self.score_pool4(pool4), 5, fused)
        if variant == "16s":
            return crop(self.upscore16(fused), 27, images)
        fused = self.upscore_pool4(fused)
        fused = fused + crop(self.score_pool3(pool3), 9, fused)
        return crop(self.upscore8(fused), 31, images)


class FCN(SegmentationEvaluation, pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/stage_and_mean_iu", "max")

    def __init__(
        self,
        *,
        classes: conint(gt=1) = 21,
        stages: tuple[Variant, ...] = ("32s", "16s", "8s"),
        # each stage 100k iterations of batch 1, as the reference nets
        stage_steps: tuple[NonNegativeInt, ...] = (100_000, 200_000),
        pretrained: bool = False,
        width: PositiveFloat = 1.0,
        batch_norm: bool = False,
        # one per stage, with the unnormalised (summed) loss of batch 1: the reference solvers' rates
        lr: tuple[PositiveFloat, ...] = (1e-10, 1e-12, 1e-14),
        momentum: NonNegativeFloat = 0.99,
        weight_decay: NonNegativeFloat = 5e-4,
    ):
        super().__init__()
        if len(stage_steps) != len(stages) - 1 or list(stage_steps) != sorted(stage_steps):
            raise ValueError(
                f"hparams.stage_steps: {len(stages) - 1} increasing step(s) at which the next of "
                f"stages {list(stages)} begins, got {list(stage_steps)}"
            )
        if len(lr) != len(stages):
            raise ValueError(f"hparams.lr: one learning rate per stage of {list(stages)}, got {list(lr)}")
        self.save_hyperparameters()
        self.net = FCNVGG16(classes, pretrained, width, batch_norm)
        self.scores = segmentation_scores(classes, IGNORE)
        # Stage index + mean IU: the best checkpoint is the best one of the latest stage, as the paper takes
        # each stage's net to start the next and reports the last (a key per stage would be missing in the
        # others).
        self.example_input_array = torch.zeros(2, 3, 64, 64)

    @property
    def variant(self) -> Variant:
        """The stage the run is in: training walks through `stages`; evaluation uses the last stage
        reached."""
        step = self.global_step if self._trainer is not None else 0
        if self._trainer is not None and not self.trainer.training and self.trainer.state.fn != "fit":
            return self.hparams.stages[-1]
        return self.hparams.stages[sum(step >= s for s in self.hparams.stage_steps)]

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images, self.variant)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, masks = batch
        # Batch 1, unnormalised loss (§4.3): the summed pixel losses of each image; images differ in size.
        loss = sum(
            F.cross_entropy(self(image[None]), mask[None], ignore_index=IGNORE, reduction="sum")
            for image, mask in zip(images, masks)
        )
        self.log("train/loss", loss / len(images), batch_size=len(images), prog_bar=True)
        self.log("train/stage", float(self.hparams.stages.index(self.variant)), batch_size=len(images))
        return loss

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Each stage is a new net initialised from the last one's weights (§4.2): its solver starts without
        # the previous stage's momentum, which at 0.99 would otherwise carry ~100 steps of the old net's
        # gradients.
        if self.global_step in self.hparams.stage_steps:
            lr = self.hparams.lr[
                self.hparams.stages.index(self.variant)
            ]  # each stage's solver has its own rate
            for optimizer in self.trainer.optimizers:
                for state in optimizer.state.values():
                    state.pop("momentum_buffer", None)
                for group in optimizer.param_groups:
                    group["lr"] = lr

    @property
    def score_suffix(self) -> str:
        return f"fcn{self.variant}"

    def on_validation_epoch_end(self) -> None:
        values = self.log_scores("val")
        self.log(
            "val/stage_and_mean_iu",
            self.hparams.stages.index(self.variant) + values["mean_iu"].float(),
            sync_dist=True,
        )

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]  # the final upsamplers stay bilinear
        return torch.optim.SGD(
            trainable,
            lr=self.hparams.lr[0],  # a resumed later stage gets its own back with the optimizer's state
            momentum=self.hparams.momentum,
            weight_decay=self.hparams.weight_decay,
        )

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        images, masks = next(iter(data.test_dataloader()))
        self.eval()
        predictions = [self(image[None])[0].argmax(0) for image in images[:3]]
        return {
            "test_predictions": segmentation_figure(
                images[:3],
                masks[:3],
                predictions,
                self.hparams.classes,
                f"FCN-{self.variant}: image, truth, prediction",
            )
        }
