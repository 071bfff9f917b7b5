"""NUS-WIDE from tiny files written as the release writes them (backslash paths, CRLF in
some files, trailing spaces): labels and order, missing images, drop_unlabeled, the
bad-data errors, the cache, one epoch of training and the recipe."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import mlcore
from mlcore.errors import MlcoreError

CONCEPTS = ["animal", "beach", "sky"]
# (listed path, labels); the real lists use the release machine's backslashes
TRAIN = [("animal\\0001_2124494179.jpg", ["animal", "sky"]), ("beach\\0002_174174086.jpg", ["beach"]),
         ("animal\\0003_53003.jpg", []), ("sky\\0004_1111.jpg", ["sky"])]
TEST = [("beach\\0005_222.jpg", ["beach", "sky"]), ("sky\\0006_333.jpg", [])]


def write_release(root, train=TRAIN, test=TEST, concepts=CONCEPTS, images=True):
    """The release's files under ``root``: Concepts81.txt with CRLF and a trailing space,
    the image lists with backslashes (train CRLF, test LF), label files with ``0 \\r\\n``
    lines (train) or ``1\\n`` ones (test); and a small JPEG for each listed image."""
    for d in ("ConceptsList", "ImageList", "Groundtruth/TrainTestLabels"):
        os.makedirs(root / d, exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_bytes("".join(f"{c} \r\n" for c in concepts).encode())
    for word, rows, eol in (("Train", train, "\r\n"), ("Test", test, "\n")):
        (root / "ImageList" / f"{word}Imagelist.txt").write_bytes("".join(p + eol for p, _ in rows).encode())
        for c in concepts:
            line = "{} \r\n" if word == "Train" else "{}\n"
            (root / "Groundtruth/TrainTestLabels" / f"Labels_{c}_{word}.txt").write_bytes(
                "".join(line.format(int(c in labels)) for _, labels in rows).encode())
        if images:
            for p, _ in rows:
                path = root / "Flickr" / p.replace("\\", "/")
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (20, 16), (30, 120, 200)).save(path)
    return root


def labels_of(ds):
    return {"/".join(p.split(os.sep)[-2:]): [ds.classes[j] for j in np.flatnonzero(row)]
            for p, row in zip(ds.images, np.asarray(ds.targets))}


@pytest.fixture
def nus(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    return write_release(tmp_path / "NUS-WIDE")


def test_labels_order_and_backslash_paths(nus):
    ds = mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    assert ds.classes == CONCEPTS and ds.targets.dtype == np.uint8
    assert ds.images[0] == os.path.join(str(nus), "Flickr/animal/0001_2124494179.jpg")
    assert labels_of(ds) == {p.replace("\\", "/"): labels for p, labels in TRAIN}  # list order, empty kept
    img, target = ds[0]
    assert img.shape[0] == 3 and target.tolist() == [1.0, 0.0, 1.0]
    test = mlcore.create("dataset", "nuswide", root=str(nus), split="test")
    assert labels_of(test) == {"beach/0005_222.jpg": ["beach", "sky"], "sky/0006_333.jpg": []}
    with pytest.raises(MlcoreError, match=r"Unknown value 'val' for argument split. Valid values are "
                                          r"\['test', 'train'\]"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="val")


def test_drop_unlabeled(nus):
    ds = mlcore.create("dataset", "nuswide", root=str(nus), split="train", drop_unlabeled=True)
    assert list(labels_of(ds)) == ["animal/0001_2124494179.jpg", "beach/0002_174174086.jpg", "sky/0004_1111.jpg"]
    assert ds.targets.any(axis=1).all()
    assert len(mlcore.create("dataset", "nuswide", root=str(nus), split="test", drop_unlabeled=True)) == 1


def test_missing_images_are_skipped_with_one_warning_or_an_error(nus):
    os.remove(nus / "Flickr/beach/0002_174174086.jpg")
    os.remove(nus / "Flickr/animal/0003_53003.jpg")
    with pytest.warns(UserWarning, match=r"NUS-WIDE train: 2 of the 4 listed images do not exist") as caught:
        ds = mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    assert len([w for w in caught if "NUS-WIDE" in str(w.message)]) == 1
    assert "0002_174174086.jpg" in str(caught[0].message) and "0003_53003.jpg" in str(caught[0].message)
    assert list(labels_of(ds)) == ["animal/0001_2124494179.jpg", "sky/0004_1111.jpg"]
    assert ds.targets.tolist() == [[1, 0, 1], [0, 0, 1]]
    # without the unlabeled image, one is missing; a whole folder gone counts too
    with pytest.warns(UserWarning, match=r"1 of the 3 labeled images \(of 4 listed\)"):
        assert len(mlcore.create("dataset", "nuswide", root=str(nus), split="train", drop_unlabeled=True)) == 2
    with pytest.raises(MlcoreError, match=r"NUS-WIDE train: 2 of the 4 listed images do not exist.*"
                                          r"Flickr/beach/0002_174174086.jpg.*Flickr/animal/0003_53003.jpg"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train", missing_images="error")
    for f in (nus / "Flickr" / "sky").iterdir():
        f.unlink()
    (nus / "Flickr" / "sky").rmdir()
    with pytest.warns(UserWarning, match=r"NUS-WIDE test: 1 of the 2"):
        assert len(mlcore.create("dataset", "nuswide", root=str(nus), split="test")) == 1
    # an image put back is seen without rebuilding the index (the check runs after the cache)
    Image.new("RGB", (8, 8)).save(nus / "Flickr/beach/0002_174174086.jpg")
    with pytest.warns(UserWarning, match=r"2 of the 4"):  # 0003 and now 0004 (its folder is gone)
        assert len(mlcore.create("dataset", "nuswide", root=str(nus), split="train")) == 2


def test_bad_label_files_name_the_file_and_line(nus):
    label = nus / "Groundtruth/TrainTestLabels/Labels_beach_Train.txt"
    label.write_bytes(b"0 \r\n1 \r\n2 \r\n0 \r\n")
    with pytest.raises(MlcoreError, match=r"Labels_beach_Train.txt', line 3: expected 0 or 1, got '2'"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    label.write_bytes(b"0\n1\n\n0\n")
    with pytest.raises(MlcoreError, match=r"Labels_beach_Train.txt', line 3: expected 0 or 1, got ''"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    label.write_bytes(b"0\n1 1\n0\n0\n")
    with pytest.raises(MlcoreError, match=r"line 2: expected 0 or 1, got '1 1'"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    label.write_bytes(b"0\n1\n0\n")
    with pytest.raises(MlcoreError, match=r"Labels_beach_Train.txt', line 3: the file ends here, after 3 lines, but its image list has 4 images"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    label.write_bytes(b"0\n1\n0\n0\n1\n")
    with pytest.raises(MlcoreError, match=r"Labels_beach_Train.txt', line 5: the file has 5 lines, but its image list has 4 images"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    label.write_bytes(b"0\n1\n0\n0\n\n\r\n")  # blank lines at the end do not count
    assert len(mlcore.create("dataset", "nuswide", root=str(nus), split="train")) == 4
    os.remove(nus / "Groundtruth/TrainTestLabels/Labels_sky_Test.txt")
    with pytest.raises(MlcoreError, match=r"Labels_sky_Test.txt' of concept 'sky' \(test\) does not exist"):
        mlcore.create("dataset", "nuswide", root=str(nus), split="train")


def test_the_index_is_cached_and_rebuilt_when_a_label_file_changes(nus, tmp_path, monkeypatch):
    import mlcore_builtins.nuswide.reader as reader

    calls = []
    real = reader.parse_labels
    monkeypatch.setattr(reader, "parse_labels", lambda *a: calls.append(a) or real(*a))
    mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    assert len(calls) == 2 * len(CONCEPTS)  # both splits, one pass per file
    mlcore.create("dataset", "nuswide", root=str(nus), split="test", drop_unlabeled=True)
    mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    assert len(calls) == 2 * len(CONCEPTS)  # not read again
    assert len(list((tmp_path / "cache" / "index").glob("nuswide-*.npz"))) == 1
    label = nus / "Groundtruth/TrainTestLabels/Labels_beach_Train.txt"
    label.write_bytes(b"1\n1\n0\n0\n")
    ds = mlcore.create("dataset", "nuswide", root=str(nus), split="train")
    assert labels_of(ds)["animal/0001_2124494179.jpg"] == ["animal", "beach", "sky"]
    assert len(calls) == 4 * len(CONCEPTS)


def test_parse_labels_reads_the_release_formats(tmp_path):
    from mlcore_builtins.nuswide.reader import image_path, parse_labels

    for data in (b"0\n1\n1\n", b"0\r\n1\r\n1\r\n", b"0 \n1   \n1\t\n", b"\xef\xbb\xbf0\n1\n1", b" 0\n1\n1\n\n"):
        (tmp_path / "l.txt").write_bytes(data)
        assert parse_labels(str(tmp_path / "l.txt"), 3).tolist() == [0, 1, 1]
    (tmp_path / "l.txt").write_bytes(b"0\n/\n1\n")  # '/' is just below '0'
    with pytest.raises(MlcoreError, match="line 2: expected 0 or 1, got '/'"):
        parse_labels(str(tmp_path / "l.txt"), 3)
    assert image_path("actor\\0001_2124494179.jpg") == "Flickr/actor/0001_2124494179.jpg"
    assert image_path("C:\\ImageData\\Flickr\\actor\\0001_2.jpg") == "Flickr/actor/0001_2.jpg"


def test_one_epoch_of_training(nus, tmp_path):
    from conftest import tiny_config

    cfg = tiny_config(tmp_path / "run", dataset={"name": "nuswide", "root": str(nus)},
                      data={"scale_size": 32, "crop_size": 32, "train_split": "train", "val_split": "test"},
                      train={**tiny_config("x")["train"], "epochs": 1, "batch_size": 2})
    exp = mlcore.build(cfg)
    assert exp.classes == CONCEPTS and len(exp.train_set) == 4 and len(exp.val_set) == 2
    exp.fit()
    assert "mAP" in exp.evaluate("test")


def test_the_recipe_loads(tmp_path):
    from conftest import ROOT

    cfg = mlcore.load_config(ROOT / "configs" / "nuswide_resnet101.yaml", check_files=False)
    assert cfg.dataset.name == "nuswide" and cfg.dataset.cfg.root == "data/NUS-WIDE"
    assert cfg.dataset.cfg.drop_unlabeled is True and cfg.dataset.cfg.missing_images == "skip"
    assert (cfg.data.scale_size, cfg.data.crop_size) == (448, 448)
    assert (cfg.data.train_split, cfg.data.val_split) == ("train", "test")
    assert cfg.model.name == "resnet101"
