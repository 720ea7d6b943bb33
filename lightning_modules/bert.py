"""BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding (Devlin, Chang, Lee &
Toutanova, NAACL 2019, arXiv:1810.04805).

Paper:    a Transformer encoder pre-trained on two tasks at once: masked LM (15% of WordPiece positions
          chosen; of those 80% → [MASK], 10% → a random token, 10% unchanged; predict the originals) and
          next-sentence prediction (segment B is the true continuation half the time). Segment embeddings mark
          A and B.
Faithful: the encoder and both heads are `transformers`' BertForPreTraining (BERT-base: L 12, H 768, A 12,
          GELU, dropout 0.1, 512 positions); WordPiece vocabulary trained on the corpus; pairs built as the
          paper's create_pretraining_data (datamodules/wikitext103.py); the 80/10/10 masking of
          `transformers`' DataCollatorForLanguageModeling; Adam lr 1e-4, β 0.9/0.999, weight decay 0.01 (not
          on biases and LayerNorm), 10k warm-up steps then linear decay to 0; 90% of steps at 128 tokens, the
          rest at 512. Metrics: masked-LM accuracy and perplexity, NSP accuracy.
Differs:  WikiText-103 stands in for BooksCorpus + English Wikipedia, so the paper's perplexities (Table 6,
          measured on its own held-out data and vocabulary) are shown beside ours but never judged; masks are
          drawn per batch (seeded) instead of the paper's 10 static copies. No fine-tuning stage yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, confloat, conint
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from lightning_modules.common import log_means
from lightning_modules.paper import Claim, Mode, Paper


def size_name(layers: int, hidden: int, heads: int) -> str:
    return f"l{layers}_h{hidden}_a{heads}"  # metric keys are lower case


PAPER = Paper(
    key="bert",
    title="BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
    authors="Devlin, Chang, Lee, Toutanova",
    year=2018,
    arxiv="1810.04805",
    dataset="wikitext103",
    claims=tuple(  # Table 6 (ablation over model size): held-out masked-LM perplexity (verify figures)
        Claim(
            f"test/mlm_ppl_{size_name(*size)}",
            claimed=ppl,
            source="Table 6",
            tolerance=0.25,
            higher_is_better=False,
            row=f"L={size[0]} H={size[1]} A={size[2]}",
            column="LM (ppl)",
            verified=False,
        )
        for size, ppl in {
            (3, 768, 12): 5.84,
            (6, 768, 3): 5.24,
            (6, 768, 12): 4.68,
            (12, 768, 12): 3.99,
            (12, 1024, 16): 3.54,
            (24, 1024, 16): 3.23,
        }.items()
    ),
    dataset_is_the_papers=False,
)


def bert_config(
    vocab_size: int, layers: int, hidden: int, heads: int, max_positions: int = 512, dropout: float = 0.1
):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        hidden_act="gelu",
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        max_position_embeddings=max_positions,
        pad_token_id=0,
    )


def decayed_and_not(model: nn.Module, weight_decay: float) -> list[dict]:
    """BERT's optimiser leaves biases and LayerNorm parameters out of weight decay."""
    plain = [p for n, p in model.named_parameters() if p.ndim == 1 or "LayerNorm" in n]
    decayed = [p for n, p in model.named_parameters() if not (p.ndim == 1 or "LayerNorm" in n)]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class BERT(pl.LightningModule):
    paper = PAPER
    exportable = True

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        return ("val/mlm_loss", "min")

    def __init__(
        self,
        *,
        vocab_size: conint(gt=5) = 30_522,
        layers: PositiveInt = 12,
        hidden: PositiveInt = 768,
        heads: PositiveInt = 12,
        max_positions: PositiveInt = 512,
        dropout: confloat(ge=0, lt=1) = 0.1,
        lr: PositiveFloat = 1e-4,
        weight_decay: NonNegativeFloat = 0.01,
        warmup_steps: NonNegativeInt = 10_000,
    ):
        super().__init__()
        from transformers import BertForPreTraining

        if hidden % heads:
            raise ValueError(f"hparams.hidden ({hidden}) must be a multiple of hparams.heads ({heads})")
        self.save_hyperparameters()
        self.bert = BertForPreTraining(bert_config(vocab_size, layers, hidden, heads, max_positions, dropout))
        self.size = size_name(layers, hidden, heads)
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        # the masked-LM loss averaged over masked tokens, not batches: exp of it is the
                        # perplexity, and a batch that masked nothing adds nothing (its mean would be NaN)
                        "mlm_loss": MeanMetric(),
                        "mlm_acc": MulticlassAccuracy(vocab_size, average="micro", ignore_index=-100),
                        f"mlm_ppl_{self.size}": Perplexity(ignore_index=-100),
                        "nsp_acc": MulticlassAccuracy(2, average="micro"),
                    }
                )
                for stage in ("val", "test")
            }
        )
        self.example_input_array = (
            torch.ones(2, 16, dtype=torch.long),
            torch.zeros(2, 16, dtype=torch.long),
            torch.ones(2, 16, dtype=torch.long),
        )

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Token ids, segment ids and padding mask (B, T) → MLM logits (B, T, vocab) and NSP logits (B, 2)."""
        out = self.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return out.prediction_logits, out.seq_relationship_logits

    def losses(self, batch: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mlm, nsp = self(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        mlm_loss = F.cross_entropy(mlm.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        nsp_loss = F.cross_entropy(nsp, batch["next_sentence_label"])
        return mlm_loss, nsp_loss, mlm, nsp

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        mlm_loss, nsp_loss, *_ = self.losses(batch)
        self.log_dict(
            {
                "train/mlm_loss": mlm_loss,
                "train/nsp_loss": nsp_loss,
                "train/seq_len": float(batch["input_ids"].shape[1]),
            },
            batch_size=len(batch["input_ids"]),
        )
        return mlm_loss + nsp_loss  # the paper's loss: the sum of the two

    def evaluation_step(self, batch: dict, stage: str) -> None:
        mlm_loss, nsp_loss, mlm, nsp = self.losses(batch)
        metrics = self.metrics[stage]
        if masked := int((batch["labels"] != -100).sum()):
            metrics["mlm_loss"].update(mlm_loss, weight=masked)
        metrics["mlm_acc"].update(mlm.flatten(0, 1), batch["labels"].flatten())
        metrics[f"mlm_ppl_{self.size}"].update(mlm, batch["labels"])
        metrics["nsp_acc"].update(nsp, batch["next_sentence_label"])
        self.log_dict({f"{stage}/{name}": metric for name, metric in metrics.items()})
        log_means(self, {f"{stage}/nsp_loss": nsp_loss}, len(batch["input_ids"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        optimizer = torch.optim.AdamW(
            decayed_and_not(self.bert, self.hparams.weight_decay),
            lr=self.hparams.lr,
            betas=(0.9, 0.999),
            eps=1e-6,
        )
        total = max(self.trainer.max_steps, self.hparams.warmup_steps + 1)
        schedule = get_linear_schedule_with_warmup(optimizer, self.hparams.warmup_steps, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
