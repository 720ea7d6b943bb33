"""The datasets reprozoo shards and streams. A dataset's key is also its params section (datasets.<key>),
its DVC stages (fetch@<key>, shard@<key>), its data/raw/<key> and data/shards/<key> folders and its test
file (tests/datamodules/test_<key>.py). To add a dataset, add one line here."""
from datamodules.base import ShardDataModule
from datamodules.omniglot import Omniglot

DATASETS: dict[str, type[ShardDataModule]] = {
    "omniglot": Omniglot,
}
