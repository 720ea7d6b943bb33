"""ResNet: the paper's parameter counts, option-A shortcuts, the plain twin, learning on synthetic CIFAR."""

import pytest
import torch

from datamodules.cifar10 import CIFAR10
from lightning_modules.resnet import CifarBlock, ResNet, build, cifar_net, imagenet_net
from tests.papers.helpers import fit_and_score


def parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("arch", "depth", "millions"), [("imagenet", 50, 25.6), ("cifar", 110, 1.7), ("cifar", 20, 0.27)]
)
def test_parameter_counts_match_the_paper(arch, depth, millions):
    assert parameters(build(arch, depth, True, 1000 if arch == "imagenet" else 10)) / 1e6 == pytest.approx(
        millions, rel=0.03
    )


def test_plain_twin_has_the_same_layers_without_shortcuts():
    residual, plain = imagenet_net(34, True, 1000), imagenet_net(34, False, 1000)
    # Only the projection shortcuts' parameters differ (three 1×1 convs + BN in ResNet-34).
    conv_shapes = lambda net: sorted(
        m.weight.shape for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    )
    assert conv_shapes(residual) == conv_shapes(plain)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in plain.modules()) == 0
    assert parameters(cifar_net(20, True, 10)) == parameters(
        cifar_net(20, False, 10)
    )  # option A adds no parameters


def test_option_a_shortcut_subsamples_and_zero_pads():
    block = CifarBlock(16, 32, 2, residual=True)
    for module in (block.conv1, block.conv2):
        torch.nn.init.zeros_(module.weight)  # the residual branch outputs zero
    torch.nn.init.zeros_(block.bn2.bias)
    x = torch.rand(1, 16, 8, 8)
    out = block(x)
    assert out.shape == (1, 32, 4, 4)
    assert torch.allclose(out[:, 8:24], torch.relu(x[:, :, ::2, ::2])) and out[:, :8].abs().sum() == 0


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_net(21, True, 10)


@pytest.mark.slow
def test_learns_synthetic_cifar_with_its_plain_twin(cifar10_shards):
    model = ResNet(arch="cifar", depth=8, num_classes=10, lr=0.05, milestones=[10_000])
    data = CIFAR10(cifar10_shards, 0, batch_size=32)
    before, after = fit_and_score(model, data, steps=80, metric="test/top1_err_cifar_resnet8")
    assert after < before - 0.15 and after < 0.75, (before, after)  # 10 classes: chance error is 0.9
