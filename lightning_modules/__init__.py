"""The papers reprozoo reproduces. A paper's key is also its recipes file (recipes/<key>.yaml), the key of its
first experiment (papers.<key>: its DVC stages train@<key> and evaluate@<key>, its MLflow experiment, its
models/<key>/ folder) and its test file (tests/papers/test_<key>.py). To add a paper, add one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datamodules.registry import LazyRegistry

if TYPE_CHECKING:
    import pytorch_lightning as pl

PAPERS: LazyRegistry[pl.LightningModule] = LazyRegistry(
    {
        "batch_norm": "lightning_modules.batch_norm:BatchNorm",
        "bert": "lightning_modules.bert:BERT",
        "facenet": "lightning_modules.facenet:FaceNet",
        "fast_weights": "lightning_modules.fast_weights:FastWeights",
        "everybody_dance_now": "lightning_modules.everybody_dance_now:EverybodyDanceNow",
        "fcn": "lightning_modules.fcn:FCN",
        "fpn": "lightning_modules.fpn:FPN",
        "intriguing": "lightning_modules.intriguing:Intriguing",
        "mann": "lightning_modules.mann:MANN",
        "mask_rcnn": "lightning_modules.mask_rcnn:MaskRCNN",
        "neural_style": "lightning_modules.neural_style:NeuralStyle",
        "pixelcnn": "lightning_modules.pixelcnn:GatedPixelCNN",
        "protonets": "lightning_modules.protonets:ProtoNets",
        "relational_forward_model": "lightning_modules.relational_forward_model:RFM",
        "recurrent_bn": "lightning_modules.recurrent_bn:RecurrentBN",
        "resnet": "lightning_modules.resnet:ResNet",
        "spp_net": "lightning_modules.spp_net:SPPNet",
        "ssd": "lightning_modules.ssd:SSD",
        "taskonomy": "lightning_modules.taskonomy:Taskonomy",
        "tiramisu": "lightning_modules.tiramisu:Tiramisu",
    }
)
