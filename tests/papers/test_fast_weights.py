"""Fast weights: the unrolled form of A(t), per-sequence memory, gradients only to slow weights, learning."""

import numpy as np
import torch

from datamodules.associative_retrieval import VOCABULARY, AssociativeRetrieval, example
from lightning_modules.fast_weights import IRNN, PAPER, FastWeights, FastWeightsCell
from tests.helpers import synthetic_shards
from tests.papers.helpers import fit_and_score


def test_fast_weights_equal_the_unrolled_sum_of_outer_products():
    cell = FastWeightsCell(5, 4, lam=0.9, eta=0.5)
    x = torch.randn(2, 6, 5)
    _, kept = cell(x, keep_fast_weights=True)
    # Recompute the hidden states, then A(t) = η Σ_{τ ≤ t} λ^{t−τ} h(τ) h(τ)ᵀ with h(0) = 0.
    states = [torch.zeros(2, 4)]
    for t in range(6):
        states.append(cell(x[:, : t + 1])[0])
    for t, A in enumerate(kept):
        expected = sum(
            0.5 * 0.9 ** (t - tau) * states[tau][:, :, None] * states[tau][:, None, :] for tau in range(t + 1)
        )
        assert torch.allclose(A, expected, atol=1e-5)


def test_memory_is_reset_for_every_sequence_and_only_slow_weights_learn():
    cell = FastWeightsCell(5, 4)
    x = torch.randn(3, 4, 5)
    assert torch.allclose(cell(x)[0], cell(x)[0]) and torch.allclose(
        cell(x[:1])[0], cell(x)[0][:1], atol=1e-6
    )
    assert {name for name, _ in cell.named_parameters()} == {
        "W.weight",
        "C.weight",
        "C.bias",
        "norm.weight",
        "norm.bias",
    }


def test_irnn_starts_from_the_identity():
    assert torch.equal(IRNN(5, 4).rnn.weight_hh_l0, torch.eye(4))


def test_generator_makes_the_papers_example_format():
    text, value = example(np.random.default_rng(0), 4)
    assert len(text) == 11 and text[8:10] == "??" and text[10] in text[:8:2]
    assert text[text.index(text[10]) + 1] == str(value) and set(text) <= set(VOCABULARY)


def test_claims_are_table_1_and_one_run_trains_and_logs_its_every_cell():
    assert len(PAPER.claims) == 9
    assert {c.metric: c.claimed for c in PAPER.claims}["test/err_fast_weights_r20"] == 0.0181
    module = FastWeights()
    assert {f"test/err_{name}" for name in module.nets} == {c.metric for c in PAPER.claims}
    assert module(torch.zeros(3, 11, dtype=torch.long)).shape == (3, 9, 10)


def test_nets_trained_side_by_side_get_the_gradients_they_would_get_alone():
    module, tokens, values = (
        FastWeights(models=("fast_weights", "lstm"), hidden=(5,)),
        torch.randint(0, 37, (4, 11)),
        torch.randint(0, 10, (4,)),
    )
    module.step((tokens, values), "train").backward()
    together = module.nets["lstm_r5"].head.weight.grad.clone()
    module.zero_grad()
    alone = torch.nn.functional.cross_entropy(module(tokens)[:, 1], values)
    alone.backward()
    assert torch.allclose(together, module.nets["lstm_r5"].head.weight.grad)


def test_fast_weights_learn_the_retrieval_task(tmp_path):
    """Learning, not the paper's comparison: the R × model table is the paper-profile run (Table 1)."""
    shards = synthetic_shards(AssociativeRetrieval, tmp_path, pairs=2, train=4000, val=200, test=400)
    data = AssociativeRetrieval(shards, 0, batch_size=64)
    before, after = fit_and_score(
        FastWeights(models=("fast_weights",), hidden=(20,), lr=1e-2),
        data,
        steps=250,
        metric="test/err_fast_weights_r20",
    )
    assert before > 0.8 and after < 0.6, (before, after)  # chance error is 0.9


def test_the_rate_drops_tenfold_at_each_milestone_and_stays_constant_without_one():
    def rates(milestones, steps=7):
        model = FastWeights(hidden=(4,), models=("irnn",), lr=1.0, lr_milestones=milestones)
        optimizer, scheduler = (lambda c: (c["optimizer"], c["lr_scheduler"]["scheduler"]))(
            model.configure_optimizers()
        )
        seen = []
        for _ in range(steps):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step(), scheduler.step()
        return seen

    assert rates(()) == [1.0] * 7
    assert np.allclose(rates((2, 5)), [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01])
