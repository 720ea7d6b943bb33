"""The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for Semantic Segmentation (Jégou, Drozdzal,
Vazquez, Romero & Bengio, CVPRW 2017, arXiv:1611.09326).

Paper:    a DenseNet down path (dense blocks, each layer BN-ReLU-3×3 conv-dropout adding `growth` maps, the
          block's input concatenated with all its new maps; transitions down BN-ReLU-1×1 conv-dropout-2×2
          max-pool) and a mirrored up path (3×3 transposed convolutions with stride 2) joined by skips. To
          keep the up path affordable, only a dense block's *new* maps are upsampled, never its input.
Faithful: Table 2's FC-DenseNet56 (4 layers per block, growth 12), 67 (5, growth 16) and 103 (4 5 7 10 12 |
          15 | 12 10 7 5 4, growth 16), 48 filters in the first 3×3 conv, dropout 0.2, HeUniform
          initialisation, RMSprop lr 1e-3 decayed by 0.995 per epoch, weight decay 1e-4, 224×224 random crops
          with flips (taken here from the full images the loader gives), then fine-tuning on the full-size
          images at lr 1e-4 from step `finetune_after_step` in the same run; CamVid's 11 classes with void
          ignored. Metrics: mean IoU and global accuracy (Table 1).
Differs:  the fine-tuning keeps the crop stage's batch size (the paper drops to 1); no class-balancing weights
          (the paper's text does not use them); the replica is `not_comparable`. Built from Table 2's layout,
          the nets count 1.38M (FC-DenseNet56), 3.46M (67) and 9.32M (103) parameters where Table 3 says 1.5M,
          3.5M and 9.4M: the 56-layer net is 8% smaller, for a reason the paper's text does not give.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, conint
from torch import Tensor, nn

from lightning_modules.common import SegmentationEvaluation, segmentation_figure, segmentation_scores
from lightning_modules.paper import Claim, Mode, Paper

IGNORE = 255
ARCHITECTURES = {  # Table 2 and §4.1: (layers per dense block down, bottleneck, up; growth rate)
    56: ((4,) * 5 + (4,) + (4,) * 5, 12),
    67: ((5,) * 5 + (5,) + (5,) * 5, 16),
    103: ((4, 5, 7, 10, 12) + (15,) + (12, 10, 7, 5, 4), 16),
}
PAPER = Paper(
    key="tiramisu",
    title="The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for Semantic Segmentation",
    authors="Jégou, Drozdzal, Vazquez, Romero, Bengio",
    year=2017,
    arxiv="1611.09326",
    dataset="camvid",
    claims=(  # Table 1, CamVid test set (fractions; 56 and 67 to verify)
        *(
            Claim(
                f"test/mean_iu_fc_densenet{d}",
                claimed=v,
                source="Table 1",
                tolerance=0.02,
                row=f"FC-DenseNet{d}",
                column="mean IoU",
                verified=d == 103,  # paper-claims.md: 56 and 67 still to be checked against Table 1
            )
            for d, v in ((56, 0.589), (67, 0.658), (103, 0.669))
        ),
        Claim(
            "test/pixel_acc_fc_densenet103",
            claimed=0.915,
            source="Table 1",
            tolerance=0.01,
            row="FC-DenseNet103",
            column="global accuracy",
        ),
    ),
)


def bn_relu_conv(channels: int, out: int, kernel: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, out, kernel, padding=kernel // 2),
        nn.Dropout2d(dropout),
    )


class DenseBlock(nn.Module):
    """Returns (input ⊕ new maps, new maps): the down path keeps the first, the up path upsamples the
    second."""

    def __init__(self, channels: int, layers: int, growth: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            bn_relu_conv(channels + i * growth, growth, 3, dropout) for i in range(layers)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        new = []
        for layer in self.layers:
            new.append(layer(x))
            x = torch.cat([x, new[-1]], 1)
        return x, torch.cat(new, 1)


class FCDenseNet(nn.Module):
    def __init__(self, classes: int, depth: int = 103, first_filters: int = 48, dropout: float = 0.2):
        super().__init__()
        blocks, growth = ARCHITECTURES[depth]
        down, bottleneck, up = blocks[:5], blocks[5], blocks[6:]
        self.first = nn.Conv2d(3, first_filters, 3, padding=1)
        self.down, self.transitions_down, skips, channels = (
            nn.ModuleList(),
            nn.ModuleList(),
            [],
            first_filters,
        )
        for layers in down:
            self.down.append(DenseBlock(channels, layers, growth, dropout))
            channels += layers * growth
            skips.append(channels)
            self.transitions_down.append(
                nn.Sequential(bn_relu_conv(channels, channels, 1, dropout), nn.MaxPool2d(2))
            )
        self.bottleneck = DenseBlock(channels, bottleneck, growth, dropout)
        self.transitions_up, self.up, upsampled = nn.ModuleList(), nn.ModuleList(), bottleneck * growth
        for layers, skip in zip(up, reversed(skips)):
            self.transitions_up.append(nn.ConvTranspose2d(upsampled, upsampled, 3, stride=2))
            self.up.append(DenseBlock(upsampled + skip, layers, growth, dropout))
            upsampled, channels = layers * growth, upsampled + skip + layers * growth
        self.last = nn.Conv2d(channels, classes, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")  # HeUniform
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, classes, H, W)."""
        x, skips = self.first(images), []
        for block, transition in zip(self.down, self.transitions_down):
            x, _ = block(x)
            skips.append(x)
            x = transition(x)
        x, new = self.bottleneck(x)
        for transition, block, skip in zip(self.transitions_up, self.up, reversed(skips)):
            upsampled = transition(new)[
                :, :, : skip.shape[2], : skip.shape[3]
            ]  # "valid" crop to the skip's size
            x, new = block(torch.cat([upsampled, skip], 1))
        return self.last(x)


class Tiramisu(SegmentationEvaluation, pl.LightningModule):
    paper = PAPER
    logged_scores = ("mean_iu", "pixel_acc")  # Table 1: mean IoU and global accuracy
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return (f"val/mean_iu_fc_densenet{hparams['depth']}", "max")

    def __init__(
        self,
        *,
        num_classes: conint(gt=1) = 11,
        depth: Literal[56, 67, 103] = 103,
        dropout: NonNegativeFloat = 0.2,
        lr: PositiveFloat = 1e-3,
        decay: PositiveFloat = 0.995,
        weight_decay: NonNegativeFloat = 1e-4,
        crop: PositiveInt | None = 224,
        finetune_after_step: NonNegativeInt | None = 120_000,
        finetune_lr: PositiveFloat = 1e-4,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = FCDenseNet(num_classes, depth, dropout=dropout)
        self.score_suffix = f"fc_densenet{depth}"
        self.scores = segmentation_scores(num_classes, IGNORE)
        self.example_input_array = torch.zeros(2, 3, 64, 64)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    @property
    def finetuning(self) -> bool:
        after = self.hparams.finetune_after_step
        return after is not None and self.global_step >= after

    def crop_and_flip(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """§4.1: one random `crop` × `crop` window and a horizontal flip per image, the same for its mask."""
        size = self.hparams.crop
        if size is None or self.finetuning:
            return images, masks
        height, width = images.shape[-2:]
        if size > min(height, width):
            raise ValueError(f"hparams.crop: {size} is larger than the {height}×{width} training images")
        pairs = []
        for image, mask in zip(images, masks):
            y, x = (int(torch.randint(0, n - size + 1, ())) for n in (height, width))
            image, mask = image[:, y : y + size, x : x + size], mask[y : y + size, x : x + size]
            pairs.append((image.flip(-1), mask.flip(-1)) if torch.rand(()) < 0.5 else (image, mask))
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if (
            self.hparams.finetune_after_step is not None
            and self.global_step == self.hparams.finetune_after_step
        ):
            for optimizer in self.trainer.optimizers:  # the fine-tuning stage's own learning rate
                for group in optimizer.param_groups:
                    group["lr"] = self.hparams.finetune_lr

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, masks = self.crop_and_flip(*batch)
        loss = F.cross_entropy(self(images), masks, ignore_index=IGNORE)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.RMSprop(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, self.hparams.decay)  # × 0.995 per epoch
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        images, masks = next(iter(data.test_dataloader()))
        self.eval()
        predictions = self(images[:3]).argmax(1)
        return {
            "test_predictions": segmentation_figure(
                list(images[:3]),
                list(masks[:3]),
                list(predictions),
                self.hparams.num_classes,
                f"FC-DenseNet{self.hparams.depth}",
            )
        }
