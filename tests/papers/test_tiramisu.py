"""FC-DenseNet: the paper's parameter counts, input size kept, only new maps upsampled, HeUniform, learning."""
import pytest
import torch

from datamodules.camvid import CamVid
from lightning_modules.tiramisu import FCDenseNet, Tiramisu
from tests.conftest import synthetic_shards
from tests.papers.helpers import fit_and_score


@pytest.mark.parametrize("depth, millions", [(56, 1.5), (67, 3.5), (103, 9.4)])
def test_parameter_counts_are_the_papers(depth, millions):
    with torch.device("meta"):
        net = FCDenseNet(11, depth)
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - millions) / millions < 0.1


def test_output_size_equals_input_size():
    assert FCDenseNet(11, 56).eval()(torch.zeros(1, 3, 45, 61)).shape == (1, 11, 45, 61)


def test_only_a_blocks_new_maps_are_upsampled():
    net = FCDenseNet(11, 103)
    assert net.transitions_up[0].in_channels == 15 * 16          # the bottleneck's new maps, not its input
    assert net.transitions_up[1].in_channels == 12 * 16


@pytest.mark.slow
def test_the_smoke_net_learns_camvid_shapes(tmp_path):
    shards = synthetic_shards(CamVid, tmp_path, train=6, val=2, test=2)
    data = CamVid(shards, 0, batch_size=2, crop=64)
    before, after = fit_and_score(Tiramisu(depth=56, lr=3e-3), data, steps=40, metric="test/pixel_acc_fc_densenet56")
    assert after > before + 0.1, (before, after)
