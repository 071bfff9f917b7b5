"""Reading a dataset described by CSV file(s) into a cached label index.

Every error names the CSV file and the 1-based line a user sees in an editor (the header
is line 1; a quoted field spanning several lines is reported at the line it starts on),
because the file is hand-made or exported user data and the fix is an edit there.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator

from mlcore import LabelIndex, MlcoreError, SplitIndex, cached_index, targets_from_lists

#: the split whose labels (or header) define the classes when no ``classes_file`` is given
TRAIN = "train"
#: placeholder in ``file`` replaced by the split name
PLACEHOLDER = "{split}"


def read_classes_file(path: str) -> list[str]:
    """One class name per line (stripped; blank lines skipped), in output order. A name
    given twice is an error, since it would make two outputs for one class."""
    if not os.path.isfile(path):
        raise MlcoreError(f"classes file {path!r} does not exist")
    classes: list[str] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                name = line.strip()
                if not name:
                    continue
                if name in seen:
                    raise MlcoreError(f"{path}:{lineno}: class {name!r} is listed twice (first at line {seen[name]})")
                seen[name] = lineno
                classes.append(name)
    except UnicodeDecodeError as exc:
        raise MlcoreError(f"classes file {path!r} is not UTF-8 text: {exc}") from None
    if not classes:
        raise MlcoreError(f"classes file {path!r} names no class")
    return classes


class Table:
    """A CSV file's header and rows, each row with the line it starts on.

    Read as the csv module reads it (``newline=""``, so CRLF and quoted line breaks work;
    ``utf-8-sig``, so a BOM from Excel does not become part of the first column's name).
    Header names and cells are stripped of surrounding whitespace. Blank lines are skipped;
    every other row must have as many fields as the header.
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise MlcoreError(f"CSV file {path!r} does not exist")
        rows = list(self._read())
        if not rows:
            raise MlcoreError(f"CSV file {path!r} is empty: it has no header line")
        _, header = rows[0]
        self.header = [h.strip() for h in header]
        self.rows: list[tuple[int, list[str]]] = []
        for lineno, row in rows[1:]:
            if len(row) != len(self.header):
                hint = ("; a quote opened here is not closed" if any("\n" in c or "\r" in c for c in row)
                        else "; a value holding a comma must be quoted")
                raise MlcoreError(f"{path}:{lineno}: {len(row)} field(s), but the header has {len(self.header)} "
                                  f"({', '.join(self.header)}){hint}")
            self.rows.append((lineno, [c.strip() for c in row]))
        seen: dict[str, int] = {}
        for k, name in enumerate(self.header):
            if name in seen and name:
                raise MlcoreError(f"{path}:1: the header names column {name!r} twice "
                                  f"(columns {seen[name] + 1} and {k + 1})")
            seen[name] = k

    def _read(self) -> Iterator[tuple[int, list[str]]]:
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                prev = 0
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        return
                    except csv.Error as exc:
                        raise MlcoreError(f"{self.path}:{prev + 1}: not valid CSV: {exc}") from None
                    start, prev = prev + 1, reader.line_num
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # a blank line
                    yield start, row
        except UnicodeDecodeError as exc:
            raise MlcoreError(f"CSV file {self.path!r} is not UTF-8 text: {exc}") from None

    def column(self, name: str, key: str) -> int:
        """The index of column ``name`` (the value of config key ``key``)."""
        if name not in self.header:
            raise MlcoreError(f"{self.path}:1: no column {name!r} (the {key}); the columns are {self.header}")
        return self.header.index(name)


class Spec:
    """The settings that shape the index (all of them go into the cache key)."""

    def __init__(self, root: str, file: str, image_column: str | None, labels_column: str | None,
                 label_separator: str, split_column: str | None, image_root: str | None, image_suffix: str,
                 classes_file: str | None):
        self.root = os.path.abspath(root)
        self.file = file
        self.image_column = image_column
        self.labels_column = labels_column
        self.label_separator = label_separator
        self.split_column = split_column
        self.image_root = image_root
        self.image_suffix = image_suffix
        self.classes_file = os.path.join(self.root, classes_file) if classes_file else None

    def params(self) -> dict:
        return {k: v for k, v in vars(self).items()}


class _Columns:
    """Where the image, labels and split live in one table, and which columns are classes
    (one-column-per-class style)."""

    def __init__(self, table: Table, spec: Spec):
        header = table.header
        self.image = table.column(spec.image_column, "image_column") if spec.image_column else 0
        self.split = table.column(spec.split_column, "split_column") if spec.split_column else None
        if self.split == self.image:
            raise MlcoreError(f"{table.path}:1: column {header[self.image]!r} cannot be both image and split column")
        self.labels = None
        self.classes: list[tuple[int, str]] = []
        if spec.labels_column:
            self.labels = table.column(spec.labels_column, "labels_column")
            if self.labels in (self.image, self.split):
                raise MlcoreError(f"{table.path}:1: column {spec.labels_column!r} cannot be the labels column "
                                  f"and the image or split column")
        else:
            for k, name in enumerate(header):
                if k in (self.image, self.split):
                    continue
                if not name:
                    raise MlcoreError(f"{table.path}:1: column {k + 1} has no name, but without labels_column "
                                      f"every column other than the image and split columns is a class")
                self.classes.append((k, name))
            if not self.classes:
                raise MlcoreError(f"{table.path}:1: no class column: without labels_column every column other than "
                                  f"the image and split columns is a class's 0/1, and the columns are {header}")


def _label_names(table: Table, cols: _Columns, spec: Spec, lineno: int, row: list[str]) -> list[str]:
    """The positive labels of one row, in either style."""
    if cols.labels is not None:
        pieces = (p.strip() for p in row[cols.labels].split(spec.label_separator))
        return list(dict.fromkeys(p for p in pieces if p))  # empty pieces (repeated separators) dropped
    out = []
    for k, name in cols.classes:
        value = row[k]
        if value == "1":
            out.append(name)
        elif value != "0":
            raise MlcoreError(f"{table.path}:{lineno}: column {name!r} holds {value!r}; a class column holds 0 or 1")
    return out


def _classes_from(table: Table, spec: Spec, split: str | None) -> list[str]:
    """The classes when no classes file is given: the class columns in file order, or
    the sorted labels of the train rows."""
    cols = _Columns(table, spec)
    if cols.labels is None:
        return [name for _, name in cols.classes]
    names = set()
    for lineno, row in table.rows:
        if split is None or row[cols.split] == split:
            names.update(_label_names(table, cols, spec, lineno, row))
    return sorted(names)


def _build_split(table: Table, spec: Spec, split: str, rows: list[tuple[int, list[str]]], classes: list[str],
                 origin: str) -> SplitIndex:
    """One split's images (relative to the root) and targets; ``origin`` says where the
    classes came from, for the unknown-label error."""
    cols = _Columns(table, spec)
    col = {c: j for j, c in enumerate(classes)}
    if cols.labels is None:
        for _, name in cols.classes:
            if name not in col:
                raise MlcoreError(f"{table.path}:1: class column {name!r} is not a class of {origin}")
    images: list[str] = []
    labels: list[list[int]] = []
    first: dict[str, int] = {}
    missing: list[tuple[int, str]] = []
    listings: dict[str, set[str]] = {}
    for lineno, row in rows:
        name = row[cols.image]
        if not name:
            raise MlcoreError(f"{table.path}:{lineno}: empty image name (column {table.header[cols.image]!r})")
        rel = os.path.normpath(os.path.join(spec.image_root or "", name + spec.image_suffix))
        if rel in first:
            raise MlcoreError(f"{table.path}:{lineno}: image {name!r} is listed twice in split {split!r} "
                              f"(first at line {first[rel]})")
        first[rel] = lineno
        ids = []
        for label in _label_names(table, cols, spec, lineno, row):
            j = col.get(label)
            if j is None:
                raise MlcoreError(f"{table.path}:{lineno}: label {label!r} is not a class of {origin}")
            ids.append(j)
        full = os.path.join(spec.root, rel)
        folder, base = os.path.split(full)
        if folder not in listings:  # one listdir per folder rather than a stat per image
            listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if base not in listings[folder] and not os.path.isfile(full):
            missing.append((lineno, full))
        images.append(rel)
        labels.append(ids)
    if missing:
        lineno, full = missing[0]
        raise MlcoreError(f"{table.path}:{lineno}: image {full!r} does not exist ({len(missing)} of the "
                          f"{len(rows)} images of split {split!r} are missing)")
    return SplitIndex(images, targets_from_lists(labels, len(classes)))


def _split_files(spec: Spec) -> dict[str, str]:
    """The splits a ``{split}`` template finds on disk, for the unknown-split error."""
    pattern = os.path.join(spec.root, spec.file)
    folder, base = os.path.split(pattern)
    if PLACEHOLDER in folder or not os.path.isdir(folder):
        return {}
    head, _, tail = base.partition(PLACEHOLDER)
    rx = re.compile(re.escape(head) + "(.+)" + re.escape(tail).replace(re.escape(PLACEHOLDER), r"\1") + "$")
    out = {}
    for f in sorted(os.listdir(folder)):
        m = rx.match(f)
        if m and os.path.isfile(os.path.join(folder, f)):
            out[m.group(1)] = os.path.join(folder, f)
    return out


def csv_index(root: str, split: str, file: str, image_column: str | None = None, labels_column: str | None = None,
              label_separator: str = " ", split_column: str | None = None, image_root: str | None = None,
              image_suffix: str = "", classes_file: str | None = None) -> LabelIndex:
    """The label index holding ``split`` (cached; see the package docstring for the rules).

    Three layouts: ``split_column`` set — one file, rows picked by that column (all
    splits are indexed at once); ``file`` holding ``{split}`` — one file per split; else
    one file that is the ``train`` split only.
    """
    if not os.path.isdir(root):
        raise MlcoreError(f"dataset root {root!r} does not exist")
    spec = Spec(root, file, image_column, labels_column, label_separator, split_column, image_root,
                image_suffix, classes_file)
    classes = read_classes_file(spec.classes_file) if spec.classes_file else None
    extra = [spec.classes_file] if spec.classes_file else []
    path = os.path.join(spec.root, file)
    if split_column:
        if PLACEHOLDER in file:
            raise MlcoreError(f"dataset 'csv': file {file!r} holds {PLACEHOLDER} and split_column is set; "
                              f"use one file with a split column, or one file per split, not both")
        if not os.path.isfile(path):
            raise MlcoreError(f"CSV file {path!r} does not exist")
        index = cached_index("csv", {**spec.params(), "layout": "column"}, [path, *extra],
                             lambda: _build_by_column(spec, path, classes))
        if split not in index.splits:
            raise MlcoreError(f"Unknown value {split!r} for argument split. Valid values are {sorted(index.splits)} "
                              f"(the values of column {split_column!r} in {path!r})")
        return index
    if PLACEHOLDER not in file:
        if split != TRAIN:
            raise MlcoreError(f"Unknown value {split!r} for argument split. Valid values are [{TRAIN!r}] "
                              f"(file {file!r} has no {PLACEHOLDER} and no split_column is set, so it is the "
                              f"{TRAIN!r} split)")
        if not os.path.isfile(path):
            raise MlcoreError(f"CSV file {path!r} does not exist")
        return cached_index("csv", {**spec.params(), "layout": "single"}, [path, *extra],
                            lambda: _build_one(spec, TRAIN, path, path, classes))
    path = os.path.join(spec.root, file.replace(PLACEHOLDER, split))
    if not os.path.isfile(path):
        have = sorted(_split_files(spec))
        raise MlcoreError(f"Unknown value {split!r} for argument split. Valid values are {have} "
                          f"(CSV file {path!r} does not exist)")
    train_path = os.path.join(spec.root, file.replace(PLACEHOLDER, TRAIN))
    sources = [path, *extra]
    if classes is None and split != TRAIN:
        if not os.path.isfile(train_path):
            raise MlcoreError(f"the classes come from the {TRAIN!r} split, but its CSV file {train_path!r} does "
                              f"not exist; give a classes_file")
        sources.append(train_path)
    return cached_index("csv", {**spec.params(), "layout": "template", "split": split}, sources,
                        lambda: _build_one(spec, split, path, train_path, classes))


def _build_one(spec: Spec, split: str, path: str, train_path: str, classes: list[str] | None) -> LabelIndex:
    table = Table(path)
    if classes is not None:
        origin = f"the classes file {spec.classes_file!r}"
    else:
        train = table if train_path == path else Table(train_path)
        classes = _classes_from(train, spec, None)
        _no_class_check(classes, train_path)
        origin = f"the {TRAIN!r} split (from {train_path!r}; list every class in a classes_file to allow it)"
    return LabelIndex(classes, {split: _build_split(table, spec, split, table.rows, classes, origin)})


def _build_by_column(spec: Spec, path: str, classes: list[str] | None) -> LabelIndex:
    table = Table(path)
    cols = _Columns(table, spec)
    by_split: dict[str, list[tuple[int, list[str]]]] = {}
    for lineno, row in table.rows:
        if row[cols.split]:  # a row with an empty split value belongs to no split
            by_split.setdefault(row[cols.split], []).append((lineno, row))
    if not by_split:
        raise MlcoreError(f"CSV file {path!r} has no row with a value in column {spec.split_column!r}")
    if classes is not None:
        origin = f"the classes file {spec.classes_file!r}"
    else:
        if cols.labels is not None and TRAIN not in by_split:
            raise MlcoreError(f"the classes come from the {TRAIN!r} split, but no row of {path!r} has "
                              f"{TRAIN!r} in column {spec.split_column!r}; give a classes_file")
        classes = _classes_from(table, spec, TRAIN)
        _no_class_check(classes, path)
        origin = (f"the {TRAIN!r} split (rows of {path!r} with {spec.split_column}={TRAIN}; list every class "
                  f"in a classes_file to allow it)")
    out = LabelIndex(classes)
    for name in sorted(by_split):
        out.splits[name] = _build_split(table, spec, name, by_split[name], classes, origin)
    return out


def _no_class_check(classes: list[str], path: str) -> None:
    if not classes:
        raise MlcoreError(f"the {TRAIN!r} split in {path!r} has no label at all, so there is no class")
