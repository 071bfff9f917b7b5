"""Reading COCO's ``instances_<split><year>.json`` into a label index."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index, decode_json

try:
    import msgspec

    class _Image(msgspec.Struct):
        id: int
        file_name: str

    class _Annotation(msgspec.Struct):
        image_id: int
        category_id: int

    class _Category(msgspec.Struct):
        id: int
        name: str

    class _Instances(msgspec.Struct):
        images: list[_Image]
        annotations: list[_Annotation]
        categories: list[_Category]

    INSTANCES: object = _Instances
except ImportError:  # json.load fallback
    INSTANCES = None


def _from_json(obj: dict):
    ns = SimpleNamespace
    return ns(images=[ns(id=i["id"], file_name=i["file_name"]) for i in obj["images"]],
              annotations=[ns(image_id=a["image_id"], category_id=a["category_id"]) for a in obj["annotations"]],
              categories=[ns(id=c["id"], name=c["name"]) for c in obj["categories"]])


def build_split(root: str, split: str, year: int, keep_empty: bool) -> LabelIndex:
    path = annotation_path(root, split, year)
    data = decode_json(path, INSTANCES, _from_json)
    classes = [c.name for c in data.categories]
    col = {c.id: j for j, c in enumerate(data.categories)}
    row = {im.id: i for i, im in enumerate(data.images)}
    n = len(data.images)
    rows = np.empty(len(data.annotations), dtype=np.int64)
    cols = np.empty(len(data.annotations), dtype=np.int64)
    for k, a in enumerate(data.annotations):  # crowd annotations count too (the seed's rule)
        r, c = row.get(a.image_id), col.get(a.category_id)
        if r is None:
            raise MlcoreError(f"annotation file {path!r}: an annotation refers to image id {a.image_id}, "
                              f"which is not in its images list")
        if c is None:
            raise MlcoreError(f"annotation file {path!r}: an annotation of image id {a.image_id} has "
                              f"category id {a.category_id}, which is not in its categories list")
        rows[k], cols[k] = r, c
    targets = np.zeros((n, len(classes)), dtype=np.uint8)
    targets[rows, cols] = 1
    keep = np.arange(n) if keep_empty else np.flatnonzero(targets.any(1))
    folder = f"{split}{year}"
    present = set(os.listdir(os.path.join(root, folder))) if os.path.isdir(os.path.join(root, folder)) else set()
    images = []
    for i in keep.tolist():
        im = data.images[i]
        if im.file_name not in present:
            raise MlcoreError(f"image id {im.id} is listed in {path!r} but "
                              f"{os.path.join(root, folder, im.file_name)!r} does not exist")
        images.append(f"{folder}/{im.file_name}")
    return LabelIndex(classes, {split: SplitIndex(images, targets[keep])})


def annotation_path(root: str, split: str, year: int) -> str:
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    if split not in ("train", "val"):
        raise MlcoreError(f"Unknown value {split!r} for argument split. Valid values are ['train', 'val']")
    path = os.path.join(root, "annotations", f"instances_{split}{year}.json")
    if not os.path.isfile(path):
        raise MlcoreError(f"annotation file {path!r} does not exist (COCO {year}: put the annotations "
                          f"under {os.path.join(root, 'annotations')!r})")
    return path


def coco_index(root: str, split: str, year: int, keep_empty: bool) -> LabelIndex:
    path = annotation_path(root, split, year)
    params = {"root": os.path.abspath(root), "split": split, "year": year, "keep_empty": keep_empty}
    return cached_index("coco", params, [path], lambda: build_split(root, split, year, keep_empty))
