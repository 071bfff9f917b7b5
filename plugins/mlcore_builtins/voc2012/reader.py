"""Reading the Pascal VOC on-disk layout: ``ImageSets/Main/<split>.txt``, ``Annotations/*.xml``,
``JPEGImages/*.jpg``."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

from mlcore.errors import MlcoreError

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


def split_ids(root: str, split: str) -> list[str]:
    path = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        have = sorted(f[:-4] for f in os.listdir(os.path.dirname(path)) if f.endswith(".txt") and "_" not in f) \
            if os.path.isdir(os.path.dirname(path)) else []
        raise MlcoreError(f"Unknown value {split!r} for argument split: {path!r} does not exist. "
                          f"Valid values are {have}")
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def image_labels(xml_path: str) -> list[tuple[str, bool]]:
    """``(name, difficult)`` of every ``<object>`` (names stripped and lower-cased)."""
    try:
        tree = ET.parse(xml_path)
    except FileNotFoundError:
        raise MlcoreError(f"annotation file {xml_path!r} does not exist") from None
    except ET.ParseError as exc:
        raise MlcoreError(f"annotation file {xml_path!r} is not valid XML: {exc}") from None
    out = []
    for obj in tree.getroot().iter("object"):
        name = obj.findtext("name")
        if name is None or not name.strip():
            raise MlcoreError(f"annotation file {xml_path!r}: an <object> has no <name>")
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        out.append((name.strip().lower(), difficult))
    return out


def read_split(root: str, split: str, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Image paths and the N×C target matrix of one split; difficult objects are skipped
    (an image whose objects are all difficult stays, with no positive label)."""
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    index = {c: j for j, c in enumerate(classes)}
    ids = split_ids(root, split)
    targets = np.zeros((len(ids), len(classes)), dtype=np.uint8)
    images = []
    for i, image_id in enumerate(ids):
        xml_path = os.path.join(root, "Annotations", f"{image_id}.xml")
        for name, difficult in image_labels(xml_path):
            if difficult:
                continue
            j = index.get(name)
            if j is None:
                raise MlcoreError(f"annotation file {xml_path!r}: unknown class {name!r}; "
                                  f"valid classes are {list(classes)}")
            targets[i, j] = 1
        images.append(os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
    return images, targets
