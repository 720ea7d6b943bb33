"""RFM: permutation equivariance over agents, no self messages, the baselines' shapes, a clear error for the
wrong game, and the RFM beating the MLP on generated Stag Hunt trajectories."""

import pytest
import torch

from lightning_modules.relational_forward_model import RFM
from lightning_modules.relational_nets import RFMNet


def test_permuting_the_agents_permutes_the_rfms_predictions():
    torch.manual_seed(0)
    net = RFMNet(features=8, hidden=16).eval()
    scenes = torch.rand(3, 4, 5, 8)
    swapped = scenes[:, :, [1, 0, 2, 3, 4]]  # swap the two agents (the first entities)
    logits, edges = net(scenes)
    logits_swapped, edges_swapped = net(swapped)
    assert torch.allclose(logits_swapped, logits[:, :, [1, 0]], atol=1e-5)
    assert torch.allclose(
        edges_swapped[:, :, 0, 1], edges[:, :, 1, 0], atol=1e-5
    )  # messages follow their pair


def test_no_entity_sends_a_message_to_itself():
    _, edges = RFMNet(features=8, hidden=16)(torch.rand(2, 3, 4, 8))
    assert edges.diagonal(dim1=2, dim2=3).abs().max() == 0


def test_every_model_predicts_each_agents_action_at_every_step():
    model = RFM(entities=5, hidden=16)
    predictions = model.predictions(torch.rand(2, 7, 5, 8))
    assert set(predictions) == {"rfm", "mlp", "lstm"} and all(
        p.shape == (2, 7, 2, 5) for p in predictions.values()
    )


def test_scenes_of_another_game_are_refused_by_name():
    with pytest.raises(ValueError, match="hparams.entities"):
        RFM(entities=5).predictions(torch.rand(1, 2, 6, 8))


@pytest.mark.slow
def test_the_rfm_predicts_stag_hunt_actions_better_than_the_mlp(tmp_path):
    from datamodules.multiagent import MultiAgent
    from tests.helpers import synthetic_shards
    from tests.papers.helpers import trainer

    shards = synthetic_shards(
        MultiAgent, tmp_path, games=("stag_hunt",), train=400, val=20, test=100, steps=12
    )
    data = MultiAgent(shards, 0, game="stag_hunt", batch_size=32)
    torch.manual_seed(0)
    model = RFM(entities=5, hidden=32, lr=3e-3)
    trainer(250).fit(model, datamodule=data)
    scores = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert scores["test/acc_rfm"] > scores["test/acc_mlp"] and scores["test/acc_rfm"] > 0.5


def test_a_stag_pays_only_when_every_agent_stands_on_it():
    import numpy as np

    from datamodules.multiagent import advance

    things, kinds = np.array([[3, 3], [0, 0], [7, 7]]), ["stag", "apple", "apple"]
    _, alone = advance(np.random.default_rng(0), np.array([[3, 2], [5, 5]]), things.copy(), kinds, [2, 0], 8)
    _, together = advance(
        np.random.default_rng(0), np.array([[3, 2], [3, 4]]), things.copy(), kinds, [2, 1], 8
    )
    assert alone.tolist() == [0, 0] and together.tolist() == [5, 5]


def test_taking_anothers_coin_costs_its_owner():
    import numpy as np

    from datamodules.multiagent import advance

    _, rewards = advance(
        np.random.default_rng(0),
        np.array([[0, 1], [5, 5]]),
        np.array([[0, 0], [7, 7]]),
        ["coin_1", "coin_0"],
        [1, 0],
        8,
    )
    assert rewards.tolist() == [1, -2]


def test_the_learners_see_the_rfms_prediction_or_zeros_in_its_place():
    torch.manual_seed(0)
    model = RFM(entities=5, hidden=16, agents=True, envs=3, eval_episodes=4, episode_steps=3)
    scenes = model.games["with_rfm"].observe()
    state = model.rfm.initial_state(3, 5, scenes)
    with_logits, _, _ = model.act("with_rfm", scenes, state)
    assert with_logits.shape == (3, 5) and set(model.test_returns()) == {
        "return_with_rfm",
        "return_without_rfm",
    }
    model.learners["without_rfm"].load_state_dict(model.learners["with_rfm"].state_dict())
    assert not torch.allclose(
        model.act("without_rfm", scenes, state)[0], with_logits
    )  # only the input differs


def test_episodes_restart_together_and_count_their_returns():
    from lightning_modules.relational_forward_model import GridGames

    games = GridGames("stag_hunt", 4, 8, 3, 0.0, seed=0)
    done = [games.step([0, 0, 0, 0])[1] for _ in range(3)]
    assert done == [False, False, True] and len(games.finished) == 4 and games.t == 0
