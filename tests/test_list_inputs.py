"""What a user's own list-format data meets: a UTF-8 BOM, leakage (an image twice in a
split, or in train and val), several missing images, and relative paths in a config."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlcore
from mlcore.errors import MlcoreError

from conftest import run_main, tiny_config, write_yaml

BOM = "\ufeff"


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 127, np.uint8)).save(path)


def make_lists(root: Path, train: str, val: str, labels: str = "circle\nsquare\n",
               images=("a", "b", "c", "d"), image_folder: Path | None = None) -> Path:
    """A listfile dataset: ``label.txt``, ``train.txt``, ``val.txt`` and JPEGs."""
    for name in images:
        jpeg((image_folder or root) / "img" / f"{name}.jpg")
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.txt").write_text(labels, encoding="utf-8")
    (root / "train.txt").write_text(train, encoding="utf-8")
    (root / "val.txt").write_text(val, encoding="utf-8")
    return root


def labels_of(ds) -> dict[str, list[str]]:
    return {os.path.basename(p): [c for c, t in zip(ds.classes, row) if t == 1]
            for p, row in zip(ds.images, np.asarray(ds.targets))}


# -- a BOM -----------------------------------------------------------------------------
def test_a_bom_in_the_label_file_and_the_list_is_ignored(tmp_path):
    root = make_lists(tmp_path / "data", train=BOM + "img/a.jpg\tcircle\nimg/b.jpg\tsquare,circle\n",
                      val="img/c.jpg\tcircle\n", labels=BOM + "circle\nsquare\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = mlcore.create("dataset", "listfile", root=str(root), split="train")
    assert ds.classes == ["circle", "square"]
    assert labels_of(ds) == {"a.jpg": ["circle"], "b.jpg": ["circle", "square"]}


def test_a_bom_in_a_class_names_file_and_a_word_vector_file(tmp_path):
    from mlcore.weights import read_class_names

    (tmp_path / "classes.txt").write_text(BOM + "circle\nsquare\n", encoding="utf-8")
    assert read_class_names(tmp_path / "classes.txt") == ["circle", "square"]
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(BOM + "2 3\ncircle 1 2 3\nsquare 4 5 6\n", encoding="utf-8")
    out = mlcore.label_vectors(vectors, ["circle", "square"])
    assert out.tolist() == [[1, 2, 3], [4, 5, 6]]
    glove = tmp_path / "glove.txt"  # no header: the first word is a label
    glove.write_text(BOM + "circle 1 2\nsquare 3 4\n", encoding="utf-8")
    assert mlcore.label_vectors(glove, ["circle", "square"]).tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("decoder", ["msgspec", "json"])
def test_a_bom_in_an_annotation_json_file(tmp_path, monkeypatch, decoder):
    from test_datasets import make_coco

    if decoder == "json":  # as where msgspec is not installed
        monkeypatch.setitem(__import__("sys").modules, "msgspec", None)
    path = make_coco(tmp_path)
    path.write_text(BOM + path.read_text(), encoding="utf-8")
    ds = mlcore.create("dataset", "coco", root=str(tmp_path), split="val")
    assert ds.classes == ["person", "airplane", "toothbrush"] and len(ds) == 2


def test_a_bom_in_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(BOM + "dataset: {name: shapes}\nmodel: {name: resnet18}\n", encoding="utf-8")
    code, out, err = run_main(capsys, "check", cfg)
    assert code == 0, err


# -- leakage ---------------------------------------------------------------------------
def test_a_duplicate_line_and_an_image_in_train_and_val_are_warned_with_counts(tmp_path):
    root = make_lists(tmp_path / "data",
                      train="img/a.jpg\tcircle\nimg/b.jpg\tsquare\n./img/a.jpg\tcircle\nimg/c.jpg\tsquare\n",
                      val="img/c.jpg\tsquare\nimg/d.jpg\tcircle\n")
    with pytest.warns(UserWarning, match=r"train.txt: 1 image is listed more than once.*'img/a.jpg' "
                                         r"\(lines 1, 3\)"):
        mlcore.create("dataset", "listfile", root=str(root), split="train")
    cfg = tiny_config(tmp_path / "run", dataset={"name": "listfile", "root": str(root)})
    exp = mlcore.build(cfg)
    with pytest.warns(UserWarning) as record:
        exp.val_set
    leak = [str(w.message) for w in record if "also in the train split" in str(w.message)]
    assert len(leak) == 1, [str(w.message) for w in record]
    assert "1 of the 2 images of the val split" in leak[0] and "c.jpg" in leak[0]
    with warnings.catch_warnings():  # built once: no second warning
        warnings.simplefilter("error")
        exp.val_set


def test_disjoint_splits_warn_nothing(tmp_path):
    root = make_lists(tmp_path / "data", train="img/a.jpg\tcircle\nimg/b.jpg\tsquare\n",
                      val="img/c.jpg\tsquare\nimg/d.jpg\tcircle\n")
    exp = mlcore.build(tiny_config(tmp_path / "run", dataset={"name": "listfile", "root": str(root)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(exp.train_set) == 2 and len(exp.val_set) == 2


# -- missing images --------------------------------------------------------------------
def test_every_missing_image_of_a_list_is_reported_at_once(tmp_path):
    root = make_lists(tmp_path / "data", images=("a", "b"),
                      train="img/a.jpg\tcircle\nimg/x.jpg\tsquare\n\nimg/b.jpg\tcircle\nimg/y.jpg\tcircle\n"
                            "img/z.jpg\tsquare\n",
                      val="img/a.jpg\tcircle\n")
    with pytest.raises(MlcoreError) as info:
        mlcore.create("dataset", "listfile", root=str(root), split="train")
    msg = str(info.value)
    assert "train.txt: 3 of the 5 listed images do not exist" in msg, msg
    assert "'img/x.jpg' (line 2)" in msg and "'img/y.jpg' (line 5)" in msg and "'img/z.jpg' (line 6)" in msg
    assert str(root.resolve()) in msg  # where they were looked for
    ds = mlcore.create("dataset", "listfile", root=str(root), split="val")  # the other list is fine
    assert len(ds) == 1
    with pytest.warns(UserWarning, match=r"3 of the 5 listed images do not exist.*left out"):
        ds = mlcore.create("dataset", "listfile", root=str(root), split="train", missing_images="skip")
    assert sorted(labels_of(ds)) == ["a.jpg", "b.jpg"]


# -- relative paths --------------------------------------------------------------------
def test_root_and_image_root_follow_one_rule_from_a_config_in_a_subfolder(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    make_lists(project / "data" / "mine", train="img/a.jpg\tcircle\nimg/b.jpg\tsquare\n",
               val="img/c.jpg\tcircle\n", image_folder=project / "data" / "mine" / "photos")
    cfg = tiny_config(project / "runs" / "x",
                      dataset={"name": "listfile", "root": "data/mine", "image_root": "photos"})
    (project / "configs").mkdir()
    path = write_yaml(project / "configs" / "exp.yaml", cfg)
    monkeypatch.chdir(project)  # the working directory: the project, not the config's folder
    code, out, err = run_main(capsys, "check", path)
    assert code == 0, err
    ds = mlcore.build(str(path)).train_set
    assert ds.images[0] == str(project / "data" / "mine" / "photos" / "img" / "a.jpg")
    # a written path that does not exist: the message shows it and where it resolved to
    code, out, err = run_main(capsys, "check", path, "--set", "dataset.image_root=pics")
    assert code == 2
    assert "'pics'" in err and str(project / "data" / "mine" / "pics") in err, err
    code, out, err = run_main(capsys, "check", path, "--set", "dataset.root=data/theirs")
    assert code == 2
    assert "'data/theirs'" in err and str(project / "data" / "theirs") in err, err
    with pytest.raises(MlcoreError) as info:
        mlcore.create("dataset", "listfile", root="data/mine", image_root="pics", split="train")
    assert "'pics'" in str(info.value) and str(project / "data" / "mine" / "pics") in str(info.value)
    with pytest.raises(MlcoreError) as info:
        mlcore.create("dataset", "listfile", root="data/theirs", split="train")
    assert "'data/theirs'" in str(info.value) and str(project / "data" / "theirs") in str(info.value)
