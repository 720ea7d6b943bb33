"""FCN: any (odd) input size comes back at that size, upsampling starts bilinear, the new score layers start
at zero, 255 is ignored, the stage schedule, and the four scores against torchmetrics."""

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from lightning_modules.common import SegmentationScores
from lightning_modules.fcn import FCN, FCNVGG16, bilinear_kernel, upsampler


@pytest.fixture(scope="module")
def net():
    return FCNVGG16(classes=5).eval()


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_size_equals_input_size_for_odd_sizes(net, variant):
    with torch.no_grad():
        assert net(torch.randn(1, 3, 37, 53), variant).shape == (1, 5, 37, 53)


def test_upsampling_starts_bilinear_and_the_final_one_stays_fixed():
    layer = upsampler(1, 2, learned=True)
    x = torch.rand(1, 1, 6, 6)
    # A stride-2 transposed conv with the bilinear kernel equals bilinear interpolation away from the border.
    ours = layer(x)[:, :, 1:-1, 1:-1]
    reference = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(ours[:, :, 2:-2, 2:-2], reference[:, :, 2:-2, 2:-2], atol=1e-6)
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(bilinear_kernel(1, 4)[0, 0], ramp[:, None] * ramp[None, :])
    assert not upsampler(3, 32, learned=False).weight.requires_grad


def test_skip_score_layers_start_at_zero_so_a_new_stage_starts_from_the_last(net):
    assert not net.score_pool4.weight.any() and not net.score_pool3.weight.any()
    with torch.no_grad():
        pool3 = net.to_pool3(torch.randn(1, 3, 64, 64))
        pool4 = net.to_pool4(pool3)
        assert (
            not net.score_pool4(pool4).any() and not net.score_pool3(pool3).any()
        )  # the skips add exactly 0


def test_pixels_marked_255_are_ignored():
    scores = SegmentationScores(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    scores.update(logits, torch.tensor([[[1, 255], [255, 255]]]))
    assert scores.compute()["pixel_acc"] == 1.0


def test_the_four_scores_agree_with_torchmetrics_and_a_hand_example():
    torch.manual_seed(0)
    logits, mask = torch.randn(4, 6, 16, 16), torch.randint(0, 6, (4, 16, 16))
    mask[:, :2] = 255
    scores = SegmentationScores(6)
    scores.update(logits, mask)
    ours = scores.compute()
    prediction = logits.argmax(1)
    assert torch.isclose(
        ours["mean_iu"].float(),
        MulticlassJaccardIndex(6, average="macro", ignore_index=255)(prediction, mask),
    )
    assert torch.isclose(
        ours["pixel_acc"].float(), MulticlassAccuracy(6, average="micro", ignore_index=255)(prediction, mask)
    )
    assert torch.isclose(
        ours["mean_acc"].float(), MulticlassAccuracy(6, average="macro", ignore_index=255)(prediction, mask)
    )
    # Hand example: truth (0, 0, 1, 1), prediction (0, 1, 1, 1): IU 1/2 and 2/3; t = (2, 2).
    hand = SegmentationScores(2)
    hand.update(
        F.one_hot(torch.tensor([[[0, 1, 1, 1]]]), 2).permute(0, 3, 1, 2).float(),
        torch.tensor([[[0, 0, 1, 1]]]),
    )
    values = hand.compute()
    assert torch.isclose(values["fw_iu"], torch.tensor(7 / 12, dtype=torch.float64))
    assert torch.isclose(values["mean_iu"], torch.tensor(7 / 12, dtype=torch.float64))


def test_stages_switch_at_the_configured_steps_and_a_bad_schedule_is_named():
    model = FCN(classes=3, stage_steps=(10, 20))
    assert model.variant == "32s"
    with pytest.raises(ValueError, match="hparams.stage_steps"):
        FCN(classes=3, stage_steps=(10,))


def test_each_stage_starts_its_solver_without_the_last_stages_momentum():
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    class MomentumSeen(pl.Callback):
        seen: list[bool] = []
        rates: list[float] = []

        def on_before_optimizer_step(self, trainer, module, optimizer):
            self.seen.append(any("momentum_buffer" in state for state in optimizer.state.values()))
            self.rates.append(optimizer.param_groups[0]["lr"])

    model = FCN(
        classes=3, stages=("32s", "16s"), stage_steps=(2,), width=0.125, lr=(1e-6, 1e-8), momentum=0.9
    )
    batches = DataLoader([([torch.rand(3, 32, 32)], [torch.randint(0, 3, (32, 32))])] * 4, batch_size=None)
    pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[MomentumSeen()],
    ).fit(model, batches)
    assert MomentumSeen.seen == [False, True, False, True]  # step 2 begins 16s with a fresh momentum
    assert MomentumSeen.rates == [
        1e-6,
        1e-6,
        1e-8,
        1e-8,
    ]  # and its own learning rate (the paper's 100× lower)
    with pytest.raises(ValueError, match=r"hparams.lr: one learning rate per stage of \['32s', '16s'\]"):
        FCN(classes=3, stages=("32s", "16s"), stage_steps=(2,), lr=(1e-6,))
