"""FC-DenseNet: the paper's parameter counts, input size kept, only new maps upsampled, HeUniform,
learning."""

import pytest
import torch

from datamodules.camvid import CamVid
from lightning_modules.tiramisu import FCDenseNet, Tiramisu
from tests.helpers import synthetic_shards
from tests.papers.helpers import fit_and_score


@pytest.mark.parametrize("depth, millions", [(56, 1.5), (67, 3.5), (103, 9.4)])
def test_parameter_counts_are_the_papers(depth, millions):
    with torch.device("meta"):
        net = FCDenseNet(11, depth)
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - millions) / millions < 0.1


def test_output_size_equals_input_size():
    assert FCDenseNet(11, 56).eval()(torch.zeros(1, 3, 45, 61)).shape == (1, 11, 45, 61)


def test_only_a_blocks_new_maps_are_upsampled():
    net = FCDenseNet(11, 103)
    assert net.transitions_up[0].in_channels == 15 * 16  # the bottleneck's new maps, not its input
    assert net.transitions_up[1].in_channels == 12 * 16


@pytest.mark.slow
def test_the_smoke_net_learns_camvid_shapes(tmp_path):
    shards = synthetic_shards(CamVid, tmp_path, train=6, val=2, test=2)
    data = CamVid(shards, 0, batch_size=2, crop=None)
    before, after = fit_and_score(
        Tiramisu(depth=56, lr=3e-3, crop=64), data, steps=40, metric="test/pixel_acc_fc_densenet56"
    )
    assert after > before + 0.1, (before, after)


def test_training_crops_and_flips_image_and_mask_together():
    model = Tiramisu(depth=56, crop=16)
    masks = torch.randint(0, 11, (2, 40, 48))
    images = masks[:, None].float().expand(-1, 3, -1, -1) / 10  # the mask is readable from the image
    torch.manual_seed(0)
    cropped, cropped_masks = model.crop_and_flip(images, masks)
    assert cropped.shape == (2, 3, 16, 16) and cropped_masks.shape == (2, 16, 16)
    assert torch.equal((cropped[:, 0] * 10).round().long(), cropped_masks)
    with pytest.raises(ValueError, match="hparams.crop"):
        Tiramisu(depth=56, crop=64).crop_and_flip(images, masks)


def test_fine_tuning_switches_to_full_images_at_its_own_learning_rate():
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    class Seen(pl.Callback):
        shapes: list = []
        rates: list = []

        def on_before_optimizer_step(self, trainer, module, optimizer):
            self.rates.append(optimizer.param_groups[0]["lr"])

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.shapes.append(module.crop_and_flip(*batch)[0].shape[-1])

    model = Tiramisu(depth=56, crop=32, finetune_after_step=2, lr=1e-3, finetune_lr=1e-4)
    batches = DataLoader([(torch.rand(2, 3, 64, 64), torch.randint(0, 11, (2, 64, 64)))] * 4, batch_size=None)
    pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Seen()],
    ).fit(model, batches)
    assert Seen.rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert Seen.shapes == [
        32,
        64,
        64,
        64,
    ]  # step 2 onwards (global_step counted after each step): full images
