"""Decoding large annotation JSON files into typed records, with errors that name the file.

With msgspec installed, the file is memory-mapped and decoded straight into the typed
structs a dataset asks for, materializing only the fields it declares (COCO's
segmentation polygons, Visual Genome's boxes and synsets are skipped) — several times
faster than ``json.load`` and a fraction of its memory. Without msgspec, ``json.load``
is used and the same fields are picked from the dicts.
"""
from __future__ import annotations

import mmap
import os
from typing import Any

from ..errors import MlcoreError

_BOM = b"\xef\xbb\xbf"


def _line_of(path: str, byte: int) -> int:
    with open(path, "rb") as f:
        return f.read(byte).count(b"\n") + 1


def decode(path: str, msgspec_type: Any, fallback: Any) -> Any:
    """``msgspec_type`` decoded from ``path``; ``fallback(obj)`` converts ``json.load``'s
    result when msgspec is missing. Raises MlcoreError naming the file (and line). A UTF-8
    byte-order mark (an annotation file re-saved by a Windows editor) is skipped: JSON
    decoders refuse it."""
    if not os.path.isfile(path):
        raise MlcoreError(f"annotation file {path!r} does not exist")
    try:
        import msgspec
    except ImportError:
        msgspec = None
    if os.path.getsize(path) == 0:
        raise MlcoreError(f"annotation file {path!r} is empty")
    if msgspec is not None:
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf, \
                    memoryview(buf) as whole, whole[3 if buf[:3] == _BOM else 0:] as body:
                return msgspec.json.decode(body, type=msgspec_type)
        except msgspec.ValidationError as exc:
            raise MlcoreError(f"annotation file {path!r} does not have the expected structure: {exc}") from None
        except msgspec.DecodeError as exc:
            import re

            found = re.search(r"byte (\d+)", str(exc))
            where = f" (line {_line_of(path, int(found.group(1)))})" if found else ""
            raise MlcoreError(f"annotation file {path!r} is not valid JSON{where}: {exc}") from None
    import json

    try:
        with open(path, encoding="utf-8-sig") as f:
            obj = json.load(f)
    except json.JSONDecodeError as exc:
        raise MlcoreError(f"annotation file {path!r} is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    try:
        return fallback(obj)
    except (KeyError, TypeError, IndexError) as exc:
        raise MlcoreError(f"annotation file {path!r} does not have the expected structure: "
                          f"{type(exc).__name__}: {exc}") from None
