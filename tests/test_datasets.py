"""COCO, VG500 and list-file datasets from tiny files in the real formats, by the rules
of each, plus their bad-data cases; and the label-index cache."""
from __future__ import annotations

import json
import os
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import mlcore
from mlcore.errors import MlcoreError


def jpeg(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (16, 12), (90, 20, 40)).save(path)


def labels_of(ds):
    return {os.path.basename(p): sorted(ds.classes[j] for j in np.flatnonzero(row))
            for p, row in zip(ds.images, np.asarray(ds.targets))}


# -- COCO ------------------------------------------------------------------------------
def make_coco(root, split="val", year=2014, images=None, annotations=None, categories=None):
    images = images if images is not None else [
        {"id": 11, "file_name": "a.jpg"}, {"id": 7, "file_name": "b.jpg"}, {"id": 3, "file_name": "empty.jpg"}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 11, "category_id": 90, "iscrowd": 0, "segmentation": [[1, 2, 3, 4]]},
        {"id": 2, "image_id": 11, "category_id": 90, "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": {"counts": "x", "size": [2, 2]}},
        {"id": 4, "image_id": 11, "category_id": 5, "iscrowd": 0}]
    categories = categories if categories is not None else [
        {"id": 1, "name": "person", "supercategory": "p"}, {"id": 5, "name": "airplane"},
        {"id": 90, "name": "toothbrush"}]
    os.makedirs(root / "annotations", exist_ok=True)
    for im in images:
        jpeg(str(root / f"{split}{year}" / im["file_name"]))
    path = root / "annotations" / f"instances_{split}{year}.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.mark.parametrize("decoder", ["msgspec", "json"])
def test_coco_labels_crowd_empty_and_noncontiguous_ids(tmp_path, monkeypatch, decoder):
    if decoder == "json":  # as where msgspec is not installed
        monkeypatch.setitem(__import__("sys").modules, "msgspec", None)
    make_coco(tmp_path)
    ds = mlcore.create("dataset", "coco", root=str(tmp_path), split="val")
    assert ds.classes == ["person", "airplane", "toothbrush"]
    assert labels_of(ds) == {"a.jpg": ["airplane", "toothbrush"], "b.jpg": ["person"]}  # crowd counts
    keep = mlcore.create("dataset", "coco", root=str(tmp_path), split="val", keep_empty=True)
    assert labels_of(keep)["empty.jpg"] == [] and len(keep) == 3
    img, target = ds[0]
    assert img.dtype.is_floating_point is False and target.tolist() == [0.0, 1.0, 1.0]
    make_coco(tmp_path, split="train", year=2017)
    assert len(mlcore.create("dataset", "coco", root=str(tmp_path), split="train", year=2017)) == 2


def test_coco_bad_data_names_the_file(tmp_path):
    with pytest.raises(MlcoreError, match="dataset root .* does not exist"):
        mlcore.create("dataset", "coco", root=str(tmp_path / "nope"), split="val")
    os.makedirs(tmp_path / "annotations")
    with pytest.raises(MlcoreError, match=r"instances_val2014.json' does not exist"):
        mlcore.create("dataset", "coco", root=str(tmp_path), split="val")
    path = make_coco(tmp_path)
    path.write_text(path.read_text()[:-40])  # truncated
    with pytest.raises(MlcoreError, match=r"instances_val2014.json' is not valid JSON"):
        mlcore.create("dataset", "coco", root=str(tmp_path), split="val")
    path.write_text('{"images": []}')
    with pytest.raises(MlcoreError, match=r"does not have the expected structure.*annotations"):
        mlcore.create("dataset", "coco", root=str(tmp_path), split="val")
    make_coco(tmp_path, annotations=[{"id": 1, "image_id": 11, "category_id": 42}])
    with pytest.raises(MlcoreError, match="image id 11 has category id 42"):
        mlcore.create("dataset", "coco", root=str(tmp_path), split="val")
    make_coco(tmp_path)
    os.remove(tmp_path / "val2014" / "b.jpg")
    with pytest.raises(MlcoreError, match=r"image id 7 .*b.jpg' does not exist"):
        mlcore.create("dataset", "coco", root=str(tmp_path), split="val")


# -- VG500 -----------------------------------------------------------------------------
def make_vg(root, images):
    """images: list of (image_id, [names of objects]); even ids in VG_100K, odd in VG_100K_2."""
    data = [{"image_id": i, "image_url": "x", "objects": [{"object_id": k, "names": [n, "alias"], "h": 1}
                                                          for k, n in enumerate(names)]}
            for i, names in images]
    os.makedirs(root, exist_ok=True)
    (root / "objects.json").write_text(json.dumps(data))
    for i, _ in images:
        jpeg(str(root / ("VG_100K" if i % 2 == 0 else "VG_100K_2") / f"{i}.jpg"))


def seed_vg500(images, k):
    """The seed's script on the same data (in memory), for comparison."""
    counter = Counter(n for _, names in images for n in names)
    tags = [t for t, _ in counter.most_common()[:k]]
    kept = []
    for i, names in images:
        labels = []
        for n in names:
            if n in tags and n not in labels:
                labels.append(n)
        if labels:
            kept.append((i, labels))
    random.seed(202)
    random.shuffle(kept)
    n = int(len(kept) * 0.8)
    return tags, kept[:n], kept[n:]


@pytest.mark.parametrize("decoder", ["msgspec", "json"])
def test_vg500_reproduces_the_seed_split_with_ties_at_the_cut(tmp_path, monkeypatch, decoder):
    # 502 names: 499 frequent ones, then three tied at the 500th place — first appearance wins
    frequent = [f"n{i:03d}" for i in range(499)]
    rng = random.Random(0)
    images = [(100 + i, rng.sample(frequent, 3) + rng.sample(frequent, 2)) for i in range(60)]
    for name in frequent:  # every frequent name at least 3 times
        images += [(1000 + len(images), [name, name, name])]
    images.insert(5, (7, ["tie_b"]))
    images.insert(9, (9, ["tie_a"]))
    images.append((11, ["tie_c"]))
    images.append((13, ["tie_c", "tie_a"]))
    images.append((15, []))
    make_vg(tmp_path, images)
    if decoder == "json":  # as where msgspec is not installed
        monkeypatch.setitem(__import__("sys").modules, "msgspec", None)
    import mlcore_builtins.vg500.reader as reader

    index = reader.vg_index(str(tmp_path))
    tags, train, val = seed_vg500(images, 500)
    assert index.classes == tags and index.classes[-1] in ("tie_b", "tie_a", "tie_c")
    ds = mlcore.create("dataset", "vg500", root=str(tmp_path), split="train")
    assert [os.path.basename(p) for p in ds.images] == [f"{i}.jpg" for i, _ in train]
    assert [sorted(l) for l in labels_of(ds).values()] == [sorted(l) for _, l in train]
    assert ds.images[0].split(os.sep)[-2] == ("VG_100K" if train[0][0] % 2 == 0 else "VG_100K_2")
    dv = mlcore.create("dataset", "vg500", root=str(tmp_path), split="val")
    assert [os.path.basename(p) for p in dv.images] == [f"{i}.jpg" for i, _ in val]


def test_vg500_official_lists_and_bad_data(tmp_path):
    make_vg(tmp_path, [(2, ["tree", "sky"]), (3, ["sky"]), (4, ["dog"]), (5, [])])
    (tmp_path / "tl.txt").write_text("2.jpg\nVG_100K_2/3.jpg\n")
    (tmp_path / "vl.txt").write_text("4\n")
    ds = mlcore.create("dataset", "vg500", root=str(tmp_path), split="val", train_list=str(tmp_path / "tl.txt"),
                       val_list=str(tmp_path / "vl.txt"))
    assert labels_of(ds) == {"4.jpg": ["dog"]}
    (tmp_path / "vl.txt").write_text("4\n5.jpg\n")
    with pytest.raises(MlcoreError, match=r"vl.txt:2: '5.jpg' is not an image of VG500"):
        mlcore.create("dataset", "vg500", root=str(tmp_path), split="val", train_list=str(tmp_path / "tl.txt"),
                      val_list=str(tmp_path / "vl.txt"))
    (tmp_path / "objects.json").write_text(json.dumps({"images": []}))
    with pytest.raises(MlcoreError, match="objects.json' does not have the expected structure"):
        mlcore.create("dataset", "vg500", root=str(tmp_path), split="val")
    (tmp_path / "objects.json").write_text(json.dumps([{"image_id": 2}]))
    with pytest.raises(MlcoreError, match="objects.json' does not have the expected structure.*objects"):
        mlcore.create("dataset", "vg500", root=str(tmp_path), split="val")
    make_vg(tmp_path, [(2, ["tree"]), (8, ["tree"])])
    os.remove(tmp_path / "VG_100K" / "8.jpg")
    with pytest.raises(MlcoreError, match=r"image id 8: 8.jpg is in neither"):
        mlcore.create("dataset", "vg500", root=str(tmp_path), split="val")


# -- list files ------------------------------------------------------------------------
def test_listfile_reads_the_seed_format_and_names_bad_lines(tmp_path):
    jpeg(str(tmp_path / "img" / "x.jpg"))
    jpeg(str(tmp_path / "img" / "y.jpg"))
    (tmp_path / "label.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "train.txt").write_text("img/x.jpg\tdog,cat\nimg/y.jpg\t\n")
    (tmp_path / "val.txt").write_text("img/y.jpg\tbird\n")
    ds = mlcore.create("dataset", "listfile", root=str(tmp_path), split="train")
    assert ds.classes == ["cat", "dog", "bird"] and labels_of(ds) == {"x.jpg": ["cat", "dog"], "y.jpg": []}
    (tmp_path / "val.txt").write_text("img/y.jpg\tbird\nimg/x.jpg dog\n")
    with pytest.raises(MlcoreError, match=r"val.txt:2: expected image_path<TAB>label1,label2"):
        mlcore.create("dataset", "listfile", root=str(tmp_path), split="val")
    (tmp_path / "val.txt").write_text("img/y.jpg\tbird,cow\n")
    with pytest.raises(MlcoreError, match=r"val.txt:1: unknown label 'cow'"):
        mlcore.create("dataset", "listfile", root=str(tmp_path), split="val")
    (tmp_path / "val.txt").write_text("img/z.jpg\tbird\n")
    with pytest.raises(MlcoreError, match=r"val.txt: 1 of the 1 listed images do not exist under .*'img/z.jpg' \(line 1\)"):
        mlcore.create("dataset", "listfile", root=str(tmp_path), split="val")
    with pytest.raises(MlcoreError, match=r"Unknown value 'test' for argument split.*\['train', 'val'\]"):
        mlcore.create("dataset", "listfile", root=str(tmp_path), split="test")


# -- the cache -------------------------------------------------------------------------
def test_index_is_cached_outside_the_root_and_rebuilt_when_sources_change(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLCORE_CACHE", str(cache))
    root = tmp_path / "coco"
    path = make_coco(root)
    import mlcore_builtins.coco.reader as reader

    calls = []
    real = reader.build_split
    monkeypatch.setattr(reader, "build_split", lambda *a: calls.append(a) or real(*a))
    mlcore.create("dataset", "coco", root=str(root), split="val")
    mlcore.create("dataset", "coco", root=str(root), split="val")
    assert len(calls) == 1 and len(list((cache / "index").glob("coco-*.npz"))) == 1
    assert not any(p.suffix == ".npz" for p in root.rglob("*"))
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 9, "image_id": 3, "category_id": 1})
    path.write_text(json.dumps(data))
    ds = mlcore.create("dataset", "coco", root=str(root), split="val")
    assert len(calls) == 2 and len(ds) == 3
    for f in (cache / "index").glob("*.npz"):
        f.write_bytes(b"damaged")
    assert len(mlcore.create("dataset", "coco", root=str(root), split="val")) == 3  # rebuilt, not trusted


def test_the_seed_recipes_load_given_data(tmp_path):
    from conftest import ROOT
    from test_data import make_voc

    make_voc(tmp_path / "voc", {"a": [("dog", 0)], "b": [("cat", 0)]}, {"train": ["a"], "val": ["b"]})
    make_coco(tmp_path / "coco", split="train")
    make_coco(tmp_path / "coco", split="val")
    make_vg(tmp_path / "vg", [(i, ["tree", "sky"] if i % 3 else ["dog"]) for i in range(2, 12)])
    for name, folder, classes in [("voc2012", "voc", 20), ("coco", "coco", 3), ("vg500", "vg", 3)]:
        exp = mlcore.build(ROOT / "configs" / f"{name}_resnet101.yaml",
                           [f"dataset.root={tmp_path / folder}", "model.pretrained=null"])
        cfg = exp.config
        assert (cfg.data.scale_size, cfg.data.crop_size, cfg.data.train_crops) == (640, 576, [640, 576, 512, 384, 320])
        assert (cfg.optimizer.name, cfg.optimizer.cfg.lr, cfg.train.batch_size) == ("adam", 1e-5, 32)
        assert (cfg.scheduler.name, cfg.scheduler.cfg.patience) == ("plateau", 2)
        assert next(h for h in cfg.hooks if h.name == "early_stop").cfg.patience == 5
        assert len(exp.classes) == classes and len(exp.train_set) > 0 and len(exp.val_set) > 0
        assert exp.model.fc.out_features == classes
        img, _ = exp.train_set[0]
        assert img.shape == (3, 576, 576)
