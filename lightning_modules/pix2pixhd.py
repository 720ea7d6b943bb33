"""pix2pixHD (Wang et al. 2018), the networks and losses Everybody Dance Now builds on: the global generator,
multi-scale PatchGAN discriminators, the adversarial and feature-matching losses and the VGG perceptual
loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.files import pretrained as pretrained_weights


def conv_block(
    inputs: int, outputs: int, kernel: int, stride: int = 1, transpose: bool = False
) -> list[nn.Module]:
    conv = (
        nn.ConvTranspose2d(inputs, outputs, 3, 2, 1, output_padding=1)
        if transpose
        else nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2 if kernel == 3 else 0)
    )
    return [conv, nn.InstanceNorm2d(outputs), nn.ReLU(True)]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def global_generator(inputs: int, ngf: int, downsamplings: int, blocks: int) -> nn.Sequential:
    """pix2pixHD's G1: 7×7 stem, `downsamplings` strided convs, residual blocks, mirrored upsampling, tanh."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), *conv_block(inputs, ngf, 7)]
    for i in range(downsamplings):
        layers += conv_block(ngf * 2**i, ngf * 2 ** (i + 1), 3, stride=2)
    layers += [ResidualBlock(ngf * 2**downsamplings) for _ in range(blocks)]
    for i in reversed(range(downsamplings)):
        layers += conv_block(ngf * 2 ** (i + 1), ngf * 2**i, 3, transpose=True)
    return nn.Sequential(*layers, nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())


class PatchDiscriminator(nn.Module):
    """pix2pixHD's n-layer patch discriminator; returns every layer's output (for feature matching)."""

    def __init__(self, inputs: int, ndf: int, layers: int = 3):
        super().__init__()
        widths = [inputs] + [ndf * 2 ** min(i, 3) for i in range(layers + 1)]
        stages = [nn.Sequential(nn.Conv2d(widths[0], widths[1], 4, 2, 2), nn.LeakyReLU(0.2, True))]
        for i in range(1, layers + 1):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(widths[i], widths[i + 1], 4, 2 if i < layers else 1, 2),
                    nn.InstanceNorm2d(widths[i + 1]),
                    nn.LeakyReLU(0.2, True),
                )
            )
        stages.append(nn.Conv2d(widths[-1], 1, 4, 1, 2))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, inputs: int, ndf: int, scales: int):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(inputs, ndf) for _ in range(scales))

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        found = []
        for d in self.scales:
            found.append(d(x))
            x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return found


def adversarial(scores: list[list[Tensor]], real: bool) -> Tensor:
    """LSGAN: the last layer of each scale towards 1 (real) or 0 (fake)."""
    return sum(F.mse_loss(s[-1], torch.full_like(s[-1], float(real))) for s in scores) / len(scores)


def feature_matching(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    """pix2pixHD's weights: 4 / (layers + 1) per layer, averaged over scales; the real features are
    constants."""
    weight = 4.0 / (len(fake[0]) - 1) / len(fake)
    return weight * sum(
        F.l1_loss(f, r.detach()) for fs, rs in zip(fake, real) for f, r in zip(fs[:-1], rs[:-1])
    )


class Perceptual(nn.Module):
    """pix2pixHD's VGG loss (relu1_1 … relu5_1, weights 1/32 … 1); with random weights, an L1 on the
    pixels."""

    def __init__(self, pretrained: bool):
        super().__init__()
        self.vgg = None
        if pretrained:
            from torchvision.models import VGG19_Weights, vgg19

            features = (
                vgg19(weights=pretrained_weights(VGG19_Weights.IMAGENET1K_V1))
                .features[:30]
                .eval()
                .requires_grad_(False)
            )
            self.vgg, self.cuts = features, (2, 7, 12, 21, 30)

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        """(B, 3k, H, W) images, k ≥ 1 RGB frames stacked on the channels (the temporal GAN's pairs): each
        frame goes through VGG on its own."""
        if self.vgg is None:
            return F.l1_loss(fake, real)
        frames = lambda images: images.reshape(-1, 3, *images.shape[-2:])  # noqa: E731 -- (B·k, 3, H, W)
        loss, x, y, start = 0.0, frames(fake), frames(real), 0
        for weight, cut in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), self.cuts):
            x, y = self.vgg[start:cut](x), self.vgg[start:cut](y)
            loss, start = loss + weight * F.l1_loss(x, y.detach()), cut
        return loss
