"""Everybody Dance Now (Chan, Ginosar, Zhou & Efros, ICCV 2019, arXiv:1808.07371).

Paper:    a pose stick figure → video frame GAN (pix2pixHD's global generator, multi-scale patch
          discriminators, LSGAN + feature matching + VGG perceptual losses); temporal smoothing: frame t is
          generated from pose t and the generated frame t − 1, and the discriminator judges pairs of
          consecutive frames; a face GAN then adds a residual to a crop around the face, trained after the
          body generator is frozen; for transfer, a global pose normalisation maps the source's ankle
          positions and heights onto the target's. Table 1 compares pose-to-frame only, + temporal smoothing,
          + face GAN by SSIM and LPIPS on held-out target frames, and by the distance between the input pose
          and the pose detected in the output.
Faithful: that generator (reflection-padded 7×7 stem, strided downsampling, residual blocks, transposed
          upsampling, instance norm), discriminators and losses (λ_FM = λ_VGG = 10, Adam 2e-4, β₁ 0.5, linear
          decay over the second half), the frame-by-frame model trained beside the temporal one on the same
          batches, the face GAN as a second stage (`face_after_step`) on the frozen temporal generator, the
          normalisation's formulas; SSIM (torchmetrics) for the three variants and on the face crop, flicker
          (the frame-to-frame change that differs from the real video's), LPIPS and pose distance (Keypoint
          R-CNN standing in for OpenPose) where their weights are available (`lpips`, `pose_distance`).
Differs:  without ImageNet VGG-19 weights (`pretrained: false`, smoke) the perceptual term is an L1 term on
          the pixels; the paper's face crop is 128 px of a 512 px frame, here `face_fraction` of the frame
          resized to `face_size`. The paper's videos are not public: no claim is judged (dataset_is_the_papers
          is False).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from datamodules.dance import render_pose
from lightning_modules.common import log_means
from lightning_modules.paper import Claim, Mode, Paper
from lightning_modules.pix2pixhd import (
    MultiscaleDiscriminator,
    Perceptual,
    adversarial,
    feature_matching,
    global_generator,
)
from lightning_modules.pose_transfer import (
    crop,
    face_boxes,
    normalise_pose,
    paste,
    pose_distance,
    pose_statistics,
)

PAPER = Paper(
    key="everybody_dance_now",
    title="Everybody Dance Now",
    authors="Chan, Ginosar, Zhou, Efros",
    year=2018,
    arxiv="1808.07371",
    dataset="dance",
    claims=(  # Table 1's ablations on held-out target frames: the full model's SSIM is the best (verify)
        Claim("test/ssim_full_minus_frame", claimed=0.0, source="Table 1", tolerance=0.0, verified=False),
        Claim("test/ssim_full_minus_temporal", claimed=0.0, source="Table 1", tolerance=0.0, verified=False),
    ),
    dataset_is_the_papers=False,
)


class EverybodyDanceNow(pl.LightningModule):
    """Batches: poses (B, 2, 3, S, S), frames (B, 2, 3, S, S) in [0, 1], keypoints (B, 2, 17, 3); index 0 is t
    − 1."""

    paper = PAPER
    exportable = False  # three generators and a face stage: the checkpoint is the model

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/ssim_full", "max")

    def __init__(
        self,
        *,
        ngf: PositiveInt = 64,
        downsamplings: PositiveInt = 4,
        blocks: PositiveInt = 9,
        ndf: PositiveInt = 64,
        scales: PositiveInt = 3,
        face_fraction: PositiveFloat = 0.25,
        face_size: PositiveInt = 128,
        face_after_step: PositiveInt = 100_000,
        lr: PositiveFloat = 2e-4,
        lambda_fm: float = 10.0,
        lambda_perceptual: float = 10.0,
        pretrained: bool = True,
        lpips: bool = True,
        pose_distance: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # G and D step on their own losses (one optimizer, two groups)
        self.generators = nn.ModuleDict(
            {
                "frame": global_generator(3, ngf, downsamplings, blocks),
                "temporal": global_generator(6, ngf, downsamplings, blocks),
                "face": global_generator(6, max(ngf // 2, 8), 2, max(blocks // 3, 1)),
            }
        )
        self.discriminators = nn.ModuleDict(
            {
                "frame": MultiscaleDiscriminator(6, ndf, scales),
                "temporal": MultiscaleDiscriminator(12, ndf, scales),  # pairs of frames
                "face": MultiscaleDiscriminator(6, ndf, 1),
            }
        )
        self.perceptual = Perceptual(pretrained)

    def generate(self, poses: Tensor) -> dict[str, Tensor]:
        """Frames t − 1 and t of the frame-by-frame and the temporal model, in [0, 1]: (B, 2, 3, S, S)
        each."""
        x = poses * 2 - 1
        frame = torch.stack([self.generators["frame"](x[:, i]) for i in (0, 1)], 1)
        previous = self.generators["temporal"](
            torch.cat([x[:, 0], torch.zeros_like(x[:, 0])], 1)
        )  # no earlier frame
        current = self.generators["temporal"](torch.cat([x[:, 1], previous], 1))
        return {"frame": (frame + 1) / 2, "temporal": (torch.stack([previous, current], 1) + 1) / 2}

    def face(self, poses: Tensor, frames: Tensor, keypoints: Tensor) -> tuple[Tensor, Tensor, list]:
        """The face GAN's residual on the crop around frame t's nose: (refined crop, pose crop, boxes)."""
        boxes = face_boxes(keypoints[:, 1], frames.shape[-1], self.hparams.face_fraction)
        pose_crop, body_crop = (crop(im, boxes, self.hparams.face_size) for im in (poses[:, 1], frames))
        residual = self.generators["face"](torch.cat([pose_crop * 2 - 1, body_crop * 2 - 1], 1))
        return (body_crop + residual).clamp(0, 1), pose_crop, boxes

    def gan_losses(self, name: str, condition: Tensor, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        """(generator loss, discriminator loss) for one conditional GAN; D sees [condition, image] stacks."""
        d = self.discriminators[name]
        d.requires_grad_(False)  # the generator's loss must not train D
        fake_scores, real_scores = d(torch.cat([condition, fake], 1)), d(torch.cat([condition, real], 1))
        g_loss = (
            adversarial(fake_scores, True)
            + self.hparams.lambda_fm * feature_matching(fake_scores, real_scores)
            + self.hparams.lambda_perceptual * self.perceptual(fake, real)
        )
        d.requires_grad_(True)
        d_loss = 0.5 * (
            adversarial(d(torch.cat([condition, fake.detach()], 1)), False)
            + adversarial(d(torch.cat([condition, real], 1)), True)
        )
        return g_loss, d_loss

    def training_step(self, batch, batch_idx: int) -> None:
        poses, frames, keypoints = batch
        optimizer, losses = self.optimizers(), {}
        if self.global_step < self.hparams.face_after_step:
            made = self.generate(poses)
            losses["frame"] = self.gan_losses("frame", poses[:, 1], made["frame"][:, 1], frames[:, 1])
            pair = lambda images: torch.cat([images[:, 0], images[:, 1]], 1)  # noqa: E731
            losses["temporal"] = self.gan_losses(
                "temporal", pair(poses), pair(made["temporal"]), pair(frames)
            )
        else:  # stage 2: the body generator is frozen
            with torch.no_grad():
                body = self.generate(poses)["temporal"][:, 1]
            refined, pose_crop, boxes = self.face(poses, body, keypoints)
            losses["face"] = self.gan_losses(
                "face", pose_crop, refined, crop(frames[:, 1], boxes, self.hparams.face_size)
            )
        optimizer.zero_grad()
        self.manual_backward(sum(g + d for g, d in losses.values()))
        optimizer.step()
        self.lr_schedulers().step()
        self.log_dict(
            {
                f"train/{part}_{name}": value
                for name, (g, d) in losses.items()
                for part, value in (("g_loss", g), ("d_loss", d))
            },
            batch_size=len(poses),
        )

    def outputs(self, batch) -> dict[str, Tensor]:
        """Frames t − 1 and t of the three variants (the full model pastes the refined face into the temporal
        one)."""
        poses, frames, keypoints = batch
        made = self.generate(poses)
        refined, _, boxes = self.face(poses, made["temporal"][:, 1], keypoints)
        full = torch.stack([made["temporal"][:, 0], paste(made["temporal"][:, 1], refined, boxes)], 1)
        return {**made, "full": full}

    def evaluation_step(self, batch, stage: str) -> None:
        poses, frames, keypoints = batch
        made = self.outputs(batch)
        real_change = frames[:, 1] - frames[:, 0]
        logged = {}
        for name, video in made.items():
            logged[f"{stage}/ssim_{name}"] = ssim(video[:, 1], frames[:, 1], data_range=1.0)
            # Flicker: how much the frame-to-frame change differs from the real video's (0 for a perfect
            # video).
            logged[f"{stage}/flicker_{name}"] = (video[:, 1] - video[:, 0] - real_change).abs().mean()
        boxes = face_boxes(keypoints[:, 1], frames.shape[-1], self.hparams.face_fraction)
        real_face = crop(frames[:, 1], boxes, self.hparams.face_size)
        for name in ("temporal", "full"):
            faces = crop(made[name][:, 1], boxes, self.hparams.face_size)
            logged[f"{stage}/face_ssim_{name}"] = ssim(faces, real_face, data_range=1.0)
        if stage == "test" and self.hparams.lpips:
            logged |= {
                f"test/lpips_{name}": self.lpips(video[:, 1], frames[:, 1]) for name, video in made.items()
            }
        if stage == "test" and self.hparams.pose_distance:
            logged["test/pose_distance_full"] = pose_distance(made["full"][:, 1], keypoints[:, 1])
        for ablation in ("frame", "temporal"):  # Table 1: the full model has the best SSIM of the ablations
            logged[f"{stage}/ssim_full_minus_{ablation}"] = (
                logged[f"{stage}/ssim_full"] - logged[f"{stage}/ssim_{ablation}"]
            )
        log_means(self, logged, len(poses))

    def validation_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def lpips(self, fake: Tensor, real: Tensor) -> Tensor:
        from torchmetrics.functional.image import learned_perceptual_image_patch_similarity

        return learned_perceptual_image_patch_similarity(fake, real, net_type="alex", normalize=True)

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=h.lr, betas=(0.5, 0.999))

        def linear_decay(step: int) -> float:  # pix2pixHD: constant, then linearly to 0 over the second half
            total = self.trainer.max_steps if self.trainer.max_steps > 0 else step + 1
            return min(1.0, 2 * (1 - step / total)) if step > total / 2 else 1.0

        return {
            "optimizer": optimizer,
            "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay),
        }

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """Held-out target frames (pose, three variants, truth) and the source dancer's normalised poses
        transferred."""
        import matplotlib.pyplot as plt

        self.eval()
        batch = next(iter(data.test_dataloader()))
        made, shown = self.outputs(batch), min(4, len(batch[0]))
        rows = [
            ("pose", batch[0][:, 1]),
            *((name, made[name][:, 1]) for name in ("frame", "temporal", "full")),
            ("real", batch[1][:, 1]),
        ]
        transfer = self.transfer(data, shown)
        rows += [("source", transfer[0]), ("normalised pose", transfer[1]), ("transferred", transfer[2])]
        figure, axes = plt.subplots(len(rows), shown, figsize=(2 * shown, 2 * len(rows)), squeeze=False)
        for r, (title, images) in enumerate(rows):
            for c in range(shown):
                axes[r, c].imshow(images[c].clamp(0, 1).permute(1, 2, 0).cpu())
                axes[r, c].axis("off")
            axes[r, 0].set_title(title, fontsize=8, loc="left")
        figure.tight_layout()
        return {"frames": figure}

    def transfer(self, data, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """The source dancer's frames, their poses normalised onto the target's (§3.3) and the generated
        target."""
        target = torch.cat([k[:, 1] for _, _, k in data.memory_loader("train")]).numpy()
        source = [batch for batch in data.source_loader()]  # in memory: decoded once
        every_source = torch.cat([k[:, 1] for _, _, k in source]).numpy()
        stats = pose_statistics(every_source), pose_statistics(target)
        normalised = [normalise_pose(k, *stats) for k in every_source[:count]]
        frames = source[0][1][:count, 1]
        poses = torch.stack(
            [
                torch.from_numpy(render_pose(k, frames.shape[-1]).copy()).permute(2, 0, 1).float() / 255
                for k in normalised
            ]
        )
        made = self.generate(torch.stack([poses, poses], 1))["temporal"][:, 1]
        return frames, poses, made
