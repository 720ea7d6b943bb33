"""SPP-net: the pyramid's fixed output length, the paper's bin formula, ZF-5's map sizes, learning."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from datamodules.imagenet import ImageNet
from lightning_modules.spp_net import SpatialPyramidPool, SPPNet, zf5_trunk
from tests.papers.helpers import fit_and_score


@pytest.mark.parametrize("size", [(180, 180), (224, 224), (300, 300), (224, 300), (97, 151)])
def test_output_length_is_channels_times_bins_for_any_input(size):
    trunk, pool = zf5_trunk(width=0.25), SpatialPyramidPool()
    maps = trunk(torch.zeros(1, 3, *size))
    assert pool(maps).shape == (1, maps.shape[1] * 50)  # 36 + 9 + 4 + 1 bins


@pytest.mark.parametrize(("size", "conv5"), [(224, 13), (180, 10)])
def test_zf5_conv5_maps_are_13_for_224_and_10_for_180(size, conv5):  # §3.1
    assert zf5_trunk()(torch.zeros(1, 3, size, size)).shape == (1, 256, conv5, conv5)


def test_bins_equal_the_papers_window_and_stride_where_that_gives_n_bins():
    maps = torch.randn(2, 4, 13, 13)
    for n in (6, 3, 2, 1):
        window, stride = math.ceil(13 / n), math.floor(13 / n)
        if (13 - window) // stride + 1 == n:
            assert torch.equal(F.max_pool2d(maps, window, stride), F.adaptive_max_pool2d(maps, n))


def test_multi_size_training_alternates_sizes():
    model = SPPNet(num_classes=3, width=0.1, hidden=16, sizes=[64, 48], size_every=2)
    sizes = []
    for step in range(6):
        model._trainer = SimpleNamespace(global_step=step)
        sizes.append(model.training_size())
    assert sizes == [64, 64, 48, 48, 64, 64]


@pytest.mark.slow
def test_learns_synthetic_imagenet(imagenet_shards):
    model = SPPNet(
        num_classes=4, width=0.25, hidden=128, sizes=[64, 56], size_every=10, lr=0.01, milestones=[1000]
    )
    data = ImageNet(imagenet_shards, 0, batch_size=16, crop=64, resize=72)
    before, after = fit_and_score(model, data, steps=160, metric="test/top1_err_spp")
    assert after < before - 0.2 and after < 0.5, (before, after)  # 4 classes: chance error is 0.75
