"""WikiText-103: articles split at top-level headings, unicode kept, a WordPiece vocabulary beside the
shards."""

import numpy as np
import torch
from tokenizers import BertWordPieceTokenizer

from datamodules.pretraining import sentence_pairs, sentences
from datamodules.shards import read_meta
from datamodules.wikitext103 import SPECIAL, WikiText103, articles

RAW = """
 = Beyoncé = 

 Beyoncé Giselle Knowles @-@ Carter is an American singer . 

 = = Early life = = 

 She was born in Houston , Texas . 

 = 日本 = 

 Japan is an island country in East Asia . 
"""


def test_articles_split_at_titles_and_keep_sections_and_unicode(tmp_path):
    path = tmp_path / "wiki.test.raw"
    path.write_text(RAW, encoding="utf-8")
    parsed = list(articles(path))
    assert [title for title, _ in parsed] == ["Beyoncé", "日本"]
    assert parsed[0][1].splitlines() == [
        "Beyoncé Giselle Knowles @-@ Carter is an American singer .",
        "= = Early life = =",
        "She was born in Houston , Texas .",
    ]


def test_round_trip_and_the_vocabulary(wikitext_shards):
    shards = wikitext_shards
    meta = read_meta(shards)
    assert meta["splits"]["train"]["samples"] > 50 and meta["splits"]["val"]["samples"] > 0
    data = WikiText103(shards, 0, batch_size=2)
    batch = next(iter(data.train_dataloader()))
    assert len(batch) == 2 and all(isinstance(t, str) and len(t) > 20 for t in batch)
    vocab = data.vocab.read_text().splitlines()
    assert vocab[: len(SPECIAL)] == SPECIAL and len(vocab) == meta["vocab_size"] > 1000
    tokens = (
        BertWordPieceTokenizer(str(data.vocab), lowercase=True)
        .encode("The function returns an iterator.")
        .tokens
    )
    assert tokens[0] == "[CLS]" and "function" in tokens and "[UNK]" not in tokens


def test_sentences_split_after_full_stops_as_wikitext_writes_them():
    assert sentences("She was born in Houston , Texas . She sang .\n= = Career = =") == [
        "She was born in Houston , Texas .",
        "She sang .",
        "= = Career = =",
    ]


def test_sentence_pairs_are_true_continuations_or_taken_from_another_document():
    # Document d's sentence s holds the ids d·1000 + 10·s + (0..4): the origin of every token is readable.
    documents = [[[d * 1000 + 10 * s + i for i in range(5)] for s in range(12)] for d in range(6)]
    pairs = sentence_pairs(documents, max_length=32, rng=np.random.default_rng(0))
    assert all(len(a) + len(b) <= 29 for a, b, _ in pairs)
    labels = [label for *_, label in pairs]
    assert 0.3 < np.mean(labels) < 0.7
    for a, b, label in pairs:
        same_document = a[0] // 1000 == b[0] // 1000
        assert same_document == (label == 0)
        if label == 0:
            assert min(b) > max(a)  # B continues A (both maybe trimmed at an end)


def pretraining(shards, **kwargs):
    return WikiText103(shards, 0, layout="pretraining", **kwargs)


def test_masking_selects_15_percent_and_replaces_80_10_10_never_a_special_token(wikitext_shards):
    data = pretraining(wikitext_shards, batch_size=512, max_length=128)
    batch = next(iter(data.train_dataloader()))
    tokenizer = data.tokenizer()
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids)) & (
        batch["labels"] == -100
    )
    chosen = batch["labels"] != -100
    candidates = (batch["attention_mask"] == 1) & ~special
    assert abs(chosen.sum() / candidates.sum() - 0.15) < 0.01
    masked = batch["input_ids"][chosen] == tokenizer.mask_token_id
    kept = batch["input_ids"][chosen] == batch["labels"][chosen]
    assert abs(masked.float().mean() - 0.8) < 0.02 and abs(kept.float().mean() - 0.1) < 0.02
    assert abs((~masked & ~kept).float().mean() - 0.1) < 0.02  # a random token
    firsts = batch["input_ids"][:, 0]
    assert torch.all(firsts == tokenizer.cls_token_id) and not chosen[:, 0].any()  # [CLS] never chosen
    assert not chosen[batch["input_ids"] == tokenizer.sep_token_id].any()
    assert not chosen[batch["attention_mask"] == 0].any()  # nor padding


def test_segments_and_the_next_sentence_label(wikitext_shards):
    batch = next(iter(pretraining(wikitext_shards, batch_size=64, max_length=64).train_dataloader()))
    assert batch["input_ids"].shape[1] <= 64 and set(batch["next_sentence_label"].tolist()) == {0, 1}
    types = batch["token_type_ids"]
    assert torch.all(types[:, 0] == 0) and torch.all((types[:, 1:] - types[:, :-1]) >= -1)


def test_batches_resume_exactly_and_switch_to_the_long_length_at_the_step(wikitext_shards):
    data = pretraining(wikitext_shards, batch_size=4, max_length=32, long_max_length=128, long_after_step=3)
    stream = iter(data.train_dataloader())
    lengths = [next(stream)["input_ids"].shape[1] for _ in range(5)]
    assert max(lengths[:3]) <= 32 < max(lengths[3:])
    again = data.pretraining("train").dataset
    again.start = 2
    assert torch.equal(
        next(iter(again))["input_ids"],
        [b for b, _ in zip(iter(data.train_dataloader()), range(3))][2]["input_ids"],
    )


def test_held_out_batches_and_their_masks_are_the_same_at_every_evaluation(wikitext_shards):
    data = pretraining(wikitext_shards, batch_size=4, max_length=64)
    first, second = next(iter(data.val_dataloader())), next(iter(data.val_dataloader()))
    assert torch.equal(first["input_ids"], second["input_ids"]) and torch.equal(
        first["labels"], second["labels"]
    )
