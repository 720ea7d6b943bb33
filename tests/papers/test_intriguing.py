"""Intriguing properties: Table 1's networks, the distortion formula, box-constrained adversarial search."""

import pytest
import torch

from datamodules.mnist import MNIST
from lightning_modules.intriguing import Classifier, Intriguing, adversarial, distortion
from tests.papers.helpers import trainer


@pytest.mark.parametrize(
    ("kind", "parameters"), [("fc10", 7850), ("fc100_100_10", 89610), ("fc200_200_10", 199210)]
)
def test_table_1_networks_have_the_stated_layers(kind, parameters):
    net = Classifier(kind)
    assert sum(p.numel() for p in net.parameters()) == parameters and net(
        torch.zeros(2, 1, 28, 28)
    ).shape == (2, 10)


def test_distortion_is_root_mean_square():
    assert distortion(torch.full((1, 28, 28), 0.1)) == pytest.approx(0.1)


def test_found_perturbation_changes_the_prediction_and_stays_in_the_box():
    torch.manual_seed(0)
    net = Classifier("fc10")
    x = torch.rand(1, 28, 28)
    target = (net(x[None]).argmax(1).item() + 3) % 10
    example = adversarial(net, x, target)
    assert example is not None and net(example[None]).argmax(1).item() == target
    assert example.min() >= 0 and example.max() <= 1 and distortion(example - x) > 0


@pytest.mark.slow
def test_smoke_model_has_an_adversarial_for_every_image(mnist_shards):
    model = Intriguing(adversarial_images=8)
    data = MNIST(mnist_shards, 0, batch_size=100)
    trainer(200).fit(model, datamodule=data)
    results = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert results["test/err_fc100_100_10"] < 0.2  # it learned the real digits
    assert results["test/adversarial_found_fc100_100_10"] == 1.0  # an adversarial for every image tried
    assert 0 < results["test/distortion_fc100_100_10"] < 0.3
    assert results["test/transfer_err_fc200_200_10"] > results["test/clean_err_fc200_200_10"]


def test_table_1s_fc10_rows_are_named_by_their_weight_decay():
    """FC10(λ) rows differ only by λ: each run's metrics name it, so a λ = 1 run is never judged against the
    λ = 1e-4 row's numbers."""
    from lightning_modules.intriguing import PAPER, Intriguing, model_name

    assert [model_name("fc10", wd) for wd in (1e-4, 1e-2, 1.0)] == ["fc10_wd4", "fc10_wd2", "fc10_wd0"]
    assert model_name("ae400_10", 1e-4) == "ae400_10"
    assert Intriguing.monitor({"model": "fc10", "weight_decay": 0.01}) == ("val/err_fc10_wd2", "min")
    claimed = {c.metric: c.claimed for c in PAPER.claims}
    assert claimed["test/err_fc10_wd4"] == 0.074 and claimed["test/distortion_fc10_wd0"] == 0.14


def test_the_training_error_column_scores_every_training_digit_once(mnist_shards):
    """Table 1's training error: a net that always answers 0 is wrong on exactly the training digits that are
    not zeros, counted from the raw IDX files (none dropped or repeated, the partial last batch included)."""
    from datamodules.mnist import samples

    model = Intriguing(adversarial_images=1)
    for net in (model.net, model.other):
        last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        last.bias.data[0] = 1.0
    data = MNIST(mnist_shards, 0, batch_size=100)
    results = trainer(1).test(model, datamodule=data, verbose=False)[0]
    labels = [s["cls"] for s in samples(mnist_shards.parent / "raw", "train")]
    expected = sum(label != 0 for label in labels) / len(labels)
    assert len(labels) % 1000 and results["test/train_err_fc100_100_10"] == pytest.approx(expected, abs=1e-6)
    assert results["test/train_err_fc200_200_10"] == pytest.approx(expected, abs=1e-6)
    assert 0 < results["test/train_err_fc100_100_10_ci95"] < 0.05
