"""Taskonomy: AHP on a known consistent matrix, the BIP on toy problems with known optima (first and higher
order), the tasks' inputs and targets, and the four stages producing a taxonomy."""

import numpy as np
import pytest
import torch

from lightning_modules.taskonomy import Taskonomy, task_io
from lightning_modules.taxonomy import ahp, choose_transfers, win_rates

CANDIDATES = [
    ("A", ("A",), 1.0),
    ("A", ("B",), 0.6),
    ("B", ("B",), 1.0),
    ("B", ("A",), 0.5),
    ("C", ("A",), 0.9),
    ("C", ("B",), 0.2),
]


def test_ahp_recovers_the_weights_of_a_consistent_matrix():
    weights = np.array([0.5, 0.3, 0.2])
    wins = weights[:, None] / (weights[:, None] + weights[None])  # W_ij / W_ji = w_i / w_j
    assert np.allclose(ahp(wins), weights)


def test_win_rates_count_images_and_split_ties():
    losses = np.array([[0.1, 0.5, 0.3], [0.2, 0.4, 0.3]])
    assert np.allclose(win_rates(losses), [[0.5, 0.5], [0.5, 0.5]])
    assert win_rates(np.array([[0.1, 0.1], [0.2, 0.2]]))[0, 1] == 1.0


def test_the_integer_program_picks_the_known_optimum():
    chosen, supervised = choose_transfers(CANDIDATES, budget=1)
    assert supervised == {"A"} and sorted(chosen) == [0, 3, 4]  # 1.0 + 0.5 + 0.9 beats B's 1.8
    chosen, supervised = choose_transfers(CANDIDATES, budget=2)
    assert supervised == {"A", "B"} and sorted(chosen) == [0, 2, 4]


def test_a_higher_order_transfer_needs_all_its_sources():
    candidates = CANDIDATES + [("C", ("A", "B"), 1.5)]
    assert sorted(choose_transfers(candidates, budget=2)[0]) == [0, 2, 6]
    assert 6 not in choose_transfers(candidates, budget=1)[0]


def test_an_impossible_budget_is_refused_by_name():
    with pytest.raises(ValueError, match="supervision_budget"):
        choose_transfers([("A", ("A",), 1.0), ("B", ("B",), 1.0)], budget=0)


def test_each_task_has_its_input_and_target():
    view = {
        "rgb": torch.rand(2, 3, 16, 16),
        "depth": torch.rand(2, 1, 16, 16) + 1,
        "normal": torch.rand(2, 3, 16, 16),
        "edges": torch.rand(2, 1, 16, 16),
        "segment": torch.randint(0, 5, (2, 16, 16)),
    }
    x, y, _ = task_io("colorization", view)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(y, view["rgb"])  # grey in, colour out
    x, _, mask = task_io("inpainting", view)
    assert x[:, :, 8, 8].abs().sum() == 0 and mask.sum() == 2 * 8 * 8
    assert (
        task_io("keypoint2d", view)[1].shape == (2, 1, 16, 16)
        and task_io("segment", view)[1].dtype == torch.int64
    )


@pytest.mark.slow
def test_the_four_stages_give_a_taxonomy_and_the_task_networks_learn(tmp_path):
    from datamodules.taskonomy import Taskonomy as Views
    from tests.helpers import synthetic_shards
    from tests.papers.helpers import trainer

    shards = synthetic_shards(Views, tmp_path, buildings=3, points=8, views=2, size=16)
    data = Views(shards, 0, batch_size=8, budget=8)
    torch.manual_seed(0)
    model = Taskonomy(
        tasks=["autoencoding", "depth", "segment"],
        encoder="small",
        width=8,
        source_steps=40,
        supervision_budget=1,
    )
    before = trainer(1).test(model, datamodule=data, verbose=False)[0]
    trainer(60).fit(model, datamodule=data)
    after = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert (
        after["test/loss_depth"] < before["test/loss_depth"]
        and after["test/loss_segment"] < before["test/loss_segment"]
    )
    assert len(model.results["supervised"]) == 1 and set(model.results["picked"]) == {
        "autoencoding",
        "depth",
        "segment",
    }
    assert 0 <= after["test/taxonomy_gain"] <= 1 and set(model.figures(data, {})) == {"affinity", "taxonomy"}
