"""Recurrent BN: γ starts at 0.1, each time step keeps its own statistics, steps beyond T_max reuse the last
step's, the task names the test keys, and both nets learn digits read row by row."""

import pytest
import torch

from datamodules.mnist import MNIST
from lightning_modules.recurrent_bn import BNLSTM, PAPER, RecurrentBN, StepwiseBatchNorm
from tests.papers.helpers import fit_and_score


def test_gamma_starts_at_a_tenth_and_the_gate_shifts_at_zero():
    cell = BNLSTM(3, 4, t_max=5)
    for norm in (cell.bn_x, cell.bn_h, cell.bn_c):
        assert torch.equal(norm.weight, torch.full_like(norm.weight, 0.1))
    assert cell.bn_x.bias is None and cell.bn_h.bias is None and torch.equal(cell.bn_c.bias, torch.zeros(4))


def test_each_time_step_keeps_its_own_statistics():
    cell = BNLSTM(1, 4, t_max=6).train()
    x = torch.arange(6.0).view(1, 6, 1).repeat(16, 1, 1) + 0.01 * torch.randn(16, 6, 1)  # step t has mean ≈ t
    cell(x)
    means = cell.bn_x.running_mean
    assert not torch.allclose(means[1], means[4]) and torch.allclose(
        means[:, 0] / means[1, 0], torch.arange(6.0), atol=0.05
    )


def test_steps_beyond_t_max_reuse_the_last_steps_statistics():
    norm = StepwiseBatchNorm(3, t_max=4).eval()
    norm.running_mean.copy_(torch.arange(12.0).view(4, 3))
    x = torch.randn(5, 3)
    assert torch.equal(norm(x, 9), norm(x, 3)) and not torch.equal(norm(x, 2), norm(x, 3))
    cell = BNLSTM(1, 4, t_max=5).eval()
    assert cell(torch.randn(2, 12, 1)).shape == (2, 4)  # a test sequence longer than T_max runs


def test_claims_are_table_1_by_model_and_task():
    assert {(c.row, c.column) for c in PAPER.claims} == {
        (m, t) for m in ("bn_lstm", "lstm") for t in ("sequence", "permuted")
    }


def test_a_pixels_per_step_mismatch_is_named(mnist_shards):
    with pytest.raises(ValueError, match="hparams.pixels_per_step"):
        RecurrentBN(pixels_per_step=28, t_max=28).step(
            (torch.zeros(2, 392, 2), torch.zeros(2, dtype=torch.long)), "train"
        )


@pytest.mark.parametrize("view", ["sequence", "permuted"])
def test_both_nets_learn_digits_read_row_by_row(mnist_shards, view):
    data = MNIST(mnist_shards, 0, batch_size=32, view=view, pixels_per_step=28)
    model = RecurrentBN(hidden=32, t_max=28, pixels_per_step=28, lr=3e-3)
    before, after = fit_and_score(model, data, steps=120, metric=f"test/acc_bn_lstm_{view}")
    assert after > before + 0.15 and after > 0.3, (before, after)  # chance is 0.1


def test_the_unbound_sequence_gives_the_same_loss_and_gradients_as_indexing_it():
    """BN-LSTM reads its projected inputs as per-step views (`unbind`); the straightforward `projected[:, t]`
    gives the same loss and gradients, only a backward ~40× slower at 784 steps (bench: recurrent_bn)."""
    torch.manual_seed(0)
    net, x = BNLSTM(3, 8, t_max=12), torch.randn(4, 12, 3)

    def indexed(x):
        h = c = x.new_zeros(x.shape[0], net.hidden)
        projected = net.W_x(x)
        for t in range(x.shape[1]):
            gates = net.bn_h(net.W_h(h), t) + net.bn_x(projected[:, t], t) + net.bias
            f, i, o, g = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(net.bn_c(c, t))
        return h

    grads = []
    for forward in (net, indexed):
        net.zero_grad()
        loss = forward(x).pow(2).sum()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert torch.equal(loss_a, loss_b)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads_a, grads_b))


def test_leading_zero_pixels_leave_the_paper_nets_gradients_finite():
    """Every MNIST digit starts with all-zero pixels: unprimed, every example's state is the same there, the
    batch variance 0, and the backward grows by γ/√ε per step until it overflows (NaN at the paper's 784
    steps)."""
    torch.manual_seed(0)
    model = RecurrentBN().train()
    pixels = torch.rand(16, 784, 1)
    pixels[:, :100] = 0
    loss = torch.nn.functional.cross_entropy(model(pixels)[:, 0], torch.randint(0, 10, (16,)))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()  # the noise is a training device: evaluation is deterministic
    assert torch.equal(model(pixels[:2, :10]), model(pixels[:2, :10]))
