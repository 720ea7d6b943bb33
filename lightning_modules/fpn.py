"""Feature Pyramid Networks for Object Detection (Lin, Dollár, Girshick, He, Hariharan & Belongie, CVPR 2017,
arXiv:1612.03144).

Paper:    a top-down pathway with lateral 1×1 connections turns a ResNet's C2–C5 into P2–P5 (and P6 by
          subsampling P5), all with 256 channels; the RPN puts one anchor scale per level (32² on P2 … 512² on
          P6) with 3 aspect ratios, and Fast R-CNN assigns each RoI to the level of its scale; both heads
          share the pyramid.
Faithful: torchvision's Faster R-CNN ResNet-50-FPN (exactly that pyramid, anchor set and RoI level mapping),
          ImageNet-initialised backbone when `pretrained`, 512 RoIs sampled per image (`roi_batch`), images
          resized to an 800-pixel short side, SGD lr 0.02 (0.002 after 60k iterations, 80k in all) after
          Detectron's linear warm-up from lr/3 over 500 iterations, momentum 0.9, weight decay 1e-4, 16 images
          a step. Metrics: COCO box AP, AP50, AP75, APs/m/l (pycocotools through torchmetrics) and the RPN's
          average recall of its first 100 and 1000 proposals (Table 1).
Differs:  smoke runs take a ResNet-18 under a 64-channel pyramid (`backbone`, `fpn_channels`) and sample 64
          RoIs per image, a fifth of a CPU step's cost; results on the COCO replica are `not_comparable`; the
          paper's numbers are on minival/test-dev.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor
from torchvision.models.detection import FasterRCNN

from lightning_modules.common import gather_lists
from lightning_modules.detection import Backbone, TorchvisionDetector, coco_metric, resnet_fpn, to_torchvision
from lightning_modules.paper import Claim, Paper

PAPER = Paper(
    key="fpn",
    title="Feature Pyramid Networks for Object Detection",
    authors="Lin, Dollár, Girshick, He, Hariharan, Belongie",
    year=2017,
    arxiv="1612.03144",
    dataset="coco",
    # Table 3 (Faster R-CNN + FPN, ResNet-50, COCO minival) and Table 1 (RPN AR1k); fractions, verify
    claims=(
        Claim("test/box_ap_fpn", claimed=0.339, source="Table 3 (c)", tolerance=0.01, verified=False),
        Claim("test/box_ap50_fpn", claimed=0.569, source="Table 3 (c)", tolerance=0.01, verified=False),
        Claim("test/rpn_ar1000_fpn", claimed=0.563, source="Table 1 (c)", tolerance=0.01, verified=False),
    ),
)


def proposal_recall(images: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Table 1's AR@100 and AR@1000: COCO's average recall (IoU 0.5:0.95) of class-agnostic proposals, best
    objectness first, against every truth box; `images` holds (proposals, truth boxes, iscrowd) per image."""
    recall = coco_metric(max_detections=(10, 100, 1000))
    for proposals, boxes, crowd in images:
        recall.update(
            [
                {
                    "boxes": proposals,
                    "scores": torch.linspace(1, 0, len(proposals)),
                    "labels": torch.zeros(len(proposals), dtype=torch.long),
                }
            ],
            [{"boxes": boxes, "labels": torch.zeros(len(boxes), dtype=torch.long), "iscrowd": crowd}],
        )
    values = recall.compute()
    return values["mar_100"].float(), values["mar_1000"].float()


class FPN(TorchvisionDetector):
    paper = PAPER

    def __init__(
        self,
        *,
        num_classes: PositiveInt = 80,
        pretrained: bool = False,
        backbone: Backbone = "resnet50",
        fpn_channels: PositiveInt = 256,
        min_size: PositiveInt = 800,
        max_size: PositiveInt = 1333,
        roi_batch: PositiveInt = 512,
        lr: PositiveFloat = 0.02,
        momentum: NonNegativeFloat = 0.9,
        weight_decay: NonNegativeFloat = 1e-4,
        warmup_steps: NonNegativeInt = 500,
        milestones: tuple[int, ...] = (60_000,),
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = FasterRCNN(
            resnet_fpn(backbone, fpn_channels, pretrained),
            num_classes=num_classes + 1,
            min_size=min_size,
            max_size=max_size,
            box_batch_size_per_image=roi_batch,
        )
        self.setup_metrics("fpn")
        self.proposals = {stage: [] for stage in ("val", "test")}

    def evaluation_step(self, batch, stage: str) -> None:
        super().evaluation_step(batch, stage)
        images, targets = batch
        # The RPN alone, as Table 1 scores it: its proposals (best objectness first) against every truth box.
        # One image at a time: batched, an image is padded to its batch's largest, which adds anchors and
        # changes its top 1,000, so its recall would depend on its batch-mates (and so on batch size and DDP).
        for image, target in zip(images, to_torchvision(targets)):
            image_list, (scaled,) = self.net.transform([image], [target])
            (proposals,), _ = self.net.rpn(image_list, self.net.backbone(image_list.tensors))
            self.proposals[stage].append((proposals, scaled["boxes"], scaled["iscrowd"]))

    def log_ap(self, stage: str) -> None:
        super().log_ap(stage)
        ar100, ar1000 = proposal_recall(gather_lists(self.proposals[stage]))
        self.log_dict({f"{stage}/rpn_ar100_fpn": ar100, f"{stage}/rpn_ar1000_fpn": ar1000})
        self.proposals[stage] = []
