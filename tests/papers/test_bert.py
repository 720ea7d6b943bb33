"""BERT: BERT-base's size, weight decay groups, never judged on a stand-in corpus, and a small model
learns."""

import pytest
import torch

from datamodules.wikitext103 import WikiText103
from lightning_modules.bert import BERT, PAPER, decayed_and_not
from pipelines.claims import comparable
from pipelines.config import Recipe
from tests.papers.helpers import fit_and_score


def test_bert_base_has_about_110_million_parameters():
    with torch.device("meta"):  # sizes only: nothing is allocated
        model = BERT(vocab_size=30_522)
    count = sum(p.numel() for p in model.bert.parameters())
    assert 108e6 < count < 112e6, count


def test_biases_and_layer_norms_are_not_decayed():
    model = BERT(vocab_size=100, layers=1, hidden=16, heads=2)
    decayed, plain = decayed_and_not(model.bert, 0.01)
    assert all(p.ndim > 1 for p in decayed["params"]) and plain["weight_decay"] == 0.0
    assert model.bert.bert.embeddings.LayerNorm.weight in plain["params"]


def test_claims_are_table_6_and_never_judged_on_wikitext():
    assert {c.metric for c in PAPER.claims} >= {"test/mlm_ppl_l12_h768_a12", "test/mlm_ppl_l24_h1024_a16"}
    recipe = Recipe(
        key="bert",
        paper="bert",
        dataset="wikitext103",
        profile="paper",
        seed=0,
        hparams={},
        data={},
        trainer=None,
    )
    assert not comparable(recipe, "download")


@pytest.mark.slow
def test_a_small_bert_learns_the_masked_words_of_real_text(wikitext_shards):
    data = WikiText103(wikitext_shards, 0, layout="pretraining", batch_size=16, max_length=64)
    model = BERT(
        vocab_size=data.meta["vocab_size"],
        layers=2,
        hidden=64,
        heads=2,
        max_positions=64,
        lr=2e-3,
        warmup_steps=10,
    )
    before, after = fit_and_score(model, data, steps=80, metric="test/mlm_ppl_l2_h64_a2")
    assert after < 0.5 * before, (before, after)


def test_the_masked_lm_loss_is_per_token_so_its_exp_is_the_perplexity_and_never_nan():
    """A batch that masked no token used to make the epoch's val/mlm_loss NaN (the checkpoint monitor), and a
    mean of batch means is no perplexity. Averaged over masked tokens, exp(val/mlm_loss) equals torchmetrics'
    perplexity on the same batches, whatever their mix."""
    torch.manual_seed(0)
    model = BERT(vocab_size=50, layers=1, hidden=16, heads=2, max_positions=16)
    metrics = model.metrics["val"]
    for masked in (1, 0, 9):  # the middle batch masks nothing
        labels = torch.full((2, 8), -100)
        labels.view(-1)[:masked] = torch.randint(5, 50, (masked,))
        batch = {
            "input_ids": torch.randint(5, 50, (2, 8)),
            "token_type_ids": torch.zeros(2, 8, dtype=torch.long),
            "attention_mask": torch.ones(2, 8, dtype=torch.long),
            "labels": labels,
            "next_sentence_label": torch.tensor([0, 1]),
        }
        model.evaluation_step(batch, "val")
    loss, perplexity = metrics["mlm_loss"].compute(), metrics[f"mlm_ppl_{model.size}"].compute()
    assert torch.isfinite(loss) and torch.allclose(loss.exp(), perplexity, rtol=1e-5)
