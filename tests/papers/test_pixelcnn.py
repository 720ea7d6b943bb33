"""Gated PixelCNN: causal by gradient in raster and R → G → B order, no blind spot, bits/dim as the paper
computes them, class conditioning reaches the output, and a short fit on real MNIST digits."""

import math

import pytest
import torch

from lightning_modules.pixelcnn import GatedPixelCNN
from lightning_modules.pixelcnn_net import LEVELS, PixelCNN, bits_per_dim, quantise

SIZE, ROW, COL = 9, 5, 4


def dependencies(net: PixelCNN, colours: int, colour: int) -> torch.Tensor:
    """(colours, H, W) booleans: which input sub-pixels the logits of (colour, ROW, COL) depend on."""
    pixels = torch.rand(1, colours, SIZE, SIZE, requires_grad=True)
    net(pixels, torch.tensor([3]))[0, :, colour, ROW, COL].sum().backward()
    return pixels.grad[0] != 0


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("colours", [1, 3])
def test_a_sub_pixel_depends_on_no_later_pixel_or_colour(colours, gated):
    torch.manual_seed(0)
    net = PixelCNN(colours, channels=12, layers=4, kernel=5, classes=10, gated=gated)
    for colour in range(colours):
        seen = dependencies(net, colours, colour)
        allowed = torch.zeros_like(seen)
        allowed[:, :ROW] = True
        allowed[:, ROW, :COL] = True
        allowed[:colour, ROW, COL] = True  # the earlier colours of the same pixel
        assert not (seen & ~allowed).any(), f"colour {colour} reads a later sub-pixel"
        assert seen[:colour, ROW, COL].all()  # and does read the earlier colours


@pytest.mark.parametrize("gated", [True, False])
def test_no_blind_spot_every_earlier_pixel_in_the_receptive_field_counts(gated):
    torch.manual_seed(0)
    net = PixelCNN(1, channels=12, layers=4, kernel=5, classes=10, gated=gated)
    seen = dependencies(net, 1, 0)[0]
    # The original PixelCNN misses the pixels up and to the right; two stacks see the whole window above.
    assert seen[ROW - 3 : ROW, COL - 3 : COL + 4].all()
    assert seen[ROW, :COL].all()


def test_bits_per_dim_is_the_mean_cross_entropy_in_bits():
    targets = torch.randint(0, LEVELS, (2, 1, 4, 4))
    assert bits_per_dim(torch.zeros(2, LEVELS, 1, 4, 4), targets).item() == pytest.approx(
        8.0
    )  # uniform: 8 bits
    confident = torch.full((2, LEVELS, 1, 4, 4), -1e4).scatter(1, targets[:, None], 0.0)
    assert bits_per_dim(confident, targets).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.full((1, LEVELS, 1, 1, 1), -1e4)
    half[0, :2] = 0.0  # two equally likely levels: exactly one bit
    assert bits_per_dim(half, torch.zeros(1, 1, 1, 1, dtype=torch.long)).item() == pytest.approx(1.0)
    assert quantise(torch.tensor([0.0, 1.0, 0.5])).tolist() == [0, 255, 128]


def test_the_class_reaches_both_stacks_and_the_output():
    torch.manual_seed(0)
    net = PixelCNN(1, channels=8, layers=2, kernel=3, classes=10, gated=True)
    pixels = torch.rand(1, 1, 6, 6)
    assert not torch.allclose(net(pixels, torch.tensor([1])), net(pixels, torch.tensor([2])))
    assert all(layer.condition.weight.shape == (10, 16) for layer in net.layers)  # V_f h and V_g h


def test_an_even_kernel_is_refused_by_name():
    with pytest.raises(ValueError, match="hparams.kernel"):
        GatedPixelCNN(colours=1, height=8, width=8, kernel=4)


@pytest.mark.slow
def test_a_short_fit_on_real_digits_beats_the_uniform_and_independent_models(mnist_shards):
    from datamodules.mnist import MNIST
    from tests.papers.helpers import fit_and_score

    data = MNIST(mnist_shards, 0, batch_size=32)
    model = GatedPixelCNN(colours=1, height=28, width=28, channels=16, layers=3, kernel=5, lr=3e-3)
    before, after = fit_and_score(model, data, steps=60, metric="test/bits_per_dim_gated")
    assert after < before and after < 8.0
    samples = model.nets["gated"].sample(torch.tensor([0, 7]), 1, 4, 4)
    assert samples.shape == (2, 1, 4, 4) and ((samples * 255).round() == samples * 255).all()
    assert math.isfinite(after)


@pytest.mark.parametrize("gated", [True, False])
def test_sampling_row_by_row_draws_what_the_whole_image_would(gated):
    """`sample` runs the vertical stack once a row, on the `reach` rows above row i, and each pass the
    horizontal stack on row i alone and the head at one pixel: the draws equal a sampler that feeds the whole
    image to every pass."""
    torch.manual_seed(0)
    net, labels = PixelCNN(3, 8, 3, 3, 4, gated).eval(), torch.tensor([0, 2])
    assert net.reach == 4  # 9 rows: most passes leave rows out
    drawn = net.sample(labels, 3, 9, 4, generator=torch.Generator().manual_seed(1))
    images, generator = torch.zeros(2, 3, 9, 4), torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i in range(9):
            for j in range(4):
                for c in range(3):
                    probabilities = torch.softmax(net(images, labels)[:, :, c, i, j], dim=1)
                    images[:, c, i, j] = torch.multinomial(probabilities, 1, generator=generator)[:, 0] / 255
    assert torch.equal(drawn, images)


@pytest.mark.parametrize(("layers", "kernel"), [(1, 5), (2, 3), (3, 3)])
def test_reach_is_the_highest_row_a_pixels_logits_read(layers, kernel):
    net = PixelCNN(1, 8, layers, kernel, 0, gated=True)
    assert 0 < ROW - net.reach  # within the image, so the image's top does not cut the field short
    rows = dependencies(net, 1, 0).nonzero()[:, 1]
    assert rows.min() == ROW - net.reach  # nothing higher is read, and that row is
