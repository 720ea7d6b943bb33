"""Prototypical Networks: the paper's equations on hand examples, its encoder's shape, and learning."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from datamodules.episodes import Episode
from datamodules.omniglot import Omniglot
from lightning_modules.paper import Claim
from lightning_modules.protonets import PAPER, ProtoNets, encoder, logits, mean_and_ci95, prototypes


def test_prototypes_are_class_means():
    support = torch.randn(5, 3, 8)  # (way, shot, dim)
    assert torch.allclose(prototypes(support), support.mean(dim=1))


def test_logits_are_negative_squared_distances_on_a_hand_example():
    support = torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]]])  # two classes, one shot, 2-d
    query = torch.tensor([[0.0, 1.0]])
    assert torch.allclose(logits(support, query), torch.tensor([[-1.0, -5.0]]))


def test_episode_loss_equals_a_hand_computation():
    model = ProtoNets()
    model.encoder = torch.nn.Flatten()  # identity embedding: the loss is then by hand
    support = torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]]]).view(2, 1, 1, 1, 2)
    query = torch.tensor([[[0.0, 1.0]], [[2.0, 0.5]]]).view(2, 1, 1, 1, 2)
    loss, acc = model.episode_loss(Episode(support, query, torch.tensor([0, 1])))
    # query 0: d² = (1, 5) → -log softmax(-1, -5)[0]; query 1: d² = (4.25, 0.25) → -log softmax(-4.25,
    # -0.25)[1]
    by_hand = (
        F.cross_entropy(torch.tensor([[-1.0, -5.0]]), torch.tensor([0]))
        + F.cross_entropy(torch.tensor([[-4.25, -0.25]]), torch.tensor([1]))
    ) / 2
    assert torch.isclose(loss, by_hand) and acc == 1.0


def test_encoder_maps_28px_to_64_dims_with_four_conv_blocks():  # §3.1 / Table 1's architecture
    net = encoder()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 64)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 4
    assert all(
        m.kernel_size == (3, 3) and m.out_channels == 64
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    )


def test_confidence_interval_is_1_96_standard_errors():
    values = torch.tensor([0.0, 1.0] * 50)
    mean, ci = mean_and_ci95(values)
    assert mean == 0.5 and torch.isclose(ci, 1.96 * values.std() / 10)


def test_claims_are_table_1():
    assert [c.metric for c in PAPER.claims] == [
        "test/acc_5way_1shot",
        "test/acc_5way_5shot",
        "test/acc_20way_1shot",
        "test/acc_20way_5shot",
    ]
    assert [c.claimed for c in PAPER.claims] == [0.988, 0.997, 0.960, 0.989]


@pytest.mark.parametrize(
    ("value", "comparable", "status"),
    [
        (0.99, True, "reproduced"),
        (0.98, True, "reproduced"),
        (0.97, True, "not_reproduced"),
        (0.99, False, "not_comparable"),
        (None, True, "not_comparable"),
    ],
)
def test_verdict(value, comparable, status):
    assert (
        Claim("test/acc", claimed=0.988, source="Table 1", tolerance=0.01).verdict(value, comparable)
        == status
    )


def test_lr_halves_every_2000_episodes():
    model = ProtoNets()
    optimizer_config = model.configure_optimizers()
    scheduler = optimizer_config["lr_scheduler"]["scheduler"]
    assert optimizer_config["lr_scheduler"]["interval"] == "step"
    for _ in range(2000):
        optimizer_config["optimizer"].step()
        scheduler.step()
    assert optimizer_config["optimizer"].param_groups[0]["lr"] == pytest.approx(5e-4)


def accuracy(model: ProtoNets, episodes: list[Episode]) -> float:
    model.eval()
    with torch.no_grad():
        return sum(model.episode_loss(e)[1].item() for e in episodes) / len(episodes)


def test_learns_synthetic_omniglot_well_above_chance(omniglot_shards):
    pl.seed_everything(0)
    data = Omniglot(omniglot_shards, seed=0, train_way=5, shot=5, query=5)
    test = list(data.episodes("test", 5, 5, 5, count=20))
    model = ProtoNets()
    before = accuracy(model, test)
    trainer = pl.Trainer(
        max_steps=60,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    trainer.fit(model, train_dataloaders=data.episodes("train", 5, 5, 5, count=None))
    after = accuracy(model, test)
    assert after > before + 0.1 and after > 1 / 5 + 0.4, (before, after)  # 5-way chance is 0.2
