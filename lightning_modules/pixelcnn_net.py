"""The Gated PixelCNN network of pixelcnn.py (van den Oord et al. 2016, Fig. 2): channel-masked convolutions
that keep R → G → B order inside a pixel, the vertical and horizontal stacks with their causal shifts, the
256-way softmax per sub-pixel, and the sampler that draws images from it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

    def vertical_step(self, v: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor | int]:
        """The vertical stack's output, what it adds to the horizontal stack's pre-activations, and the class
        bias. Its row i reaches the horizontal stack shifted down one row, so that stack sees only rows < i
        from it; within row i it sees what its own masked kernel allows."""
        height = v.shape[-2]
        bias = self.condition(labels)[:, :, None, None] if self.condition is not None else 0
        v_pre = self.vertical(v)[:, :, :height]
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :height]
        return self.activation(v_pre + bias), self.vertical_to_horizontal(shifted), bias

    def horizontal_step(self, h: Tensor, from_vertical: Tensor, bias: Tensor | int) -> Tensor:
        h_pre = self.horizontal(h)[:, :, :, : h.shape[-1]] + from_vertical
        h_out = self.horizontal_out(self.activation(h_pre + bias))
        return h_out if self.first else h_out + h  # residual in the horizontal stack

    def forward(self, v: Tensor, h: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        v_out, from_vertical, bias = self.vertical_step(v, labels)
        return v_out, self.horizontal_step(h, from_vertical, bias)


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
        Row i's logits read the vertical stack only from rows i − reach … i − 1, which no draw in row i
        changes: it runs once a row, and each pass runs the horizontal stack on row i alone and the head at
        the one pixel drawn. The draws are those of whole-image passes (tested), at a fifth of the work."""
        images = torch.zeros(len(labels), colours, height, width, device=labels.device)
        for i in range(height):
            v, from_vertical = self.embed(images[:, :, max(0, i - self.reach) : i + 1] * 2 - 1), []
            for layer in self.layers:
                v, term, bias = layer.vertical_step(v, labels)
                from_vertical.append((term[:, :, -1:], bias))  # row i's
            row = images[:, :, i : i + 1]  # a view: it sees each draw
            for j in range(width):
                for c in range(colours):
                    h = self.embed(row * 2 - 1)
                    for layer, (term, bias) in zip(self.layers, from_vertical):
                        h = layer.horizontal_step(h, term, bias)
                    logits = self.head(h[:, :, :, j : j + 1]).view(len(labels), colours, LEVELS)
                    drawn = torch.multinomial(F.softmax(logits[:, c], dim=1), 1, generator=generator)[:, 0]
                    images[:, c, i, j] = drawn.float() / (LEVELS - 1)
        return images


def quantise(images: Tensor) -> Tensor:
    """[0, 1] floats → the 256 levels the softmax predicts."""
    return (images * (LEVELS - 1)).round().long().clamp(0, LEVELS - 1)


def bits_per_dim(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log₂-likelihood per sub-pixel: the paper's NLL in bits/dim for discrete 0..255 data."""
    return F.cross_entropy(logits, targets) / math.log(2)
