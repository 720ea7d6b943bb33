"""FaceNet: unit-norm embeddings, the semi-hard mining condition, the 10-fold protocol, learning on LFW-format
faces."""

import statistics

import pytest
import torch

from datamodules.held_out import verification_pairs
from datamodules.lfw import LFW
from lightning_modules.facenet import (
    FaceNet,
    semi_hard_triplets,
    ten_fold_accuracy,
    ten_fold_validation_rate,
    triplet_loss,
)
from tests.papers.helpers import fit_and_score


def test_embeddings_have_unit_norm():
    model = FaceNet(backbone="small", image_size=64)
    assert torch.allclose(model(torch.rand(3, 3, 64, 64)).norm(dim=1), torch.ones(3))


def test_mined_negatives_are_semi_hard_when_one_exists():
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(24, 8), dim=1)
    labels = torch.arange(6).repeat_interleave(4)
    a, p, n = semi_hard_triplets(embeddings, labels, margin=0.2)
    d = torch.cdist(embeddings, embeddings).pow(2)
    assert len(a) == 6 * 4 * 3 and (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    semi = (d[a, n] > d[a, p]) & (d[a, n] < d[a, p] + 0.2)
    available = [
        ((labels != labels[i]) & (d[i] > d[i, j]) & (d[i] < d[i, j] + 0.2)).any() for i, j in zip(a, p)
    ]
    assert semi.sum() > 0 and all(s or not av for s, av in zip(semi, available))


def test_triplet_loss_is_zero_when_every_negative_is_beyond_the_margin():
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert triplet_loss(embeddings, torch.tensor([0, 0, 1, 1])) == 0
    assert triplet_loss(embeddings, torch.tensor([0, 1, 0, 1])) > 0


def test_ten_fold_protocol_on_known_distances():
    # Folds 0-9; matched pairs at distance 0.1, mismatched at 0.9, except fold 3 has two swapped pairs.
    same = torch.tensor([True, False] * 10 * 5)
    folds = torch.arange(10).repeat_interleave(10)
    distances = torch.where(same, 0.1, 0.9)
    distances[30], distances[31] = 0.9, 0.1  # fold 3: one matched and one mismatched wrong
    mean, standard_error = ten_fold_accuracy(distances, same, folds)
    per_fold = [1.0] * 3 + [0.8] + [1.0] * 6
    # LFW's "±": the standard error of the mean over the folds (the sample std / √10), as the paper reports it
    assert torch.isclose(mean, torch.tensor(statistics.mean(per_fold)))
    assert torch.isclose(standard_error, torch.tensor(statistics.stdev(per_fold) / 10**0.5))


@pytest.mark.slow
def test_learns_lfw_format_identities(lfw_shards):
    model = FaceNet(backbone="small", image_size=64, lr=0.05)
    data = LFW(lfw_shards, 0, size=64, crop=200, identities_per_batch=8, faces_per_identity=2, batch_size=16)
    before, after = fit_and_score(model, data, steps=60, metric="test/lfw_acc")
    assert after > 0.7 and after > before, (before, after)


def gather_on_rank(rank: int, port: int, results) -> None:
    import types

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    module = types.SimpleNamespace(
        trainer=types.SimpleNamespace(world_size=2),
        device=torch.device("cpu"),
        embedded={f"face{rank}": torch.full((2,), float(rank))},
    )
    results[rank] = sorted(FaceNet.gathered(module))
    dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_every_rank_scores_every_pair():
    """Each rank embedded only its shards' faces and scored the pairs it happened to hold (0.667 on one rank,
    0.611 on the other where one process gave 0.567): the embeddings are now gathered first."""
    import torch.multiprocessing as mp

    from pipelines.processes import free_port

    results = mp.Manager().dict()
    mp.start_processes(gather_on_rank, args=(free_port(), results), nprocs=2, start_method="spawn")
    assert dict(results) == {0: ["face0", "face1"], 1: ["face0", "face1"]}


def test_a_small_held_out_set_still_gives_balanced_pairs_and_a_score():
    """Validation's pairs over held-out faces: as many same as different pairs, no face of a test person; with
    one fold only (a tiny set), the threshold is chosen on that fold and VAL has no NaN."""
    faces = ["Ann/Ann_0001", "Ann/Ann_0002", "Bo/Bo_0001", "Cy/Cy_0001", "Cy/Cy_0002", "Cy/Cy_0003"]
    pairs = verification_pairs(faces, lambda key: key.split("/")[0], seed=0)
    assert sum(p["same"] for p in pairs) == sum(not p["same"] for p in pairs) >= 1
    assert all((p["a"].split("/")[0] == p["b"].split("/")[0]) == p["same"] for p in pairs)
    same = torch.tensor([p["same"] for p in pairs])
    folds = torch.tensor([p["fold"] for p in pairs])
    distances = torch.where(same, 0.1, 1.0)
    mean, _ = ten_fold_accuracy(distances, same, folds)
    assert mean == 1.0 and ten_fold_validation_rate(distances, same, folds, far=1e-3) == 1.0
