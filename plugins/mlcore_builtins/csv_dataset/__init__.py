"""``csv``: any dataset described by a CSV file (Kaggle's ``image_name,tags``, a 0/1 column
per class, …), so that a new dataset needs a config section rather than a plugin.

Keys (paths other than ``root`` are relative to ``root``; an absolute path is used as is):

- ``file``: the CSV file, or a template holding ``{split}`` (``{split}.csv``) for one file
  per split. Default ``{split}.csv``.
- ``image_column``: the column of image paths (default: the first column).
  ``image_suffix`` (default ``""``) is appended to each value (Kaggle's planet lists
  ``train_0`` for ``train_0.jpg``); ``image_root`` is the folder they are relative to
  (default ``root``).
- Labels, in one of two styles: ``labels_column`` holds the positive labels of a row,
  split on ``label_separator`` (default ``" "``); pieces are stripped and empty pieces
  dropped, so repeated separators and an empty cell (no positive label) are fine. Without
  ``labels_column``, every column other than the image and split columns is one class
  holding ``0`` or ``1``; the class names are the headers.
- Splits, one of three layouts: ``split_column`` set — one file holds every split and a
  row belongs to the split named by its value in that column (an empty value: to none);
  else ``file`` with ``{split}`` — one file per split; else one file, which is the
  ``train`` split only (any other split is an unknown split). An unknown split raises
  "Unknown value 'x' for argument split. Valid values are [...]".
- ``classes_file``: one class name per line, in output order. Without it, the classes
  are the ``train`` split's labels, sorted (labels style) or its class columns in file
  order (0/1 style), and a label of another split that ``train`` lacks is an error — a
  model cannot learn a class it never sees, and the output order must not depend on
  which split was read.

Rules: files are read as the csv module reads them (``newline=""``, ``utf-8-sig``: a
BOM, CRLF line ends and quoted fields work); header names and values are stripped of
surrounding whitespace; blank lines are skipped. Every problem is one error naming the
file and 1-based line (the header is line 1): a missing file or column, a row with the
wrong number of fields, a class column holding other than 0/1, an unknown label, an
empty image name, an image listed twice in one split (both lines named: a merge could
hide a copy-paste error), and missing images (the first one and how many are missing —
checked once, when the index is built). The index is cached (kind ``csv``) and rebuilt
when a CSV file or the classes file changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlcore import Plugin


@dataclass
class CSVConfig:
    root: str = field(metadata={"path": "dir"})
    file: str = "{split}.csv"
    image_column: str | None = None
    labels_column: str | None = None
    label_separator: str = " "
    split_column: str | None = None
    image_root: str | None = None
    image_suffix: str = ""
    classes_file: str | None = None

    def validate(self) -> list[tuple[str, str]]:
        out = []
        if not self.file:
            out.append(("file", "must name a CSV file"))
        if self.labels_column is not None and not self.label_separator:
            out.append(("label_separator", "must not be empty"))
        for key in ("image_column", "labels_column", "split_column"):
            if getattr(self, key) == "":
                out.append((key, "must be a column name or null"))
        given = [(k, getattr(self, k)) for k in ("image_column", "labels_column", "split_column")
                 if getattr(self, k)]
        names = [v for _, v in given]
        for k, v in given:
            if names.count(v) > 1:
                out.append((k, f"column {v!r} is named by more than one of image_column, labels_column, "
                               f"split_column"))
        return out


def build(cfg: CSVConfig, split: str, transform=None):
    from mlcore import dataset_from_index

    from .reader import csv_index

    index = csv_index(cfg.root, split, cfg.file, cfg.image_column, cfg.labels_column, cfg.label_separator,
                      cfg.split_column, cfg.image_root, cfg.image_suffix, cfg.classes_file)
    return dataset_from_index(index, split, cfg.root, transform)


plugin = Plugin("dataset", "csv", "any dataset described by a CSV file (image column + labels or 0/1 columns)",
                CSVConfig, build)
