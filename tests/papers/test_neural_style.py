"""Neural Style: the Gram matrix and both losses as the paper defines them, VGG-19 with average pooling at the
paper's layers, and L-BFGS from white noise lowering both losses on real photographs and textures."""

import pytest
import torch
from torch import nn

from lightning_modules.neural_style import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    NeuralStyle,
    VGGFeatures,
    content_loss,
    gram,
    style_layer_loss,
    vgg19_features,
)


def test_gram_of_a_known_feature_map():
    features = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]]])  # N = 2 maps, M = 2 positions
    assert gram(features)[0].tolist() == [[5.0, 6.0], [6.0, 9.0]]


def test_the_style_loss_uses_the_papers_normalisation():
    features = torch.ones(1, 2, 1, 3)  # N = 2, M = 3: G = 3 everywhere
    assert style_layer_loss(features, torch.zeros(1, 2, 2)).item() == pytest.approx(4 * 9 / (4 * 4 * 9))


def test_the_content_loss_is_zero_for_the_content_image_itself():
    vgg = VGGFeatures(pretrained=False)
    image = torch.rand(1, 3, 32, 32)
    (at,) = CONTENT_LAYER.values()
    assert content_loss(vgg(image)[at], vgg(image)[at]).item() == 0.0
    assert content_loss(vgg(torch.rand(1, 3, 32, 32))[at], vgg(image)[at]).item() > 0


def test_vgg19_reads_the_papers_layers_with_average_pooling():
    vgg = VGGFeatures(pretrained=False)
    assert not any(isinstance(m, nn.MaxPool2d) for m in vgg.modules())
    convs = [i for i, m in enumerate(vgg.layers) if isinstance(m, nn.Conv2d)]
    # conv1_1, conv2_1, conv3_1, conv4_1, conv5_1 are convolutions 1, 3, 5, 9, 13; conv4_2 is the 10th
    assert [convs[n] + 1 for n in (0, 2, 4, 8, 12)] == list(STYLE_LAYERS.values())
    assert convs[9] + 1 == CONTENT_LAYER["conv4_2"]
    assert not any(p.requires_grad for p in vgg.parameters())


def test_the_pretrained_features_are_torchvisions_vgg19_features(monkeypatch):
    """Built without the classifier, they still take every `features.*` weight of torchvision's VGG-19 file
    (a fake of it here: the real one is 548 MB)."""
    from torchvision.models import vgg19

    import lightning_modules.neural_style as module

    state = vgg19().state_dict()

    class Weights:
        def get_state_dict(self, **_):
            return state

    monkeypatch.setattr(module, "pretrained_weights", lambda _: Weights())
    ours = vgg19_features(pretrained=True).state_dict()
    assert ours.keys() == {k.removeprefix("features.") for k in state if k.startswith("features.")}
    assert all(torch.equal(value, state[f"features.{key}"]) for key, value in ours.items())


def test_a_size_mismatch_between_data_and_images_is_named():
    model = NeuralStyle(num_classes=1, size=16)
    batch = (torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24), torch.tensor([0]))
    with pytest.raises(ValueError, match="data.size"):
        model.losses(batch)


def test_lbfgs_from_white_noise_lands_far_closer_to_each_target_than_the_other_picture(tmp_path):
    """The paper-claims target: the synthesised image's style distance far below the photograph's own, and its
    content distance far below the painting's."""
    from datamodules.style import Style
    from tests.helpers import synthetic_shards
    from tests.papers.helpers import trainer

    shards = synthetic_shards(Style, tmp_path, contents=1, styles=1, size=48)
    data = Style(shards, 0, size=32)
    torch.manual_seed(0)
    # Random weights (see params): α/β = 3e-5 weighs content enough that both margins clear 5× for any seed
    # (at the smoke's 1e-5 the content margin is 4.6–5.6× across seeds 0–2; the style one 67–169×)
    model = NeuralStyle(num_classes=1, size=32, iterations_per_step=10, ratio=3e-5)
    before = trainer(1).test(model, datamodule=data, verbose=False)[0]
    trainer(4).fit(model, datamodule=data)
    after = trainer(1).test(model, datamodule=data, verbose=False)[0]
    assert after["test/style_loss"] < before["test/style_loss"] / 5
    assert after["test/content_loss"] < before["test/content_loss"]
    assert after["test/style_loss"] < after["test/style_loss_of_content_image"] / 5
    assert after["test/content_loss"] < after["test/content_loss_of_style_image"] / 5
