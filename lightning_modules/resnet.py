"""Deep Residual Learning for Image Recognition (He, Zhang, Ren & Sun, CVPR 2016, arXiv:1512.03385).

Paper:    stacks of layers learn residuals F(x) + x through identity shortcuts, so deeper nets train to lower
          error where their "plain" twins (same layers, no shortcuts) degrade with depth.
Faithful: ImageNet ResNet-18/34/50/101/152 as torchvision builds them; the CIFAR nets (6n+2 layers, 16/32/64
          filters, option-A shortcuts: stride-2 subsampling with zero-padded channels); the plain twin of
          either, trained on the same batches so one run shows the degradation gap; SGD momentum 0.9,
          weight decay 1e-4, lr 0.1 ÷10 at the CIFAR milestones 32k/48k (ImageNet: ÷10 at plateaus);
          10-crop testing on ImageNet (softmax averaged over the crops).
Differs:  torchvision's Bottleneck strides in the 3×3 conv ("ResNet V1.5"), the paper in the first 1×1;
          ImageNet milestones are fixed steps; the paper's multi-scale fully-convolutional test is not run.
          Results on synthetic data are `not_comparable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from lightning_modules.common import (
    classification_step,
    curves_figure,
    log_classification_errors,
    sgd_from_hparams,
)
from lightning_modules.paper import Claim, Mode, Paper

PAPER = Paper(
    key="resnet",
    title="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2015,
    arxiv="1512.03385",
    dataset="imagenet",
    claims=(  # errors as fractions; ImageNet Table 2 (10-crop top-1), CIFAR-10 Table 6
        Claim(
            "test/top1_err_resnet34", claimed=0.2503, source="Table 2", tolerance=0.01, higher_is_better=False
        ),
        Claim(
            "test/top1_err_plain34", claimed=0.2854, source="Table 2", tolerance=0.01, higher_is_better=False
        ),
        Claim(
            "test/top1_err_resnet18", claimed=0.2788, source="Table 2", tolerance=0.01, higher_is_better=False
        ),
        Claim(
            "test/top1_err_plain18", claimed=0.2794, source="Table 2", tolerance=0.01, higher_is_better=False
        ),
        Claim(
            "test/top1_err_cifar_resnet20",
            claimed=0.0875,
            source="Table 6",
            tolerance=0.005,
            higher_is_better=False,
        ),
        Claim(
            "test/top1_err_cifar_resnet56",
            claimed=0.0697,
            source="Table 6",
            tolerance=0.005,
            higher_is_better=False,
        ),
        Claim(
            "test/top1_err_cifar_resnet110",
            claimed=0.0643,
            source="Table 6",
            tolerance=0.005,
            higher_is_better=False,
        ),
    ),
)
IMAGENET_DEPTHS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class PlainBasicBlock(BasicBlock):
    """torchvision's BasicBlock without its shortcut: the paper's plain net."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *args,
        **kwargs,
    ):
        super().__init__(inplanes, planes, stride, None, *args, **kwargs)  # no projection shortcut either

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class PlainBottleneck(Bottleneck):
    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *args,
        **kwargs,
    ):
        super().__init__(inplanes, planes, stride, None, *args, **kwargs)  # no projection shortcut either

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.relu(self.bn3(self.conv3(out)))


def imagenet_net(depth: int, residual: bool, num_classes: int) -> nn.Module:
    block, layers = IMAGENET_DEPTHS[depth]
    if not residual:
        block = PlainBasicBlock if block is BasicBlock else PlainBottleneck
    return TorchvisionResNet(block, layers, num_classes=num_classes)


class CifarBlock(nn.Module):
    """Two 3×3 convs; option-A shortcut: identity, or stride-2 subsampling with zero-padded channels
    (§4.2)."""

    def __init__(self, inplanes: int, planes: int, stride: int, residual: bool):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes)
        self.residual, self.stride, self.pad = residual, stride, planes - inplanes

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            out = out + F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out)


def cifar_net(depth: int, residual: bool, num_classes: int) -> nn.Sequential:
    """6n+2 layers: a 3×3 conv, three stages of n blocks at 16/32/64 filters (32/16/8 px), pooling, fc."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n, layers, inplanes = (
        (depth - 2) // 6,
        [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()],
        16,
    )
    for stage, planes in enumerate((16, 32, 64)):
        for i in range(n):
            layers.append(CifarBlock(inplanes, planes, 2 if stage and i == 0 else 1, residual))
            inplanes = planes
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # He init, as the paper
    return net


def build(arch: str, depth: int, residual: bool, num_classes: int) -> nn.Module:
    return (imagenet_net if arch == "imagenet" else cifar_net)(depth, residual, num_classes)


def net_names(arch: str, depth: int) -> dict[str, str]:
    """The residual net's and its plain twin's names, as metric keys carry them."""
    prefix = "cifar_" if arch == "cifar" else ""
    return {"net": f"{prefix}resnet{depth}", "plain": f"{prefix}plain{depth}"}


class ResNet(pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return (f"val/top1_err_{net_names(hparams['arch'], hparams['depth'])['net']}", "min")

    def __init__(
        self,
        *,
        arch: Literal["imagenet", "cifar"] = "imagenet",
        depth: PositiveInt = 34,
        num_classes: PositiveInt = 1000,
        plain_twin: bool = True,  # plain-34 on the same batches: Table 2's comparison in one run
        lr: PositiveFloat = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        # Deviation: fixed steps where the paper divided at plateaus
        milestones: list[int] = [150_000, 300_000, 450_000],  # noqa: B006 -- a recipe value, never mutated
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build(arch, depth, True, num_classes)
        self.plain = build(arch, depth, False, num_classes) if plain_twin else None
        self.names = net_names(arch, depth)
        size = 32 if arch == "cifar" else 224
        self.example_input_array = torch.zeros(2, 3, size, size)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def nets(self) -> list[tuple[str, nn.Module]]:
        return [(self.names["net"], self.net)] + (
            [(self.names["plain"], self.plain)] if self.plain is not None else []
        )

    def training_step(self, batch, batch_idx: int) -> Tensor:
        total = 0.0
        for name, net in self.nets():  # disjoint parameters: the summed loss trains each net independently
            loss, top1, _ = classification_step(net, *batch)
            self.log_dict({f"train/loss_{name}": loss, f"train/top1_err_{name}": top1}, prog_bar=True)
            total = total + loss
        return total

    def validation_step(self, batch, batch_idx: int) -> None:
        log_classification_errors(self, self.nets(), batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        log_classification_errors(self, self.nets(), batch, "test")

    def configure_optimizers(self):
        return sgd_from_hparams(self)

    def figures(self, data, history: dict) -> dict:
        keys = [f"train/top1_err_{name}" for name, _ in self.nets()]
        return {
            "plain_vs_residual": curves_figure(
                history, keys, "training error: residual vs plain (Fig. 4/6)", "top-1 error"
            )
        }
