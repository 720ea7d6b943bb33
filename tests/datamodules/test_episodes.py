"""The episode sampler: deterministic, resumable at any step, distinct per rank, even across ranks."""

import torch

from datamodules.episodes import EpisodeSampler


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
