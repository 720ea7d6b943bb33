"""Batch Normalization: batch vs population statistics, per-feature-map statistics, folding, BN-Inception,
learning."""

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from datamodules.mnist import MNIST
from lightning_modules.batch_norm import BN_INCEPTION, BatchNorm, bn_inception, mlp
from tests.papers.helpers import fit_and_score, score


def test_training_uses_batch_statistics_and_evaluation_population_statistics():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3)
    x = torch.randn(64, 3) * 5 + 2
    out = bn.train()(x)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-5) and torch.allclose(
        out.std(0, unbiased=False), torch.ones(3), atol=1e-3
    )
    assert torch.allclose(bn.eval()(x), (x - bn.running_mean) / (bn.running_var + bn.eps).sqrt(), atol=1e-5)


def test_convolutions_keep_one_statistic_per_feature_map():
    conv = bn_inception(10)[0]
    assert conv[1].running_mean.shape == (conv[0].out_channels,)


def test_bn_folds_into_an_affine_layer_at_inference():
    torch.manual_seed(0)
    net = mlp(batch_norm=True).eval()
    net[2].running_mean.uniform_(-1, 1)
    net[2].running_var.uniform_(0.5, 2)
    folded = fuse_linear_bn_eval(net[1], net[2])
    x = torch.randn(5, 784)
    assert torch.allclose(folded(x), net[2](net[1](x)), atol=1e-5)
    block = bn_inception(10)[0].eval()
    image = torch.randn(1, 3, 32, 32)
    assert torch.allclose(fuse_conv_bn_eval(block[0], block[1])(image), block[1](block[0](image)), atol=1e-4)


def test_bn_inception_follows_figure_5():
    widths = {name: (row[1] + row[3] + row[5] + (row[7] or row[0])) for name, row in BN_INCEPTION.items()}
    assert widths == {
        "3a": 256,
        "3b": 320,
        "3c": 576,
        "4a": 576,
        "4b": 576,
        "4c": 576,
        "4d": 576,
        "4e": 1024,
        "5a": 1024,
        "5b": 1024,
    }
    assert all(
        BN_INCEPTION[b][0] == widths[a] for a, b in zip(list(BN_INCEPTION)[:-1], list(BN_INCEPTION)[1:])
    )
    assert bn_inception(1000)(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert not any(
        isinstance(m, torch.nn.Conv2d) and m.kernel_size == (5, 5) for m in bn_inception(10).modules()
    )


def test_bn_net_learns_real_digits_faster_than_the_plain_one(mnist_shards):
    model = BatchNorm(experiment="mnist", num_classes=10, lr=0.5, momentum=0.0, weight_decay=0.0, decay=1.0)
    data = MNIST(mnist_shards, 0, batch_size=60)
    _, bn = fit_and_score(model, data, steps=150, metric="test/acc_bn")
    plain = score(model, data, "test/acc_plain")
    assert bn > 0.8 and bn > plain + 0.1, (bn, plain)


def test_figure_ones_claims_are_read_off_the_runs_curves():
    """BN first reaches the plain net's final held-out accuracy at step 2,000 of 10,000; its median input
    to a last-layer sigmoid wanders 0.1 against the plain net's 0.5."""
    steps = range(1000, 10001, 1000)
    history = {
        "val/acc_bn": [(s, 0.9 + 0.01 * i) for i, s in enumerate(steps)],  # 0.90 … 0.99
        "val/acc_plain": [(s, 0.85 + 0.006 * i) for i, s in enumerate(steps)],  # … ends at 0.904
        "train/input_p50_bn": [(s, 0.1 * (i % 2)) for i, s in enumerate(steps)],
        "train/input_p50_plain": [(s, -0.5 * (i % 2)) for i, s in enumerate(steps)],
    }
    found = BatchNorm(experiment="mnist", num_classes=10).curve_metrics(history)
    assert found["curve/steps_bn_to_plain_final"] == 2000
    assert found["curve/fraction_of_steps_bn_to_plain_final"] == 0.2
    assert abs(found["curve/median_drift_bn_over_plain"] - 0.2) < 1e-12
    # Never reached: past the end (not judged as reached), and ImageNet reads nothing off its curves.
    history["val/acc_plain"][-1] = (10000, 0.999)
    assert (
        BatchNorm(experiment="mnist", num_classes=10).curve_metrics(history)[
            "curve/fraction_of_steps_bn_to_plain_final"
        ]
        == 2.0
    )
    assert BatchNorm(num_classes=10).curve_metrics(history) == {}
