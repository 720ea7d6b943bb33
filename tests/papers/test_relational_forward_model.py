"""RFM: permutation equivariance over agents, no self messages, the baselines' shapes, a clear error for the
wrong game, and the RFM beating the MLP on generated Stag Hunt trajectories."""
import pytest
import torch

from lightning_modules.relational_forward_model import RFM, RFMNet


def test_permuting_the_agents_permutes_the_rfms_predictions():
    torch.manual_seed(0)
    net = RFMNet(features=8, hidden=16).eval()
    scenes = torch.rand(3, 4, 5, 8)
    swapped = scenes[:, :, [1, 0, 2, 3, 4]]                      # swap the two agents (the first entities)
    logits, edges = net(scenes)
    logits_swapped, edges_swapped = net(swapped)
    assert torch.allclose(logits_swapped, logits[:, :, [1, 0]], atol=1e-5)
    assert torch.allclose(edges_swapped[:, :, 0, 1], edges[:, :, 1, 0], atol=1e-5)   # messages follow their pair


def test_no_entity_sends_a_message_to_itself():
    _, edges = RFMNet(features=8, hidden=16)(torch.rand(2, 3, 4, 8))
    assert edges.diagonal(dim1=2, dim2=3).abs().max() == 0


def test_every_model_predicts_each_agents_action_at_every_step():
    model = RFM(entities=5, hidden=16)
    predictions = model.predictions(torch.rand(2, 7, 5, 8))
    assert set(predictions) == {"rfm", "mlp", "lstm"} and all(p.shape == (2, 7, 2, 5) for p in predictions.values())


def test_scenes_of_another_game_are_refused_by_name():
    with pytest.raises(ValueError, match="hparams.entities"):
        RFM(entities=5).predictions(torch.rand(1, 2, 6, 8))


@pytest.mark.slow
def test_the_rfm_predicts_stag_hunt_actions_better_than_the_mlp(tmp_path):
    from datamodules.multiagent import MultiAgent
    from tests.conftest import synthetic_shards
    from tests.papers.helpers import trainer
    shards = synthetic_shards(MultiAgent, tmp_path, games=("stag_hunt",), train=400, val=20, test=100, steps=12)
    data = MultiAgent(shards, 0, game="stag_hunt", batch_size=32)
    torch.manual_seed(0)
    model = RFM(entities=5, hidden=32, lr=3e-3)
    trainer(250).fit(model, datamodule=data)
    scores = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert scores["test/acc_rfm"] > scores["test/acc_mlp"] and scores["test/acc_rfm"] > 0.5
