"""The ``csv`` dataset: Kaggle-style tag columns and 0/1 class columns, the three split
layouts, classes files, every bad-data error (file and line named), and training from a
config."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import mlcore
from conftest import tiny_config
from mlcore.errors import ConfigError, MlcoreError
from mlcore.registry import Registry
from mlcore_builtins.csv_dataset import CSVConfig, plugin


@pytest.fixture
def reg():
    """A registry with ``csv`` registered in this process (shadowing an installed entry
    point, should there be one)."""
    r = Registry()
    r.register("dataset", "csv", plugin, replace=True)
    return r


def jpeg(path, size=(16, 12)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (90, 20, 40)).save(path)


def write(path, text, bom=False, crlf=False):
    """Write CSV text exactly (no newline translation), optionally with a BOM / CRLF."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    with open(path, "wb") as f:
        f.write((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def make(split="train", **keys):
    return plugin.build(CSVConfig(**keys), split=split)


def labels_of(ds):
    return {os.path.basename(p): sorted(ds.classes[j] for j in np.flatnonzero(row))
            for p, row in zip(ds.images, np.asarray(ds.targets))}


def raises(match, split="train", **keys):
    with pytest.raises(MlcoreError, match=match) as info:
        make(split, **keys)
    return str(info.value)


# -- Kaggle style: image_name,tags ------------------------------------------------------
def test_kaggle_tags_with_suffix_image_root_bom_crlf_and_quotes(tmp_path):
    for i in range(4):
        jpeg(str(tmp_path / "train-jpg" / f"train_{i}.jpg"))
    write(tmp_path / "train_v2.csv",
          "image_name,tags\n"
          "train_0,haze primary\n"
          "train_1,agriculture  clear primary water\n"  # two spaces: no empty label
          "\n"  # a blank line is skipped
          "train_2,\n"  # no positive label
          '"train_3","clear primary clear"\n',  # quoted; a repeated label counts once
          bom=True, crlf=True)
    keys = dict(root=str(tmp_path), file="train_v2.csv", image_column="image_name", labels_column="tags",
                image_root="train-jpg", image_suffix=".jpg")
    ds = make(**keys)
    assert ds.classes == ["agriculture", "clear", "haze", "primary", "water"]  # train labels, sorted
    assert labels_of(ds) == {"train_0.jpg": ["haze", "primary"],
                             "train_1.jpg": ["agriculture", "clear", "primary", "water"],
                             "train_2.jpg": [], "train_3.jpg": ["clear", "primary"]}
    assert all(os.path.isfile(p) for p in ds.images)
    img, target = ds[0]
    assert target.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    # one file without split_column is the train split only
    msg = raises(r"Unknown value 'val' for argument split. Valid values are \['train'\]", split="val", **keys)
    assert "train_v2.csv" in msg


def test_quoted_field_with_comma_separator_and_a_line_break(tmp_path):
    jpeg(str(tmp_path / "a b.jpg"))
    jpeg(str(tmp_path / "c.jpg"))
    write(tmp_path / "train.csv", 'labels,path\n"cat, dog",a b.jpg\n"bird,\ncat",c.jpg\n', crlf=True)
    ds = make(root=str(tmp_path), image_column="path", labels_column="labels", label_separator=",")
    assert labels_of(ds) == {"a b.jpg": ["cat", "dog"], "c.jpg": ["bird", "cat"]}
    # a bad row after a quoted line break is named by the line it starts on (line 5)
    write(tmp_path / "train.csv", 'labels,path\n"cat, dog",a b.jpg\n"bird,\ncat",c.jpg\n"cat",\n', crlf=True)
    raises(r"train.csv:5: empty image name", root=str(tmp_path), image_column="path", labels_column="labels",
           label_separator=",")


# -- one column per class ---------------------------------------------------------------
def test_one_column_per_class_style(tmp_path):
    for n in "abc":
        jpeg(str(tmp_path / "img" / f"{n}.png"))
    write(tmp_path / "train.csv", "file, zebra ,apple,mango\nimg/a.png,1,0,1\nimg/b.png, 0 ,0,0\n")
    write(tmp_path / "val.csv", "file,mango,zebra,apple\nimg/c.png,1,0,1\n")  # other column order
    ds = make(root=str(tmp_path))  # file defaults to {split}.csv, image_column to the first column
    assert ds.classes == ["zebra", "apple", "mango"]  # header order, not sorted
    assert labels_of(ds) == {"a.png": ["mango", "zebra"], "b.png": []}
    val = make("val", root=str(tmp_path))
    assert val.classes == ds.classes and labels_of(val) == {"c.png": ["apple", "mango"]}
    write(tmp_path / "val.csv", "file,mango,zebra,apple,kiwi\nimg/c.png,1,0,1,0\n")
    raises(r"val.csv:1: class column 'kiwi' is not a class of the 'train' split", "val", root=str(tmp_path))
    write(tmp_path / "train.csv", "file,zebra,apple\nimg/a.png,1,0\nimg/b.png,0,yes\n")
    msg = raises(r"train.csv:3: column 'apple' holds 'yes'; a class column holds 0 or 1", root=str(tmp_path))
    assert str(tmp_path / "train.csv") in msg


# -- split layouts ----------------------------------------------------------------------
def test_split_column_layout_and_unknown_split(tmp_path):
    for n in "abcd":
        jpeg(str(tmp_path / f"{n}.jpg"))
    write(tmp_path / "all.csv", "img,split,tags\na,train,cat\nb,train,dog cat\nc,val,dog\nd,,cat\nc,test,cat\n")
    keys = dict(root=str(tmp_path), file="all.csv", image_column="img", labels_column="tags", split_column="split",
                image_suffix=".jpg")
    tr, va, te = make("train", **keys), make("val", **keys), make("test", **keys)
    assert tr.classes == va.classes == ["cat", "dog"]
    assert labels_of(tr) == {"a.jpg": ["cat"], "b.jpg": ["cat", "dog"]}
    assert labels_of(va) == {"c.jpg": ["dog"]} and labels_of(te) == {"c.jpg": ["cat"]}  # an image may be in two
    raises(r"Unknown value 'trainval' for argument split. Valid values are \['test', 'train', 'val'\] "
           r"\(the values of column 'split' in .*all.csv'\)", "trainval", **keys)
    write(tmp_path / "all.csv", "img,split,tags\na,train,cat\nc,val,bird\n")
    msg = raises(r"all.csv:3: label 'bird' is not a class of the 'train' split", "val", **keys)
    assert "classes_file" in msg
    write(tmp_path / "all.csv", "img,split,tags\nc,val,cat\n")
    raises(r"no row of .*all.csv' has 'train' in column 'split'; give a classes_file", "val", **keys)
    (tmp_path / "classes.txt").write_text("cat\n")
    assert labels_of(make("val", classes_file="classes.txt", **keys)) == {"c.jpg": ["cat"]}


def test_split_template_layout_and_classes_file(tmp_path):
    for n in "abc":
        jpeg(str(tmp_path / "images" / f"{n}.jpg"))
    os.makedirs(tmp_path / "lists")
    write(tmp_path / "lists" / "tr_train.csv", "image,labels\na.jpg,dog|cat\nb.jpg,cat\n")
    write(tmp_path / "lists" / "tr_val.csv", "image,labels\nc.jpg,bird\n")
    keys = dict(root=str(tmp_path), file="lists/tr_{split}.csv", labels_column="labels", label_separator="|",
                image_root="images")
    assert labels_of(make(**keys)) == {"a.jpg": ["cat", "dog"], "b.jpg": ["cat"]}
    raises(r"tr_val.csv:2: label 'bird' is not a class of the 'train' split .*tr_train.csv", "val", **keys)
    raises(r"Unknown value 'test' for argument split. Valid values are \['train', 'val'\] "
           r"\(CSV file .*tr_test.csv' does not exist\)", "test", **keys)
    (tmp_path / "classes.txt").write_text("\ufeffdog\nbird\n\ncat\n")
    both = dict(keys, classes_file="classes.txt")
    tr, va = make(**both), make("val", **both)
    assert tr.classes == va.classes == ["dog", "bird", "cat"]  # the file's order
    assert labels_of(va) == {"c.jpg": ["bird"]}
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    raises(r"tr_val.csv:2: label 'bird' is not a class of the classes file .*classes.txt", "val", **both)
    (tmp_path / "classes.txt").write_text("dog\ncat\n\ndog\n")
    raises(r"classes.txt:4: class 'dog' is listed twice \(first at line 1\)", **both)
    raises(r"classes file .*nope.txt' does not exist", **dict(keys, classes_file="nope.txt"))


# -- bad data ---------------------------------------------------------------------------
def test_every_bad_data_error_names_file_and_line(tmp_path):
    root = str(tmp_path)
    for n in "ab":
        jpeg(str(tmp_path / f"{n}.jpg"))
    keys = dict(root=root, file="data.csv", image_column="name", labels_column="tags")
    raises(r"CSV file .*data.csv' does not exist", **keys)
    raises(r"dataset root .* does not exist", **dict(keys, root=str(tmp_path / "nope")))
    write(tmp_path / "data.csv", "")
    raises(r"data.csv' is empty", **keys)
    write(tmp_path / "data.csv", "file,labels\na.jpg,x\n")
    raises(r"data.csv:1: no column 'name' \(the image_column\); the columns are \['file', 'labels'\]", **keys)
    write(tmp_path / "data.csv", "name,labels\na.jpg,x\n")
    raises(r"data.csv:1: no column 'tags' \(the labels_column\); the columns are \['name', 'labels'\]", **keys)
    write(tmp_path / "data.csv", "name,tags\na.jpg,x\nb.jpg,x,y z\n")
    raises(r"data.csv:3: 3 field\(s\), but the header has 2", **keys)
    write(tmp_path / "data.csv", "name,tags\na.jpg,x\n,y\n")
    raises(r"data.csv:3: empty image name", **keys)
    write(tmp_path / "data.csv", "name,tags\na.jpg,x\nb.jpg,y\n./a.jpg,y\n")
    raises(r"data.csv:4: image './a.jpg' is listed twice in split 'train' \(first at line 2\)", **keys)
    write(tmp_path / "data.csv", "name,tags\na.jpg,x\nc.jpg,y\nb.jpg,\nd.jpg,x\n")
    raises(r"data.csv:3: image .*c.jpg' does not exist \(2 of the 4 images of split 'train' are missing\)", **keys)
    write(tmp_path / "data.csv", "name,tags\na.jpg,\nb.jpg,\n")
    raises(r"'train' split in .*data.csv' has no label at all", **keys)
    write(tmp_path / "data.csv", 'name,tags\na.jpg,x\n"b.jpg,y\n')
    raises(r"data.csv:3: 1 field\(s\), but the header has 2 \(name, tags\); a quote opened here is not closed",
           **keys)
    (tmp_path / "data.csv").write_bytes(b"name,tags\na.jpg,\xff\n")
    raises(r"data.csv' is not UTF-8 text", **keys)


def test_config_is_checked_and_the_index_cached(tmp_path, monkeypatch, reg):
    cfg = tiny_config(tmp_path / "run", dataset={"name": "csv", "root": str(tmp_path), "label_separator": "",
                                                 "labels_column": "t", "image_column": "t"})
    with pytest.raises(ConfigError) as info:
        mlcore.load_config(cfg, registry=reg)
    assert "label_separator" in str(info.value) and "more than one" in str(info.value)
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    jpeg(str(tmp_path / "a.jpg"))
    write(tmp_path / "train.csv", "image,tags\na.jpg,x\n")
    import mlcore_builtins.csv_dataset.reader as reader

    calls = []
    real = reader.Table
    monkeypatch.setattr(reader, "Table", lambda *a: calls.append(a) or real(*a))
    make(root=str(tmp_path), labels_column="tags")
    make(root=str(tmp_path), labels_column="tags")
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "index").glob("csv-*.npz"))) == 1
    assert labels_of(make(root=str(tmp_path), labels_column="tags", label_separator=",")) == {"a.jpg": ["x"]}
    assert len(calls) == 2  # another setting, another index
    write(tmp_path / "train.csv", "image,tags\na.jpg,x y\n")
    assert labels_of(make(root=str(tmp_path), labels_column="tags")) == {"a.jpg": ["x", "y"]}  # rebuilt


# -- training ---------------------------------------------------------------------------
def test_trains_one_epoch_from_a_config(tmp_path, reg):
    rng = np.random.default_rng(0)
    rows = {"train": [], "val": []}
    for split, n in (("train", 8), ("val", 4)):
        for i in range(n):
            name = f"{split}_{i}"
            Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(tmp_path / f"{name}.jpg")
            rows[split].append(f"{name},{split},{i % 2},{(i // 2) % 2},1")
    write(tmp_path / "labels.csv", "id,part,red,green,blue\n" + "\n".join(rows["train"] + rows["val"]) + "\n")
    cfg = tiny_config(tmp_path / "run", dataset={"name": "csv", "root": str(tmp_path), "file": "labels.csv",
                                                 "image_column": "id", "split_column": "part",
                                                 "image_suffix": ".jpg"})
    cfg["train"] = {**cfg["train"], "epochs": 1, "batch_size": 4}
    exp = mlcore.build(cfg, registry=reg)
    assert exp.classes == ["red", "green", "blue"] and len(exp.train_set) == 8 and len(exp.val_set) == 4
    exp.fit()
    result = exp.evaluate("val")
    assert 0.0 <= result["mAP"] <= 100.0


def test_the_example_config_loads_given_data(tmp_path, reg):
    from conftest import ROOT

    lines = ["image_name,tags,split"] + [f"train_{i},{'haze primary' if i % 2 else 'clear'},"
                                         f"{'val' if i % 3 == 0 else 'train'}" for i in range(6)]
    write(tmp_path / "train_v2_split.csv", "\n".join(lines) + "\n")
    for i in range(6):
        jpeg(str(tmp_path / "train-jpg" / f"train_{i}.jpg"))
    exp = mlcore.build(ROOT / "configs" / "example_csv.yaml",
                       [f"dataset.root={tmp_path}", "model.pretrained=null"], registry=reg)
    assert exp.classes == ["clear", "haze", "primary"] and len(exp.train_set) == 4 and len(exp.val_set) == 2
