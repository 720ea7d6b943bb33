"""Multi-agent trajectories: the scripted policies do what their docstring says, generation is deterministic,
episodes of one game batch through the shards, and a malformed episode is named."""

import json

import numpy as np
import pytest

from datamodules.files import DataError
from datamodules.multiagent import MultiAgent, episode, generate, goals, samples, step_towards
from tests.helpers import synthetic_shards


def test_a_stag_hunter_needs_a_partner_at_least_as_close():
    kinds = ["stag", "apple", "apple"]
    things = np.array([[4, 4], [0, 0], [7, 7]])
    alone = goals("stag_hunt", np.array([[3, 4], [7, 0]]), things, kinds)  # agent 1 is far from the stag
    assert alone[0].tolist() == [0, 0] or alone[0].tolist() == [7, 7]  # agent 0 goes for an apple
    together = goals("stag_hunt", np.array([[3, 4], [5, 4]]), things, kinds)
    assert together[0].tolist() == together[1].tolist() == [4, 4]


def test_cooperative_navigation_assigns_each_landmark_once():
    chosen = goals("coop_nav", np.array([[0, 0], [1, 0]]), np.array([[0, 1], [7, 7]]), ["landmark"] * 2)
    assert chosen[0].tolist() == [0, 1] and chosen[1].tolist() == [7, 7]


def test_moves_shorten_the_distance():
    assert (
        step_towards(np.array([2, 2]), np.array([2, 5])) == 2
        and step_towards(np.array([2, 2]), np.array([0, 2])) == 3
    )
    assert step_towards(np.array([2, 2]), np.array([2, 2])) == 0


def test_generation_is_deterministic_and_batches_hold_one_game(tmp_path):
    generate(tmp_path / "a", 0, train=3, val=2, test=2)
    generate(tmp_path / "b", 0, train=3, val=2, test=2)
    assert (tmp_path / "a/train.jsonl").read_text() == (tmp_path / "b/train.jsonl").read_text()
    shards = synthetic_shards(MultiAgent, tmp_path / "s", train=40, val=8, test=8, steps=6)
    scenes, actions = next(iter(MultiAgent(shards, 0, game="coin_game", batch_size=8).train_dataloader()))
    assert scenes.shape == (8, 6, 6, 8) and actions.shape == (8, 6, 2) and int(actions.max()) < 5
    assert float(scenes[..., :2].max()) <= 1.0


def test_a_malformed_episode_is_named(tmp_path):
    generate(tmp_path, 0, train=1, val=1, test=1)
    (tmp_path / "val.jsonl").write_text(json.dumps({"game": "chess", "entities": [], "actions": []}) + "\n")
    assert "val.jsonl:1" in next(iter(samples(tmp_path, "val")))["__error__"]
    (tmp_path / "test.jsonl").unlink()
    with pytest.raises(DataError, match="test.jsonl"):
        next(iter(samples(tmp_path, "train")))


def test_an_episode_records_every_step():
    record = episode(np.random.default_rng(0), "stag_hunt", 8, 5, 0.0)
    assert len(record["entities"]) == len(record["actions"]) == 5 and len(record["entities"][0]) == 5
