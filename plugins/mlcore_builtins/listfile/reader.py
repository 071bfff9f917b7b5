"""Reading ``label.txt`` and ``<split>.txt`` list files into a label index.

Text is read as ``utf-8-sig``: a byte-order mark, which Windows editors put at the start
of a file, would otherwise glue itself to the first label or image path and make it
unmatched (``unknown label 'circle'``).

The cached index holds what the text files say (every listed image, its path resolved
against ``image_root``); what depends on the disk or is only worth a warning — images
listed twice, images that do not exist — is checked after it is loaded, so a warning
comes on every build, not only the first, and a restored image needs no rebuild (the
same arrangement as ``nuswide``).
"""
from __future__ import annotations

import os
import warnings
from collections import Counter

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index, targets_from_lists

#: how many names a warning or an error about many images gives
SHOW = 5
MISSING_MODES = ("error", "skip")


def shown(path: str) -> str:
    """A path as written, beside its absolute form when that differs: messages show both,
    so that a relative path resolved from an unexpected folder is seen at once."""
    full = os.path.abspath(path)
    return repr(path) if full == path else f"{path!r} (resolved: {full!r})"


def read_labels(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise MlcoreError(f"label file {shown(path)} does not exist")
    with open(path, encoding="utf-8-sig") as f:
        classes = [line.strip() for line in f if line.strip()]
    if not classes:
        raise MlcoreError(f"label file {path!r} names no class")
    seen = set()
    for c in classes:
        if c in seen:
            raise MlcoreError(f"label file {path!r} names {c!r} twice")
        seen.add(c)
    return classes


def listed_lines(list_path: str) -> list[tuple[int, str]]:
    """``(line number, image path as written)`` of every non-blank line, in the order of
    the index's images — for messages, read again only when there is something to say."""
    out = []
    with open(list_path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                out.append((lineno, line.rstrip("\n\r").partition("\t")[0].strip()))
    return out


def build_index(list_path: str, split: str, classes: list[str], image_root: str) -> LabelIndex:
    """The index of one list; image paths are joined to ``image_root`` and normalized, so
    that ``./a.jpg`` and ``a.jpg`` are one image (for the duplicate check)."""
    col = {c: j for j, c in enumerate(classes)}
    images, labels = [], []
    with open(list_path, encoding="utf-8-sig") as f:
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
            if not path.strip():
                raise MlcoreError(f"{list_path}:{lineno}: empty image path")
            images.append(os.path.normpath(os.path.join(image_root, path.strip())))
            labels.append(row)
    return LabelIndex(classes, {split: SplitIndex(images, targets_from_lists(labels, len(classes)))})


def warn_duplicates(list_path: str, images: list[str]) -> None:
    """One warning when an image is listed more than once: a duplicate weighs twice in
    training and, in an evaluation split, in the score — often a merge or copy-paste slip."""
    counts = Counter(images)
    if len(counts) == len(images):
        return
    twice = {p for p, n in counts.items() if n > 1}
    where: dict[str, list[int]] = {}
    written: dict[str, str] = {}
    for full, (lineno, text) in zip(images, listed_lines(list_path)):
        if full in twice:
            where.setdefault(full, []).append(lineno)
            written.setdefault(full, text)
    examples = ", ".join(f"{written[p]!r} (lines {', '.join(map(str, where[p]))})"
                         for p in list(where)[:SHOW])
    more = ", …" if len(where) > SHOW else ""
    n = len(twice)
    warnings.warn(f"{list_path}: {n} image{' is' if n == 1 else 's are'} listed more than once "
                  f"({len(images) - len(counts)} extra line(s)): {examples}{more}", stacklevel=4)


def drop_missing(list_path: str, index: LabelIndex, split: str, base_note: str, mode: str) -> LabelIndex:
    """Every listed image whose file does not exist, in one message (count, and the first
    few with their line numbers): an MlcoreError (``missing_images: error``) or a warning
    and the index without them (``skip``)."""
    s = index.split(split)
    gone = [i for i, p in enumerate(s.images) if not os.path.isfile(p)]
    if not gone:
        return index
    lines = listed_lines(list_path)
    names = ", ".join(f"{lines[i][1]!r} (line {lines[i][0]})" for i in gone[:SHOW])
    more = ", …" if len(gone) > SHOW else ""
    what = f"{list_path}: {len(gone)} of the {len(s.images)} listed images do not exist under {base_note}"
    if mode == "error":
        raise MlcoreError(f"{what}: {names}{more} (missing_images: skip leaves them out)")
    warnings.warn(f"{what} and are left out: {names}{more} (missing_images: error makes this an error)",
                  stacklevel=4)
    gone_set = set(gone)
    keep = [i for i in range(len(s.images)) if i not in gone_set]
    if not keep:
        raise MlcoreError(f"{what}: no image of split {split!r} is left")
    return LabelIndex(index.classes, {split: SplitIndex([s.images[i] for i in keep], s.targets[keep])})


def resolve_image_root(root: str, image_root: str | None) -> tuple[str, str]:
    """``(absolute folder, how to name it in messages)``. ``image_root`` is relative to
    ``root`` — the rule of every path a dataset reads inside its folder — and ``root``
    to the working directory; an absolute path is used as it is."""
    root_abs = os.path.abspath(root)
    if image_root is None:
        return root_abs, f"root {shown(root)}"
    full = os.path.normpath(os.path.join(root_abs, image_root))
    note = f"image_root {image_root!r} (resolved: {full!r}, relative to root)"
    if not os.path.isdir(full):
        hint = ""
        if not os.path.isabs(image_root) and os.path.isdir(image_root):
            hint = (f"; a folder {image_root!r} exists relative to the working directory — image_root "
                    f"is relative to root: write it relative to root, or as an absolute path")
        raise MlcoreError(f"dataset {note} does not exist{hint}")
    return full, note


def list_index(root: str, split: str, label_file: str, image_root: str | None,
               missing_images: str = "error") -> LabelIndex:
    if missing_images not in MISSING_MODES:
        raise MlcoreError(f"Unknown value {missing_images!r} for argument missing_images. "
                          f"Valid values are {list(MISSING_MODES)}")
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {shown(root)} does not exist")
    label_path = os.path.join(root, label_file)
    classes = read_labels(label_path)
    list_path = os.path.join(root, f"{split}.txt")
    if not os.path.isfile(list_path):
        have = sorted(f[:-4] for f in os.listdir(root) if f.endswith(".txt") and f != label_file)
        raise MlcoreError(f"Unknown value {split!r} for argument split: {list_path!r} does not exist. "
                          f"Valid values are {have}")
    base, base_note = resolve_image_root(root, image_root)
    params = {"split": split, "image_root": base, "classes": classes, "format": 2}
    index = cached_index("listfile", params, [label_path, list_path],
                         lambda: build_index(list_path, split, classes, base))
    warn_duplicates(list_path, index.split(split).images)
    return drop_missing(list_path, index, split, base_note, missing_images)
