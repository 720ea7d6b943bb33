"""Recurrent Batch Normalization (Cooijmans, Ballas, Laurent, Gülçehre & Courville, ICLR 2017,
arXiv:1603.09025).

Paper:    the BN-LSTM normalises the input-to-hidden and hidden-to-hidden pre-activations separately and the
          cell state before the output tanh: gates = BN(W_h h; γ_h) + BN(W_x x; γ_x) + b,
          c_t = σ(f)⊙c_{t−1} + σ(i)⊙tanh(g), h_t = σ(o)⊙tanh(BN(c_t; γ_c, β_c)). Statistics are kept per time
          step up to T_max; longer test sequences reuse the last step's. γ starts at 0.1, not 1 (§4), so the
          tanh and sigmoids start in their linear range and gradients flow.
Faithful: that cell with β_h = β_x = 0 (the bias b does their job, §3), shared γ/β over time, per-step
          population statistics, orthogonal W_h, forget-gate bias 1; 100 hidden units; RMSProp lr 1e-3,
          batch 64; pixel-by-pixel sequential and permuted MNIST (one fixed permutation, saved in every
          checkpoint by the datamodule); the plain LSTM baseline trained beside it on the same batches.
          From the authors' sequential-MNIST script (cooijmanstim/recurrent-batch-normalization,
          experiments/sequentialmnist_bnlstm.sh): the gradient norm clipped at 1 and, in training, h_0 primed
          with N(0, 0.1²) noise (`noise`; their permuted script primes none). Without the noise every
          example's state is the same through the leading all-zero pixels, each step's batch variance is 0,
          and the backward multiplies by γ/√ε ≈ 32 per step until it overflows (NaN within the first step).
Differs:  no early stopping from the paper's code; the bundled 5,000 real digits (or a synthetic replica) are
          `not_comparable`; smoke runs read rows (28 steps of 28 pixels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt, conint
from torch import Tensor, nn

from lightning_modules.common import curves_figure, log_means
from lightning_modules.paper import Claim, Mode, Paper

PAPER = Paper(
    key="recurrent_bn",
    title="Recurrent Batch Normalization",
    authors="Cooijmans, Ballas, Laurent, Gülçehre, Courville",
    year=2016,
    arxiv="1603.09025",
    dataset="mnist",
    claims=tuple(  # Table 1: test accuracy on pixel-by-pixel MNIST and permuted MNIST
        Claim(
            f"test/acc_{model}_{task}", claimed=acc, source="Table 1", tolerance=0.01, row=model, column=task
        )
        for model, row in {"bn_lstm": (0.990, 0.954), "lstm": (0.989, 0.902)}.items()
        for task, acc in zip(("sequence", "permuted"), row)
    ),
)


class StepwiseBatchNorm(nn.Module):
    """Batch norm with its own population statistics for each time step t < T_max (step T_max − 1's beyond),
    and one γ (and β) shared by all steps."""

    def __init__(
        self, features: int, t_max: int, *, gamma: float = 0.1, shift: bool = True, momentum: float = 0.1
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.full((features,), gamma))
        self.bias = nn.Parameter(torch.zeros(features)) if shift else None
        self.register_buffer("running_mean", torch.zeros(t_max, features))
        self.register_buffer("running_var", torch.ones(t_max, features))
        self.t_max, self.momentum = t_max, momentum

    def forward(self, x: Tensor, t: int) -> Tensor:
        t = min(t, self.t_max - 1)
        # Row views of the buffers: batch_norm updates step t's statistics in place, and only those.
        return F.batch_norm(
            x,
            self.running_mean[t],
            self.running_var[t],
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            1e-5,
        )


class BNLSTM(nn.Module):
    """(B, T, inputs) → last hidden state (B, hidden)."""

    def __init__(self, inputs: int, hidden: int, t_max: int, gamma: float = 0.1, noise: float = 0.0):
        super().__init__()
        self.W_x, self.W_h = (
            nn.Linear(inputs, 4 * hidden, bias=False),
            nn.Linear(hidden, 4 * hidden, bias=False),
        )
        nn.init.orthogonal_(self.W_h.weight)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))
        with torch.no_grad():
            self.bias[:hidden] = 1.0  # forget gate (the first chunk) starts open
        self.bn_x = StepwiseBatchNorm(4 * hidden, t_max, gamma=gamma, shift=False)
        self.bn_h = StepwiseBatchNorm(4 * hidden, t_max, gamma=gamma, shift=False)
        self.bn_c = StepwiseBatchNorm(hidden, t_max, gamma=gamma)
        self.hidden, self.noise = hidden, noise

    def forward(self, x: Tensor) -> Tensor:
        h = c = x.new_zeros(x.shape[0], self.hidden)
        if self.training and self.noise:  # tells the examples apart before their first non-zero pixel
            h = torch.randn_like(h) * self.noise
        # Every step's W_x x in one matmul, split into per-step views once: indexing `projected[:, t]` in the
        # loop makes each step's backward allocate a zero gradient the size of the whole sequence (~40×).
        for t, projected in enumerate(self.W_x(x).unbind(1)):
            gates = self.bn_h(self.W_h(h), t) + self.bn_x(projected, t) + self.bias
            f, i, o, g = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.bn_c(c, t))
        return h


class LSTM(nn.Module):
    def __init__(self, inputs: int, hidden: int, **_):
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
        with torch.no_grad():
            self.lstm.bias_ih_l0[hidden : 2 * hidden] = 1.0  # PyTorch's gate order is i, f, g, o

    def forward(self, x: Tensor) -> Tensor:
        return self.lstm(x)[1][0][0]


class RecurrentBN(pl.LightningModule):
    """BN-LSTM and LSTM side by side on the same batches; the task (sequence or permuted) is the data's
    view."""

    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/acc_bn_lstm", "max")

    def __init__(
        self,
        *,
        hidden: PositiveInt = 100,
        t_max: PositiveInt = 784,
        pixels_per_step: PositiveInt = 1,
        gamma: PositiveFloat = 0.1,  # §4: γ 0.1
        noise: NonNegativeFloat = 0.1,  # std of h_0 in training (the authors' --noise 0.1)
        lr: PositiveFloat = 1e-3,  # RMSProp
        num_classes: conint(gt=1) = 10,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.nets = nn.ModuleDict(
            {
                "bn_lstm": BNLSTM(pixels_per_step, hidden, t_max, gamma, noise),
                "lstm": LSTM(pixels_per_step, hidden),
            }
        )
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, num_classes) for name in self.nets})
        self.example_input_array = torch.zeros(2, 784 // pixels_per_step, pixels_per_step)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, T, pixels_per_step) → (B, nets, classes)."""
        return torch.stack([self.heads[name](net(pixels)) for name, net in self.nets.items()], 1)

    @property
    def task(self) -> str:
        """ "sequence" or "permuted": the view of the MNIST datamodule this run reads."""
        data = self.trainer.datamodule if self._trainer is not None else None
        return getattr(data, "view", "sequence")

    def step(self, batch, stage: str) -> Tensor:
        pixels, labels = batch
        if pixels.shape[-1] != self.hparams.pixels_per_step:
            raise ValueError(
                f"the data gives {pixels.shape[-1]} pixels per step, hparams.pixels_per_step is "
                f"{self.hparams.pixels_per_step}; set data.pixels_per_step and hparams.pixels_per_step alike"
            )
        logits = self(pixels)
        losses = torch.stack([F.cross_entropy(logits[:, i], labels) for i in range(len(self.nets))])
        accuracies = (logits.argmax(2) == labels[:, None]).float().mean(0)
        suffix = f"_{self.task}" if stage == "test" else ""  # test keys name the task, as the claims do
        logged = {f"{stage}/loss_{name}{suffix}": loss for name, loss in zip(self.nets, losses)}
        logged |= {f"{stage}/acc_{name}{suffix}": acc for name, acc in zip(self.nets, accuracies)}
        if stage == "train":
            self.log_dict(logged, batch_size=len(labels))
        else:
            log_means(self, logged, len(labels))
        return losses.sum()

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr)

    def figures(self, data, history: dict) -> dict:
        return {
            "training_loss": curves_figure(
                history,
                [f"train/loss_{n}" for n in self.nets],
                "BN-LSTM vs LSTM, training loss (Fig. 1)",
                "cross-entropy",
            )
        }
