"""Pieces several papers share: classification errors, SGD with step milestones, and training curves as a
figure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers


def topk_errors(logits: Tensor, target: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[Tensor]:
    """Fraction of samples whose label is not among the k highest scores, for each k (capped at the class
    count)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return [1.0 - hits[:, : min(k, logits.shape[1])].any(dim=1).float().mean() for k in ks]


def crop_averaged_logits(net: nn.Module, images: Tensor) -> Tensor:
    """(n, C, H, W) → logits; (n, crops, C, H, W) → log of the crops' mean softmax (multi-crop testing)."""
    if images.dim() == 4:
        return net(images)
    n, crops = images.shape[:2]
    return net(images.flatten(0, 1)).softmax(-1).view(n, crops, -1).mean(1).log()


def classification_step(net: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy, top-1 error and top-5 error of `net` on one batch (of images, or of crops per image)."""
    logits = crop_averaged_logits(net, images)
    top1, top5 = topk_errors(logits, labels)
    return F.cross_entropy(logits, labels), top1, top5


def log_means(
    module, values: dict[str, Tensor | float | tuple[Tensor | float, int]], batch_size: int, **log_options
) -> None:
    """Log each value as the sample-weighted mean over the epoch, exact under DDP whatever share of the
    samples each rank holds (evaluation pads nothing, so shares differ by a batch): a torchmetrics MeanMetric
    sums value × batch_size and batch_size, and its sync adds both across ranks. Lightning's `sync_dist`
    instead averages each rank's sums, the counts in integers (167 and 166 samples became 332), so a mean
    moved 0.8979 → 0.9006 on MNIST's 333 validation digits over 2 ranks. A (value, count) pair is a mean
    over `count` items other than the batch's samples."""
    from torchmetrics import MeanMetric

    if not hasattr(module, "evaluation_means"):
        module.evaluation_means = nn.ModuleDict()  # metric states are not in the checkpoint
    for name, value in values.items():
        value, weight = value if isinstance(value, tuple) else (value, batch_size)
        slot = name.replace("/", "__")  # a module name may not hold "/"
        if slot not in module.evaluation_means:
            module.evaluation_means[slot] = MeanMetric().to(module.device)
        module.evaluation_means[slot].update(value, weight=weight)
        module.log(
            name, module.evaluation_means[slot], metric_attribute=f"evaluation_means.{slot}", **log_options
        )


def log_classification_errors(
    module, nets: list[tuple[str, nn.Module]], batch: tuple[Tensor, Tensor], stage: str
) -> None:
    """`<stage>/top1_err_<name>` and `<stage>/top5_err_<name>` of each named net on one batch."""
    for name, net in nets:
        _, top1, top5 = classification_step(net, *batch)
        log_means(module, {f"{stage}/top1_err_{name}": top1, f"{stage}/top5_err_{name}": top5}, len(batch[1]))


def sgd_from_hparams(module) -> dict:
    """SGD with step milestones, from the module's `lr`, `momentum`, `weight_decay` and `milestones`."""
    h = module.hparams
    return sgd_with_milestones(
        module.parameters(),
        lr=h.lr,
        momentum=h.momentum,
        weight_decay=h.weight_decay,
        milestones=h.milestones,
    )


def sgd_with_milestones(
    parameters,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    milestones: list[int],
    gamma: float = 0.1,
    warmup_steps: int = 0,
    warmup_factor: float = 1 / 3,
) -> dict:
    """SGD whose learning rate is multiplied by `gamma` at each milestone (counted in optimizer steps), after
    an optional linear warm-up from `warmup_factor` · lr (Detectron's, without which large-lr detectors
    diverge)."""
    from bisect import bisect_right

    def factor(step: int) -> float:
        warm = warmup_factor + (1 - warmup_factor) * step / warmup_steps if step < warmup_steps else 1.0
        return warm * gamma ** bisect_right(sorted(milestones), step)

    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def curves_figure(history: dict[str, list[tuple[int, float]]], keys: list[str], title: str, ylabel: str):
    """Training curves (step, value) of several logged metrics on one axis."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for key in keys:
        if history.get(key):
            steps, values = zip(*history[key])
            axes.plot(steps, values, label=key)
    axes.set(xlabel="step", ylabel=ylabel, title=title)
    axes.legend()
    figure.tight_layout()
    return figure


# ---- semantic segmentation: the FCN paper's four scores, and predictions drawn beside the truth ------------


class SegmentationScores(nn.Module):
    """Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU (Long et al. 2015, §5) from one
    confusion matrix accumulated over a whole split; `ignore_index` pixels (VOC borders, CamVid void) count
    nowhere. Classes absent from both truth and prediction are left out of the means (NaN-mean), as the FCN
    code does."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        super().__init__()
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)

    def update(self, logits: Tensor, mask: Tensor) -> None:
        """logits (B, classes, H, W), mask (B, H, W)."""
        self.confusion.update(logits.argmax(1), mask)

    def compute(self) -> dict[str, Tensor]:
        n = self.confusion.compute().double()  # n[i, j]: pixels of class i predicted as j
        truth, hits = n.sum(1), n.diag()
        iu = hits / (truth + n.sum(0) - hits)
        return {
            "pixel_acc": hits.sum() / truth.sum(),
            "mean_acc": (hits / truth).nanmean(),
            "mean_iu": iu.nanmean(),
            "fw_iu": (truth * iu).nansum() / truth.sum(),
        }

    def reset(self) -> None:
        self.confusion.reset()


class SameStepForValAndTest:
    """validation_step and test_step are one `evaluation_step(batch, stage)`, logging `<stage>/<metric>`."""

    def validation_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")


class SegmentationEvaluation:
    """Validation and test hooks for a segmentation LightningModule: each image's prediction goes into the
    split's SegmentationScores (images may differ in size), and at the end of the split `logged_scores` are
    logged as `<stage>/<score>_<self.score_suffix>`. The module sets `self.scores =
    segmentation_scores(classes)`."""

    logged_scores: tuple[str, ...] = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")

    def update_scores(self, batch, stage: str) -> None:
        for image, mask in zip(*batch):
            self.scores[stage].update(self(image[None]), mask[None])

    def log_scores(self, stage: str) -> dict[str, Tensor]:
        values = self.scores[stage].compute()
        self.log_dict(
            {f"{stage}/{k}_{self.score_suffix}": values[k].float() for k in self.logged_scores},
            sync_dist=True,
        )
        self.scores[stage].reset()
        return values

    def validation_step(self, batch, batch_idx: int) -> None:
        self.update_scores(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_scores("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.update_scores(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_scores("test")


def segmentation_scores(num_classes: int, ignore_index: int = 255) -> nn.ModuleDict:
    return nn.ModuleDict({stage: SegmentationScores(num_classes, ignore_index) for stage in ("val", "test")})


def segmentation_figure(
    images: list[Tensor],
    truths: list[Tensor],
    predictions: list[Tensor],
    num_classes: int,
    title: str,
    ignore_index: int = 255,
):
    """One row per image: the image, the true mask, the predicted mask (ignored pixels black)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(images), 3, figsize=(9, 3 * len(images)), squeeze=False)
    colours = plt.get_cmap("tab20", max(num_classes, 2))
    for row, (image, truth, prediction) in enumerate(zip(images, truths, predictions)):
        for col, (shown, name) in enumerate(
            ((image.permute(1, 2, 0).clamp(0, 1), "image"), (truth, "truth"), (prediction, "prediction"))
        ):
            if col:
                shown = colours(shown.clamp(max=num_classes - 1).numpy() / max(num_classes - 1, 1))
                shown[truth.numpy() == ignore_index] = (0, 0, 0, 1)
            axes[row, col].imshow(shown)
            axes[row, col].set_title(name, fontsize=8)
            axes[row, col].axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


# ---- detection: the PASCAL VOC 2007 metric (11-point interpolated AP at IoU 0.5, `difficult` ignored) ------


def thinned(channels: int, width: float) -> int:
    return max(4, int(channels * width))


def thin_vgg16(width: float, batch_norm: bool = False) -> VGG:
    """VGG-16 (configuration "D") with every width scaled (and batch norm after each convolution if asked),
    for smoke runs from random initialisation on a CPU; width 1 without batch norm is torchvision's."""
    scaled = [c if c == "M" else thinned(c, width) for c in vgg_cfgs["D"]]
    vgg = VGG(make_layers(scaled, batch_norm=batch_norm), init_weights=True)
    fc = max(16, int(4096 * width))
    vgg.classifier = nn.Sequential(
        nn.Linear(scaled[-2] * 49, fc), nn.ReLU(True), nn.Dropout(), nn.Linear(fc, fc)
    )
    return vgg


def thin_convolutions(module: nn.Module, width: float) -> nn.Module:
    """Every convolution (and batch norm) of `module` with its channels scaled by `width` (the 3 colour
    channels kept), freshly initialised: the same architecture, thinner, for smoke runs of nets built by
    torchvision."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            channels_in = child.in_channels if child.in_channels == 3 else thinned(child.in_channels, width)
            setattr(
                module,
                name,
                nn.Conv2d(
                    channels_in,
                    thinned(child.out_channels, width),
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    bias=child.bias is not None,
                ),
            )
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.BatchNorm2d(thinned(child.num_features, width)))
        else:
            thin_convolutions(child, width)
    return module


def gather_lists(items: list) -> list:
    """Every DDP rank's `items`, concatenated in rank order, on every rank: metrics that need the whole test
    set (VOC07 AP, proposal recall) are then exact under DDP. Outside DDP, `items` itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]
