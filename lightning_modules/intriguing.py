"""Intriguing properties of neural networks (Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow & Fergus,
ICLR 2014, arXiv:1312.6199).

Paper:    for every image x and target label l ≠ f(x) there is a small r with f(x + r) = l: minimise
          c·|r| + loss_f(x + r, l) subject to x + r ∈ [0, 1] with box-constrained L-BFGS, line-searching the
          largest c (smallest |r|) that still reaches l. Such examples transfer to other models.
Faithful: the MNIST models of Table 1 (FC10 softmax with weight decay λ, FC100-100-10, FC200-200-10,
          AE400-10); SciPy's L-BFGS-B for the box constraint; distortion sqrt(Σr²/n); a second model (a
          different architecture, trained on the same batches) that the adversarial examples are transferred
          to.
Differs:  AE400-10's autoencoder is trained jointly with its classifier rather than first; the c search is
          geometric (10⁰ … 10⁻⁶, then c = 0); |r|² replaces |r| in the objective so it is smooth for L-BFGS;
          the search runs on the first `adversarial_images` test images. Synthetic-data results are
          `not_comparable`; the bundled real digits are a 5,000-image subset of MNIST, so also not comparable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt
from scipy.optimize import minimize
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_modules.common import log_means
from lightning_modules.paper import Claim, Deviation, Mode, Paper


def table_1_row(
    net: str, train_err: float, err: float, distortion: float, tolerance: float, source: str = "Table 1"
) -> tuple[Claim, ...]:
    """A row of Table 1 (fractions): test error, mean minimum distortion, training error."""
    return (
        Claim(f"test/err_{net}", err, source, tolerance, higher_is_better=False),
        Claim(f"test/distortion_{net}", distortion, source, 0.02),
        Claim(
            f"test/train_err_{net}", train_err, f"{source}, training error", tolerance, higher_is_better=False
        ),
    )


PAPER = Paper(
    key="intriguing",
    title="Intriguing properties of neural networks",
    authors="Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus",
    year=2013,
    arxiv="1312.6199",
    dataset="mnist",
    claims=(  # Table 1, a row per net; FC10(λ), a softmax on the pixels with weight decay 10⁻ᵏ: fc10_wd<k>
        *table_1_row("fc100_100_10", 0.0, 0.0164, 0.058, 0.005),
        *table_1_row("ae400_10", 0.0057, 0.019, 0.086, 0.005),
        *table_1_row("fc10_wd4", 0.067, 0.074, 0.062, 0.01, "Table 1 (λ = 1e-4)"),
        *table_1_row("fc10_wd2", 0.1, 0.094, 0.1, 0.01, "Table 1 (λ = 1e-2)"),
        *table_1_row("fc10_wd0", 0.212, 0.2, 0.14, 0.01, "Table 1 (λ = 1e-0)"),
        # last: an experiment's headline is the first claim it measures, and FC200-200-10 is also the net the
        # other rows' examples are transferred to (trained beside them, at their λ)
        *table_1_row("fc200_200_10", 0.0, 0.0154, 0.065, 0.005),
    ),
    deviations=(
        Deviation(
            "the minimal perturbation is searched over a geometric grid of c (1 … 1e-6, then 0) with |r|² "
            "in the objective, where the paper line-searches c with |r|",
            moves_number=True,
            why="a coarser search finds a perturbation at least as large as the minimum: distortion can only "
            "rise",
            affects="distortion",
        ),
        Deviation(
            "AE400-10's autoencoder is trained jointly with its classifier rather than first",
            moves_number=True,
            affects="ae400",
        ),
        Deviation(
            "the transfer model trains beside the attacked one, on the same batches",
            moves_number=False,
            why="the two share no parameter, and SGD's updates are per parameter",
        ),
        Deviation(
            "SGD with momentum 0.9 at lr 0.1, batch 100, 20,000 steps",
            moves_number=False,
            why="a gap filled, not a departure: the paper gives only the weight decay λ",
        ),
    ),
)
Model = Literal["fc10", "fc100_100_10", "fc200_200_10", "ae400_10"]


def model_name(model: str, weight_decay: float) -> str:
    """The name metrics carry: FC10's rows differ only by λ = 10⁻ᵏ, so theirs says k (fc10_wd4 for 1e-4)."""
    return f"fc10_wd{round(-math.log10(weight_decay))}" if model == "fc10" and weight_decay > 0 else model


class Classifier(nn.Module):
    """One of Table 1's networks on flattened 28×28 digits; `reconstruction` is AE400-10's decoder loss."""

    def __init__(self, kind: str):
        super().__init__()
        hidden = {"fc10": [], "fc100_100_10": [100, 100], "fc200_200_10": [200, 200], "ae400_10": [400]}[kind]
        layers, width = [], 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.Sigmoid()]
            width = h
        self.features, self.head = nn.Sequential(nn.Flatten(), *layers), nn.Linear(width, 10)
        self.decoder = nn.Sequential(nn.Linear(400, 784), nn.Sigmoid()) if kind == "ae400_10" else None

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def reconstruction(self, x: Tensor) -> Tensor:
        return (
            F.mse_loss(self.decoder(self.features(x)), x.flatten(1))
            if self.decoder is not None
            else x.new_zeros(())
        )


def distortion(r: Tensor) -> Tensor:
    """sqrt(Σ r² / n), the paper's measure of how far an adversarial example is from its original."""
    return r.pow(2).mean().sqrt()


def adversarial(
    net: nn.Module, x: Tensor, target: int, cs=(1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)
) -> Tensor | None:
    """x + r with f(x + r) = target and x + r ∈ [0, 1], for the largest c in `cs` that reaches it (§4.1)."""
    device = next(net.parameters()).device
    shape, x0, original = (
        x.shape,
        x.detach().double().flatten().cpu().numpy(),
        x.detach().flatten().to(device),
    )
    wanted = torch.tensor([target], device=device)

    def objective(z: np.ndarray, c: float) -> tuple[float, np.ndarray]:
        image = torch.tensor(z, dtype=torch.float32, device=device, requires_grad=True)
        loss = c * (image - original).pow(2).sum() + F.cross_entropy(net(image.view(1, *shape)), wanted)
        loss.backward()
        return loss.item(), image.grad.double().cpu().numpy()

    for c in cs:
        z = minimize(
            objective,
            x0,
            args=(c,),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * x0.size,
            options={"maxiter": 100},
        ).x
        candidate = torch.tensor(z, dtype=torch.float32).view(shape)
        if net(candidate[None].to(device)).argmax(1).item() == target:
            return candidate
    return None


class Intriguing(pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return (f"val/err_{model_name(hparams['model'], hparams['weight_decay'])}", "min")

    def __init__(
        self,
        *,
        model: Model = "fc100_100_10",
        transfer_model: Model = "fc200_200_10",
        weight_decay: float = 1e-4,
        lr: PositiveFloat = 0.1,
        momentum: float = 0.9,
        adversarial_images: PositiveInt = 1000,  # the mean distortion over the first 1,000 test digits
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net, self.other = Classifier(model), Classifier(transfer_model)
        self.name = model_name(model, weight_decay)
        self.example_input_array = torch.zeros(2, 1, 28, 28)
        self.found: list[tuple[Tensor, Tensor, int, int]] = []

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, labels = batch
        total = 0.0
        for name, net in ((self.name, self.net), (self.hparams.transfer_model, self.other)):
            logits = net(images)
            loss = F.cross_entropy(logits, labels) + net.reconstruction(images)
            self.log_dict(
                {f"train/loss_{name}": loss, f"train/err_{name}": (logits.argmax(1) != labels).float().mean()}
            )
            total = total + loss
        return total

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        log_means(
            self, {f"val/err_{self.name}": (self.net(images).argmax(1) != labels).float().mean()}, len(labels)
        )

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        for name, net in ((self.name, self.net), (self.hparams.transfer_model, self.other)):
            log_means(
                self, {f"test/err_{name}": (net(images).argmax(1) != labels).float().mean()}, len(labels)
            )
        with torch.enable_grad(), torch.inference_mode(False):
            self.search(images.clone(), labels.clone())

    def search(self, images: Tensor, labels: Tensor) -> None:
        """Adversarial examples for a random wrong target, for the first `adversarial_images` test images."""
        generator = torch.Generator().manual_seed(len(self.found))
        for x, y in zip(images.cpu(), labels.cpu().tolist()):
            if len(self.found) >= self.hparams.adversarial_images:
                return
            target = (y + 1 + int(torch.randint(9, (1,), generator=generator))) % 10
            self.found.append((x, adversarial(self.net, x, target), y, target))

    def on_test_epoch_end(self) -> None:
        found = [(x, a, y) for x, a, y, _ in self.found if a is not None]
        name = self.name
        metrics = {f"test/adversarial_found_{name}": len(found) / max(1, len(self.found))}
        if found:
            originals, examples = torch.stack([x for x, _, _ in found]), torch.stack([a for _, a, _ in found])
            labels = torch.tensor([y for _, _, y in found])
            metrics[f"test/distortion_{name}"] = torch.stack([distortion(a - x) for x, a, _ in found]).mean()
            with (
                torch.no_grad()
            ):  # the other model, on examples made for this one (Table 2's cross-model column)
                other = lambda images: self.other(images.to(self.device)).argmax(1).cpu()  # noqa: E731
                metrics[f"test/transfer_err_{self.hparams.transfer_model}"] = (
                    (other(examples) != labels).float().mean()
                )
                metrics[f"test/clean_err_{self.hparams.transfer_model}"] = (
                    (other(originals) != labels).float().mean()
                )
        self.log_dict(metrics | self.training_errors())

    @torch.no_grad()
    def training_errors(self) -> dict[str, float]:
        """Table 1's first column: each net's error over every digit it trained on, in evaluation mode, with
        a binomial 95% half-width over those digits. Every rank scores the whole split: no sync needed."""
        data = self.trainer.datamodule if self._trainer is not None else None
        if data is None:  # a bare test loop, with no training split to score
            return {}
        split, nets = data.train_split, {self.name: self.net, self.hparams.transfer_model: self.other}
        digits = DataLoader(data.sampled(split), batch_size=1000)
        wrong = {
            name: sum(int((net(x.to(self.device)).argmax(1).cpu() != y).sum()) for x, y in digits)
            for name, net in nets.items()
        }
        seen = len(digits.dataset)
        return {
            f"test/train_err_{name}{suffix}": value
            for name, count in wrong.items()
            for suffix, value in (
                ("", count / seen),
                ("_ci95", 1.96 * math.sqrt(count * (seen - count)) / seen**1.5),
            )
        }

    def configure_optimizers(self):
        # λ‖w‖² as weight decay, as the paper's FC10(λ) rows; SGD with momentum (the paper does not say more).
        return torch.optim.SGD(
            self.parameters(),
            lr=self.hparams.lr,
            momentum=self.hparams.momentum,
            weight_decay=self.hparams.weight_decay,
        )

    def figures(self, data, history: dict) -> dict:
        """Originals, adversarial examples and their perturbation magnified ×10 (the paper's Fig. 5
        layout)."""
        import matplotlib.pyplot as plt

        shown = [(x, a, y, t) for x, a, y, t in self.found if a is not None][:8]
        figure, axes = plt.subplots(
            3, max(1, len(shown)), figsize=(1.3 * max(1, len(shown)), 4.2), squeeze=False
        )
        for col, (x, a, y, t) in enumerate(shown):
            for row, (image, title) in enumerate(((x, f"{y}"), (a, f"→ {t}"), ((a - x) * 10 + 0.5, "r ×10"))):
                axes[row, col].imshow(image[0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
                axes[row, col].set_title(title, fontsize=8)
                axes[row, col].axis("off")
        figure.suptitle(
            "adversarial examples (top: original, middle: adversarial, bottom: perturbation)", fontsize=9
        )
        return {"adversarial_examples": figure}
