"""The datasets reprozoo shards and streams. A dataset's key is also its params section (datasets.<key>),
its DVC stages (fetch@<key>, shard@<key>), its data/raw/<key> and data/shards/<key> folders and its test
file (tests/datamodules/test_<key>.py). To add a dataset, add one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datamodules.registry import LazyRegistry

if TYPE_CHECKING:
    from datamodules.base import ShardDataModule

DATASETS: LazyRegistry[ShardDataModule] = LazyRegistry(
    {
        "associative_retrieval": "datamodules.associative_retrieval:AssociativeRetrieval",
        "camvid": "datamodules.camvid:CamVid",
        "cifar10": "datamodules.cifar10:CIFAR10",
        "coco": "datamodules.coco:COCO",
        "dance": "datamodules.dance:Dance",
        "imagenet": "datamodules.imagenet:ImageNet",
        "lfw": "datamodules.lfw:LFW",
        "mnist": "datamodules.mnist:MNIST",
        "multiagent": "datamodules.multiagent:MultiAgent",
        "omniglot": "datamodules.omniglot:Omniglot",
        "omniglot_lake": "datamodules.omniglot_lake:OmniglotLake",
        "style": "datamodules.style:Style",
        "taskonomy": "datamodules.taskonomy:Taskonomy",
        "voc": "datamodules.voc:VOC",
        "wikitext103": "datamodules.wikitext103:WikiText103",
    }
)
