"""A Neural Algorithm of Artistic Style (Gatys, Ecker & Bethge 2015, arXiv:1508.06576).

Paper:    an image is synthesised by gradient descent on its pixels so that its VGG-19 responses match a
          photograph's at one layer (content: ½ Σ (F − P)² at conv4_2) and the Gram matrices of a painting's
          responses at five layers (style: Σ_l w_l / (4 N_l² M_l²) Σ (G − A)², conv1_1 … conv5_1, w_l = 1/5),
          with the total α·content + β·style at α/β = 10⁻³ or 10⁻⁴; max pooling is replaced by average
          pooling; L-BFGS, starting from white noise.
Faithful: exactly those layers, normalisations, weights and ratio, VGG-19's features with average pooling,
          torchvision's ImageNet VGG-19 weights when `pretrained` (a clear error if they cannot be fetched),
          L-BFGS on the pixels of one image per content–style pair, from white noise (or the content image
          with `init: content`). Metrics: the final content and style losses beside their yardsticks, the
          photograph's own style distance and the painting's content distance (no numeric claim: the paper has
          no table), and the stylised images beside their content and style images.
Differs:  without ImageNet weights (smoke) the features are those of a randomly initialised VGG-19, whose
          style term is ~100× smaller, so the smoke ratio is 1e-5; the losses fall as the paper's do, but the
          pictures are not the paper's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn
from torchvision.models import VGG19_Weights
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from datamodules.files import pretrained as pretrained_weights
from lightning_modules.common import SameStepForValAndTest, log_means
from lightning_modules.paper import Claim, Mode, Paper

PAPER = Paper(
    key="neural_style",
    title="A Neural Algorithm of Artistic Style",
    authors="Gatys, Ecker, Bethge",
    year=2015,
    arxiv="1508.06576",
    dataset="style",
    claims=(  # §2-3 and Fig. 2-3: no table; the method's promise, as margins that stay positive (our reading)
        Claim("test/content_loss_margin_to_style_image", 0.0, "§2, Fig. 2", 0.0, verified=False),
        Claim("test/style_loss_margin_to_content_image", 0.0, "§2, Fig. 2", 0.0, verified=False),
    ),
)

# Indices of VGG-19's `features` whose ReLU outputs the paper reads (conv1_1 … conv5_1; conv4_2).
STYLE_LAYERS = {"conv1_1": 1, "conv2_1": 6, "conv3_1": 11, "conv4_1": 20, "conv5_1": 29}
CONTENT_LAYER = {"conv4_2": 22}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gram(features: Tensor) -> Tensor:
    """(B, N, H, W) → (B, N, N): G_ij = Σ_k F_ik F_jk over the M = H·W positions."""
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2)


def style_layer_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """E_l = 1 / (4 N² M²) Σ (G − A)², per image, for N maps of M positions."""
    n, m = features.shape[1], features.shape[2] * features.shape[3]
    return ((gram(features) - target_gram) ** 2).sum((1, 2)) / (4 * n**2 * m**2)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """½ Σ (F − P)², per image."""
    return 0.5 * ((features - target) ** 2).flatten(1).sum(1)


def vgg19_features(pretrained: bool) -> nn.Sequential:
    """VGG-19's convolutional part (torchvision's `vgg19().features`), without the 123M-parameter classifier
    the method never reads (building and initialising it took 1 s and 500 MB per model): ImageNet's weights
    when `pretrained`, else torchvision's initialisation of the convolutions."""
    features = make_layers(vgg_cfgs["E"])
    weights = pretrained_weights(VGG19_Weights.IMAGENET1K_V1) if pretrained else None
    if weights is not None:
        state = weights.get_state_dict(progress=False, check_hash=True)
        ours = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        features.load_state_dict(ours)
        return features
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return features


class VGGFeatures(nn.Module):
    """VGG-19's convolutional part with average pooling, returning the named layers' responses."""

    def __init__(self, pretrained: bool):
        super().__init__()
        features = vgg19_features(pretrained)
        self.layers = nn.Sequential(
            *[
                nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m
                for m in features[: max(STYLE_LAYERS.values()) + 1]
            ]
        )
        for layer in self.layers:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # the responses are kept, so later layers must not overwrite them
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[:, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[:, None, None])

    def forward(self, images: Tensor) -> dict[int, Tensor]:
        x, wanted, found = (
            (images - self.mean) / self.std,
            {*STYLE_LAYERS.values(), *CONTENT_LAYER.values()},
            {},
        )
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in wanted:
                found[index] = x
        return found


class NeuralStyle(SameStepForValAndTest, pl.LightningModule):
    """The parameters are the images being synthesised, one per content–style pair (`num_classes` pairs)."""

    paper = PAPER
    exportable = False  # the "model" is its images, logged as pictures; there is no network to serve

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/total_loss", "min")

    def __init__(
        self,
        *,
        num_classes: PositiveInt = 1,
        size: PositiveInt = 512,
        ratio: PositiveFloat = 1e-3,
        init: Literal["noise", "content"] = "noise",
        pretrained: bool = False,
        lr: PositiveFloat = 1.0,
        iterations_per_step: PositiveInt = 20,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.vgg = VGGFeatures(pretrained)
        self.images = nn.Parameter(torch.rand(num_classes, 3, size, size))  # white noise, as the paper
        self.register_buffer("initialised", torch.tensor(init == "noise"))  # in the checkpoint: done once

    def losses(self, batch) -> dict[str, Tensor]:
        contents, styles, index = batch
        if contents.shape[-1] != self.hparams.size:
            raise ValueError(
                f"data.size: the images are {contents.shape[-1]} pixels, hparams.size is "
                f"{self.hparams.size}; set both to the same size"
            )
        if self.training and not self.initialised:  # init: content starts from the photographs
            with torch.no_grad():
                self.images[index] = contents
                self.initialised.fill_(True)
        with torch.no_grad():
            content_features, style_features = self.vgg(contents), self.vgg(styles)
        style_grams = {i: gram(style_features[i]) for i in STYLE_LAYERS.values()}
        made = self.vgg(self.images[index])
        content, style = self.content_and_style(made, content_features, style_grams)
        # α·content + β·style with α/β = ratio; β = 1 keeps the style term's scale as the paper's.
        found = {
            "content_loss": content,
            "style_loss": style,
            "total_loss": self.hparams.ratio * content + style,
        }
        if not self.training:
            # The yardsticks of the paper's claim: the photograph's own style distance to the painting, and
            # the painting's content distance to the photograph; a stylised image sits far below both.
            with torch.no_grad():
                found["style_loss_of_content_image"] = self.content_and_style(
                    content_features, content_features, style_grams
                )[1]
                found["content_loss_of_style_image"] = self.content_and_style(
                    style_features, content_features, style_grams
                )[0]
            # The claim as numbers: the image holds the photograph's content and the painting's style, each
            # distance below the other image's (margins: a mean of differences is the difference of means,
            # whatever the ranks' shares; a mean of ratios is not).
            found["content_loss_margin_to_style_image"] = found["content_loss_of_style_image"] - content
            found["style_loss_margin_to_content_image"] = found["style_loss_of_content_image"] - style
        return found

    @staticmethod
    def content_and_style(
        features: dict[int, Tensor], content_features: dict[int, Tensor], style_grams: dict[int, Tensor]
    ) -> tuple[Tensor, Tensor]:
        (at,) = CONTENT_LAYER.values()
        content = content_loss(features[at], content_features[at]).mean()
        style = sum(
            style_layer_loss(features[i], style_grams[i]) for i in STYLE_LAYERS.values()
        ).mean() / len(STYLE_LAYERS)
        return content, style

    def training_step(self, batch, batch_idx: int) -> Tensor:
        found = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in found.items()}, batch_size=len(batch[0]))
        return found["total_loss"]

    def evaluation_step(self, batch, stage: str) -> None:
        log_means(self, {f"{stage}/{k}": v for k, v in self.losses(batch).items()}, len(batch[0]))

    def configure_optimizers(self):
        # No early stop on small gradients: the loss's scale depends on the VGG weights (tiny for random
        # ones), so every step runs its `iterations_per_step` L-BFGS iterations.
        return torch.optim.LBFGS(
            [self.images],
            lr=self.hparams.lr,
            max_iter=self.hparams.iterations_per_step,
            history_size=50,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )

    @torch.no_grad()
    def figures(self, data, history: dict) -> dict:
        """Each pair: content, style, and the synthesised image."""
        import matplotlib.pyplot as plt

        contents, styles, index = next(iter(data.test_dataloader()))
        figure, axes = plt.subplots(len(index), 3, figsize=(9, 3 * len(index)), squeeze=False)
        for row, (content, style, i) in enumerate(zip(contents, styles, index)):
            for col, (image, title) in enumerate(
                ((content, "content"), (style, "style"), (self.images[i].clamp(0, 1), "synthesised"))
            ):
                axes[row, col].imshow(image.permute(1, 2, 0).cpu())
                axes[row, col].set_title(title, fontsize=8)
                axes[row, col].axis("off")
        figure.tight_layout()
        return {"stylised": figure}
