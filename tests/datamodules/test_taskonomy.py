"""Taskonomy: the ray-cast replica's labels agree with its geometry, samples carry every domain in Taskonomy's
encodings, splits follow splits.csv, and a missing domain or layout is named."""

import numpy as np
import pytest

from datamodules.files import DataError
from datamodules.rooms import render
from datamodules.taskonomy import Taskonomy, buildings_of, decode_view, samples, synthesize
from tests.helpers import synthetic_shards

EMPTY_ROOM = {
    "room": {"floor": -1.0, "ceiling": 1.6, "back": 6.0, "side": 3.0},
    "spheres": [],
    "boxes": [],
    "colours": np.zeros((0, 3)),
    "light": np.array([0.0, 1.4, 2.0]),
    "walls": "brick",
}


def test_an_empty_room_looking_ahead_has_the_back_wall_in_the_middle_and_the_floor_below():
    view = render(EMPTY_ROOM, 32, yaw=0.0, pitch=0.0)
    assert view["depth"][16, 16] == pytest.approx(6.0, abs=0.01)  # the z-buffer of the back wall
    assert view["segment"][16, 16] == 1 and view["segment"][31, 16] == 0 and view["segment"][0, 16] == 2
    assert np.allclose(view["normal"][31, 16], [0, 1, 0]) and np.allclose(view["normal"][16, 16], [0, 0, -1])


def test_a_sphere_occludes_the_wall_and_has_an_occlusion_edge(tmp_path):
    scene = {**EMPTY_ROOM, "spheres": [(np.array([0.0, 0.0, 3.0]), 0.5)], "colours": np.ones((1, 3))}
    view = render(scene, 32, 0.0, 0.0)
    assert view["segment"][16, 16] == 3 and view["depth"][16, 16] == pytest.approx(2.5, abs=0.05)
    from datamodules.rooms import occlusion_edges

    edges = occlusion_edges(view["depth"])
    assert edges[16].max() == 1 and edges[28, 16] == 0  # the rim, not the receding floor


def test_views_follow_splits_csv_and_decode_every_domain(tmp_path):
    shards = synthetic_shards(Taskonomy, tmp_path, buildings=3, points=2, views=2, size=16)
    assert buildings_of(tmp_path / "raw", "train") == ["synthetic000"] and buildings_of(
        tmp_path / "raw", "test"
    ) == ["synthetic002"]
    view = next(iter(Taskonomy(shards, 0, batch_size=2).train_dataloader()))
    assert view["rgb"].shape == (2, 3, 16, 16) and view["segment"].shape == (2, 16, 16)
    assert 0 < float(view["depth"].max()) < 10 and float(view["normal"].abs().max()) <= 1


def test_views_at_the_networks_size_keep_every_label_as_it_was(tmp_path):
    """`size`: the paper's networks take 256 × 256. The photograph is resampled smoothly; depth, normals,
    edges and classes by nearest neighbour, so each is a value the stored views had (no depth between a wall
    and the void, no class between two); budget batches are resized alike."""
    shards = synthetic_shards(Taskonomy, tmp_path, buildings=3, points=4, views=2, size=16)
    data = Taskonomy(shards, 0, batch_size=2, budget=2, size=40)
    stored = [decode_view(s) for s in data.read_all("train")]
    batch = next(iter(data.train_dataloader()))[0]
    for view in (batch["full"], batch["budget"]):
        assert view["rgb"].shape == (2, 3, 40, 40) and view["segment"].shape == (2, 40, 40)
        assert view["segment"].dtype == stored[0]["segment"].dtype and view["depth"].shape == (2, 1, 40, 40)
    for name in ("depth", "segment", "edges"):
        before = {v for s in stored for v in s[name].unique().tolist()}
        assert set(batch["full"][name].unique().tolist()) <= before, name
    assert 0 <= float(batch["full"]["rgb"].min()) and float(batch["full"]["rgb"].max()) <= 1.0001


def test_training_batches_carry_a_budget_of_the_first_views(tmp_path):
    shards = synthetic_shards(Taskonomy, tmp_path, buildings=3, points=4, views=2, size=16)
    batch = next(iter(Taskonomy(shards, 0, batch_size=4, budget=2).train_dataloader()))[0]
    assert batch["full"]["rgb"].shape[0] == 4 and batch["budget"]["rgb"].shape[0] == 2


def test_a_view_missing_a_domain_and_a_bad_layout_are_named(tmp_path):
    synthesize(tmp_path, 0, buildings=3, points=1, views=1, size=16)
    (tmp_path / "normal/taskonomy/synthetic000/point_0_view_0_domain_normal.png").unlink()
    assert "point_0_view_0_domain_normal.png" in next(iter(samples(tmp_path, "train")))["__error__"]
    (tmp_path / "splits.csv").unlink()
    with pytest.raises(DataError, match="splits.csv"):
        Taskonomy.check_layout(tmp_path)
