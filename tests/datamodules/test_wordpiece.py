"""The WordPiece vocabulary beside wikitext103's shards: learned the same on every run (tokenizers' trainer
was not), merges by frequency with ties in the pair's text order, stopped by size or by the frequency
floor."""

import os
import subprocess
import sys

from datamodules.wordpiece import vocabulary, words
from tests.helpers import ROOT

SPECIAL = ["[PAD]", "[UNK]"]


def test_words_are_split_as_bert_splits_them():
    assert words(["Héllo, World! héllo"]) == {"hello": 2, ",": 1, "world": 1, "!": 1}


def test_the_most_frequent_pair_is_merged_first_and_ties_go_in_text_order():
    # aaab ×2, ab ×1: (a, ##a), (##a, ##a) and (##a, ##b) occur twice each; "##" sorts before letters
    vocab = vocabulary(["aaab aaab ab"], size=100, min_frequency=2, special=SPECIAL)
    assert vocab[:6] == ["[PAD]", "[UNK]", "##a", "##b", "a", "##aa"]
    assert vocab[6:] == ["##aab", "aaab"]  # then what remains twice; "ab" (once) stays below the floor


def test_the_size_caps_the_vocabulary():
    capped = vocabulary(["aaab aaab ab"], size=6, min_frequency=1, special=SPECIAL)
    assert len(capped) == 6 and capped[-1] == "##aa"


def test_two_processes_learn_the_same_vocabulary():
    """Python's string hashing differs per process (PYTHONHASHSEED), as Rust's did for tokenizers' trainer."""
    text = (ROOT / "README.md").read_text()  # some kilobytes of English
    learn = (
        "import sys; from datamodules.wordpiece import vocabulary; "
        "print('\\n'.join(vocabulary([sys.stdin.read()], 30_000, 2, ['[PAD]'])))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", learn],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and len(runs[0].splitlines()) > 500
