"""Prototypical Networks for Few-shot Learning (Snell, Swersky & Zemel, NeurIPS 2017, arXiv:1703.05175).

Paper:    embed support and query images; a class prototype is the mean support embedding (Eq. 1); a query
          is classified by a softmax over negative squared Euclidean distances to the prototypes (Eq. 2).
Faithful: 4 × [3×3 conv 64, BN, ReLU, 2×2 max-pool] encoder, 28×28 → 64-d; squared Euclidean distance;
          Adam 1e-3 halved every 2000 episodes; 60-way 5-query training episodes; Vinyals split with
          rotations as classes; test on 1000 episodes of 15 queries per class, mean with a 95% CI.
Differs:  the paper trains one model per shot (1-shot and 5-shot); one run here trains at `data.shot`
          and is tested at every (way, shot) of Table 1, so the other shot's figures are a lower bound.
          A fixed step budget replaces the code's early stopping on validation accuracy; the best
          validation checkpoint is the one evaluated.
          Results on the synthetic replica are `not_comparable`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn

from datamodules.episodes import Episode
from lightning_modules.common import log_means
from lightning_modules.paper import Claim, Mode, Paper

PAPER = Paper(
    key="protonets",
    title="Prototypical Networks for Few-shot Learning",
    authors="Snell, Swersky, Zemel",
    year=2017,
    arxiv="1703.05175",
    dataset="omniglot",
    claims=(  # Table 1, Omniglot test accuracy (shared/paper-claims.md); tolerance: the paper's own spread
        Claim("test/acc_5way_1shot", claimed=0.988, source="Table 1", tolerance=0.01),
        Claim("test/acc_5way_5shot", claimed=0.997, source="Table 1", tolerance=0.01),
        Claim("test/acc_20way_1shot", claimed=0.960, source="Table 1", tolerance=0.01),
        Claim("test/acc_20way_5shot", claimed=0.989, source="Table 1", tolerance=0.01),
    ),
)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def encoder(in_channels: int = 1, hidden: int = 64) -> nn.Sequential:
    """(n, C, 28, 28) → (n, 64): four blocks halve 28 → 14 → 7 → 3 → 1 (§3.1)."""
    widths = (in_channels, hidden, hidden, hidden)
    return nn.Sequential(*(conv_block(w, hidden) for w in widths), nn.Flatten())


def prototypes(support: Tensor) -> Tensor:
    """(way, shot, dim) → (way, dim): the mean support embedding of each class (Eq. 1)."""
    return support.mean(dim=1)


def logits(support: Tensor, query: Tensor) -> Tensor:
    """(way, shot, dim), (n, dim) → (n, way): negative squared Euclidean distances to the prototypes (Eq.
    2)."""
    return -torch.cdist(query, prototypes(support)).pow(2)


def mean_and_ci95(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over episodes and the half-width of its 95% normal confidence interval, as the paper reports."""
    return values.mean(), 1.96 * values.std(unbiased=True) / values.numel() ** 0.5


class ProtoNets(pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/acc", "max")

    def __init__(
        self,
        *,
        lr: PositiveFloat = 1e-3,  # Adam
        lr_halve_every: PositiveInt = 2000,  # episodes
        in_channels: PositiveInt = 1,
        hidden: PositiveInt = 64,
    ):
        super().__init__()
        self.save_hyperparameters()  # plain numbers only, so load_from_checkpoint needs nothing else
        self.encoder = encoder(in_channels, hidden)
        self.example_input_array = torch.zeros(2, in_channels, 28, 28)  # the logged model's signature
        self.test_accuracies: dict[str, list[Tensor]] = defaultdict(list)

    def forward(self, images: Tensor) -> Tensor:
        """(n, C, 28, 28) → (n, 64) embeddings: what the logged model serves (prototypes are built from
        them)."""
        return self.encoder(images)

    def episode_scores(self, episode: Episode) -> Tensor:
        """Scores (way * query, way) for the queries of one episode."""
        way, shot = episode.support.shape[:2]
        z = self(torch.cat([episode.support.flatten(0, 1), episode.query.flatten(0, 1)]))
        return logits(z[: way * shot].view(way, shot, -1), z[way * shot :])

    def episode_loss(self, episode: Episode) -> tuple[Tensor, Tensor]:
        scores = self.episode_scores(episode)
        accuracy = (scores.argmax(1) == episode.query_labels).float().mean()
        return F.cross_entropy(scores, episode.query_labels), accuracy

    def training_step(self, episode: Episode, batch_idx: int) -> Tensor:
        loss, acc = self.episode_loss(episode)
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True)
        return loss

    def validation_step(self, episode: Episode, batch_idx: int) -> None:
        loss, acc = self.episode_loss(episode)
        log_means(self, {"val/loss": loss, "val/acc": acc}, len(episode.query_labels), prog_bar=True)

    def test_step(self, episode: Episode, batch_idx: int, dataloader_idx: int = 0) -> None:
        way, shot = episode.support.shape[:2]
        self.test_accuracies[f"test/acc_{way}way_{shot}shot"].append(self.episode_loss(episode)[1])

    def on_test_epoch_end(self) -> None:
        for key, accuracies in sorted(self.test_accuracies.items()):
            per_episode = self.all_gather(torch.stack(accuracies)).flatten()  # every rank's episodes
            mean, ci95 = mean_and_ci95(per_episode)
            self.log_dict({key: mean, f"{key}_ci95": ci95}, rank_zero_only=True)  # the claim's key
        self.test_accuracies.clear()

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """One 5-way 5-shot episode of held-out characters (validation's: a test split may be fixed runs of
        another shape): support rows, then the queries framed green (right) or red (wrong)."""
        import matplotlib.pyplot as plt

        episode = next(iter(data.episodes("val", way=5, shot=5, query=5, count=1)))
        self.eval()
        predicted = self.episode_scores(episode).argmax(1).view(5, 5)
        figure, axes = plt.subplots(5, 10, figsize=(10, 5.4))
        for row in range(5):
            for col in range(10):
                image = episode.support[row, col] if col < 5 else episode.query[row, col - 5]
                ax = axes[row, col]
                ax.imshow(image[0], cmap="gray_r")
                ax.set_xticks([]), ax.set_yticks([])
                if col >= 5:
                    for spine in ax.spines.values():
                        spine.set(color="green" if predicted[row, col - 5] == row else "red", linewidth=3)
        figure.suptitle("ProtoNets: support (left), queries classified by nearest prototype (right)")
        return {"held_out_episode": figure}

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        # One optimizer step is one episode, so the paper's "every 2000 episodes" is a step interval.
        halve = torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.hparams.lr_halve_every, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": halve, "interval": "step"}}
