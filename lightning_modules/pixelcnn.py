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
LEVELS = 256


def colour_groups(channels: int, groups: int, halves: int = 1) -> Tensor:
    """The colour each of `channels` feature maps belongs to: contiguous blocks, R first, repeated in each
    half when a gate will split the maps into its tanh and σ halves (so map k of both halves has one
    colour)."""
    per_half = channels // halves
    return (torch.arange(channels) % per_half) * groups // per_half


def channel_mask(
    out_channels: int, in_channels: int, groups: int, include_own: bool, out_halves: int = 1
) -> Tensor:
    """(out, in): which input maps an output map may read at the pixel being predicted — the earlier colours,
    and its own colour too after the first layer (mask B; mask A excludes it)."""
    out_g = colour_groups(out_channels, groups, out_halves)[:, None]
    in_g = colour_groups(in_channels, groups)[None, :]
    return (in_g < out_g) | ((in_g == out_g) & include_own)


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel tap at the current pixel (its last row and column) is channel-masked; every
    other tap is left as the stack's padding allows."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        include_own: bool,
        padding: tuple[int, int] = (0, 0),
        out_halves: int = 1,
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        mask = torch.ones_like(self.weight)
        mask[:, :, -1, -1] = channel_mask(out_channels, in_channels, groups, include_own, out_halves).float()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class GatedLayer(nn.Module):
    """One layer of both stacks (Fig. 2). The vertical stack's (k//2 + 1) × k kernel, padded k//2 on top, sees
    rows i − k//2 … i (the current row too, so it is never read unshifted); the horizontal stack's 1 × (k//2 +
    1) kernel sees the current row up to the current pixel, whose own colours its channel mask governs."""

    def __init__(self, channels: int, kernel: int, classes: int, groups: int, first: bool, gated: bool):
        super().__init__()
        self.gated, self.first, half = gated, first, kernel // 2
        halves = 2 if gated else 1  # the gate splits its maps into tanh and σ halves
        width = halves * channels
        self.vertical = nn.Conv2d(channels, width, (half + 1, kernel), padding=(half, half))
        self.vertical_to_horizontal = nn.Conv2d(width, width, 1)
        self.horizontal = MaskedConv2d(
            channels,
            width,
            (1, half + 1),
            groups,
            include_own=not first,
            padding=(0, half),
            out_halves=halves,
        )
        self.horizontal_out = MaskedConv2d(channels, channels, (1, 1), groups, include_own=True)
        self.condition = nn.Embedding(classes, width) if classes else None

    def activation(self, x: Tensor) -> Tensor:
        if not self.gated:
            return F.relu(x)
        f, g = x.chunk(2, dim=1)  # each half laid out R, G, B (colour_groups' halves)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: Tensor, h: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        height, width = v.shape[-2:]
        bias = self.condition(labels)[:, :, None, None] if self.condition is not None else 0
        v_pre = self.vertical(v)[:, :, :height]
        # The vertical stack's row i reaches the horizontal stack shifted down one row, so the horizontal
        # stack sees only rows < i from it; within row i it sees what its own masked kernel allows.
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :height]
        h_pre = self.horizontal(h)[:, :, :, :width] + self.vertical_to_horizontal(shifted)
        v_out, h_gated = self.activation(v_pre + bias), self.activation(h_pre + bias)
        h_out = self.horizontal_out(h_gated)
        return v_out, h_out if self.first else h_out + h  # residual in the horizontal stack


class PixelCNN(nn.Module):
    """(B, C, H, W) pixels in [0, 1] (+ labels) → logits (B, 256, C, H, W) of each sub-pixel given the earlier
    ones."""

    def __init__(self, colours: int, channels: int, layers: int, kernel: int, classes: int, gated: bool):
        super().__init__()
        self.colours = colours
        self.embed = MaskedConv2d(colours, channels, (1, 1), colours, include_own=True)
        self.layers = nn.ModuleList(
            GatedLayer(channels, kernel, classes, colours, first=i == 0, gated=gated) for i in range(layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(channels, channels, (1, 1), colours, include_own=True),
            nn.ReLU(),
            MaskedConv2d(channels, colours * LEVELS, (1, 1), colours, include_own=True),
        )

    def forward(self, pixels: Tensor, labels: Tensor | None = None) -> Tensor:
        x = self.embed(pixels * 2 - 1)  # the embedding only mixes a pixel's own colours in R → G → B order;
        v, h = x, x  # the first layer's masks A then exclude the pixel itself
        for layer in self.layers:
            v, h = layer(v, h, labels)
        logits = self.head(h)  # (B, colours · 256, H, W), colour-major as the masks assume
        batch, _, height, width = logits.shape
        return logits.view(batch, self.colours, LEVELS, height, width).transpose(1, 2)

    @property
    def reach(self) -> int:
        """Rows above its own that a pixel's logits read: k//2 per layer, and one as the stacks meet."""
        return 1 + sum(layer.vertical.kernel_size[0] - 1 for layer in self.layers)

    @torch.no_grad()
    def sample(
        self, labels: Tensor, colours: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw images pixel by pixel, sub-pixel by sub-pixel, in raster order: (B, C, H, W) in [0, 1].
        Row i's logits depend on rows i − reach … i only, so each pass reads just those: identical draws, a
        fraction of the work (the smoke CIFAR-10 net reads 8 rows a pass, not 16.5 on average)."""
        images = torch.zeros(len(labels), colours, height, width, device=labels.device)
        for i in range(height):
            rows = images[:, :, max(0, i - self.reach) : i + 1]  # a view: it sees each draw
            for j in range(width):
                for c in range(colours):
                    probabilities = F.softmax(self(rows, labels)[:, :, c, -1, j], dim=1)
                    drawn = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
                    images[:, c, i, j] = drawn.float() / (LEVELS - 1)
        return images


def quantise(images: Tensor) -> Tensor:
    """[0, 1] floats → the 256 levels the softmax predicts."""
    return (images * (LEVELS - 1)).round().long().clamp(0, LEVELS - 1)


def bits_per_dim(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log₂-likelihood per sub-pixel: the paper's NLL in bits/dim for discrete 0..255 data."""
    return F.cross_entropy(logits, targets) / math.log(2)


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
