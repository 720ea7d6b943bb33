"""Mask R-CNN (He, Gkioxari, Dollár & Girshick, ICCV 2017, arXiv:1703.06870).

Paper:    Faster R-CNN with FPN plus a mask branch: for each RoI, a small FCN predicts one 28×28 mask per
          class with a per-pixel sigmoid; the loss is the binary cross-entropy of the ground-truth class's
          mask only, so masks do not compete across classes (classification is left to the box head). RoIAlign
          samples the features bilinearly at unquantised RoI coordinates.
Faithful: torchvision's Mask R-CNN ResNet-50-FPN (RoIAlign from torchvision.ops, the 4-conv mask head with a
          deconvolution to 28×28, per-class sigmoid masks, maskrcnn_loss on the true class), L = L_cls + L_box
          + L_mask over 512 sampled RoIs per image (`roi_batch`), 800-pixel short side, SGD lr 0.02 (÷10 at
          120k and 160k of 180k iterations, 16 images a step) after Detectron's linear warm-up from lr/3 over
          500 iterations, momentum 0.9, weight decay 1e-4. Metrics: COCO box AP and mask AP.
Differs:  smoke runs take a ResNet-18 under a 64-channel pyramid, with the mask head as narrow (`backbone`,
          `fpn_channels`), and sample 64 RoIs per image: a fifth of a CPU step's cost; results on the COCO
          replica are `not_comparable`.
"""

from __future__ import annotations

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from lightning_modules.detection import Backbone, TorchvisionDetector, resnet_fpn
from lightning_modules.paper import Claim, Paper

PAPER = Paper(
    key="mask_rcnn",
    title="Mask R-CNN",
    authors="He, Gkioxari, Dollár, Girshick",
    year=2017,
    arxiv="1703.06870",
    dataset="coco",
    claims=(  # Table 2 (a), ResNet-50-FPN on COCO minival; fractions (verify)
        Claim("test/mask_ap_mask_rcnn", claimed=0.336, source="Table 2 (a)", tolerance=0.01, verified=False),
        Claim(
            "test/mask_ap50_mask_rcnn", claimed=0.552, source="Table 2 (a)", tolerance=0.01, verified=False
        ),
    ),
)


class MaskRCNN(TorchvisionDetector):
    paper = PAPER
    iou_types = ("bbox", "segm")

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
        milestones: tuple[int, ...] = (120_000, 160_000),
    ):
        super().__init__()
        self.save_hyperparameters()
        classes = num_classes + 1  # and torchvision's background
        self.net = TorchvisionMaskRCNN(
            resnet_fpn(backbone, fpn_channels, pretrained),
            min_size=min_size,
            max_size=max_size,
            box_batch_size_per_image=roi_batch,
            # the heads at the pyramid's width (torchvision's mask head is 256 wide whatever the backbone)
            box_predictor=FastRCNNPredictor(1024, classes),  # after its two 1024-wide layers
            mask_head=MaskRCNNHeads(fpn_channels, (fpn_channels,) * 4, dilation=1),
            mask_predictor=MaskRCNNPredictor(fpn_channels, fpn_channels, classes),
        )
        self.setup_metrics("mask_rcnn")
