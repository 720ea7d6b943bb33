"""ImageNet: the three official archives, streamed; the devkit's leaf synsets; odd image files normalised."""

import io
import tarfile

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from datamodules.files import DataError
from datamodules.imagenet import DEVKIT, MEAN, STD, TRAIN_TAR, ImageNet, check_layout, download, read_devkit
from datamodules.shards import read_meta
from tests.helpers import synthetic_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(
        ImageNet, tmp_path_factory.mktemp("imagenet"), classes=4, train_per_class=6, val_per_class=3
    )


def test_round_trip_counts_and_the_devkit_skips_inner_synsets(shards):
    meta = read_meta(shards)
    assert {s: v["samples"] for s, v in meta["splits"].items()} == {"train": 24, "val": 12}
    assert meta["splits"]["train"]["classes"] == [
        "n01440764 tench, Tinca tinca",
        "n01443537 goldfish, Carassius auratus",
        "n01484850 great white shark, white shark",
        "n01491361 tiger shark, Galeocerdo cuvieri",
    ]


def test_grayscale_cmyk_and_png_files_become_rgb_jpegs(shards):
    raw = shards.parent / "raw"
    with (
        tarfile.open(raw / TRAIN_TAR) as outer,
        tarfile.open(fileobj=outer.extractfile(outer.getmembers()[0])) as inner,
    ):
        originals = [Image.open(io.BytesIO(inner.extractfile(m).read())) for m in inner.getmembers()[:3]]
    assert [(im.format, im.mode) for im in originals] == [("JPEG", "L"), ("JPEG", "CMYK"), ("PNG", "RGB")]
    data = ImageNet(shards, 0)
    for sample in data.read_all("train"):
        assert sample["jpg"].mode == "RGB"
    images, labels = next(iter(ImageNet(shards, 0, batch_size=4, crop=64, resize=72).test_dataloader()))
    assert images.shape == (4, 3, 64, 64)


def test_batches_leave_the_workers_as_uint8_and_are_normalised_on_the_device(shards):
    data = ImageNet(shards, 0, batch_size=4, crop=64, resize=72, num_workers=1)
    images, labels = next(iter(data.train_dataloader()))
    assert images.dtype == torch.uint8
    floats, same_labels = data.on_after_batch_transfer((images, labels), 0)
    expected = v2.Normalize(MEAN, STD)(images.float() / 255)  # torchvision's recipe, per sample
    assert (
        floats.dtype == torch.float32
        and torch.allclose(floats, expected, atol=1e-6)
        and same_labels is labels
    )


def test_ten_crop_testing_gives_corners_centre_and_mirrors(shards):
    images, labels = next(
        iter(ImageNet(shards, 0, batch_size=2, crop=48, resize=64, test_crops=10).test_dataloader())
    )
    assert images.shape == (2, 10, 3, 48, 48) and labels.shape == (2,)
    assert torch.equal(images[:, 5], images[:, 1].flip(-1))  # mirrored top-left = flipped top-right
    assert ImageNet(shards, 0).on_after_batch_transfer((images, labels), 0)[0].shape == (2, 10, 3, 48, 48)


def test_validation_labels_follow_the_ground_truth_file(shards):
    synsets, val_wnids = read_devkit(shards.parent / "raw")
    labels = [s["cls"] for s in ImageNet(shards, 0).read_all("val")]
    assert [synsets[c][0] for c in labels] == val_wnids


def test_download_explains_what_to_obtain(tmp_path):
    with pytest.raises(DataError, match="ILSVRC2012_img_train.tar.*source: local"):
        download(tmp_path, tmp_path)
    with pytest.raises(DataError, match=DEVKIT):
        check_layout(tmp_path)
