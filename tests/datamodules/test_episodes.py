"""The episode sampler: deterministic, resumable at any step, distinct per rank, even across ranks. FaceNet's
identity batches: many photos of a few people, the rest random negatives, whatever each person has."""

import pytest
import torch

from datamodules.episodes import EpisodeSampler, IdentityBatches
from datamodules.files import DataError


def classes() -> list[torch.Tensor]:
    return [torch.full((20, 1, 2, 2), float(c)) for c in range(30)]


def first(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_episodes_are_deterministic_and_resume_exactly():
    full = first(EpisodeSampler(classes(), way=5, shot=1, query=2, seed=0), 10)
    again = first(EpisodeSampler(classes(), way=5, shot=1, query=2, seed=0), 10)
    resumed = first(EpisodeSampler(classes(), way=5, shot=1, query=2, seed=0, start=6), 4)
    assert all(torch.equal(a.support, b.support) for a, b in zip(full, again))
    assert all(torch.equal(a.support, b.support) for a, b in zip(full[6:], resumed))


def test_an_episode_draws_distinct_classes_and_distinct_images():
    episode = first(EpisodeSampler(classes(), way=5, shot=2, query=3, seed=1), 1)[0]
    class_values = episode.support[:, 0, 0, 0, 0]
    assert len(set(class_values.tolist())) == 5
    assert torch.equal(
        episode.query[:, :, 0, 0, 0], class_values[:, None].expand(5, 3)
    )  # queries match classes


def test_ranks_draw_different_training_episodes(monkeypatch):
    import datamodules.episodes as episodes

    monkeypatch.setattr(episodes, "rank_and_world", lambda: (1, 2))
    rank1 = first(EpisodeSampler(classes(), way=5, shot=1, query=1, seed=0), 3)
    monkeypatch.setattr(episodes, "rank_and_world", lambda: (0, 2))
    rank0 = first(EpisodeSampler(classes(), way=5, shot=1, query=1, seed=0), 3)
    assert not any(torch.equal(a.support, b.support) for a, b in zip(rank0, rank1))


def test_evaluation_episodes_are_split_across_ranks_without_padding(monkeypatch):
    import datamodules.episodes as episodes

    def drawn(rank, world):
        monkeypatch.setattr(episodes, "rank_and_world", lambda: (rank, world))
        sampler = EpisodeSampler(classes(), way=5, shot=1, query=1, seed=0, episodes=7)
        return [episode.support.sum().item() for episode in sampler]

    split = [drawn(0, 2), drawn(1, 2)]
    assert [len(s) for s in split] == [4, 3]  # 7 episodes: none padded, none dropped
    assert sorted(split[0] + split[1]) == sorted(drawn(0, 1))


def people(*counts: int) -> list[torch.Tensor]:
    """Person p's photo i is a 1×1 image holding 100·p + i, so a batch says whose photos it drew."""
    return [torch.tensor([100.0 * p + i for i in range(n)]).view(n, 1, 1, 1) for p, n in enumerate(counts)]


def owners(images: torch.Tensor) -> list[int]:
    return (images.flatten() // 100).long().tolist()


def test_identity_batches_take_what_each_person_has_then_random_negatives():
    batches = IdentityBatches(people(40, 1, 3, 1, 2, 1, 5, 1), identities=3, faces=4, size=12, seed=0)
    images, labels = first(batches, 1)[0]
    assert len(images) == 12 and owners(images) == labels.tolist()  # labels name each photo's person
    assert len(images.unique()) == 12  # no photo twice in a batch
    chosen = labels.unique_consecutive()[:3].tolist()
    positives = sum(min(4, [40, 1, 3, 1, 2, 1, 5, 1][p]) for p in chosen)
    assert all(p in (0, 2, 4, 6) for p in chosen)  # only people with two or more photos are anchors
    assert labels[:positives].unique_consecutive().tolist() == chosen  # up to 4 faces each, grouped
    assert not set(labels[positives:].tolist()) & set(chosen)  # the negatives are other people's


def test_identity_batches_are_resumable_and_stop_filling_when_full():
    batches = IdentityBatches(people(40, 40, 40), identities=3, faces=4, size=5, seed=0)
    drawn = first(batches, 6)
    images, labels = drawn[0]
    assert len(images) == 5 and labels.unique_consecutive().numel() == 2  # 4 + 1: no one alone left out
    resumed = first(IdentityBatches(people(40, 40, 40), identities=3, faces=4, size=5, seed=0, start=4), 2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(drawn[4:], resumed))


def test_identity_batches_need_someone_with_two_photos():
    with pytest.raises(DataError, match="two or more photos.* 3 people have one each"):
        IdentityBatches(people(1, 1, 1), identities=2, faces=2, size=4, seed=0)
