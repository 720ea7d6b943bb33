"""MANN: LRUA on hand examples (least-used slot zeroed and written, usage formula), the one-step label
offset, instance numbering, episodes as streams, and a short training run."""

import pytest
import torch

from datamodules.omniglot import Omniglot
from lightning_modules.mann import (
    MANN,
    PAPER,
    LRUAMemoryNet,
    instance_numbers,
    shifted_labels,
    string_codes,
    usage_update,
)
from tests.papers.helpers import trainer


def test_the_least_used_slot_is_zeroed_then_written_and_no_other_slot_changes():
    net = LRUAMemoryNet(inputs=3, outputs=2, controller=8, slots=6, width=4, heads=1)
    torch.nn.init.constant_(net.gates.bias, -50.0)  # σ(α) ≈ 0: the write goes to the least-used slot
    state = net.initial_state(1, torch.zeros(1))
    state["memory"] = torch.full((1, 6, 4), 7.0)
    state["usage"] = torch.tensor([[0.9, 0.5, 0.8, 0.1, 0.7, 0.6]])  # slot 3 is least used
    _, after = net.step(torch.randn(1, 3), state)
    adds = torch.tanh(net.adds(after["h"]))
    assert torch.allclose(after["memory"][0, 3], adds[0], atol=1e-6)  # 7 erased, then the add vector
    assert torch.equal(after["memory"][0, [0, 1, 2, 4, 5]], torch.full((5, 4), 7.0))


def test_usage_update_matches_the_formula_on_a_hand_example():
    usage = torch.tensor([[1.0, 0.0, 0.5]])
    read = torch.tensor([[[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]]])  # two heads
    write = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    # γ w_u + Σ_heads w_r + Σ_heads w_w = 0.95·(1, 0, .5) + (.2, 1.3, .5) + (1, 0, 1)
    assert torch.allclose(usage_update(usage, read, write, 0.95), torch.tensor([[2.15, 1.3, 1.975]]))


def test_labels_are_shown_one_step_late_and_never_leak_into_their_own_step():
    encoding = torch.eye(3)
    assert torch.equal(
        shifted_labels(torch.tensor([[2, 0, 1]]), encoding),
        torch.tensor([[[0.0, 0, 0], [0, 0, 1], [1, 0, 0]]]),
    )
    model = MANN(classes=3, image_size=4, controller=8, slots=8, width=4, heads=2).eval()
    images, labels = torch.randn(1, 5, 1, 4, 4), torch.tensor([[0, 1, 2, 0, 1]])
    changed = labels.clone()
    changed[0, 2] = 0  # the label of step 2 changes ...
    before, after = model(images, labels), model(images, changed)
    assert torch.allclose(before[:, :, :3], after[:, :, :3])  # ... outputs up to step 2 do not
    assert not torch.allclose(before[:, :, 3:], after[:, :, 3:])


def test_instance_numbers_count_each_class_from_one():
    assert torch.equal(instance_numbers(torch.tensor([[3, 1, 3, 3, 1]])), torch.tensor([[1, 1, 2, 3, 2]]))


def test_string_labels_are_distinct_five_letter_codes():
    codes = string_codes(15)
    assert codes.shape == (15, 25) and len({tuple(c.tolist()) for c in codes}) == 15
    assert torch.equal(codes.view(15, 5, 5).sum(-1), torch.ones(15, 5))  # one letter per position


def test_claims_are_table_1_for_both_rows():
    table_1 = [c for c in PAPER.claims if c.source == "Table 1"]
    assert {c.row for c in table_1} == {"mann", "lstm"} and len(table_1) == 12
    assert {c.metric: c.claimed for c in PAPER.claims}["test/acc_mann_5way_inst2"] == 0.828


def test_episodes_are_streams_of_every_instance_in_random_order(omniglot_shards):
    data = Omniglot(omniglot_shards, 0, layout="sequences", batch_size=3, train_way=5, shot=10, image_size=20)
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (3, 50, 1, 20, 20)
    assert all(torch.equal(row.bincount(), torch.full((5,), 10)) for row in labels)
    assert not torch.equal(labels[0], labels[0].sort().values)


@pytest.mark.parametrize("labels", ["one_hot", "string"])
def test_both_label_encodings_train(omniglot_shards, labels):
    data = Omniglot(
        omniglot_shards,
        0,
        layout="sequences",
        batch_size=4,
        train_way=5,
        shot=10,
        image_size=12,
        val_episodes=8,
        test_settings=[(5, 10)],
        test_episodes=8,
    )
    model = MANN(classes=5, labels=labels, image_size=12, controller=32, slots=16, width=8, heads=2, lr=3e-3)
    trainer(6).fit(model, datamodule=data)
    metrics = trainer(1).test(model, datamodule=data, verbose=False)[0]
    setting = "5way" + ("_string" if labels == "string" else "")
    assert {f"test/acc_mann_{setting}_inst1", f"test/acc_lstm_{setting}_inst10"} <= set(metrics)
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if "/acc_" in k and "_minus_" not in k)
    margin = metrics[f"test/acc_mann_minus_lstm_{setting}_inst2"]  # Table 2's comparison, as a margin
    assert margin == pytest.approx(
        metrics[f"test/acc_mann_{setting}_inst2"] - metrics[f"test/acc_lstm_{setting}_inst2"], abs=1e-6
    )
