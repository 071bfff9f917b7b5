"""Label word vectors: one vector per label, from a GloVe/word2vec text file or a C×d ``.npy``.

Models that know what the labels *mean* start from their names' word vectors: SSGRL's
semantic decoupling attends with them, ML-GCN's graph convolution propagates them, and
ML-Decoder's zero-shot mode queries with them (so an unseen label is just a new row).
They all read them here, written once:

* a text file (glove.840B.300d.txt is 5.6 GB; word2vec's text format with its
  ``count dim`` header too) is streamed once, keeping only the words the labels need;
  the C×d result is cached in ``cache_dir()/embeddings`` (written atomically), keyed by
  the file's path, size and modification time, the label names and ``missing_words``;
* a ``.npy`` is taken as the C×d matrix itself, one row per class in class order;
* a label of several words (``traffic light``, ``red_circle``) is the mean of its words'
  vectors; VOC's run-together names (``diningtable``, ``pottedplant``, ``tvmonitor``)
  are read as two words (:func:`label_words`);
* a word is looked up as written, then lower-cased;
* missing words are an error listing them, unless ``missing_words="zero"``: a missing
  word is left out of its label's mean, and a label with no word found gets zeros.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import MlcoreError

if TYPE_CHECKING:
    import numpy as np

#: dataset label names written as one word that are two words in a vocabulary (VOC's)
SPELLED_OUT = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}
MISSING_WORDS = ("error", "zero")


def label_words(name: str) -> list[str]:
    """The words of a label name: split at spaces and underscores, VOC's run-together
    names spelled out (``"diningtable"`` → ``["dining", "table"]``)."""
    return [w for w in re.split(r"[\s_]+", SPELLED_OUT.get(name, name).strip()) if w]


def label_vectors(path: str | os.PathLike, classes: Sequence[str],
                  missing_words: str = "error") -> np.ndarray:
    """A C×d float32 matrix: row ``i`` is the vector of ``classes[i]``.

    ``path``: a GloVe/word2vec text file, or a C×d ``.npy`` (see the module docstring);
    ``missing_words``: ``"error"`` or ``"zero"``.
    """
    import numpy as np

    path = os.fspath(path)
    if missing_words not in MISSING_WORDS:
        raise MlcoreError(f"Unknown value {missing_words!r} for argument missing_words. "
                          f"Valid values are {set(MISSING_WORDS)}")
    if not os.path.isfile(path):
        raise MlcoreError(f"embeddings file {path!r} does not exist; give a GloVe/word2vec text file "
                          f"(e.g. glove.840B.300d.txt) or a {len(classes)}×d .npy of label vectors")
    if path.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise MlcoreError(f"embeddings file {path!r} is not a plain .npy array: {exc}") from None
        if arr.ndim != 2 or arr.shape[0] != len(classes):
            raise MlcoreError(f"embeddings file {path!r} has shape {arr.shape}; expected {len(classes)}×d "
                              f"(one row per class, in class order)")
        return arr.astype(np.float32)
    from .cache import cache_dir

    st = os.stat(path)
    # "bom": results read before a byte-order mark was ignored are not reused
    key = hashlib.sha256(json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns, list(classes),
                                     missing_words, "bom"]).encode()).hexdigest()[:24]
    cached = os.path.join(cache_dir(), "embeddings", f"{key}.npy")
    if os.path.isfile(cached):
        return np.load(cached, allow_pickle=False)
    words = {w for c in classes for w in label_words(c)}
    table, folded = _read_text(path, words)
    rows, missing = [], {}
    dim = len(next(iter(table.values()))) if table else 0
    for c in classes:
        vecs = []
        for w in label_words(c):
            v = table.get(w)
            if v is None:
                v = folded.get(w.lower())
            if v is None:
                missing.setdefault(c, []).append(w)
            else:
                vecs.append(v)
        rows.append(np.mean(vecs, axis=0) if vecs else None)
    if missing and missing_words == "error" or not table:
        listing = "; ".join(f"{c}: {', '.join(ws)}" for c, ws in list(missing.items())[:20])
        more = f" … and {len(missing) - 20} more labels" if len(missing) > 20 else ""
        raise MlcoreError(f"embeddings file {path!r} lacks words of {len(missing)} label(s): {listing}{more} "
                          f"(model.missing_words: zero gives such words no weight)")
    out = np.stack([r if r is not None else np.zeros(dim, np.float32) for r in rows]).astype(np.float32)
    from .files import atomic_open

    with atomic_open(cached) as f:
        np.save(f, out)
    return out


def _read_text(path: str, wanted: set[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The vectors of ``wanted`` words from a text file: by exact spelling, and by
    lower-cased spelling (first occurrence) for a case-insensitive fallback. Read as
    ``utf-8-sig``: a byte-order mark would glue itself to the first word (or break the
    word2vec header "count dim")."""
    import numpy as np

    found: dict[str, np.ndarray] = {}
    folded: dict[str, np.ndarray] = {}
    lowered = {w.lower() for w in wanted}
    dim = None
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if dim is None:
                parts = line.split()
                if len(parts) == 2 and all(p.isdigit() for p in parts):  # word2vec header "count dim"
                    dim = int(parts[1])
                    continue
                dim = len(parts) - 1
            word = line.split(" ", 1)[0]
            if word not in wanted and word.lower() not in lowered:
                continue
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) != dim + 1:
                continue  # a token with spaces inside (a few in glove.840B): not one of ours
            try:
                vec = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise MlcoreError(f"{path}:{lineno}: not a word vector line") from None
            found.setdefault(word, vec)
            folded.setdefault(word.lower(), vec)
    if dim is None:
        raise MlcoreError(f"embeddings file {path!r} is empty")
    return found, folded


__all__ = ["label_vectors", "label_words", "SPELLED_OUT"]
