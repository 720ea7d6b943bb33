"""FaceNet: A Unified Embedding for Face Recognition and Clustering (Schroff, Kalenichenko & Philbin, CVPR
2015, arXiv:1503.03832).

Paper:    a CNN maps a face to a 128-d unit vector; a triplet loss pulls an anchor's own faces within a margin
          α of it and pushes others beyond; triplets are mined online, with semi-hard negatives, inside large
          batches of many faces per identity; verification thresholds the squared distance.
Faithful: 128-d L2-normalised embedding; triplet loss on squared distances with α = 0.2; every anchor-positive
          pair of a batch with a semi-hard negative d(a,p) < d(a,n) < d(a,p) + α (the nearest such); batches
          of ~1,800 faces, up to 40 of each of 45 people, the rest random negatives (§3.2); AdaGrad; LFW's
          10-fold protocol (threshold chosen on nine folds, applied to the tenth), accuracy as mean ± standard
          error over folds, and VAL at 1e-3 FAR (§5.1); the fixed-centre-crop evaluation variant.
Differs:  the backbone is torchvision's GoogLeNet (Inception v1: 5.7M parameters, 24% fewer than NN2's
          7.5M) or, for smoke runs, a small CNN; training uses LFW identities disjoint from the test pairs
          instead of the paper's private 100-200M-image set, so results are `not_comparable` even on real
          LFW; checkpoints are chosen on View-2-shaped pairs of 1 in 10 training people, held out from
          training; most LFW people have far fewer than 40 photos, so a batch holds what they have and more
          random negatives. Where a batch has no semi-hard negative for a pair, the farthest negative is used
          (as TensorFlow's semi-hard loss does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn
from torchvision.models import googlenet

from datamodules.files import DataError
from lightning_modules.paper import Claim, Mode, Paper

PAPER = Paper(
    key="facenet",
    title="FaceNet: A Unified Embedding for Face Recognition and Clustering",
    authors="Schroff, Kalenichenko, Philbin",
    year=2015,
    arxiv="1503.03832",
    dataset="lfw",
    claims=(
        Claim("test/lfw_acc", claimed=0.9887, source="§5.7 (fixed centre crop)", tolerance=0.005),
        # The paper gives VAL at 1e-3 FAR for its own hold-out photos, not for LFW; the same protocol on LFW's
        # pairs is what a reader can hold it against.
        Claim(
            "test/lfw_val_at_far_1e_3",
            claimed=0.894,
            source="Table 3 (NN2, hold-out set)",
            tolerance=0.016,
            verified=False,
        ),
    ),
)


def small_cnn(embedding: int) -> nn.Sequential:
    blocks = [
        nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
        for i, o in ((3, 32), (32, 64), (64, 128), (128, 128))
    ]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, embedding))


def build_backbone(name: str, embedding: int) -> nn.Module:
    if name == "googlenet":
        return googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=embedding)
    return small_cnn(embedding)


def squared_distances(embeddings: Tensor) -> Tensor:
    return torch.cdist(embeddings, embeddings).pow(2)


def semi_hard_triplets(embeddings: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """(anchor, positive, negative) indices: every positive pair, with its nearest semi-hard negative
    (§3.2)."""
    d = squared_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    anchors, positives = torch.nonzero(
        same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device), as_tuple=True
    )
    d_ap = d[anchors, positives][:, None]
    d_an = d[anchors]
    negative = ~same[anchors]
    semi_hard = negative & (d_an > d_ap) & (d_an < d_ap + margin)
    nearest_semi_hard = torch.where(semi_hard, d_an, torch.inf).argmin(1)
    farthest = torch.where(negative, d_an, -torch.inf).argmax(1)
    return anchors, positives, torch.where(semi_hard.any(1), nearest_semi_hard, farthest)


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2) -> Tensor:
    """Σ [‖f(a) − f(p)‖² − ‖f(a) − f(n)‖² + α]₊ averaged over the mined triplets (Eq. 1)."""
    a, p, n = semi_hard_triplets(embeddings, labels, margin)
    d = squared_distances(embeddings)
    return F.relu(d[a, p] - d[a, n] + margin).mean()


def other_folds(folds: Tensor, fold: Tensor) -> Tensor:
    """The pairs a fold's threshold is chosen on: the other folds' (LFW's protocol); where there is one fold
    only (a small held-out validation set), its own."""
    others = folds != fold
    return others if others.any() else folds == fold


def threshold_at_far(distances: Tensor, same: Tensor, far: float) -> Tensor:
    """§5.1's operating point: the largest distance threshold (a pair is accepted when d < threshold) whose
    false accept rate, the share of different-person pairs accepted, is at most `far`."""
    different = distances[~same].sort().values
    allowed = int(far * len(different))  # false accepts permitted
    return different[allowed] if allowed < len(different) else distances.new_tensor(float("inf"))


def ten_fold_validation_rate(distances: Tensor, same: Tensor, folds: Tensor, far: float) -> Tensor:
    """VAL (the share of same-person pairs accepted) at the threshold whose FAR on the nine other folds is at
    most `far`, averaged over the ten folds."""
    rates = []
    for fold in folds.unique():
        train, test = other_folds(folds, fold), folds == fold
        threshold = threshold_at_far(distances[train], same[train], far)
        rates.append((distances[test & same] < threshold).float().mean())
    return torch.stack(rates).nanmean()  # a fold without a same-person pair has no rate


def ten_fold_accuracy(distances: Tensor, same: Tensor, folds: Tensor) -> tuple[Tensor, Tensor]:
    """LFW's protocol: per fold, the threshold that is best on the other nine folds, scored on this one; the
    mean over folds and its standard error (the sample std over √folds), which is the "±" LFW results
    report."""
    scores = []
    for fold in folds.unique():
        train, test = other_folds(folds, fold), folds == fold
        candidates = torch.cat([distances[train], distances.new_tensor([0.0])]).sort().values
        thresholds = (candidates[:-1] + candidates[1:]) / 2 if len(candidates) > 1 else candidates
        accuracy = ((distances[train][None, :] < thresholds[:, None]) == same[train][None, :]).float().mean(1)
        best = thresholds[accuracy.argmax()]
        scores.append(((distances[test] < best) == same[test]).float().mean())
    scores = torch.stack(scores)
    return scores.mean(), scores.std(unbiased=True) / len(scores) ** 0.5


class FaceNet(pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/lfw_acc", "max")

    def __init__(
        self,
        *,
        backbone: Literal["googlenet", "small"] = "googlenet",
        embedding: PositiveInt = 128,
        margin: PositiveFloat = 0.2,
        lr: PositiveFloat = 0.05,
        image_size: PositiveInt = 160,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_backbone(backbone, embedding)
        self.embedded: dict[str, Tensor] = {}
        self.example_input_array = torch.zeros(2, 3, image_size, image_size)

    def forward(self, images: Tensor) -> Tensor:
        """(n, 3, H, W) → (n, 128) unit vectors: the embedding lives on the hypersphere (§3)."""
        return F.normalize(self.net(images), dim=1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch  # many faces of a few people, and random negatives (§3.2)
        embeddings = self(images.float() / 255.0)
        loss = triplet_loss(embeddings, labels, self.hparams.margin)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def embed(self, batch) -> None:
        images, keys = batch
        self.embedded.update(zip(keys, self(images)))

    def gathered(self) -> dict[str, Tensor]:
        """Every rank's embeddings (under DDP each rank embedded only its shards' faces): the protocol needs
        all the pairs, and every rank must log the same accuracy (best.ckpt is picked on it)."""
        if self.trainer.world_size == 1:
            return self.embedded
        everyone: list[dict] = [{} for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather_object(everyone, {k: v.cpu() for k, v in self.embedded.items()})
        return {k: v.to(self.device) for part in everyone for k, v in part.items()}

    def verification(self, stage: str) -> None:
        embedded = self.gathered()
        protocol = self.trainer.datamodule.verification_pairs(stage, embedded)
        pairs = [p for p in protocol if p["a"] in embedded and p["b"] in embedded]
        if pairs:
            a = torch.stack([embedded[p["a"]] for p in pairs])
            b = torch.stack([embedded[p["b"]] for p in pairs])
            same = torch.tensor([p["same"] for p in pairs], device=a.device)
            folds = torch.tensor([p["fold"] for p in pairs], device=a.device)
            distances = (a - b).pow(2).sum(1)
            mean, standard_error = ten_fold_accuracy(distances, same, folds)
            self.log_dict({f"{stage}/lfw_acc": mean, f"{stage}/lfw_acc_se": standard_error})
            rate = ten_fold_validation_rate(distances, same.bool(), folds, far=1e-3)
            self.log(f"{stage}/lfw_val_at_far_1e_3", rate)
        elif embedded:  # faces but no pair: the checkpoint monitor would go missing with no word why
            raise DataError(
                f"LFW {stage}: the {len(embedded)} faces scored form no same-person and different-person "
                "pair (validation needs a held-out person with two photos, and two held-out people)"
            )
        self.embedded.clear()

    def validation_step(self, batch, batch_idx: int) -> None:
        self.embed(batch)

    def on_validation_epoch_end(self) -> None:
        self.verification("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.embed(batch)

    def on_test_epoch_end(self) -> None:
        self.verification("test")

    def configure_optimizers(self):
        return torch.optim.Adagrad(self.parameters(), lr=self.hparams.lr)  # §4: AdaGrad

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """The ROC curve of the verification pairs (all folds)."""
        import matplotlib.pyplot as plt
        from torchmetrics.functional.classification import binary_auroc, binary_roc

        self.eval()
        images = data.images("test")
        pairs = [p for p in data.pairs["pairs"] if p["a"] in images and p["b"] in images]
        a, b = (self(torch.stack([images[p[k]] for p in pairs])) for k in ("a", "b"))
        scores, same = -(a - b).pow(2).sum(1), torch.tensor([int(p["same"]) for p in pairs])
        fpr, tpr, _ = binary_roc(scores, same)
        figure, axes = plt.subplots(figsize=(4.5, 4.5))
        axes.plot(fpr, tpr, label=f"AUC {binary_auroc(scores, same):.3f}")
        axes.plot([0, 1], [0, 1], "k:", linewidth=0.8)
        axes.set(xlabel="false accept rate", ylabel="validation rate", title="FaceNet on LFW pairs")
        axes.legend(loc="lower right")
        return {"roc": figure}
