"""The seed's VG500 from Visual Genome 1.4's ``objects.json``, reproduced exactly.

An object's name is ``names[0]``; the classes are the 500 most frequent names, ties in
order of first appearance (``collections.Counter.most_common``); images in file order,
those without a top-500 object left out; ``random.seed(202)`` then ``random.shuffle`` of
that list; the first ``int(0.8 * n)`` are train, the rest val. Objects without any name
are ignored (the seed would have crashed on them).
"""
from __future__ import annotations

import os
import random
from collections import Counter
from types import SimpleNamespace

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index, decode_json, targets_from_lists

IMAGE_DIRS = ("VG_100K", "VG_100K_2")

try:
    import msgspec

    class _Object(msgspec.Struct):
        names: list[str] = []

    class _Image(msgspec.Struct):
        image_id: int
        objects: list[_Object]

    IMAGES: object = list[_Image]
except ImportError:
    IMAGES = None


def _from_json(obj: list):
    ns = SimpleNamespace
    return [ns(image_id=e["image_id"], objects=[ns(names=o.get("names", [])) for o in e["objects"]]) for e in obj]


def _read_list(path: str, known: dict[int, int]) -> list[int]:
    """Rows of the images named in an official split list (``2345.jpg``, ``VG_100K/2345.jpg``, ``2345``)."""
    if not os.path.isfile(path):
        raise MlcoreError(f"split list {path!r} does not exist")
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            name = line.strip().split("\t")[0].split()[0] if line.strip() else ""
            if not name:
                continue
            stem = os.path.splitext(os.path.basename(name))[0]
            if not stem.isdigit() or int(stem) not in known:
                raise MlcoreError(f"{path}:{lineno}: {name!r} is not an image of VG500 (no top-500 object, "
                                  f"or not in objects.json)")
            rows.append(known[int(stem)])
    return rows


def build_index(root: str, num_classes: int, seed: int, train_fraction: float,
                train_list: str | None, val_list: str | None) -> LabelIndex:
    path = os.path.join(root, "objects.json")
    data = decode_json(path, IMAGES, _from_json)
    if not isinstance(data, list):
        raise MlcoreError(f"annotation file {path!r} should hold a list of images")
    counter = Counter(o.names[0] for e in data for o in e.objects if o.names)
    classes = [name for name, _ in counter.most_common()[:num_classes]]
    col = {c: j for j, c in enumerate(classes)}
    entries = []  # (image_id, label columns), file order
    for e in data:
        labels = []
        for o in e.objects:
            j = col.get(o.names[0]) if o.names else None
            if j is not None and j not in labels:
                labels.append(j)
        if labels:
            entries.append((e.image_id, labels))
    listed = {d: set(os.listdir(os.path.join(root, d))) for d in IMAGE_DIRS if os.path.isdir(os.path.join(root, d))}
    paths = []
    for image_id, _ in entries:
        name = f"{image_id}.jpg"
        folder = next((d for d in IMAGE_DIRS if name in listed.get(d, ())), None)
        if folder is None:
            raise MlcoreError(f"image id {image_id}: {name} is in neither "
                              f"{os.path.join(root, IMAGE_DIRS[0])!r} nor {os.path.join(root, IMAGE_DIRS[1])!r}")
        paths.append(f"{folder}/{name}")
    if train_list or val_list:
        if not (train_list and val_list):
            raise MlcoreError("vg500: give both train_list and val_list, or neither")
        known = {image_id: i for i, (image_id, _) in enumerate(entries)}
        split_rows = {"train": _read_list(train_list, known), "val": _read_list(val_list, known)}
    else:
        order = list(range(len(entries)))
        random.Random(seed).shuffle(order)  # the same permutation as random.seed(202); shuffle(list)
        n_train = int(train_fraction * len(order))
        split_rows = {"train": order[:n_train], "val": order[n_train:]}
    out = LabelIndex(classes)
    for split, rows in split_rows.items():
        out.splits[split] = SplitIndex([paths[r] for r in rows],
                                       targets_from_lists([entries[r][1] for r in rows], len(classes)))
    return out


def vg_index(root: str, num_classes: int = 500, seed: int = 202, train_fraction: float = 0.8,
             train_list: str | None = None, val_list: str | None = None) -> LabelIndex:
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    path = os.path.join(root, "objects.json")
    if not os.path.isfile(path):
        raise MlcoreError(f"annotation file {path!r} does not exist (a Visual Genome 1.4 folder holds "
                          f"objects.json, VG_100K/ and VG_100K_2/)")
    lists = [p for p in (train_list, val_list) if p and os.path.isfile(p)]
    params = {"root": os.path.abspath(root), "num_classes": num_classes, "seed": seed,
              "train_fraction": train_fraction, "train_list": train_list, "val_list": val_list}
    return cached_index("vg500", params, [path] + lists,
                        lambda: build_index(root, num_classes, seed, train_fraction, train_list, val_list))
