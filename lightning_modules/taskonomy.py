"""Taskonomy: Disentangling Task Transfer Learning (Zamir, Sax, Shen, Guibas, Malik & Savarese, CVPR 2018,
arXiv:1804.08328).

Paper:    (1) a task-specific encoder–decoder per task, trained with full supervision; (2) transfers: a
          shallow readout on a frozen source encoder's representation, trained for each target on a small
          labelled budget; (3) ordinal normalisation: per target, the pairwise win rates of its transfers on
          test images form W, W' = W / Wᵀ, and the principal eigenvector of W' (the Analytic Hierarchy
          Process) gives that target's column of the affinity matrix; (4) a Boolean integer program picks
          which source tasks to supervise under a budget and one transfer per target, maximising the summed
          affinities.
Faithful: those four stages in one run (stage 1 until `source_steps`, then the transfers on the `budget`
          views, beside each target's network trained from scratch on the same budget); win rates per image,
          AHP with the paper's clipping, the BIP as an integer program solved by scipy's `milp` (HiGHS), which
          accepts higher-order transfers (several sources); a target that is itself supervised may use its own
          network. Metrics: each target's test loss for its own network, the scratch baseline and the
          taxonomy's chosen transfer; the taxonomy's gain (win rate against scratch on the budget) and quality
          (against the fully supervised network), the paper's two measures. Outputs: the affinity matrix and
          the taxonomy as pictures.
Differs:  first-order transfers are trained (the BIP is written for any order); the encoder is a small
          convolutional one in smoke (ResNet-50 with `encoder: resnet50`); 2D edges are Sobel magnitudes and
          2D keypoints Harris responses (the paper: Canny and SURF). No numeric claim is judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import PositiveFloat, PositiveInt, conint
from torch import Tensor, nn

from datamodules.taskonomy import CLASSES
from lightning_modules.common import gather_lists
from lightning_modules.paper import Claim, Mode, Paper
from lightning_modules.taxonomy import taxonomy, taxonomy_figures

PAPER = Paper(
    key="taskonomy",
    title="Taskonomy: Disentangling Task Transfer Learning",
    authors="Zamir, Sax, Shen, Guibas, Malik, Savarese",
    year=2018,
    arxiv="1804.08328",
    dataset="taskonomy",
    claims=(  # §5: the taxonomy's transfers win against training from scratch on the same budget (verify)
        Claim("test/taxonomy_gain", claimed=0.5, source="§5, Fig. 8 (gain)", tolerance=0.0, verified=False),
    ),
)
Task = Literal[
    "autoencoding",
    "denoising",
    "colorization",
    "edge2d",
    "keypoint2d",
    "inpainting",
    "depth",
    "normal",
    "edge_occlusion",
    "segment",
]
SOBEL = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def gray(rgb: Tensor) -> Tensor:
    return (rgb * torch.tensor([0.299, 0.587, 0.114], device=rgb.device)[:, None, None]).sum(1, keepdim=True)


def gradients(image: Tensor) -> tuple[Tensor, Tensor]:
    kernel = SOBEL.to(image.device)
    return F.conv2d(image, kernel[None, None], padding=1), F.conv2d(image, kernel.T[None, None], padding=1)


def harris(image: Tensor, k: float = 0.05) -> Tensor:
    """Harris corner response, squashed to [0, 1]: where 2D keypoints sit."""
    gx, gy = gradients(image)
    smooth = lambda x: F.avg_pool2d(x, 5, 1, 2)  # noqa: E731
    xx, yy, xy = smooth(gx * gx), smooth(gy * gy), smooth(gx * gy)
    return torch.tanh(F.relu(xx * yy - xy * xy - k * (xx + yy) ** 2) * 10)


def centre_mask(image: Tensor) -> Tensor:
    size = image.shape[-1]
    mask = torch.zeros_like(image[:, :1])
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return mask


def task_io(task: str, view: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
    """(network input, target, pixels that count) of one task on a batch of views."""
    rgb = view["rgb"]
    if task == "denoising":
        # Noise drawn from the images themselves: reproducible (evaluation compares networks on the same noisy
        # inputs) yet different for every batch, so no network can learn one fixed pattern.
        seed = int((rgb.flatten()[:: max(1, rgb.numel() // 4096)] * 1e4).sum()) % 2**31
        noise = torch.randn(rgb.shape, generator=torch.Generator().manual_seed(seed)).to(rgb.device)
        return (rgb + 0.1 * noise).clamp(0, 1), rgb, None
    if task == "colorization":
        return gray(rgb).expand_as(rgb), rgb, None
    if task == "inpainting":
        mask = centre_mask(rgb)
        return rgb * (1 - mask), rgb, mask
    if task == "edge2d":
        gx, gy = gradients(gray(rgb))
        return rgb, (gx**2 + gy**2).sqrt().clamp(0, 1), None
    if task == "keypoint2d":
        return rgb, harris(gray(rgb)), None
    found = {
        "autoencoding": rgb,
        "depth": view["depth"] / 10,
        "normal": view["normal"],
        "edge_occlusion": view["edges"],
        "segment": view["segment"],
    }[task]
    return rgb, found, (view["depth"] > 0).float() if task == "depth" else None


def outputs_of(task: str) -> int:
    return {"edge2d": 1, "keypoint2d": 1, "depth": 1, "edge_occlusion": 1, "segment": len(CLASSES)}.get(
        task, 3
    )


def per_image_loss(task: str, prediction: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """(B,) losses: cross-entropy for segmentation, L1 (over the pixels that count) for the rest."""
    if task == "segment":
        return F.cross_entropy(prediction, target, reduction="none").flatten(1).mean(1)
    error = (prediction - target).abs()
    if mask is None:
        return error.flatten(1).mean(1)
    mask = mask.expand_as(error)
    return (error * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)


def conv(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1), nn.BatchNorm2d(outputs), nn.ReLU(True))


def make_encoder(kind: str, width: int, representation: int) -> nn.Module:
    """Image → representation at 1/8 resolution (`representation` channels)."""
    if kind == "resnet50":
        from torchvision.models import resnet50

        trunk = resnet50(
            replace_stride_with_dilation=[False, True, True]
        )  # stride 8, the paper's 16×16 at 128
        return nn.Sequential(*list(trunk.children())[:-2], nn.Conv2d(2048, representation, 3, 1, 1))
    return nn.Sequential(
        conv(3, width, 2),
        conv(width, 2 * width, 2),
        conv(2 * width, 4 * width, 2),
        nn.Conv2d(4 * width, representation, 3, 1, 1),
    )


def decoder(representation: int, width: int, outputs: int) -> nn.Sequential:
    """Representation → the task's output at full resolution (3 × [upsample, conv])."""
    layers: list[nn.Module] = [conv(representation, 4 * width)]
    for inputs, out in ((4 * width, 2 * width), (2 * width, width), (width, width)):
        layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv(inputs, out)]
    return nn.Sequential(*layers, nn.Conv2d(width, outputs, 3, 1, 1))


class Taskonomy(pl.LightningModule):
    """Batches: {"full": views, "budget": views} while training (see datamodules/taskonomy.py), views at
    test."""

    paper = PAPER
    exportable = False  # dozens of networks: the checkpoint is the model, the taxonomy the result

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/loss_all", "min")

    def __init__(
        self,
        *,
        tasks: list[Task] = list(get_args(Task)),  # noqa: B006 -- every task of the dictionary, never mutated
        encoder: Literal["small", "resnet50"] = "resnet50",
        width: PositiveInt = 32,
        representation: PositiveInt = 8,
        source_steps: PositiveInt = 30_000,
        supervision_budget: conint(ge=1) = 3,
        lr: PositiveFloat = 1e-3,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.encoders = nn.ModuleDict({t: make_encoder(encoder, width, representation) for t in tasks})
        self.decoders = nn.ModuleDict({t: decoder(representation, width, outputs_of(t)) for t in tasks})
        self.transfers = nn.ModuleDict(
            {
                f"{s}__{t}": nn.Sequential(
                    conv(representation, representation),
                    conv(representation, representation),
                    decoder(representation, width, outputs_of(t)),
                )
                for t in tasks
                for s in tasks
                if s != t
            }
        )
        self.scratch = nn.ModuleDict(
            {
                t: nn.Sequential(
                    make_encoder("small", width, representation),
                    decoder(representation, width, outputs_of(t)),
                )
                for t in tasks
            }
        )
        self.results: dict = {}
        self._losses: dict[str, list[Tensor]] = {}

    def losses(self, view: dict[str, Tensor], which: str) -> dict[str, Tensor]:
        """Per-image losses of the task networks ("own"), the transfers ("source__target") and the scratch
        nets."""
        found, inputs = {}, {t: task_io(t, view) for t in self.hparams.tasks}
        if which in ("own", "all"):
            for t, (x, y, mask) in inputs.items():
                found[t] = per_image_loss(t, self.decoders[t](self.encoders[t](x)), y, mask)
        if which in ("transfer", "all"):
            with torch.no_grad():  # the sources stay frozen
                representations = {s: self.encoders[s](inputs[s][0]) for s in self.hparams.tasks}
            for name, readout in self.transfers.items():
                s, t = name.split("__")
                found[name] = per_image_loss(t, readout(representations[s]), *inputs[t][1:])
            for t, (x, y, mask) in inputs.items():
                found[f"scratch__{t}"] = per_image_loss(t, self.scratch[t](x), y, mask)
        return found

    def training_step(self, batch, batch_idx: int) -> Tensor:
        first_stage = self.global_step < self.hparams.source_steps
        if first_stage:
            self.encoders.train(), self.decoders.train()
        else:  # frozen: batch norm statistics no longer move either
            self.encoders.eval(), self.decoders.eval()
        found = self.losses(
            batch["full"] if first_stage else batch["budget"], "own" if first_stage else "transfer"
        )
        loss = torch.stack([v.mean() for v in found.values()]).sum()
        self.log("train/loss_own" if first_stage else "train/loss_transfers", loss / len(found))
        return loss

    def evaluation_step(self, batch, stage: str) -> None:
        for name, value in self.losses(batch, "all").items():
            self._losses.setdefault(name, []).append(value.detach().cpu())

    def validation_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.summarise("val")

    def on_test_epoch_end(self) -> None:
        self.summarise("test")

    def summarise(self, stage: str) -> None:
        """Mean losses; then, at test, the AHP affinities, the BIP's taxonomy and its gain and quality."""
        # every rank's per-sample losses, in rank order alike for every task (DDP splits the samples)
        losses = {k: torch.cat(gather_lists(v)).numpy() for k, v in self._losses.items()}
        self._losses = {}
        if not losses:
            return
        self.log(f"{stage}/loss_all", float(np.mean([v.mean() for v in losses.values()])))
        self.log_dict({f"{stage}/loss_{k}": float(v.mean()) for k, v in losses.items() if "__" not in k})
        if stage == "test":
            self.results = taxonomy(losses, self.hparams.tasks, self.hparams.supervision_budget)
            self.log_dict({f"test/{k}": v for k, v in self.results["metrics"].items()})

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def figures(self, data, history: dict) -> dict:
        return taxonomy_figures(self.results, self.hparams.tasks) if self.results else {}
