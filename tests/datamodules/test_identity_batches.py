"""FaceNet's identity batches: many photos of a few people, then random negatives, whatever each person has;
resumable at any batch."""

import pytest
import torch

from datamodules.files import DataError
from datamodules.identity_batches import IdentityBatches


def first(batches, n):
    it = iter(batches)
    return [next(it) for _ in range(n)]


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
