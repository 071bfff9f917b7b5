"""Reading Open Images V6 image-level labels into a sparse, cached, memory-mapped index.

The train file has ~28M rows for ~9M images and ~9,600 trainable classes: a dense N×C
target matrix would be 86 GB, and a Python object per row (the usual ``csv.reader`` into
a dict of lists) takes minutes and gigabytes. So the labels file is cut into chunks of
whole lines, each read and parsed by a thread with numpy (no Python object per row):
line and comma positions come from one vectorized scan, ImageIDs and LabelNames are cut
out as 64-bit words, LabelNames become class ids through an open-addressing hash table
over the descriptions, and the rows of each run of equal ImageIDs become that image's
entries, sorted by class and de-duplicated, inside the chunk. The main thread only joins
the chunks in file order (an image cut by a chunk boundary is joined there). The
released files are sorted by ImageID, so every image is one run; an unsorted file is
detected and its runs are merged by one sort at the end.

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
import sys
import threading
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mlcore import MlcoreError, atomic_open, cache_dir

FORMAT_VERSION = 1
#: bytes of a labels file parsed at once (the temporaries are a few times that, per thread)
CHUNK_BYTES = 1 << 22
#: threads reading and parsing chunks (``os.preadv``, POSIX: Linux, macOS 11+; it and numpy release the GIL)
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
    """(n, k) big-endian words back to an ``S{8k}`` array (the padding zeros drop off),
    in place: ``words`` (contiguous, owned) becomes the bytes' storage."""
    k = words.shape[1] if words.ndim == 2 else 1
    words = np.ascontiguousarray(words)
    if sys.byteorder == "little":
        words.byteswap(inplace=True)
    return words.view(f"S{8 * k}").reshape(-1)


class Vocabulary:
    """The described LabelNames as words, looked up by a uint64 hash: one ``searchsorted``
    over ~20k integers per row and an exact comparison of the words found."""

    def __init__(self, names: Sequence[str], class_ids: Sequence[int]):
        encoded = [n.encode("utf-8") for n in names]
        self.k = max(1, -(-max(len(n) for n in encoded) // 8))
        words = _name_words(encoded, self.k)
        h = _hash(words)
        order = np.argsort(h, kind="stable")
        self.hash = h[order]
        self.columns = [np.ascontiguousarray(words[order, j]) for j in range(self.k)]  # compared per column
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
        slot = (h >> np.uint64(64 - self.bits)).astype(np.intp)
        entry = self.slot_entry[slot]
        todo = np.flatnonzero((self.slot_hash[slot] != h) | (entry < 0))  # most rows: found at the first probe
        if len(todo):
            entry[todo] = -1
            mask = (1 << self.bits) - 1
            for p in range(1, self.probes):
                at = (slot[todo] + p) & mask
                found_at = self.slot_entry[at]
                hit = (self.slot_hash[at] == h[todo]) & (found_at >= 0)
                entry[todo[hit]] = found_at[hit]
                todo = todo[~hit]
                if not len(todo):
                    break
        at = np.maximum(entry, 0)
        found = (entry >= 0) & ~too_long
        for j, column in enumerate(self.columns):  # the hash found a candidate: the words must be equal
            found &= column[at] == words[:, j]
        return self.class_id[at], found


class _RowError(Exception):
    """A bad row met by a parsing thread: its line within the chunk (0-based) and what is
    wrong. The reading loop, which knows the chunk's first line, names file and line."""

    def __init__(self, local_line: int, what: str):
        super().__init__(what)
        self.local_line, self.what = local_line, what


@dataclass
class _Chunk:
    """One parsed chunk: its runs of equal ImageIDs (``run_ids``, words), per run the
    number of its known entries (``counts``), the entries run by run sorted by class and
    de-duplicated (``labels``, ``positive``: a positive row wins), and its line count."""

    run_ids: np.ndarray
    counts: np.ndarray
    labels: np.ndarray
    positive: np.ndarray
    lines: int
    ascending: bool  # its runs in strictly ascending ImageID order


class _LabelsParser:
    """Parses a labels file chunk by chunk on threads (:meth:`parse`: everything per row,
    numpy releasing the GIL) and joins the chunks in file order (:meth:`merge`: per chunk
    only the image its first row continues, if any)."""

    def __init__(self, path: str, vocab: Vocabulary, descriptions_path: str, num_classes: int):
        self.path, self.vocab, self.descriptions_path = path, vocab, descriptions_path
        self.num_classes = num_classes
        self.label_type = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32
        self.runs: list[np.ndarray] = []  # ImageID words of each run of equal ImageIDs
        self.counts: list[np.ndarray] = []  # known entries of each run
        self.labels: list[np.ndarray] = []  # the entries, run by run
        self.positive: list[np.ndarray] = []
        self.last_id: np.ndarray | None = None
        self.ascending = True  # runs in strictly ascending ImageID order (each image one run)
        self._local = threading.local()  # per-thread scratch buffers

    def header(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MlcoreError(f"labels file {self.path!r}, line 1: the header is not UTF-8 text: {line[:80]!r}") from None
        names = [c.strip().strip('"') for c in text.rstrip("\r\n").split(",")]
        missing = [c for c in LABEL_COLUMNS if c not in names]
        if missing:
            raise MlcoreError(f"labels file {self.path!r}, line 1: the header {','.join(names)!r} lacks the "
                              f"column(s) {missing} (expected ImageID,Source,LabelName,Confidence)")
        self.num_columns = len(names)
        self.column = {c: names.index(c) for c in LABEL_COLUMNS}

    def _buffer(self, n: int) -> bytearray:
        """This thread's read buffer, reused from chunk to chunk: a fresh 4 MB buffer per
        chunk costs its page faults every time (a fifth to a quarter of the build, measured). Only
        ``n`` bytes of it hold this chunk; what lies past them is never used unmasked."""
        held = getattr(self._local, "buffer", None)
        if held is None or len(held) < n:
            held = self._local.buffer = bytearray(max(n, CHUNK_BYTES + 64))
        return held

    def _mask(self, n: int) -> np.ndarray:
        """This thread's reusable boolean scratch of ``n`` entries (as :meth:`_buffer`)."""
        held = getattr(self._local, "mask", None)
        if held is None or len(held) < n:
            held = self._local.mask = np.empty(max(n, CHUNK_BYTES), dtype=bool)
        return held[:n]

    def parse(self, fd: int, a: int, b: int) -> _Chunk:
        """The whole lines at bytes ``a:b`` of the file (the last may lack its newline at
        the end of the file) → a :class:`_Chunk`. Touches no parser state: chunks are
        read and parsed on threads (``os.preadv`` and numpy release the GIL)."""
        size = b - a
        raw = self._buffer(size + 64)  # a few bytes past the chunk: word gathers near its end stay inside
        with memoryview(raw) as view:
            if os.preadv(fd, [view[:size]], a) != size:
                raise _RowError(0, "the file became shorter while it was read")
        buf = np.frombuffer(raw, dtype=np.uint8, count=size)
        itype = np.int32 if size < 2**31 - 64 else np.int64
        # newlines and commas in one scan: the bytes ≤ ',' (other such bytes are rare in these files)
        below = np.less_equal(buf, 44, out=self._mask(size))
        delimiter = np.flatnonzero(below).astype(itype)
        del below
        kind = buf[delimiter]
        newline = delimiter[kind == 10]
        num_lines = len(newline)
        if size and buf[-1] != 10:  # the file's last line without its newline
            newline = np.append(newline, itype(size))
        start = np.empty_like(newline)
        start[:1] = 0
        start[1:] = newline[:-1] + 1
        end = newline.copy()
        cr = np.zeros(len(end), dtype=bool)
        nonempty = end > start
        cr[nonempty] = buf[end[nonempty] - 1] == 13
        end -= cr
        lines = np.arange(len(newline), dtype=np.int64)
        keep = end > start  # blank lines are skipped
        if not keep.all():
            start, end, lines = start[keep], end[keep], lines[keep]
        if not len(start):
            return _Chunk(np.zeros((0, 2), dtype=np.uint64), np.zeros(0, dtype=np.int32),
                          np.zeros(0, dtype=self.label_type), np.zeros(0, dtype=bool), num_lines, True)
        commas = delimiter[kind == 44]
        del delimiter, kind
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
        # each check finds its first bad row; the first of them all in the file is the one
        # reported, so the message does not depend on where the chunks are cut
        problems: list[tuple[int, str]] = []  # (line in the chunk, what is wrong)
        if len(wrong):
            k = int(wrong[0])
            problems.append((int(lines[k]), f"expected {self.num_columns} comma-separated fields, got "
                                f"{bytes(buf[start[k]:end[k]]).decode(errors='replace')!r}"))
            if not k:
                raise _RowError(*problems[0])
            start, end, lines, first_comma = start[:k], end[:k], lines[:k], first_comma[:k]  # the rows before it
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
        digit = buf[np.minimum(cs, size - 1)]
        ok = (cl == 1) & ((digit == 48) | (digit == 49))
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            problems.append((int(lines[k]), f"Confidence {bytes(buf[cs[k]:cs[k] + cl[k]]).decode(errors='replace')!r} "
                                f"is neither 1 (positive) nor 0 (verified negative)"))
        positive = digit == 49

        ls, ll = field("LabelName")
        is_, il = field("ImageID")
        if (il == 0).any():
            problems.append((int(lines[np.flatnonzero(il == 0)[0]]), "empty ImageID"))
        label_words, id_words = -(-max(int(ll.max()), 1) // 8), max(2, -(-int(il.max()) // 8))
        need = size + 8 * max(label_words, id_words) + 8
        if len(raw) < need:  # very long fields
            raw = bytes(raw[:size]) + bytes(need - size)
        u64 = np.ndarray((len(raw) - 7,), dtype="<u8", buffer=raw, strides=(1,))

        # LabelName -> class id (-1: described but not trainable)
        cls, found = self.vocab.lookup(_words(u64, ls, ll, label_words))
        if not found.all():
            k = int(np.flatnonzero(~found)[0])
            problems.append((int(lines[k]), f"LabelName {bytes(buf[ls[k]:ls[k] + ll[k]]).decode(errors='replace')!r} "
                                f"is not in the class descriptions {self.descriptions_path!r}"))
        if problems:
            raise _RowError(*min(problems))

        # runs of equal ImageIDs; per run its trainable entries, sorted by class, de-duplicated
        ids = _words(u64, is_, il, id_words)
        del u64, raw, buf
        new = np.empty(len(ids), dtype=bool)
        new[0] = True
        np.any(ids[1:] != ids[:-1], axis=1, out=new[1:])
        run_ids = ids[new]
        run = np.cumsum(new, dtype=np.int64)
        run -= 1
        trainable = cls >= 0
        key = run[trainable]
        key *= self.num_classes
        key += cls[trainable]
        key *= 2
        key += positive[trainable]
        labels, positive, counts = _sorted_entries(key, self.num_classes, len(run_ids))
        return _Chunk(run_ids, counts, labels.astype(self.label_type), positive, num_lines,
                      len(run_ids) < 2 or _strictly_ascending(run_ids))

    def merge(self, chunk: _Chunk) -> None:
        """Append a parsed chunk (in file order). When its first row continues the last
        image of the chunk before, that image's entries from both are joined."""
        if not len(chunk.run_ids):
            return
        self.ascending &= chunk.ascending
        first = chunk.run_ids[:1]
        if self.last_id is not None:
            k = max(self.last_id.shape[1], first.shape[1])
            order = _compare(_pad(self.last_id, k)[0], _pad(first, k)[0])
            if order > 0:
                self.ascending = False
            if order == 0:  # one image across the chunk boundary: one run, its entries joined
                n_prev, n_head = int(self.counts[-1][-1]), int(chunk.counts[0])
                cut = len(self.labels[-1]) - n_prev
                key = np.concatenate([self.labels[-1][cut:], chunk.labels[:n_head]]).astype(np.int64)
                key *= 2
                key += np.concatenate([self.positive[-1][cut:], chunk.positive[:n_head]])
                labels, positive, _ = _sorted_entries(key, self.num_classes, 1)
                self.labels[-1], self.positive[-1] = self.labels[-1][:cut], self.positive[-1][:cut]
                self.counts[-1] = self.counts[-1].copy()
                self.counts[-1][-1] = len(labels)
                self.labels.append(labels.astype(self.label_type))
                self.positive.append(positive)
                chunk = _Chunk(chunk.run_ids[1:], chunk.counts[1:], chunk.labels[n_head:], chunk.positive[n_head:],
                               chunk.lines, chunk.ascending)
                if not len(chunk.run_ids):  # the whole chunk was that one image
                    return
        self.last_id = chunk.run_ids[-1:]
        self.runs.append(chunk.run_ids)
        self.counts.append(chunk.counts)
        self.labels.append(chunk.labels)
        self.positive.append(chunk.positive)


def _sorted_entries(key: np.ndarray, num_classes: int, num_runs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys ``(run * C + class) * 2 + positive`` → (class ids, positive, entries per run),
    sorted by (run, class), an (run, class) listed twice kept once, positive if any row is."""
    key.sort()
    if len(key) > 1:
        last = np.empty(len(key), dtype=bool)  # the last row of an (run, class): positive wins
        last[-1] = True
        np.not_equal(key[1:] >> 1, key[:-1] >> 1, out=last[:-1])
        if not last.all():
            key = key[last]
    positive = (key & 1).astype(bool)
    key >>= 1
    labels = key % num_classes
    key //= num_classes
    return labels, positive, np.bincount(key, minlength=num_runs).astype(np.int32)


def _pad(words: np.ndarray, k: int) -> np.ndarray:
    """Words widened to k columns (zero words: the bytes' padding)."""
    if words.shape[1] >= k:
        return words
    return np.hstack([words, np.zeros((len(words), k - words.shape[1]), dtype=np.uint64)])


def _compare(a: np.ndarray, b: np.ndarray) -> int:
    """-1, 0 or 1 as one ImageID's words are before, equal to or after another's."""
    differ = np.flatnonzero(a != b)
    return 0 if not len(differ) else (-1 if a[differ[0]] < b[differ[0]] else 1)


def _strictly_ascending(words: np.ndarray) -> bool:
    """Rows in strictly increasing lexicographic (= byte) order."""
    a, b = words[:-1], words[1:]
    less = np.zeros(len(a), dtype=bool)
    equal = np.ones(len(a), dtype=bool)
    for j in range(words.shape[1]):
        less |= equal & (a[:, j] < b[:, j])
        equal &= a[:, j] == b[:, j]
    return bool(less.all())


def _chunks(fd: int, start: int, size: int, chunk_bytes: int):
    """``(a, b)`` spans of whole lines, about ``chunk_bytes`` each, from ``start`` to the
    end of the file (whose last line may lack its newline). Only a few bytes around each
    cut are read here; the chunks themselves are read by the threads parsing them."""
    a = start
    while a < size:
        b = size
        if a + chunk_bytes < size:
            lo = a + chunk_bytes
            while lo > a:  # the last newline before a + chunk_bytes
                window = max(a, lo - 4096)
                i = os.pread(fd, lo - window, window).rfind(b"\n")
                if i >= 0:
                    b = window + i + 1
                    break
                lo = window
            else:  # a line longer than a chunk: up to its newline
                pos = a + chunk_bytes
                while pos < size:
                    block = os.pread(fd, 1 << 16, pos)
                    i = block.find(b"\n")
                    if i >= 0:
                        b = pos + i + 1
                        break
                    pos += len(block)
        yield a, b
        a = b


def read_labels(path: str, vocab: Vocabulary, num_classes: int, descriptions_path: str,
                chunk_bytes: int = CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(image_ids, offsets, labels, positive)`` of one labels file, in one streaming
    pass (chunks read and parsed on threads). Images are in ImageID order; an (image, class)
    listed twice is one entry, positive if any of its rows is."""
    if not os.path.isfile(path):
        raise MlcoreError(f"labels file {path!r} does not exist")
    parser = _LabelsParser(path, vocab, descriptions_path, num_classes)
    with open(path, "rb") as f:
        head = f.readline()
        if not head.strip():
            raise MlcoreError(f"labels file {path!r}, line 1: expected the header ImageID,Source,LabelName,Confidence, "
                              f"found {'nothing (the file is empty)' if not head else 'a blank line'}")
        parser.header(head)
        size = os.fstat(f.fileno()).st_size
        line = 2
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            pending: deque = deque()

            def merge_next() -> None:
                nonlocal line
                try:
                    chunk = pending.popleft().result()
                except _RowError as exc:
                    raise MlcoreError(f"labels file {path!r}, line {line + exc.local_line}: {exc.what}") from None
                parser.merge(chunk)
                line += chunk.lines

            try:
                for a, b in _chunks(f.fileno(), len(head), size, chunk_bytes):
                    pending.append(pool.submit(parser.parse, f.fileno(), a, b))
                    while len(pending) > THREADS:  # bounded: at most a few chunks in flight
                        merge_next()
                while pending:
                    merge_next()
            finally:
                for future in pending:
                    future.cancel()
    return _assemble(parser, num_classes)


def _assemble(parser: _LabelsParser, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunks joined: runs → images (sorted files: one run each), entries → CSR."""
    k = max([r.shape[1] for r in parser.runs], default=2)
    runs = _join(parser.runs, np.uint64, k)
    counts = _join(parser.counts, np.int32)
    labels = _join(parser.labels, parser.label_type)
    positive = _join(parser.positive, bool)
    if not parser.ascending:  # an unsorted file: the same ImageID may be several runs
        order = np.lexsort(runs.T[::-1])
        runs = runs[order]
        new = np.ones(len(runs), dtype=bool)
        new[1:] = (runs[1:] != runs[:-1]).any(1)
        image_of_run = np.empty(len(order), dtype=np.int64)
        image_of_run[order] = np.cumsum(new) - 1
        runs = runs[new]
        key = np.repeat(image_of_run, counts)
        del order, new, image_of_run
        key *= num_classes
        key += labels
        key *= 2
        key += positive
        labels, positive, counts = _sorted_entries(key, num_classes, len(runs))
        labels = labels.astype(parser.label_type)
        del key
    image_ids = _words_to_bytes(runs)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return image_ids, offsets, labels, positive


def _join(pieces: list[np.ndarray], dtype, columns: int = 0) -> np.ndarray:
    """The pieces (emptied from the list) concatenated, each freed once copied: the
    whole never exists twice. ``columns``: 2-D pieces, narrower ones zero-padded."""
    total = sum(len(p) for p in pieces)
    out = np.zeros((total, columns), dtype=dtype) if columns else np.empty(total, dtype=dtype)
    at = 0
    pieces.reverse()
    while pieces:
        piece = pieces.pop()
        if columns:
            out[at:at + len(piece), :piece.shape[1]] = piece
        else:
            out[at:at + len(piece)] = piece
        at += len(piece)
    return out


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
