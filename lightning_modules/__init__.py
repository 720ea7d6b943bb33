"""The papers reprozoo reproduces. A paper's key is also its params.yaml section (papers.<key>), its DVC
stages (train@<key>, evaluate@<key>), its MLflow experiment, its models/<key>/ folder and its test file
(tests/papers/test_<key>.py). To add a paper, add one line here."""
import pytorch_lightning as pl

from lightning_modules.protonets import ProtoNets

PAPERS: dict[str, type[pl.LightningModule]] = {
    "protonets": ProtoNets,
}
