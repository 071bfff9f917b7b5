"""A damaged label-index cache file is detected, rebuilt and reported, whatever its damage."""
from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest

import mlcore
from mlcore.data import index as index_mod
from mlcore.data.index import LabelIndex, SplitIndex, cached_index

from conftest import tiny_config


def small_index() -> LabelIndex:
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=np.uint8)
    return LabelIndex(["a", "b", "c"], {"train": SplitIndex(["w.jpg", "x.jpg", "y.jpg", "z.jpg"], targets)})


def same(a: LabelIndex, b: LabelIndex) -> bool:
    return (a.classes == b.classes and a.splits.keys() == b.splits.keys()
            and all(a.splits[k].images == b.splits[k].images
                    and np.array_equal(a.splits[k].targets, b.splits[k].targets) for k in a.splits))


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def flip_a_byte_of_the_targets(good: bytes) -> bytes:
    """A valid zip whose ``targets/train`` member no longer matches its CRC."""
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        info = z.getinfo("targets/train.npy")
    # the member's data ends just before the next local header; flip its last byte
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    pos = start + info.compress_size - 1
    return good[:pos] + bytes([good[pos] ^ 0xFF]) + good[pos + 1:]


def damages(good: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"])
    images = np.array(["w.jpg", "x.jpg", "y.jpg", "z.jpg"])
    packed = np.packbits(small_index().splits["train"].targets, axis=1)

    def arrays(targets, shape, names=classes):
        return npz_bytes(classes=names,
                         **{"images/train": images, "targets/train": targets, "shape/train": np.array(shape)})

    return {
        "truncated": good[: len(good) // 2],
        "truncated to its header": good[:40],
        "random bytes": rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "zip magic then random bytes": b"PK\x03\x04" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "npy magic then random bytes": b"\x93NUMPY" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "empty": b"",
        "bad CRC": flip_a_byte_of_the_targets(good),
        "missing arrays": npz_bytes(classes=classes),
        "pickled objects": npz_bytes(classes=np.array([["a"], "b"], dtype=object)),
        "float targets": arrays(packed.astype(float), [4, 3]),
        "too few target rows": arrays(packed[:2], [2, 3]),
        "shape disagrees": arrays(packed, [4, 5]),
        "bad shape array": arrays(packed, [4]),
        "2-d class names": arrays(packed, [4, 3], classes[None]),
        "a stray array": npz_bytes(classes=classes, extra=np.zeros(2), **{
            "images/train": images, "targets/train": packed, "shape/train": np.array([4, 3])}),
    }


def test_every_kind_of_damage_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    calls = []

    def build():
        calls.append(1)
        return small_index()

    first = cached_index("toy", {"p": 1}, [], build)
    (path,) = (tmp_path / "cache" / "index").glob("toy-*.npz")
    good = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact cache file loads silently
        assert same(cached_index("toy", {"p": 1}, [], build), first) and len(calls) == 1
    for what, data in damages(good).items():
        path.write_bytes(data)
        before = len(calls)
        with pytest.warns(UserWarning, match=r"damaged .*label index .*" + path.name + ".*rebuilt") as rec:
            got = cached_index("toy", {"p": 1}, [], build)
        assert len(rec) == 1, what
        assert same(got, first), what
        assert len(calls) == before + 1, what
        assert path.read_bytes() == good, what  # written back intact
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert same(cached_index("toy", {"p": 1}, [], build), first), what
        assert len(calls) == before + 1, what


def test_an_unreadable_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    cached_index("toy", {}, [], small_index)
    (path,) = (tmp_path / "cache" / "index").glob("toy-*.npz")

    def unreadable(p):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(index_mod, "load", unreadable)
    with pytest.warns(UserWarning, match=f"{path.name}.*PermissionError"):
        assert same(cached_index("toy", {}, [], small_index), small_index())


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_run_with_a_damaged_shapes_index_rebuilds_it(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path / "run")
    first = mlcore.build(cfg)
    classes, targets = first.classes, first.train_set.targets.copy()
    (path,) = (tmp_path / "cache" / "index").glob("shapes-*.npz")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated"
                     else np.random.default_rng(1).integers(0, 256, len(good), dtype=np.uint8).tobytes())
    exp = mlcore.build(cfg)
    with pytest.warns(UserWarning, match=path.name):
        model = exp.model  # built from the train split's labels: the index is read here
    assert model.fc.out_features == len(classes) == 10
    assert exp.classes == classes and np.array_equal(exp.train_set.targets, targets)
    assert path.read_bytes() == good


def test_a_damaged_listfile_index_is_rebuilt(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    (root / "label.txt").write_text("cat\ndog\n")
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(root / name)
    (root / "train.txt").write_text("a.png\tcat\nb.png\tcat,dog\n")
    ds = mlcore.create("dataset", "listfile", root=str(root), split="train")
    (path,) = (tmp_path / "cache" / "index").glob("listfile-*.npz")
    path.write_bytes(path.read_bytes()[:-25])  # cut into the zip's central directory
    with pytest.warns(UserWarning, match=path.name):
        again = mlcore.create("dataset", "listfile", root=str(root), split="train")
    assert again.images == ds.images and np.array_equal(again.targets, ds.targets)
