"""Reading the Pascal VOC on-disk layout: ``ImageSets/Main/<split>.txt``, ``Annotations/*.xml``,
``JPEGImages/*.jpg`` — into a cached label index."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index, targets_from_lists

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


#: the release's split lists (a folder may hold only some of them, or others of its own)
VOC_SPLITS = ("train", "val", "trainval", "test")


def split_files(root: str) -> dict[str, str]:
    """The split lists of ``ImageSets/Main`` (``train.txt``, ``val.txt``, ``trainval.txt``…;
    the per-class ``<class>_<split>.txt`` files are not splits)."""
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    main = os.path.join(root, "ImageSets", "Main")
    if not os.path.isdir(main):
        raise MlcoreError(f"{root!r} is not a VOC folder: {main!r} does not exist")
    return {f[:-4]: os.path.join(main, f) for f in sorted(os.listdir(main)) if f.endswith(".txt") and "_" not in f}


def read_ids(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig") as f:
        return [line.split()[0] for line in f if line.strip()]


def image_labels(xml_path: str) -> list[tuple[str, bool]]:
    """``(name, difficult)`` of every ``<object>`` (names stripped and lower-cased; a
    missing or empty ``<difficult>`` counts as 0; anything but 0 or 1 is an error)."""
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
        difficult = (obj.findtext("difficult") or "0").strip() or "0"
        if difficult not in ("0", "1"):
            raise MlcoreError(f"annotation file {xml_path!r}: the <object> {name.strip()!r} has <difficult>"
                              f"{difficult}</difficult>; expected 0 or 1")
        out.append((name.strip().lower(), difficult == "1"))
    return out


#: what a label gets from an image whose only objects of that class are ``<difficult>1``
#: (an object of the class that is not difficult makes the label positive in every mode):
#: ``drop`` nothing (negative: the seed's rule), ``ignore`` unknown (-1: left out of the
#: loss and of that label's AP, as mmpretrain evaluates VOC), ``positive`` positive
DIFFICULT_MODES = ("drop", "ignore", "positive")


def mode_of(difficult: str | Mapping[str, str], split: str) -> str:
    """The difficult mode of ``split``: one mode for every split, or a mapping of split
    names to modes (a split it does not name: ``drop``)."""
    mode = difficult.get(split, "drop") if isinstance(difficult, Mapping) else difficult
    if mode not in DIFFICULT_MODES:
        raise MlcoreError(f"Unknown value {mode!r} for argument difficult. Valid values are {list(DIFFICULT_MODES)}")
    return mode


def build_index(root: str, classes: Sequence[str], splits: dict[str, list[str]],
                difficult: str | Mapping[str, str] = "drop") -> LabelIndex:
    modes = {name: mode_of(difficult, name) for name in splits}
    index = {c: j for j, c in enumerate(classes)}
    images_dir = os.path.join(root, "JPEGImages")
    present = set(os.listdir(images_dir)) if os.path.isdir(images_dir) else set()
    labels: dict[str, list[int]] = {}
    hard: dict[str, list[int]] = {}  # labels with difficult objects only
    for image_id in sorted({i for ids in splits.values() for i in ids}):
        xml_path = os.path.join(root, "Annotations", f"{image_id}.xml")
        row, only_difficult = [], []
        for name, is_difficult in image_labels(xml_path):
            j = index.get(name)
            if j is None:
                raise MlcoreError(f"annotation file {xml_path!r}: unknown class {name!r}; "
                                  f"valid classes are {list(classes)}")
            if is_difficult:
                only_difficult.append(j)
            elif j not in row:
                row.append(j)
        if f"{image_id}.jpg" not in present:
            raise MlcoreError(f"image {image_id!r} is listed but {os.path.join(images_dir, image_id + '.jpg')!r} "
                              f"does not exist")
        labels[image_id], hard[image_id] = row, sorted(set(only_difficult) - set(row))
    out = LabelIndex(list(classes))
    for name, ids in splits.items():
        mode = modes[name]
        positives = [labels[i] + (hard[i] if mode == "positive" else []) for i in ids]
        unknown = [hard[i] for i in ids] if mode == "ignore" else None
        out.splits[name] = SplitIndex([f"JPEGImages/{i}.jpg" for i in ids],
                                      targets_from_lists(positives, len(classes), unknown))
    return out


def voc_index(root: str, classes: Sequence[str], kind: str = "voc",
              difficult: str | Mapping[str, str] = "drop") -> LabelIndex:
    """The label index of every split of a VOC-layout folder (cached); ``difficult``: one
    of :data:`DIFFICULT_MODES`, or a mapping of split names to them (see :func:`mode_of`)."""
    files = split_files(root)
    if not files:
        raise MlcoreError(f"{os.path.join(root, 'ImageSets', 'Main')!r} holds no split list (train.txt, val.txt…)")
    splits = {name: read_ids(path) for name, path in files.items()}
    xmls = sorted({os.path.join(root, "Annotations", f"{i}.xml") for ids in splits.values() for i in ids})
    missing = next((x for x in xmls if not os.path.isfile(x)), None)
    if missing:
        raise MlcoreError(f"annotation file {missing!r} does not exist")
    if isinstance(difficult, Mapping):  # a misspelt split would silently fall back to drop
        unknown = sorted(set(difficult) - set(splits) - set(VOC_SPLITS))  # a recipe's test with test.txt not yet there: fine
        if unknown:
            raise MlcoreError(f"difficult: {unknown[0]!r} is not a split of {root!r}; its splits are {sorted(splits)}")
    modes = {name: mode_of(difficult, name) for name in splits}
    return cached_index(kind, {"root": os.path.abspath(root), "classes": list(classes), "difficult": modes},
                        list(files.values()) + xmls, lambda: build_index(root, classes, splits, modes))
