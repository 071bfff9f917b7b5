"""Reading Open Images V6 image-level labels into a sparse, cached, memory-mapped index.

The train file has ~28M rows for ~9M images and ~9,600 trainable classes: a dense N×C
target matrix would be 86 GB, and a Python object per row (the usual ``csv.reader`` into
a dict of lists) takes minutes and gigabytes. So the labels file is parsed with numpy on
byte chunks (no Python object per row): line and comma positions are found with
vectorized searches, ImageIDs and LabelNames are cut out as fixed-width byte strings,
LabelNames become class ids with one ``searchsorted`` against the sorted descriptions,
and ImageIDs become image numbers by run-length encoding (the released files are sorted
by ImageID, so every image is one run; an unsorted file falls back to ``np.unique``).

The result is CSR: per image (``offsets``, int64, N+1) its known class ids (``labels``,
int16 for ≤ 32,767 classes) and whether each is positive (``positive``, bool); a class
not listed for an image is unknown. It is cached as ``.npy`` files in
``cache_dir()/index/openimages-<key>/`` and loaded memory-mapped, so a second build
takes milliseconds whatever the dataset's size.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mlcore import MlcoreError, atomic_open, cache_dir

FORMAT_VERSION = 1
#: bytes of a labels file parsed at once (the temporaries are ~6× that, per thread)
CHUNK_BYTES = 1 << 22
#: threads parsing chunks (numpy releases the GIL; the merge of their results is sequential)
THREADS = 2
DESCRIPTIONS_HEADER = ["LabelName", "DisplayName"]
LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")
ARRAYS = ("image_ids", "offsets", "labels", "positive", "classes", "display_names")


@dataclass
class SparseIndex:
    """One split's labels: ``image_ids`` (N byte strings), CSR ``offsets`` (N+1 int64)
    into ``labels`` (class ids) and ``positive`` (bool: 1, else a verified 0), the
    trainable ``classes`` (LabelNames) and their ``display_names``. ``folder`` is where
    the arrays are cached (None when they live in memory only)."""

    image_ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    positive: np.ndarray
    classes: list[str]
    display_names: list[str]
    folder: str | None = None

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def __getstate__(self) -> dict:
        # a cached index travels (e.g. to spawned data-loader workers) as its folder, not
        # as gigabytes of pickled arrays; the receiver maps the files again
        if self.folder is not None:
            return {"folder": self.folder}
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        if set(state) == {"folder"}:
            state = dict(load(state["folder"]).__dict__)
        self.__dict__.update(state)


# -- the small files ------------------------------------------------------------------------
def read_descriptions(path: str) -> dict[str, str]:
    """``LabelName -> DisplayName`` of ``oidv6-class-descriptions.csv`` (a real CSV: a
    DisplayName may be quoted and hold commas). The V6 header row is skipped; a file
    without one (V5's ``class-descriptions.csv``) is read too."""
    if not os.path.isfile(path):
        raise MlcoreError(f"class descriptions file {path!r} does not exist")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if line_no == 1 and [c.strip() for c in row] == DESCRIPTIONS_HEADER:
                continue
            if len(row) != 2 or not row[0].strip():
                raise MlcoreError(f"class descriptions file {path!r}, line {line_no}: expected "
                                  f"'LabelName,DisplayName', got {row!r}")
            out.setdefault(row[0].strip(), row[1])
    if not out:
        raise MlcoreError(f"class descriptions file {path!r} describes no class")
    return out


def read_trainable(path: str, descriptions: dict[str, str], descriptions_path: str) -> list[str]:
    """The trainable LabelNames, one a line, in the file's order (the model's output order)."""
    if not os.path.isfile(path):
        raise MlcoreError(f"trainable classes file {path!r} does not exist")
    out: list[str] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            name = line.strip()
            if not name:
                continue
            if name not in descriptions:
                raise MlcoreError(f"trainable classes file {path!r}, line {line_no}: LabelName {name!r} is not in "
                                  f"the class descriptions {descriptions_path!r}")
            if name in seen:
                raise MlcoreError(f"trainable classes file {path!r}, line {line_no}: LabelName {name!r} is "
                                  f"listed twice (first on line {seen[name]})")
            seen[name] = line_no
            out.append(name)
    if not out:
        raise MlcoreError(f"trainable classes file {path!r} lists no class")
    return out


# -- the labels file, in byte chunks ------------------------------------------------------------
_MIX = np.uint64(0x9E3779B97F4A7C15)
#: the little-endian mask keeping a word's first 0…8 bytes
_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(9)], dtype=np.uint64)


def _words(u64: np.ndarray, start: np.ndarray, length: np.ndarray, k: int) -> np.ndarray:
    """The fields ``buf[start[i]:start[i] + length[i]]`` as (n, k) uint64 words whose
    numeric order is the bytes' order (big-endian, zero-padded): ``u64`` is the chunk
    viewed as a uint64 at every byte offset, so each word is one gather, not eight."""
    out = np.empty((len(start), k), dtype=np.uint64)
    for j in range(k):
        w = u64[start + 8 * j]
        if len(length) and int(length.min()) >= 8 * (j + 1):  # e.g. V6's 16-digit ImageIDs: no masking
            out[:, j] = w.byteswap()
            continue
        out[:, j] = (w & _MASKS[np.clip(length - 8 * j, 0, 8)]).byteswap()  # the chunk is read little-endian
    return out


def _hash(words: np.ndarray) -> np.ndarray:
    """One uint64 per row of words (wrapping multiply-add; equal rows, equal hashes)."""
    h = words[:, 0].copy()
    for j in range(1, words.shape[1]):
        h *= _MIX
        h += words[:, j]
    return h


def _name_words(names: Sequence[bytes], k: int) -> np.ndarray:
    """Byte strings as (n, k) big-endian words (as :func:`_words` cuts them from a file)."""
    raw = np.zeros((len(names), 8 * k), dtype=np.uint8)
    for i, n in enumerate(names):
        raw[i, :len(n)] = np.frombuffer(n, dtype=np.uint8)
    return raw.view(">u8").astype(np.uint64).reshape(len(names), k)


def _words_to_bytes(words: np.ndarray) -> np.ndarray:
    """(n, k) big-endian words back to an ``S{8k}`` array (the padding zeros drop off)."""
    k = words.shape[1] if words.ndim == 2 else 1
    return np.ascontiguousarray(words.astype(">u8")).view(f"S{8 * k}").reshape(-1)


class Vocabulary:
    """The described LabelNames as words, looked up by a uint64 hash: one ``searchsorted``
    over ~20k integers per row and an exact comparison of the words found."""

    def __init__(self, names: Sequence[str], class_ids: Sequence[int]):
        encoded = [n.encode("utf-8") for n in names]
        self.k = max(1, -(-max(len(n) for n in encoded) // 8))
        words = _name_words(encoded, self.k)
        h = _hash(words)
        order = np.argsort(h, kind="stable")
        self.hash, self.words = h[order], words[order]
        self.class_id = np.asarray(class_ids, dtype=np.int32)[order]
        dup = np.flatnonzero(self.hash[1:] == self.hash[:-1])
        if len(dup):  # two distinct names, one hash (never seen): keep the lookup exact
            raise MlcoreError(f"LabelNames {encoded[order[dup[0]]]!r} and {encoded[order[dup[0] + 1]]!r} collide")
        # an open-addressing table (load ≤ 1/4, linear probing): a row's class is found in
        # one or two vectorized gathers, cheaper than a binary search per row
        self.bits = max(4, int(len(h) * 4 - 1).bit_length())
        size = 1 << self.bits
        self.slot_entry = np.full(size, -1, dtype=np.int64)
        self.probes = 1
        for e, hv in enumerate(self.hash.tolist()):
            slot = hv >> (64 - self.bits)
            p = 0
            while self.slot_entry[(slot + p) & (size - 1)] >= 0:
                p += 1
            self.slot_entry[(slot + p) & (size - 1)] = e
            self.probes = max(self.probes, p + 1)
        self.slot_hash = np.where(self.slot_entry >= 0, self.hash[np.maximum(self.slot_entry, 0)], 0).astype(np.uint64)

    def lookup(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class id or -1 for non-trainable, found) of each row of words."""
        if words.shape[1] < self.k:
            words = np.hstack([words, np.zeros((len(words), self.k - words.shape[1]), dtype=np.uint64)])
        too_long = np.zeros(len(words), dtype=bool)
        if words.shape[1] > self.k:
            too_long = words[:, self.k:].any(1)
            words = words[:, :self.k]
        h = _hash(words)
        base = (h >> np.uint64(64 - self.bits)).astype(np.int64)
        entry = np.full(len(h), -1, dtype=np.int64)
        todo = np.arange(len(h))
        mask = (1 << self.bits) - 1
        for p in range(self.probes):
            slot = (base[todo] + p) & mask
            hit = (self.slot_hash[slot] == h[todo]) & (self.slot_entry[slot] >= 0)
            entry[todo[hit]] = self.slot_entry[slot[hit]]
            todo = todo[~hit]
            if not len(todo):
                break
        at = np.maximum(entry, 0)
        found = (entry >= 0) & ~too_long
        if found.any():
            found &= (self.words[at] == words).all(1)
        return self.class_id[at], found


class _LabelsParser:
    """Streams one labels file chunk by chunk; keeps per row only a run number, a class
    id and a bit, and per run of equal ImageIDs its words."""

    def __init__(self, path: str, vocab: Vocabulary, descriptions_path: str):
        self.path, self.vocab, self.descriptions_path = path, vocab, descriptions_path
        self.runs: list[np.ndarray] = []  # ImageID words of each run of equal ImageIDs
        self.rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (run, class id, positive)
        self.num_runs = 0
        self.id_words = 2  # grows when a longer ImageID turns up (V6's are 16 hex digits)
        self.last_id: tuple | None = None
        self.ascending = True  # runs in strictly ascending ImageID order (each image one run)

    def header(self, line: bytes) -> None:
        names = [c.strip().strip('"') for c in line.decode("utf-8-sig").rstrip("\r\n").split(",")]
        missing = [c for c in LABEL_COLUMNS if c not in names]
        if missing:
            raise MlcoreError(f"labels file {self.path!r}, line 1: the header {','.join(names)!r} lacks the "
                              f"column(s) {missing} (expected ImageID,Source,LabelName,Confidence)")
        self.num_columns = len(names)
        self.column = {c: names.index(c) for c in LABEL_COLUMNS}

    def error(self, index: int, lines: np.ndarray, what: str) -> MlcoreError:
        return MlcoreError(f"labels file {self.path!r}, line {int(lines[index])}: {what}")

    def parse(self, data: bytes, first_line: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Whole lines (``data`` ends with a newline; its first is line ``first_line``)
        → (ImageID words, class id, positive) per row. Touches no parser state, so
        chunks are parsed on two threads (numpy releases the GIL)."""
        buf = np.frombuffer(data, dtype=np.uint8)
        itype = np.int32 if len(buf) < 2**31 - 64 else np.int64
        newline = np.flatnonzero(buf == 10).astype(itype)
        start = np.empty_like(newline)
        start[:1] = 0
        start[1:] = newline[:-1] + 1
        end = newline.copy()
        cr = np.zeros(len(end), dtype=bool)
        nonempty = end > start
        cr[nonempty] = buf[end[nonempty] - 1] == 13
        end -= cr
        lines = np.arange(first_line, first_line + len(newline), dtype=np.int64)
        keep = end > start  # blank lines are skipped
        if not keep.all():
            start, end, lines = start[keep], end[keep], lines[keep]
        if not len(start):
            return np.zeros((0, 2), dtype=np.uint64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool)
        commas = np.flatnonzero(buf == 44).astype(itype)
        m = self.num_columns - 1
        if m and len(commas) == m * len(start):
            # as many commas as lines × (columns - 1): each line has exactly its share
            # when its share lies inside it (the commas and the lines are both sorted)
            grid = commas.reshape(len(start), m)
            regular = bool((grid[:, 0] >= start).all() and (grid[:, -1] < end).all())
        else:
            regular = m == 0 and not len(commas)
        if regular:
            first_comma = np.arange(0, m * len(start), max(m, 1), dtype=itype)
            wrong = np.zeros(0, dtype=np.int64)
        else:
            first_comma = np.searchsorted(commas, start)
            wrong = np.flatnonzero(np.searchsorted(commas, end) - first_comma != m)
        if len(wrong):
            k = wrong[0]
            raise self.error(k, lines, f"expected {self.num_columns} comma-separated fields, got "
                                       f"{bytes(buf[start[k]:end[k]])!r}")
        # field j of a line spans bounds[:, j] + 1 .. bounds[:, j + 1]
        bounds = np.empty((len(start), self.num_columns + 1), dtype=itype)
        bounds[:, 0] = start - 1
        bounds[:, -1] = end
        if self.num_columns > 1:
            bounds[:, 1:-1] = commas[first_comma[:, None] + np.arange(self.num_columns - 1, dtype=itype)]
        del commas, first_comma

        def field(name: str) -> tuple[np.ndarray, np.ndarray]:
            j = self.column[name]
            return bounds[:, j] + 1, bounds[:, j + 1] - bounds[:, j] - 1

        # Confidence: 1 positive, 0 verified negative, nothing else
        cs, cl = field("Confidence")
        digit = buf[np.minimum(cs, len(buf) - 1)]
        ok = (cl == 1) & ((digit == 48) | (digit == 49))
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise self.error(k, lines, f"Confidence {bytes(buf[cs[k]:cs[k] + cl[k]]).decode(errors='replace')!r} "
                                       f"is neither 1 (positive) nor 0 (verified negative)")
        positive = digit == 49

        ls, ll = field("LabelName")
        is_, il = field("ImageID")
        width = 8 * max(self.vocab.k, -(-int(il.max()) // 8), 1)
        padded = np.frombuffer(data + bytes(width + 8), dtype=np.uint8)
        u64 = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))

        # LabelName -> class id (-1: described but not trainable)
        cls, found = self.vocab.lookup(_words(u64, ls, ll, -(-max(int(ll.max()), 1) // 8)))
        if not found.all():
            k = int(np.flatnonzero(~found)[0])
            raise self.error(k, lines, f"LabelName {bytes(buf[ls[k]:ls[k] + ll[k]]).decode(errors='replace')!r} "
                                       f"is not in the class descriptions {self.descriptions_path!r}")

        # ImageID -> run number (a run: consecutive rows of one ImageID)
        if (il == 0).any():
            raise self.error(int(np.flatnonzero(il == 0)[0]), lines, "empty ImageID")
        ids = _words(u64, is_, il, max(2, -(-int(il.max()) // 8)))
        return ids, cls, positive

    def merge(self, ids: np.ndarray, cls: np.ndarray, positive: np.ndarray) -> None:
        """Number the runs of a parsed chunk (in file order) and keep its trainable rows."""
        if not len(ids):
            return
        if ids.shape[1] > self.id_words:
            self.id_words = ids.shape[1]
        ids = _pad(ids, self.id_words)
        new = np.empty(len(ids), dtype=bool)
        new[0] = self.last_id is None or tuple(ids[0]) != self.last_id[:self.id_words]
        np.any(ids[1:] != ids[:-1], axis=1, out=new[1:])
        run_ids = ids[new]
        if self.ascending and len(run_ids):
            prev = None if self.last_id is None else np.array([self.last_id], dtype=np.uint64)
            seq = run_ids if prev is None else np.vstack([_pad(prev, self.id_words), run_ids])
            if len(seq) > 1 and not _strictly_ascending(seq):
                self.ascending = False
        run = np.cumsum(new, dtype=np.int64)
        run += self.num_runs - 1
        self.num_runs += len(run_ids)
        self.last_id = tuple(int(w) for w in ids[-1])
        self.runs.append(run_ids)
        trainable = cls >= 0
        small = np.int32 if self.num_runs < 2**31 else np.int64
        ctype = np.int16 if len(self.vocab.class_id) and self.vocab.class_id.max() < 2**15 else np.int32
        self.rows.append((run[trainable].astype(small), cls[trainable].astype(ctype), positive[trainable]))


def _pad(words: np.ndarray, k: int) -> np.ndarray:
    """Words widened to k columns (zero words: the bytes' padding)."""
    if words.shape[1] >= k:
        return words
    return np.hstack([words, np.zeros((len(words), k - words.shape[1]), dtype=np.uint64)])


def _strictly_ascending(words: np.ndarray) -> bool:
    """Rows in strictly increasing lexicographic (= byte) order."""
    a, b = words[:-1], words[1:]
    less = np.zeros(len(a), dtype=bool)
    equal = np.ones(len(a), dtype=bool)
    for j in range(words.shape[1]):
        less |= equal & (a[:, j] < b[:, j])
        equal &= a[:, j] == b[:, j]
    return bool(less.all())


def read_labels(path: str, vocab: Vocabulary, num_classes: int, descriptions_path: str,
                chunk_bytes: int = CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(image_ids, offsets, labels, positive)`` of one labels file, in one streaming
    pass. Images are in ImageID order; an (image, class) listed twice is one entry,
    positive if any of its rows is."""
    if not os.path.isfile(path):
        raise MlcoreError(f"labels file {path!r} does not exist")
    parser = _LabelsParser(path, vocab, descriptions_path)
    with open(path, "rb") as f:
        head = f.readline()
        if not head.strip():
            raise MlcoreError(f"labels file {path!r} is empty: expected the header ImageID,Source,LabelName,Confidence")
        parser.header(head)
        line = 2
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            pending: deque = deque()
            rest = b""
            while True:
                block = f.read(chunk_bytes)
                data = rest + block if block else (rest + b"\n" if rest else b"")
                if not data:
                    break
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    pending.append(pool.submit(parser.parse, data[:cut], line))
                    line += data.count(b"\n", 0, cut)
                while len(pending) > THREADS:  # bounded: at most a few chunks in flight
                    parser.merge(*pending.popleft().result())
                if not block:
                    break
            while pending:
                parser.merge(*pending.popleft().result())
    return _assemble(parser, num_classes)


def _assemble(parser: _LabelsParser, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs → images, rows → sorted, de-duplicated CSR (one int64 sort of all rows)."""
    k = parser.id_words
    runs = np.vstack([_pad(r, k) for r in parser.runs]) if parser.runs else np.zeros((0, k), dtype=np.uint64)
    parser.runs = []
    if parser.ascending:
        image_of_run = None
    else:  # an unsorted file: the same ImageID may be several runs
        order = np.lexsort(runs.T[::-1])
        runs = runs[order]
        new = np.ones(len(runs), dtype=bool)
        new[1:] = (runs[1:] != runs[:-1]).any(1)
        image_of_run = np.empty(len(order), dtype=np.int64)
        image_of_run[order] = np.cumsum(new) - 1
        runs = runs[new]
        del order, new
    image_ids = _words_to_bytes(runs)
    del runs
    n, c = len(image_ids), num_classes
    total = sum(len(r[0]) for r in parser.rows)
    key = np.empty(total, dtype=np.int64)  # (image * C + class) * 2 + positive
    at = 0
    while parser.rows:  # each chunk's rows are freed as soon as they are in ``key``
        run, cls, pos = parser.rows.pop(0)
        part = key[at:at + len(run)]
        part[:] = run if image_of_run is None else image_of_run[run]
        part *= c
        part += cls
        part *= 2
        part += pos
        at += len(run)
    del image_of_run
    block = 1 << 22  # the passes below go block by block: no full-length temporaries
    if total > 1 and not all(bool((key[a + 1:min(a + block, total - 1) + 1] > key[a:min(a + block, total - 1)]).all())
                             for a in range(0, total - 1, block)):
        key.sort()
        last = np.empty(total, dtype=bool)  # the last row of an (image, class): positive wins
        last[-1] = True
        for a in range(0, total - 1, block):
            b = min(a + block, total - 1)
            np.not_equal(key[a + 1:b + 1] >> 1, key[a:b] >> 1, out=last[a:b])
        if not last.all():  # compact in place, block by block (writes never overtake reads)
            w = 0
            for a in range(0, total, block):
                kept = key[a:a + block][last[a:a + block]]
                key[w:w + len(kept)] = kept
                w += len(kept)
            key = key[:w]
        del last
    total = len(key)
    positive = np.empty(total, dtype=bool)
    labels = np.empty(total, dtype=np.int16 if c <= np.iinfo(np.int16).max else np.int32)
    for a in range(0, total, block):
        k = key[a:a + block]
        positive[a:a + block] = k & 1
        k >>= 1
        labels[a:a + block] = k % c
        k //= c  # now the image number
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=n), out=offsets[1:])
    return image_ids, offsets, labels, positive


def build_index(descriptions_path: str, trainable_path: str, labels_path: str,
                chunk_bytes: int = CHUNK_BYTES) -> SparseIndex:
    """The sparse index of one split from its three files (nothing cached)."""
    descriptions = read_descriptions(descriptions_path)
    classes = read_trainable(trainable_path, descriptions, descriptions_path)
    class_of = {name: j for j, name in enumerate(classes)}
    vocab = Vocabulary(list(descriptions), [class_of.get(name, -1) for name in descriptions])
    image_ids, offsets, labels, positive = read_labels(labels_path, vocab, len(classes), descriptions_path,
                                                       chunk_bytes)
    return SparseIndex(image_ids, offsets, labels, positive, classes, [descriptions[c] for c in classes])


# -- the cache ----------------------------------------------------------------------------------
def cache_key(params: dict, sources: Sequence[str]) -> str:
    """A key over the parameters and the size and mtime of every source file: an edited
    labels file is noticed and the index rebuilt."""
    stamps = []
    for p in sources:
        st = os.stat(p)
        stamps.append((os.path.abspath(p), st.st_size, st.st_mtime_ns))
    blob = json.dumps([FORMAT_VERSION, params, stamps], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def save(index: SparseIndex, folder: str) -> None:
    """Each array as an ``.npy`` file (atomically), then ``meta.json`` last: a folder
    without it, or whose arrays disagree with it, is not a finished index."""
    arrays = {"image_ids": index.image_ids, "offsets": index.offsets, "labels": index.labels,
              "positive": index.positive, "classes": np.array(index.classes, dtype=str),
              "display_names": np.array(index.display_names, dtype=str)}
    meta = {"format": FORMAT_VERSION, "num_images": index.num_images, "num_classes": len(index.classes),
            "num_entries": int(len(index.labels)),
            "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}}
    meta_path = os.path.join(folder, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # a rewrite: the folder is unfinished until the new meta is there
    for name, arr in arrays.items():
        with atomic_open(os.path.join(folder, f"{name}.npy")) as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
    with atomic_open(meta_path) as f:
        f.write(json.dumps(meta, indent=1).encode())


def load(folder: str) -> SparseIndex:
    """The index ``save`` wrote, its big arrays memory-mapped (read-only): nothing is read
    but the headers and the class names. Raises when anything disagrees with
    ``meta.json`` (the caller rebuilds)."""
    with open(os.path.join(folder, "meta.json"), "rb") as f:
        meta = json.loads(f.read())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {meta.get('format')!r}, not {FORMAT_VERSION}")
    arrays = {}
    for name in ARRAYS:
        arr = np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r", allow_pickle=False)
        dtype, shape = meta["arrays"][name]
        if str(arr.dtype) != dtype or list(arr.shape) != shape:
            raise ValueError(f"{name}.npy is {arr.dtype} {list(arr.shape)}, meta.json says {dtype} {shape}")
        arrays[name] = arr
    n, c, e = meta["num_images"], meta["num_classes"], meta["num_entries"]
    off = arrays["offsets"]
    if (arrays["image_ids"].shape != (n,) or off.shape != (n + 1,) or arrays["labels"].shape != (e,)
            or arrays["positive"].shape != (e,) or arrays["classes"].shape != (c,)
            or arrays["display_names"].shape != (c,) or int(off[0]) != 0 or int(off[-1]) != e):
        raise ValueError("the arrays' shapes disagree with each other")
    return SparseIndex(arrays["image_ids"], off, arrays["labels"], arrays["positive"],
                       arrays["classes"].tolist(), arrays["display_names"].tolist(), folder)


def cached_index(descriptions_path: str, trainable_path: str, labels_path: str) -> SparseIndex:
    """The split's index from the cache, or built, stored and loaded memory-mapped. The
    cache is derived data, never trusted: a folder that cannot be read back whole is
    rebuilt, with a warning naming it."""
    for what, p in (("class descriptions", descriptions_path), ("trainable classes", trainable_path),
                    ("labels", labels_path)):
        if not os.path.isfile(p):
            raise MlcoreError(f"{what} file {p!r} does not exist")
    sources = [descriptions_path, trainable_path, labels_path]
    key = cache_key({"kind": "openimages"}, sources)
    folder = os.path.join(cache_dir(), "index", f"openimages-{key}")
    if os.path.exists(os.path.join(folder, "meta.json")):
        try:
            return load(folder)
        except Exception as exc:  # whatever the damage, the dataset's own files are the truth
            warnings.warn(f"damaged openimages label index in the cache, {folder!r} ({type(exc).__name__}: {exc}); "
                          f"it is rebuilt from the dataset's files", stacklevel=2)
    index = build_index(descriptions_path, trainable_path, labels_path)
    try:
        save(index, folder)
        return load(folder)  # memory-mapped: the built arrays are freed
    except (OSError, ValueError) as exc:
        warnings.warn(f"could not cache the openimages label index in {folder!r}: {exc}", stacklevel=2)
    return index
