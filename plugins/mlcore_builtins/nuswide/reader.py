"""Reading the official NUS-WIDE release into a cached label index, and choosing a
split's images from it.

Layout (the release's own names)::

    ConceptsList/Concepts81.txt                         81 concept names, one a line
    ImageList/TrainImagelist.txt, TestImagelist.txt     one image a line: actor\\0001_2124494179.jpg
    Groundtruth/TrainTestLabels/Labels_<c>_{Train,Test}.txt   one 0/1 a line, in the list's order
    Flickr/<folder>/<file>.jpg                          the images (many gone from Flickr)

The cached index holds what the text files say — every listed image with its labels —
so it depends on those 165 files only. What depends on the disk's images or on the
settings (the images that are missing, ``drop_unlabeled``) is applied after it is loaded,
on one split: a downloaded image or a changed setting needs no rebuild, and the summary
warning about missing images comes on every build, not only the first.
"""
from __future__ import annotations

import codecs
import os
import warnings
from collections.abc import Sequence

import numpy as np

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index

SPLITS = {"train": "Train", "test": "Test"}  # split name -> the word in the release's file names
MISSING_MODES = ("skip", "error")
#: how many missing images a warning or an error names (the real release misses thousands)
SHOW_MISSING = 5

_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # \t \n \v \f \r space


def concepts_path(root: str) -> str:
    return os.path.join(root, "ConceptsList", "Concepts81.txt")


def list_path(root: str, split: str) -> str:
    return os.path.join(root, "ImageList", f"{SPLITS[split]}Imagelist.txt")


def label_path(root: str, concept: str, split: str) -> str:
    return os.path.join(root, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{SPLITS[split]}.txt")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise MlcoreError(f"Unknown value {split!r} for argument split. Valid values are {sorted(SPLITS)}")


def _text_lines(path: str, what: str) -> list[str]:
    """The lines of a text file, right-stripped (CRLF, trailing spaces), without the blank
    lines at its end; a blank line before the end is an error, since the label files are
    matched to the image list line by line."""
    if not os.path.isfile(path):
        raise MlcoreError(f"{what} {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MlcoreError(f"{what} {path!r} is not UTF-8 text: {exc}") from None
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise MlcoreError(f"{what} {path!r}, line {lineno}: empty line")
    return [line.strip() for line in lines]


def read_concepts(path: str) -> list[str]:
    """The concept names, in the file's order (the class order)."""
    names = _text_lines(path, "concept list")
    if not names:
        raise MlcoreError(f"concept list {path!r} names no concept")
    seen = set()
    for name in names:
        if name in seen:
            raise MlcoreError(f"concept list {path!r} names {name!r} twice")
        seen.add(name)
    return names


def image_path(listed: str) -> str:
    """The path below the root of an image as the list writes it: ``actor\\0001_2.jpg`` →
    ``Flickr/actor/0001_2.jpg``. A list that carries the release machine's prefix
    (``C:\\ImageData\\Flickr\\actor\\…``, as ``Imagelist.txt`` does) is cut after ``Flickr``."""
    p = listed.replace("\\", "/")
    k = p.lower().rfind("flickr/")
    if k == 0 or (k > 0 and p[k - 1] == "/"):
        p = p[k + len("flickr/"):]
    return "Flickr/" + p.lstrip("/")


def read_image_list(path: str) -> list[str]:
    """The listed images as paths below the root, in the list's order."""
    return [image_path(line) for line in _text_lines(path, "image list")]


def parse_labels(path: str, expected: int) -> np.ndarray:
    """The 0/1 column of one label file as uint8, parsed with numpy over the file's bytes
    (one pass, no per-line Python: the real files have 161,789 and 107,859 lines, 162 of
    them). Every line holds one ``0`` or ``1`` with any whitespace around it (``\\r\\n``,
    trailing spaces); blank lines at the end are ignored. Raises MlcoreError naming the
    file and a line when it has another number of lines than ``expected`` (its image
    list's: the first line too many, or its last line), or the file and the 1-based line
    of the first value that is not 0 or 1."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    buf = np.frombuffer(data, dtype=np.uint8)
    fast = _fixed_width(buf, expected)
    if fast is not None:
        return fast
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(buf)]))
    filled = ~_WHITESPACE[buf]
    seen = np.concatenate(([0], np.cumsum(filled, dtype=np.int64)))
    per_line = seen[stops] - seen[starts]  # non-blank characters on each line
    nonblank = np.flatnonzero(per_line)
    n = int(nonblank[-1]) + 1 if len(nonblank) else 0  # blank lines at the end do not count
    if n != expected:  # named at the line where the two part: the first extra line, or the last one
        where = (f"line {expected + 1}: the file has {n} lines" if n > expected
                 else f"line {n}: the file ends here, after {n} lines" if n else "the file is empty")
        raise MlcoreError(f"label file {path!r}, {where}, but its image list has {expected} images "
                          f"(one 0/1 per listed image)")
    if n and (per_line[:n] == 1).all():  # one character a line: those characters, in line order
        values = buf[np.flatnonzero(filled)] - ord("0")  # uint8: anything below '0' wraps above 1
        if (values <= 1).all():
            return values
    # the error path: find the first bad line
    for lineno, line in enumerate(data.split(b"\n")[:n], 1):
        if line.strip() not in (b"0", b"1"):
            raise MlcoreError(f"label file {path!r}, line {lineno}: expected 0 or 1, got "
                              f"{line.strip().decode('utf-8', 'replace')!r}")
    return np.zeros(0, dtype=np.uint8)  # n == 0: an empty list and an empty file


def _fixed_width(buf: np.ndarray, expected: int) -> np.ndarray | None:
    """The values of a file whose lines all have the first line's width (``0\\n``,
    ``0 \\r\\n``; generated files usually are) — a strided view, no scan for newlines; None
    when the file is not so regular (then the general parse decides, and names errors)."""
    width = int(np.argmax(buf == 10)) + 1 if len(buf) else 0
    if width < 2 or buf[width - 1] != 10 or len(buf) != width * expected:
        return None
    rows = buf.reshape(expected, width)
    values = rows[:, 0] - ord("0")
    if (values <= 1).all() and (rows[:, -1] == 10).all() and _WHITESPACE[rows[:, 1:-1]].all():
        return values
    return None


def build_index(root: str, classes: Sequence[str], images: dict[str, list[str]]) -> LabelIndex:
    """Every listed image of each split with its N×C targets, one label file a column."""
    out = LabelIndex(list(classes))
    for split, paths in images.items():
        columns = np.empty((len(classes), len(paths)), dtype=np.uint8)  # a file a row: contiguous writes
        for j, concept in enumerate(classes):
            columns[j] = parse_labels(label_path(root, concept, split), len(paths))
        out.splits[split] = SplitIndex(paths, np.ascontiguousarray(columns.T))
    return out


def nuswide_index(root: str) -> LabelIndex:
    """The label index of both splits, every listed image (cached: the key covers the
    concept list, both image lists and every label file)."""
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    classes = read_concepts(concepts_path(root))
    lists = {split: list_path(root, split) for split in SPLITS}
    for path in lists.values():
        if not os.path.isfile(path):
            raise MlcoreError(f"image list {path!r} does not exist")
    labels = []
    for split in SPLITS:
        for concept in classes:
            path = label_path(root, concept, split)
            if not os.path.isfile(path):
                raise MlcoreError(f"label file {path!r} of concept {concept!r} ({split}) does not exist")
            labels.append(path)

    def build() -> LabelIndex:
        return build_index(root, classes, {s: read_image_list(p) for s, p in lists.items()})

    return cached_index("nuswide", {"root": os.path.abspath(root), "classes": classes},
                        [concepts_path(root), *lists.values(), *labels], build)


def missing_images(root: str, images: Sequence[str]) -> np.ndarray:
    """The positions of the images whose file does not exist: one ``os.listdir`` per
    folder (the release spreads its 269,648 images over some 700 folders) rather than a
    stat per image."""
    present: dict[str, set[str]] = {}
    out = []
    for i, p in enumerate(images):
        folder, _, name = p.rpartition("/")
        names = present.get(folder)
        if names is None:
            try:
                names = set(os.listdir(os.path.join(root, folder)))
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            present[folder] = names
        if name not in names:
            out.append(i)
    return np.array(out, dtype=np.int64)


def nuswide_split(root: str, split: str, missing: str = "skip", drop_unlabeled: bool = False) -> LabelIndex:
    """An index of one split: the cached full index, less the images with no positive
    concept (``drop_unlabeled``), less the images whose file is missing — with one
    summary warning (``missing="skip"``) or an MlcoreError (``missing="error"``)."""
    check_split(split)
    if missing not in MISSING_MODES:
        raise MlcoreError(f"Unknown value {missing!r} for argument missing_images. "
                          f"Valid values are {list(MISSING_MODES)}")
    index = nuswide_index(root)
    s = index.split(split)
    keep = s.targets.any(axis=1) if drop_unlabeled else np.ones(len(s.images), dtype=bool)
    kept = np.flatnonzero(keep)
    candidates = [s.images[i] for i in kept]
    gone = missing_images(root, candidates)
    if len(gone):
        names = ", ".join(repr(candidates[i]) for i in gone[:SHOW_MISSING])
        more = ", …" if len(gone) > SHOW_MISSING else ""
        among = (f"the {len(candidates)} labeled images (of {len(s.images)} listed)" if drop_unlabeled
                 else f"the {len(candidates)} listed images")
        what = f"NUS-WIDE {split}: {len(gone)} of {among} do not exist under {root!r}"
        if missing == "error":
            raise MlcoreError(f"{what}: {names}{more} (missing_images: skip leaves them out)")
        warnings.warn(f"{what} and are left out: {names}{more} (missing_images: error makes this an error)",
                      stacklevel=2)
        keep[kept[gone]] = False
    if keep.all():
        return LabelIndex(index.classes, {split: s})
    rows = np.flatnonzero(keep)
    return LabelIndex(index.classes, {split: SplitIndex([s.images[i] for i in rows], s.targets[rows])})
