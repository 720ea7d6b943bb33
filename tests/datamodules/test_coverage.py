"""Evaluation sees every sample exactly once (issue 23): each experiment's own validation and test loaders,
on its smoke recipe's data, over 2 DDP ranks, over 4 workers in one process and over 2 ranks of 1 and 2
workers, score the very samples one process with no workers scores, none dropped, none twice. A rank is what
`rank_and_world()` says it is, which is all the loaders consult, so the ranks run here one after another.

The layouts with workers start real loader processes (about 0.15 s each, 2 s an experiment): they are the
slow half, run by `make test`; `make test-fast` checks the ranks' split alone."""

import hashlib
from collections import Counter

import pytest
import torch

from datamodules import DATASETS
from datamodules.episodes import evaluation_share
from datamodules.files import DataError
from pipelines import paths
from pipelines.config import load_params
from tests.helpers import ROOT, chdir

RANKS = [(2, 0)]  # (ranks, workers per rank)
# 4 workers split fewer shards than workers; 2 ranks of 1 and 2 split shards over ranks, then over workers
WORKERS = [(1, 4), (2, 1), (2, 2)]


def distinct_data_recipes() -> dict[str, str]:
    """One experiment per distinct (dataset, data settings): experiments sharing both share their loaders."""
    params, chosen = load_params(ROOT / "params.yaml"), {}
    for key in params.papers:
        recipe = params.recipe(key)
        chosen.setdefault(repr((recipe.dataset, sorted(recipe.data.items()))), key)
    return {key: key for key in chosen.values()}


def keyed(data) -> None:
    """Shard loaders yield each sample's key instead of its tensors."""
    for name in ("loader", "memory_loader"):
        original = getattr(data, name)

        def by_key(split, sample=None, original=original, **options):
            return original(split, lambda s: (s["__key__"],), **options)

        setattr(data, name, by_key)


def items(batch) -> list[str]:
    """A keyed batch's sample keys; an episode's (or a generated batch's) tensors, fingerprinted, as one."""
    if isinstance(batch, (list, tuple)) and len(batch) == 1 and all(isinstance(k, str) for k in batch[0]):
        return list(batch[0])
    tensors = list(batch.values() if isinstance(batch, dict) else batch)
    # A batch of generated items (MANN's sequences, BERT's pairs) splits into its rows: workers group rows
    # into batches differently.
    rows = len(tensors[0]) if len({len(t) for t in tensors}) == 1 else None
    parts = [[t[i] for t in tensors] for i in range(rows)] if rows else [tensors]
    return [hashlib.sha256(b"".join(t.numpy().tobytes() for t in part)).hexdigest() for part in parts]


ONE_PROCESS: dict[tuple[str, str], Counter] = {}  # the reference each test of a key and stage shares


def scored(project, key: str, stage: str, ranks: int, workers: int, monkeypatch) -> Counter:
    if (ranks, workers) == (1, 0) and (key, stage) in ONE_PROCESS:
        return ONE_PROCESS[key, stage]
    seen = Counter()
    with chdir(project):
        recipe = load_params().recipe(key)
        for rank in range(ranks):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", str(ranks))
            data = DATASETS[recipe.dataset](
                paths.shards(recipe.dataset), recipe.seed, **{**recipe.data, "num_workers": workers}
            )
            keyed(data)
            loaders = getattr(data, f"{stage}_dataloader")()
            for loader in loaders if isinstance(loaders, list) else [loaders]:
                seen.update(item for batch in loader for item in items(batch))
    if (ranks, workers) == (1, 0):
        ONE_PROCESS[key, stage] = seen
    return seen


@pytest.mark.parametrize(
    "layouts", [pytest.param(RANKS, id="ranks"), pytest.param(WORKERS, id="workers", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("stage", ["val", "test"])
@pytest.mark.parametrize("key", distinct_data_recipes())
def test_every_sample_is_evaluated_exactly_once_on_any_ranks_and_workers(
    all_data, key, stage, layouts, monkeypatch
):
    reference = scored(all_data, key, stage, 1, 0, monkeypatch)
    assert reference and max(reference.values()) == 1, (
        f"one process with no workers scores {key} {stage} twice"
    )
    dataset = load_params(ROOT / "params.yaml").recipe(key).dataset
    held_out = stage == "val" and DATASETS[dataset].held_out_every
    for ranks, workers in layouts:
        if held_out and len(reference) < ranks:
            # A streaming rank with no held-out sample never joins the metrics' final sync (a hang): refused.
            with pytest.raises(DataError, match=f"fewer than the {ranks} ranks"):
                scored(all_data, key, stage, ranks, workers, monkeypatch)
            continue
        assert scored(all_data, key, stage, ranks, workers, monkeypatch) == reference, (ranks, workers)


@pytest.mark.parametrize("count", [1, 7, 30, 31])
def test_evaluation_items_are_shared_without_padding(count, monkeypatch):
    """Episodes and generated batches: every index once over ranks × workers, whatever divides what."""

    class Worker:
        def __init__(self, id, num_workers):
            self.id, self.num_workers = id, num_workers

    for ranks, workers in [(1, 1), (1, 2), *RANKS, *WORKERS]:
        shares = []
        for rank in range(ranks):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", str(ranks))
            for worker in range(max(workers, 1)):  # no workers: the rank's own process, no worker info
                monkeypatch.setattr(
                    "datamodules.episodes.get_worker_info",
                    lambda w=worker, n=workers: Worker(w, n) if n else None,
                )
                shares.extend(evaluation_share(count))
        assert sorted(shares) == list(range(count)), (ranks, workers)


def test_a_memory_loader_under_ddp_brings_an_unrepeated_sampler(all_data, monkeypatch):
    """Lightning's own DistributedSampler pads the last rank with repeats (it leaves a loader that brings a
    DistributedSampler alone): over 2 ranks, an odd-sized split's indices appear once each, none twice."""
    shares = []
    with chdir(all_data):
        recipe = load_params().recipe("fast_weights")
        for rank in (0, 1):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", "2")
            data = DATASETS[recipe.dataset](paths.shards(recipe.dataset), recipe.seed, **recipe.data)
            data.memory_loader("val")
            data._in_memory["val"] = data._in_memory["val"][:7]  # odd: a padding sampler would repeat one
            sampler = data.memory_loader("val").sampler
            assert isinstance(sampler, torch.utils.data.DistributedSampler)
            shares += list(sampler)
    assert sorted(shares) == list(range(7))


@pytest.mark.parametrize("key", distinct_data_recipes())
def test_checkpoints_are_chosen_on_samples_no_number_is_reported_on_or_trained_on(all_data, key, monkeypatch):
    """Issue 23: validation (which picks best.ckpt) and test (which is reported) share no sample, and a
    split held out of training for validation is never trained on."""
    validated = scored(all_data, key, "val", 1, 0, monkeypatch)
    assert validated and not set(validated) & set(scored(all_data, key, "test", 1, 0, monkeypatch))
    with chdir(all_data):
        recipe = load_params().recipe(key)
        data = DATASETS[recipe.dataset](paths.shards(recipe.dataset), recipe.seed, **recipe.data)
        if data.held_out_every:
            trained = {s["__key__"] for s in data.read_all(data.train_split, held_out=False)}
            assert trained and not set(validated) & trained
