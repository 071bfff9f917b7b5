"""Weight files: one reader, key-layout adapters, and strict loading with clear errors.

Every weights file mlcore reads — a backbone's pretrained ImageNet weights, a whole
trained model (an mlcore checkpoint, the seed's, an official paper's), a checkpoint to
evaluate or resume — goes through :func:`read_weights` and :func:`load_state`, so the
safety rules, the unwrapping of other trainers' containers and the error messages are
written once:

* nothing runs from a file: torch files are read with ``torch.load(weights_only=True)``
  (tensors, containers, numbers, numpy scalars), ``.safetensors`` with safetensors;
* a file's tensors are found inside the common wrappers (an mlcore checkpoint's ``model``,
  ``state_dict``, ``model_state_dict``, ``model``), and DataParallel's ``module.``
  prefix is dropped;
* loading is strict: every missing, unexpected or mis-shaped parameter is named;
* a checkpoint mlcore wrote is verified against the checksum written with it before
  anything read from it is used (see :func:`verify_checkpoint`); a damaged one is a
  :class:`CheckpointDamaged` error naming the file. Files from elsewhere carry no
  checksum and load as they are.

Files written by other code often name the same parameters differently (the official
SSGRL calls the backbone ``resnet_101``). A model says which such layouts it accepts by
declaring ``weight_layouts``, a tuple of :class:`WeightLayout`; :func:`load_weights`
recognizes a file's layout, renames its keys, and tells the model which layout it read
through an optional ``weights_loaded(layout)`` method (SSGRL switches its reset gate).

Importing this module is light (torch is imported when a file is read), so a plugin may
declare its layouts anywhere.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import MlcoreError

if TYPE_CHECKING:
    import torch

#: the ``format`` tag of the checkpoints the trainer writes (``mlcore.engine.checkpoint``)
CHECKPOINT_FORMAT = "mlcore-checkpoint"
#: the zip comment that ends a checkpoint mlcore wrote: this tag, then 64 hex digits (see
#: :func:`verify_checkpoint`)
CHECKSUM_TAG = b"mlcore-sha256x4m:"
#: the chunk size of the checksum: chunks are hashed independently, on several threads
CHECKSUM_CHUNK = 4 << 20
#: the ``version`` of mlcore checkpoints from which on they are written with a checksum
CHECKSUM_SINCE_VERSION = 2
#: the containers other trainers wrap a state dict in, tried in this order
WRAPPERS = ("state_dict", "model_state_dict", "model")
DEFAULT_HINT = "another model or another number of labels?"


@dataclass(frozen=True)
class WeightLayout:
    """A way other code named a model's parameters, and how to read it as the model's own.

    name: what the layout is, for messages (``"official SSGRL"``).
    detect: a key prefix found only in files of this layout (``"resnet_101."``).
    rename: ordered ``(source prefix, target prefix)`` pairs; the first pair whose source
        prefix a key starts with renames it, a key matching none is kept as it is.
    drop: source key prefixes left out (parts of the file the model has no place for).
    optional: key suffixes the file may lack; the model keeps its own value for those
        (``".num_batches_tracked"``: files written before BatchNorm counted its batches).
    """

    name: str
    detect: str
    rename: tuple[tuple[str, str], ...]
    drop: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.detect:
            raise MlcoreError(f"weight layout {self.name!r}: detect must be a non-empty key prefix")
        if not all(isinstance(p, tuple) and len(p) == 2 for p in self.rename):
            raise MlcoreError(f"weight layout {self.name!r}: rename must be "
                              f"(source prefix, target prefix) pairs")

    def matches(self, state: Mapping[str, Any]) -> bool:
        """Whether ``state`` is in this layout: some key starts with ``detect``."""
        return any(k.startswith(self.detect) for k in state)

    def apply(self, state: Mapping[str, Any]) -> dict:
        """``state`` with its keys renamed and the ``drop`` prefixes left out."""
        out: dict = {}
        origin: dict[str, str] = {}
        for key, value in state.items():
            if self.drop and key.startswith(self.drop):
                continue
            new = next((dst + key[len(src):] for src, dst in self.rename if key.startswith(src)), key)
            if new in out:
                raise MlcoreError(f"weight layout {self.name!r} reads both {origin[new]!r} and {key!r} "
                                  f"as {new!r}")
            out[new], origin[new] = value, key
        return out


def weights_classes_field() -> Any:
    """The ``weights_classes`` field of a model plugin's schema: a text file of the labels
    of its ``weights`` in their output order (see :func:`reorder_classes`); the config
    check refuses it without ``weights``."""
    from dataclasses import field

    return field(default=None, metadata={"path": "file", "requires": "weights", "why": "names the label order of"})


# -- reading -----------------------------------------------------------------------------

def read_weights(path: str | os.PathLike, *, what: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, by parameter name.

    ``.safetensors`` files are read with safetensors, anything else as a PyTorch file
    without running code from it. Wrappers are unwrapped and the ``module.`` prefix
    dropped (see :func:`state_dict_of`). ``what`` names the file in messages.
    """
    path = os.fspath(path)
    return state_dict_of(_read_file(path, what), path)


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The model weights in a loaded file (or any loaded object): an mlcore checkpoint's
    ``model``; the ``state_dict``/``model_state_dict``/``model`` of other trainers'
    checkpoints (the official SSGRL's ``{epoch, state_dict, best_mAP}``, timm's, the
    seed's); or a plain state dict. Entries that are not tensors are left out; the
    ``module.`` prefix of DataParallel/DDP saves is dropped when every key has it."""
    import torch

    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        obj = obj.get("model")
    elif isinstance(obj, Mapping):
        obj = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), Mapping)), obj)
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    if not state:
        raise MlcoreError(f"{source!r} holds no model weights "
                          f"(neither an mlcore checkpoint nor a state dict)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def safe_load(path: str | os.PathLike) -> Any:
    """Read a checkpoint or weights file without running code from it (tensors,
    containers, numbers and numpy scalars only); returns what the file holds. A
    checkpoint mlcore wrote is verified against its checksum first (a damaged one raises
    :class:`CheckpointDamaged`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MlcoreError(f"checkpoint {path!r} does not exist")
    return _torch_load(path)


def _read_file(path: str, what: str) -> Any:
    """What a torch or safetensors file holds; a missing file says what to put there."""
    if not os.path.isfile(path):
        raise MlcoreError(f"{what} file {path!r} does not exist; download the file (e.g. torchvision's "
                          f"resnet101-63fe2227.pth, a timm .safetensors, a paper's released checkpoint) "
                          f"and give its local path — nothing is downloaded")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:
            raise MlcoreError(f"{path!r} is not a readable safetensors file: {exc}") from None
    return _torch_load(path)


def _torch_load(path: str) -> Any:
    """What a PyTorch file holds, read with ``weights_only``; for a file ending with an
    mlcore checksum, only once the checksum matches (the file is hashed on worker threads
    while torch reads it — reading runs no code, so a damaged file can do no harm — and
    nothing read is returned unless the digest is the one written with it)."""
    expected = _checksum_of(path)
    if expected is None:  # a file from elsewhere, or re-saved with torch.save, or from before checksums
        return _plain_torch_load(path)
    length, digest = expected
    with ArchiveDigest(path, length) as hashing:
        try:
            obj, failure = _plain_torch_load(path), None
        except Exception as exc:  # reported below unless the bytes are not those written
            obj, failure = None, exc
        actual = hashing.hexdigest()
    if actual != digest:
        raise CheckpointDamaged(_mismatch(path)) from None
    if failure is not None:  # the bytes are those written, yet torch cannot read them
        raise failure
    return obj


def _plain_torch_load(path: str) -> Any:
    import torch

    try:
        ctx = getattr(torch.serialization, "safe_globals", None)
        if ctx is None:  # torch < 2.5
            torch.serialization.add_safe_globals(_numpy_scalar_globals())
            return torch.load(path, map_location="cpu", weights_only=True)
        with ctx(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(exc))
        if found:
            raise MlcoreError(f"{path!r} was refused: loading it would run code ({found.group(1)}); "
                              f"only plain tensors and containers are read from checkpoints") from None
        raise _unreadable(path, exc) from exc
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, struct.error) as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: str, exc: BaseException) -> MlcoreError:
    """The error for a file torch cannot read: a zip archive (what ``torch.save``
    writes) that cannot be read is damaged or cut short."""
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
    except OSError:
        zipped = False
    if zipped:  # torch's miniz messages go on about likely causes: its first sentence says it
        reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        return CheckpointDamaged(f"{path!r} is not a readable PyTorch checkpoint: the file is damaged or "
                                 f"truncated ({reason})")
    return MlcoreError(f"{path!r} is not a readable PyTorch checkpoint: {exc}")


def _numpy_scalar_globals() -> list:
    """The numpy types a scalar such as the official SSGRL's ``best_mAP`` pickles as —
    plain data, let through ``weights_only`` loading, and nothing more."""
    import importlib

    import numpy as np

    out: list = [np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            out.append(importlib.import_module(mod).scalar)
            break
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")
                if hasattr(dtypes, n)]
    return out


# -- integrity ---------------------------------------------------------------------------
#
# ``torch.save`` writes a zip archive whose central directory ends with a 22-byte record;
# torch does not check the archive's CRCs when loading, so flipped bytes in tensor data load
# silently as wrong weights. A checkpoint mlcore writes (``mlcore.engine.checkpoint``) is
# that archive with a zip comment (the record's last two bytes give the comment's length)
# holding ``CHECKSUM_TAG`` and the digest of the archive exactly as ``torch.save`` wrote it
# (comment length 0). The file stays one ordinary zip: ``torch.load(path,
# weights_only=True)``, ``zipfile`` and ``unzip`` read it as before.
#
# The digest: the archive cut into ``CHECKSUM_CHUNK`` (4 MiB) chunks, each hashed with
# SHA-256, and the SHA-256 of those digests concatenated in order. Chunks are independent,
# so worker threads hash them (hashlib releases the GIL) while the calling thread reads
# the file with ``torch.load`` or, after ``torch.save``, waits for its fsync: a SHA-256
# pass over a 170 MB ResNet-101 checkpoint costs about as long as ``torch.load`` itself,
# so done in turn it would nearly double a load.
# SHA-256 rather than blake2b: with the SHA extensions of current x86 and ARM CPUs it is
# the faster of the two (about 1.3 GB/s a core against 0.5). The checksum guards against
# accidents, not tampering: whoever can rewrite the file can rewrite its checksum too.
#
# A flipped byte anywhere before the comment changes the digest; a damaged comment is
# reported as such; a file cut short has no comment left, or part of one (reported as cut),
# and torch cannot read an archive without its end record. A file without the comment
# loads unverified, as before: files from elsewhere (torchvision, timm, the seed, official
# repositories), mlcore checkpoints written before checksums (``version`` 1), and
# checkpoints re-saved with a plain ``torch.save`` (edited by hand).

_EOCD = 22  # the zip end-of-central-directory record, without a comment
_EOCD_SIG = b"PK\x05\x06"
TRAILER_LENGTH = len(CHECKSUM_TAG) + 64


class CheckpointDamaged(MlcoreError):
    """A checkpoint that was written whole no longer reads as written: it does not match
    its checksum, its checksum is damaged, or torch cannot read the archive (cut short)."""


def verify_checkpoint(path: str | os.PathLike) -> bool:
    """Check ``path`` against the checksum mlcore wrote with it, without loading it.

    True: the checksum is there and matches. False: the file carries none (a file from
    elsewhere, or an mlcore checkpoint written before checksums) — nothing to verify.
    A mismatch or a damaged checksum raises :class:`CheckpointDamaged`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MlcoreError(f"checkpoint {path!r} does not exist")
    expected = _checksum_of(path)
    if expected is None:
        return False
    with ArchiveDigest(path, expected[0], beside=False) as hashing:
        actual = hashing.hexdigest()
    if actual != expected[1]:
        raise CheckpointDamaged(_mismatch(path))
    return True


def _mismatch(path: str) -> str:
    return (f"checkpoint {path!r} is damaged: its content no longer matches the checksum written with it "
            f"(a disk error or an interrupted copy changed it after it was written); "
            f"nothing was loaded from it")


def _checksum_of(path: str) -> tuple[int, str] | None:
    """``(archive length, hex digest)`` from the file's checksum comment; None when the
    file has none. A comment that is ours but damaged raises :class:`CheckpointDamaged`."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(max(0, size - _EOCD - TRAILER_LENGTH))
            end = f.read()
    except OSError as exc:
        raise MlcoreError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    if len(end) == _EOCD + TRAILER_LENGTH:
        record, comment = end[:_EOCD], end[_EOCD:]
        ours = record[:4] == _EOCD_SIG and struct.unpack("<H", record[-2:])[0] == TRAILER_LENGTH
        if ours or comment.startswith(CHECKSUM_TAG):
            digest = comment[len(CHECKSUM_TAG):]
            if not (ours and comment.startswith(CHECKSUM_TAG) and re.fullmatch(rb"[0-9a-f]{64}", digest)):
                raise CheckpointDamaged(f"checkpoint {path!r} is damaged: the checksum at the end of the "
                                        f"file is itself damaged, so its content cannot be trusted")
            return size - TRAILER_LENGTH, digest.decode("ascii")
    if _cut_in_checksum(end):
        raise CheckpointDamaged(f"checkpoint {path!r} is truncated: the file ends inside the checksum "
                                f"written after its content (a cut or incomplete copy?)")
    return None  # no mlcore checksum: a file from elsewhere, or re-saved, or written before checksums


def _cut_in_checksum(end: bytes) -> bool:
    """Whether the file's last bytes ``end`` are a zip end record announcing our checksum
    comment, followed by only the start of that comment (a file cut inside it)."""
    for at in range(len(end) - _EOCD, -1, -1):
        rest = end[at + _EOCD:]
        if len(rest) >= TRAILER_LENGTH:
            break
        record = end[at:at + _EOCD]
        if (record[:4] == _EOCD_SIG and struct.unpack("<H", record[-2:])[0] == TRAILER_LENGTH
                and CHECKSUM_TAG.startswith(rest[:len(CHECKSUM_TAG)])):
            return True
    return False


def hash_threads(beside: bool = True) -> int:
    """How many threads hash a checkpoint's chunks: at most 8, and with ``beside`` (the
    calling thread reads or writes the file meanwhile) one CPU left to the caller."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus - 1 if beside else cpus))


class ArchiveDigest:
    """The checksum of the first ``length`` bytes of a file (the archive as torch wrote
    it: its comment length read as 0), computed on worker threads from the moment the
    block starts, while the caller reads the file (``torch.load``) or waits for the disk
    (the writer's fsync); ``hexdigest()`` waits for it."""

    def __init__(self, path: str, length: int, beside: bool = True):
        self.path, self.length, self.beside = path, length, beside
        self._fd: int | None = None
        self._pool: Any = None
        self._parts: list[Any] = []

    def __enter__(self) -> ArchiveDigest:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise MlcoreError(f"cannot read {self.path!r}: {exc.strerror or exc}") from exc
        count = -(-self.length // CHECKSUM_CHUNK)
        if count > 1:  # on worker threads, while the caller works (torch.load); one chunk is hashed here
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(hash_threads(self.beside), thread_name_prefix="mlcore-checksum")
            self._parts = [self._pool.submit(self._chunk, k) for k in range(count)]
        else:
            self._parts = [self._chunk(k) for k in range(count)]
        return self

    def _chunk(self, k: int) -> bytes:
        start = k * CHECKSUM_CHUNK
        size = min(CHECKSUM_CHUNK, self.length - start)
        try:
            data = os.pread(self._fd, size, start)
            while len(data) < size:  # a short read: read on, or the file shrank under us
                more = os.pread(self._fd, size - len(data), start + len(data))
                if not more:
                    raise CheckpointDamaged(f"checkpoint {self.path!r} changed while it was being read")
                data += more
        except OSError as exc:  # EIO: the disk cannot give the bytes back
            raise CheckpointDamaged(f"checkpoint {self.path!r} cannot be read: "
                                    f"{exc.strerror or exc}") from exc
        if start + size == self.length:  # the comment length, as torch wrote it
            data = data[:-2] + b"\x00\x00"
        return hashlib.sha256(data).digest()

    def hexdigest(self) -> str:
        digests = [p.result() if not isinstance(p, bytes) else p for p in self._parts]
        return hashlib.sha256(b"".join(digests)).hexdigest()

    def read(self, start: int, size: int) -> bytes:
        """``size`` bytes of the file from ``start`` (as they are in the file)."""
        return os.pread(self._fd, size, start)

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            for p in self._parts:
                p.cancel()
            self._pool.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)


# -- loading -----------------------------------------------------------------------------

def load_weights(module: torch.nn.Module, source: str | os.PathLike | Mapping[str, Any], *,
                 layouts: tuple[WeightLayout, ...] | None = None, ignore: tuple[str, ...] = (),
                 what: str = "checkpoint", hint: str = DEFAULT_HINT,
                 classes: Sequence[str] | None = None,
                 file_classes: str | os.PathLike | Sequence[str] | None = None) -> WeightLayout | None:
    """Load a weights file (or a loaded state dict) into ``module``, strictly.

    ``layouts`` (default: the module's ``weight_layouts``): the first whose ``matches``
    is true renames the keys first. With ``file_classes`` — the file's label names in
    its output order, or a text file of them (one per line: a model's ``weights_classes``)
    — the per-class tensors are put in the order of ``classes``, the model's (see
    :func:`reorder_classes`). Then every key must fit (see :func:`load_state`; ``ignore``
    prefixes are left out on both sides). Last, the module's ``weights_loaded(layout)``,
    when it has one, is told the layout read (None: its own). Returns that layout.
    """
    held = None
    if isinstance(source, Mapping):
        name = "<state dict>"
        state = state_dict_of(source, name)
    else:
        name = os.fspath(source)
        obj = _read_file(name, what)
        state = state_dict_of(obj, name)
        held = obj.get("classes") if isinstance(obj, dict) and "model" in obj else None
    order = None
    if file_classes is None and classes is not None and not ignore:
        # an mlcore checkpoint names its labels: compared by name, not by position
        order = _order_by_name(held, classes, f"{what} {name!r}", "the model's")
    if order is None and file_classes is not None:
        if classes is None:
            raise MlcoreError("weights_classes: the model's own label names are needed to reorder the "
                              "weights' labels, and none were given")
        order = (file_classes, list(classes))
    return _load(module, state, name, layouts=layouts, ignore=ignore, what=what, hint=hint, order=order)


def read_class_names(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Label names from a text file (one per line, blank lines skipped) or a sequence.
    The file is read as ``utf-8-sig``: a byte-order mark (Windows editors write one) would
    otherwise stick to the first name and make it match no label."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8-sig") as f:
                names = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise MlcoreError(f"weights_classes: cannot read {path!r}: {getattr(exc, 'strerror', None) or exc}"
                              ) from None
        if not names:
            raise MlcoreError(f"weights_classes: {path!r} lists no label names (one per line)")
        return names
    return [str(n) for n in source]


def reorder_classes(module: torch.nn.Module, state: dict, file_classes: str | os.PathLike | Sequence[str],
                    classes: Sequence[str]) -> dict:
    """``state`` (in the model's key names) with its per-class tensors taken from the
    file's label order ``file_classes`` into the model's order ``classes``, by name.

    Which tensors hold one entry per label, and along which axes, the model says in its
    ``class_axes`` (``{"fc.weight": (0,), "A": (0, 1)}``); a model that declares none
    cannot be reordered. The two lists must hold the same names: any difference is an
    error that lists it.
    """
    import torch

    have = read_class_names(file_classes)
    where = {n: i for i, n in enumerate(have)}
    doubled = sorted({n for n in have if have.count(n) > 1})
    if doubled:
        raise MlcoreError(f"weights_classes: label(s) listed twice: {_few(doubled)}")
    absent = [c for c in classes if c not in where]
    extra = [n for n in have if n not in set(classes)]
    if absent or extra:
        parts = ([f"the model's label(s) not in weights_classes: {_few(absent)}"] if absent else []) + \
                ([f"label(s) of weights_classes the model does not have: {_few(extra)}"] if extra else [])
        raise MlcoreError("weights_classes does not name the model's labels:\n  " + "\n  ".join(parts))
    axes = getattr(module, "class_axes", None)
    if not axes:
        raise MlcoreError(f"weights_classes: {type(module).__name__} does not say which of its parameters hold "
                          f"one entry per label (no class_axes), so its labels cannot be reordered")
    perm = torch.tensor([where[c] for c in classes])
    if torch.equal(perm, torch.arange(len(classes))):
        return state
    out = dict(state)
    for key, dims in axes.items():
        if key in out:
            for dim in dims:
                if out[key].shape[dim] != len(classes):
                    raise MlcoreError(f"weights_classes: {key!r} has {out[key].shape[dim]} entries along axis "
                                      f"{dim}, not one per label ({len(classes)})")
                out[key] = out[key].index_select(dim, perm)
    return out


def load_weights_file(model: torch.nn.Module, path: str | os.PathLike, *,
                      classes: Sequence[str] | None = None, what: str = "the dataset's",
                      contents: Any = None) -> Any:
    """Load a whole model's weights from ``path`` (its layouts applied); returns what the
    file held, so a caller can read an mlcore checkpoint's other entries.

    With ``classes`` (the model's label names, in output order) and a file that names its
    own (an mlcore checkpoint's ``classes``), the names are compared: the same names in
    another order are reordered into ``classes`` (the model's ``class_axes``, also in the
    checkpoint's ``ema``); other names are an error listing the difference. A checkpoint's
    classes are the truth about its outputs; a position is not. ``contents``: what
    ``path`` holds, already read (it is not read again)."""
    path = os.fspath(path)
    obj = _read_file(path, "checkpoint") if contents is None else contents
    order = None
    if classes is not None and isinstance(obj, dict):
        order = _order_by_name(obj.get("classes"), classes, f"checkpoint {path!r}", what)
        if order is not None and isinstance(obj.get("ema"), Mapping):  # the moving average: the same order
            obj = {**obj, "ema": reorder_classes(model, dict(obj["ema"]), *order)}
    _load(model, state_dict_of(obj, path), path, order=order)
    return obj


def _order_by_name(held: Any, classes: Sequence[str], source: str, what: str) -> tuple[list, list] | None:
    """``(file order, model order)`` when a file's own label names (``held``) are the
    model's ``classes`` in another order; None when it names none or the same order; an
    error listing the difference when the names differ."""
    if not isinstance(held, list) or list(held) == list(classes):
        return None
    if sorted(map(str, held)) != sorted(map(str, classes)) or len(set(held)) != len(held):
        raise MlcoreError(f"{source} was trained on other labels than {what}: "
                          f"{class_differences(list(map(str, held)), list(classes))}")
    return list(held), list(classes)


def class_differences(have: list[str], want: list[str]) -> str:
    """What differs between two label lists, briefly (for error messages)."""
    gone = [c for c in want if c not in set(have)]
    new = [c for c in have if c not in set(want)]
    parts = []
    if new:
        parts.append(f"the checkpoint's {_few(new)} not among them")
    if gone:
        parts.append(f"their {_few(gone)} not in the checkpoint")
    if not parts:
        parts.append(f"{len(have)} classes in the checkpoint, {len(want)} here")
    return "; ".join(parts)


def _load(module: torch.nn.Module, state: dict, source: str, *,
          layouts: tuple[WeightLayout, ...] | None = None, ignore: tuple[str, ...] = (),
          what: str = "checkpoint", hint: str = DEFAULT_HINT,
          order: tuple[Any, list[str]] | None = None) -> WeightLayout | None:
    if layouts is None:
        layouts = tuple(getattr(module, "weight_layouts", ()))
    used = next((layout for layout in layouts if layout.matches(state)), None)
    if used is not None:
        state = used.apply(state)
        if used.optional:
            own = module.state_dict()
            state.update({k: v for k, v in own.items() if k not in state and k.endswith(used.optional)})
    if order is not None:
        state = reorder_classes(module, state, *order)
    _load_state(module, state, source, ignore=ignore, what=what, hint=hint,
                note=f"its keys were read as the {used.name} layout" if used is not None else "")
    loaded = getattr(module, "weights_loaded", None)
    if callable(loaded):
        try:
            loaded(used)
        except MlcoreError as exc:  # the model's own check of what it read: name the file
            raise MlcoreError(f"{what} {source!r}: {exc}") from None
    return used


def load_state(module: torch.nn.Module, state: Mapping[str, Any], source: str, *,
               ignore: tuple[str, ...] = (), what: str = "checkpoint", hint: str = DEFAULT_HINT) -> None:
    """Load ``state`` into ``module``, naming each missing, unexpected or mis-shaped parameter.

    Keys starting with an ``ignore`` prefix are left out on both sides (e.g. ``fc.`` when a
    classification head is replaced); every other key must match exactly. ``source``
    names where the state came from, ``what`` what it is, ``hint`` a likely cause.
    """
    _load_state(module, state, source, ignore=ignore, what=what, hint=hint)


def _load_state(module: torch.nn.Module, state: Mapping[str, Any], source: str, *, ignore: tuple[str, ...],
                what: str, hint: str, note: str = "") -> None:
    ignore = tuple(ignore)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore)}
    shapes = [f"{k}: {what} has shape {tuple(v.shape)}, the model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    problems = shapes[:8] + ([f"… and {len(shapes) - 8} more of other shapes"] if len(shapes) > 8 else [])
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        problems.append(f"missing from the {what}: {_few(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_few(unexpected)}")
    if problems:
        if note:
            problems.append(f"({note})")
        raise MlcoreError(f"{what} {source!r} does not fit the model ({hint}):\n  " + "\n  ".join(problems))
    module.load_state_dict(state, strict=not ignore)


def _few(keys: list[str], n: int = 5) -> str:
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


__all__ = ["WeightLayout", "read_weights", "load_weights", "reorder_classes", "read_class_names", "load_state",
           "state_dict_of", "safe_load", "verify_checkpoint", "CheckpointDamaged", "CHECKPOINT_FORMAT"]
