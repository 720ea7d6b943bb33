"""The synthetic replica of PASCAL VOC: scenes of drawn objects written as VOCdevkit folders (JPEGs, XML
annotations, ImageSets lists and palette segmentation masks) that the same parser reads as the real thing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import PositiveInt
from scipy import ndimage

from datamodules.synthetic import encode, scene


def _xml(year: str, name: str, height: int, width: int, objs: list[dict], segmented: bool) -> str:
    from datamodules import voc  # the format's facts (voc.py imports this module)

    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = f"VOC{year}"
    ET.SubElement(root, "filename").text = f"{name}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = str(int(segmented))
    for obj in objs:
        node = ET.SubElement(root, "object")
        x0, y0, x1, y1 = obj["box"]
        for tag, value in (
            ("name", voc.CLASSES[obj["cls"]]),
            ("pose", "Unspecified"),
            ("truncated", 0),
            ("difficult", int(obj["difficult"])),
        ):
            ET.SubElement(node, tag).text = str(value)
        box = ET.SubElement(node, "bndbox")
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, tag).text = str(int(value))
    return ET.tostring(root, encoding="unicode")


def _mask(height: int, width: int, objs: list[dict]) -> Image.Image:
    """Class index per pixel with a 255 band on every object's border, as VOC's annotators drew it."""
    from datamodules import voc  # the format's facts (voc.py imports this module)

    mask = np.zeros((height, width), np.uint8)
    for obj in objs:
        mask[obj["mask"]] = obj["cls"] + 1
    for obj in objs:
        border = ndimage.binary_dilation(obj["mask"], iterations=2) & ~ndimage.binary_erosion(
            obj["mask"], iterations=1
        )
        mask[border] = voc.IGNORE
    image = Image.fromarray(mask, mode="P")
    image.putpalette(voc.palette())
    return image


def synthesize(
    raw_dir: Path,
    seed: int = 0,
    *,
    voc2007_trainval: PositiveInt = 24,
    voc2007_test: PositiveInt = 16,
    voc2012_trainval: PositiveInt = 24,
) -> None:
    from datamodules import voc  # the format's facts (voc.py imports this module)

    rng = np.random.default_rng(seed)
    plan = [
        ("2007", "trainval", voc2007_trainval),
        ("2007", "test", voc2007_test),
        ("2012", "trainval", voc2012_trainval),
    ]
    for year, image_set, count in plan:
        root = voc.voc_root(raw_dir, year)
        for folder in (
            "JPEGImages",
            "Annotations",
            "ImageSets/Main",
            "ImageSets/Segmentation",
            "SegmentationClass",
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
        names = [
            f"{year}_{image_set}_{i:06d}" if year == "2012" else f"{image_set[:2]}{i:06d}"
            for i in range(count)
        ]
        segmented = names[::2] if year == "2012" else []
        for name in names:
            height, width = int(rng.integers(180, 300)), int(rng.integers(240, 400))
            image, objs = scene(
                rng, height, width, len(voc.CLASSES), int(rng.integers(1, 4)), sizes=(0.12, 0.6)
            )
            for obj in objs:  # VOC flags small and hard-to-recognise objects as difficult
                x0, y0, x1, y1 = obj["box"]
                obj["difficult"] = (x1 - x0) * (y1 - y0) < 0.02 * height * width or rng.random() < 0.15
            (root / "JPEGImages" / f"{name}.jpg").write_bytes(encode(image, "JPEG", quality=90))
            (root / "Annotations" / f"{name}.xml").write_text(
                _xml(year, name, height, width, objs, name in segmented)
            )
            if name in segmented:
                _mask(height, width, objs).save(root / "SegmentationClass" / f"{name}.png")
        half = len(names) // 2
        lists = (
            {"test": names}
            if image_set == "test"
            else {"train": names[:half], "val": names[half:], "trainval": names}
        )
        for list_name, members in lists.items():
            (root / "ImageSets/Main" / f"{list_name}.txt").write_text("\n".join(members) + "\n")
        if segmented:
            seg = {
                "train": segmented[: len(segmented) // 2],
                "val": segmented[len(segmented) // 2 :],
                "trainval": segmented,
            }
            for list_name, members in seg.items():
                (root / "ImageSets/Segmentation" / f"{list_name}.txt").write_text("\n".join(members) + "\n")
