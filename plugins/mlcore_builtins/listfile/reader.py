"""Reading ``label.txt`` and ``<split>.txt`` list files into a label index."""
from __future__ import annotations

import os

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index, targets_from_lists


def read_labels(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise MlcoreError(f"label file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        classes = [line.strip() for line in f if line.strip()]
    if not classes:
        raise MlcoreError(f"label file {path!r} names no class")
    seen = set()
    for c in classes:
        if c in seen:
            raise MlcoreError(f"label file {path!r} names {c!r} twice")
        seen.add(c)
    return classes


def build_index(list_path: str, split: str, classes: list[str], image_root: str) -> LabelIndex:
    col = {c: j for j, c in enumerate(classes)}
    images, labels = [], []
    with open(list_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            if "\t" not in line:
                raise MlcoreError(f"{list_path}:{lineno}: expected image_path<TAB>label1,label2, got {line!r}")
            path, _, names = line.partition("\t")
            row = []
            for name in filter(None, (n.strip() for n in names.split(","))):
                j = col.get(name)
                if j is None:
                    raise MlcoreError(f"{list_path}:{lineno}: unknown label {name!r} (not in the label file)")
                if j not in row:
                    row.append(j)
            full = os.path.join(image_root, path.strip())
            if not os.path.isfile(full):
                raise MlcoreError(f"{list_path}:{lineno}: image {full!r} does not exist")
            images.append(full)
            labels.append(row)
    return LabelIndex(classes, {split: SplitIndex(images, targets_from_lists(labels, len(classes)))})


def list_index(root: str, split: str, label_file: str, image_root: str | None) -> LabelIndex:
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    label_path = os.path.join(root, label_file)
    classes = read_labels(label_path)
    list_path = os.path.join(root, f"{split}.txt")
    if not os.path.isfile(list_path):
        have = sorted(f[:-4] for f in os.listdir(root) if f.endswith(".txt") and f != label_file)
        raise MlcoreError(f"Unknown value {split!r} for argument split: {list_path!r} does not exist. "
                          f"Valid values are {have}")
    base = os.path.abspath(image_root or root)
    params = {"split": split, "image_root": base, "classes": classes}
    return cached_index("listfile", params, [label_path, list_path],
                        lambda: build_index(list_path, split, classes, base))
