"""WikiText-103: articles split at top-level headings, unicode kept, a WordPiece vocabulary beside the shards."""
from tokenizers import BertWordPieceTokenizer

from datamodules.base import read_meta
from datamodules.wikitext103 import SPECIAL, WikiText103, articles
from tests.conftest import synthetic_shards

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
    assert parsed[0][1].splitlines() == ["Beyoncé Giselle Knowles @-@ Carter is an American singer .",
                                         "= = Early life = =", "She was born in Houston , Texas ."]


def test_round_trip_and_the_vocabulary(tmp_path):
    shards = synthetic_shards(WikiText103, tmp_path)
    meta = read_meta(shards)
    assert meta["splits"]["train"]["samples"] > 50 and meta["splits"]["val"]["samples"] > 0
    data = WikiText103(shards, 0, batch_size=2)
    batch = next(iter(data.train_dataloader()))
    assert len(batch) == 2 and all(isinstance(t, str) and len(t) > 20 for t in batch)
    vocab = data.vocab.read_text().splitlines()
    assert vocab[: len(SPECIAL)] == SPECIAL and len(vocab) == meta["vocab_size"] > 1000
    tokens = BertWordPieceTokenizer(str(data.vocab), lowercase=True).encode("The function returns an iterator.").tokens
    assert tokens[0] == "[CLS]" and "function" in tokens and "[UNK]" not in tokens
