"""Conditional Image Generation with PixelCNN Decoders (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves
& Kavukcuoglu, NeurIPS 2016, arXiv:1606.05328).

Paper:    the Gated PixelCNN models p(x) = Π p(x_i | x_<i) with a 256-way softmax per sub-pixel, R before G
          before B within a pixel. Two stacks remove the original PixelCNN's blind spot: a vertical stack sees
          every row above, a horizontal stack the pixels to the left on the current row, and the vertical
          stack feeds the horizontal one. Each layer's activation is the gate tanh(W_f ∗ x + V_f h) ⊙
          σ(W_g ∗ x + V_g h), with the class embedding h added to both stacks; the horizontal stack is
          residual. Metric: test negative log-likelihood in bits per sub-pixel.
Faithful: the two stacks with the causal shifts (the vertical stack's output for row i sees rows < i; the
          horizontal stack's first layer excludes the current pixel: mask A, later layers include it: mask
          B), the vertical-to-horizontal 1×1 link, channel masks that keep R → G → B order inside a pixel
          (each feature map belongs to one colour group), gates, class conditioning on both stacks, the
          horizontal residual, 256-way softmax per sub-pixel, bits/dim = mean cross-entropy / ln 2 of the
          pixels quantised to 0..255. One run trains the gated net and an ungated twin of the same depth and
          width (ReLU in place of the gate) on the same batches, and scores the independent-pixel baseline
          (a smoothed histogram per sub-pixel position, counted over the training images seen).
Differs:  the paper's CIFAR-10 net (15 layers of 128 gated maps, RMSProp, 60 hours on 32 GPUs) is the paper
          profile; the default run is a few layers on the 5,000 bundled real MNIST digits, `not_comparable`.
          The ungated twin keeps the two stacks (no blind spot), so it isolates the gate, while the paper's
          PixelCNN row (3.14) also had the blind spot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, conint
from torch import Tensor, nn

from lightning_modules.common import SameStepForValAndTest, log_means
from lightning_modules.paper import Claim, Mode, Paper
from lightning_modules.pixelcnn_net import LEVELS, PixelCNN, bits_per_dim, quantise

PAPER = Paper(
    key="pixelcnn",
    title="Conditional Image Generation with PixelCNN Decoders",
    authors="van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu",
    year=2016,
    arxiv="1606.05328",
    dataset="cifar10",
    claims=(
        Claim(
            "test/bits_per_dim_gated",
            claimed=3.03,
            source="Table 1 (CIFAR-10 test NLL)",
            tolerance=0.03,
            higher_is_better=False,
            row="Gated PixelCNN",
            column="bits/dim",
        ),
        Claim(
            "test/bits_per_dim_ungated",
            claimed=3.14,
            source="Table 1 (CIFAR-10 test NLL)",
            tolerance=0.03,
            higher_is_better=False,
            row="PixelCNN",
            column="bits/dim",
        ),
    ),
)


class GatedPixelCNN(SameStepForValAndTest, pl.LightningModule):
    """The gated net and its ungated twin trained side by side; the independent-pixel baseline counted as
    the training images go by."""

    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/bits_per_dim_gated", "min")

    def __init__(
        self,
        *,
        colours: PositiveInt = 3,
        height: PositiveInt = 32,
        width: PositiveInt = 32,
        num_classes: NonNegativeInt = 10,
        channels: PositiveInt = 128,
        layers: PositiveInt = 15,
        kernel: conint(gt=1) = 7,
        lr: PositiveFloat = 1e-3,
        samples_per_class: int = 4,
    ):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"hparams.kernel: an odd kernel size (a centre column), got {kernel}")
        self.save_hyperparameters()
        self.nets = nn.ModuleDict(
            {
                name: PixelCNN(colours, channels, layers, kernel, num_classes, gated=name == "gated")
                for name in ("gated", "ungated")
            }
        )
        # Laplace-smoothed counts of each level at each sub-pixel position: the independent-pixel model.
        self.register_buffer("level_counts", torch.ones(LEVELS, colours, height, width))
        self.example_input_array = (torch.zeros(2, colours, height, width), torch.zeros(2, dtype=torch.long))

    def forward(self, pixels: Tensor, labels: Tensor) -> Tensor:
        """Logits of the gated net: (B, 256, C, H, W)."""
        return self.nets["gated"](pixels, labels if self.hparams.num_classes else None)

    def losses(self, batch) -> dict[str, Tensor]:
        pixels, labels = batch
        targets = quantise(pixels)
        conditioning = labels if self.hparams.num_classes else None
        found = {name: bits_per_dim(net(pixels, conditioning), targets) for name, net in self.nets.items()}
        independent = (self.level_counts / self.level_counts.sum(0, keepdim=True)).log()
        found["independent"] = F.nll_loss(
            independent.expand(len(pixels), *independent.shape), targets
        ) / math.log(2)
        return found

    def training_step(self, batch, batch_idx: int) -> Tensor:
        found = self.losses(batch)
        with torch.no_grad():
            self.level_counts += F.one_hot(quantise(batch[0]), LEVELS).sum(0).permute(3, 0, 1, 2)
        self.log_dict({f"train/bits_per_dim_{k}": v for k, v in found.items()}, prog_bar=False)
        return found["gated"] + found["ungated"]  # no shared parameter: each net gets its own gradients

    def evaluation_step(self, batch, stage: str) -> None:
        found = self.losses(batch)
        # synced: the gated net's val figure picks best.ckpt, and under DDP each rank sees only its batches
        log_means(self, {f"{stage}/bits_per_dim_{k}": v for k, v in found.items()}, len(batch[0]))

    def configure_optimizers(self):
        return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr)

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """A grid of class-conditional samples: one row per class, from the gated net."""
        import matplotlib.pyplot as plt
        from torchvision.utils import make_grid

        h = self.hparams
        self.eval()
        classes = max(h.num_classes, 1)
        labels = torch.arange(classes).repeat_interleave(h.samples_per_class)
        drawn = self.nets["gated"].sample(
            labels, h.colours, h.height, h.width, torch.Generator().manual_seed(0)
        )
        grid = make_grid(drawn, nrow=h.samples_per_class, padding=1, pad_value=0.5)
        figure, axes = plt.subplots(figsize=(h.samples_per_class * 0.6 + 1, classes * 0.6 + 1))
        axes.imshow(grid.permute(1, 2, 0).squeeze(), cmap="gray")
        axes.set_title("Gated PixelCNN: class-conditional samples (one row per class)", fontsize=8)
        axes.axis("off")
        return {"class_conditional_samples": figure}
