"""Using Fast Weights to Attend to the Recent Past (Ba, Hinton, Mnih, Leibo & Ionescu, NeurIPS 2016, arXiv:1610.06258).

Paper:    besides slow weights W, C a recurrent net keeps fast weights A(t) = λA(t−1) + η h(t)h(t)ᵀ, a decaying
          outer-product memory of recent hidden states; each step runs S inner iterations
          h_{s+1}(t+1) = f(LN[W h(t) + C x(t) + A(t) h_s(t+1)]) starting from h_0(t+1) = f(W h(t) + C x(t)).
Faithful: that cell with λ = 0.95, η = 0.5, S = 1, layer normalisation in the inner loop, ReLU; A reset for
          every sequence and never learned; the IRNN (identity-initialised ReLU RNN) and LSTM baselines at the
          same hidden size R; one-hot characters in, a softmax over the ten digits out; Adam.
Differs:  the A-LSTM baseline is not included; the paper's learning rate and schedule are not in
          paper-claims.md, so Adam's are params.yaml values. On the generated task results are comparable.
"""
from __future__ import annotations

from typing import Annotated, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from annotated_types import Gt
from torch import Tensor, nn

from datamodules.associative_retrieval import VOCABULARY
from lightning_modules.paper import Claim, Paper

PAPER = Paper(
    key="fast_weights", title="Using Fast Weights to Attend to the Recent Past",
    authors="Ba, Hinton, Mnih, Leibo, Ionescu", year=2016, arxiv="1610.06258", dataset="associative_retrieval",
    claims=tuple(  # Table 1: associative retrieval test error (fractions); R = number of recurrent units
        Claim(f"test/err_{model}_r{r}", claimed=err, source="Table 1", tolerance=0.02, higher_is_better=False)
        for model, row in {"irnn": (0.6211, 0.6023, 0.0034), "lstm": (0.6081, 0.0185, 0.0),
                           "fast_weights": (0.0181, 0.0, 0.0)}.items()
        for r, err in zip((20, 50, 100), row)),
)


class FastWeightsCell(nn.Module):
    """The recurrence of §2 over a whole sequence; A is per sequence, so it never outlives a batch."""

    def __init__(self, inputs: int, hidden: int, lam: float = 0.95, eta: float = 0.5, steps: int = 1):
        super().__init__()
        self.W, self.C, self.norm = nn.Linear(hidden, hidden, bias=False), nn.Linear(inputs, hidden), nn.LayerNorm(hidden)
        nn.init.eye_(self.W.weight)
        self.W.weight.data *= 0.05           # a small identity, as the paper's slow weights start
        self.hidden, self.lam, self.eta, self.steps = hidden, lam, eta, steps

    def forward(self, x: Tensor, keep_fast_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """(B, T, inputs) → the last hidden state (B, R), and every A(t) if asked (for tests)."""
        h = x.new_zeros(x.shape[0], self.hidden)
        A = x.new_zeros(x.shape[0], self.hidden, self.hidden)
        kept = []
        for t in range(x.shape[1]):
            A = self.lam * A + self.eta * h[:, :, None] * h[:, None, :]       # A(t) from h(t)
            boundary = self.W(h) + self.C(x[:, t])                            # W h(t) + C x(t)
            inner = F.relu(boundary)                                          # h_0(t+1)
            for _ in range(self.steps):
                inner = F.relu(self.norm(boundary + torch.bmm(A, inner[:, :, None])[:, :, 0]))
            h = inner
            if keep_fast_weights:
                kept.append(A)
        return h, kept


class IRNN(nn.Module):
    """Le, Jaitly & Hinton (2015): a ReLU RNN whose recurrent weights start as the identity."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.rnn = nn.RNN(inputs, hidden, nonlinearity="relu", batch_first=True)
        nn.init.eye_(self.rnn.weight_hh_l0)
        nn.init.normal_(self.rnn.weight_ih_l0, std=0.001)
        nn.init.zeros_(self.rnn.bias_hh_l0), nn.init.zeros_(self.rnn.bias_ih_l0)

    def forward(self, x: Tensor) -> tuple[Tensor, list]:
        return self.rnn(x)[1][0], []


class LSTM(nn.Module):
    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, batch_first=True)

    def forward(self, x: Tensor) -> tuple[Tensor, list]:
        return self.lstm(x)[1][0][0], []


class FastWeights(pl.LightningModule):
    paper = PAPER

    def __init__(self, *, cell: Literal["fast_weights", "lstm", "irnn"] = "fast_weights", hidden: Annotated[int, Gt(0)] = 20,
                 lam: Annotated[float, Gt(0)] = 0.95, eta: Annotated[float, Gt(0)] = 0.5, steps: Annotated[int, Gt(0)] = 1,
                 lr: Annotated[float, Gt(0)] = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        inputs = len(VOCABULARY)
        self.rnn = {"fast_weights": lambda: FastWeightsCell(inputs, hidden, lam, eta, steps),
                    "lstm": lambda: LSTM(inputs, hidden), "irnn": lambda: IRNN(inputs, hidden)}[cell]()
        self.head = nn.Linear(hidden, 10)
        self.name = f"{cell}_r{hidden}"
        self.monitor = (f"val/err_{self.name}", "min")
        self.example_input_array = torch.zeros(2, 11, dtype=torch.long)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) character indices → (B, 10) digit logits."""
        return self.head(self.rnn(F.one_hot(tokens, len(VOCABULARY)).float())[0])

    def step(self, batch, stage: str) -> Tensor:
        tokens, values = batch
        logits = self(tokens)
        loss, error = F.cross_entropy(logits, values), (logits.argmax(1) != values).float().mean()
        self.log_dict({f"{stage}/loss_{self.name}": loss, f"{stage}/err_{self.name}": error},
                      prog_bar=stage == "train", sync_dist=stage != "train")
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
