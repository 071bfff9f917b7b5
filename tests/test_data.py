"""Datasets in their on-disk formats, and the input pipeline's transforms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mlcore
from mlcore.data import EvalTransform, TrainTransform, read_image
from mlcore.data.images import BadImageError
from mlcore.errors import MlcoreError


def make_voc(root, objects: dict, splits: dict):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for image_id, objs in objects.items():
        xml = "<annotation>" + "".join(
            f"<object><name> {n} </name>" + ("" if d is None else f"<difficult>{d}</difficult>") + "</object>"
            for n, d in objs) + "</annotation>"
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        Image.new("RGB", (24, 20), (120, 30, 200)).save(root / "JPEGImages" / f"{image_id}.jpg")
    for split, ids in splits.items():
        (root / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def labels_of_rows(ds):
    return [[ds.classes[j] for j in np.nonzero(row)[0]] for row in ds.targets]


def test_voc2012_labels_skip_difficult_and_keep_all_difficult_images(tmp_path):
    make_voc(tmp_path, {"a": [("Dog", 0), ("person", 1)], "b": [("cat", None)], "c": [("car", 1)]},
             {"train": ["a", "b", "c"], "val": ["b"], "trainval": ["a", "b", "c"]})
    ds = mlcore.create("dataset", "voc2012", root=str(tmp_path), split="train")
    assert labels_of_rows(ds) == [["dog"], ["cat"], []] and len(ds.classes) == 20
    img, target = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 448, 448)  # the default eval transform
    with pytest.raises(MlcoreError, match=r"Unknown value 'test' for argument split.*\['train', 'trainval', 'val'\]"):
        mlcore.create("dataset", "voc2012", root=str(tmp_path), split="test")
    trainval = mlcore.create("dataset", "voc2012", root=str(tmp_path), split="trainval")
    assert labels_of_rows(trainval) == [["dog"], ["cat"], []]
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><object>")
    with pytest.raises(MlcoreError, match=r"b\.xml' is not valid XML"):
        mlcore.create("dataset", "voc2012", root=str(tmp_path), split="val")
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(MlcoreError, match=r"b\.xml': unknown class 'unicorn'"):
        mlcore.create("dataset", "voc2012", root=str(tmp_path), split="val")
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><object><name>cat</name></object></annotation>")
    (tmp_path / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(MlcoreError, match=r"image 'b' is listed but .*b.jpg' does not exist"):
        mlcore.create("dataset", "voc2012", root=str(tmp_path), split="val")
    (tmp_path / "Annotations" / "c.xml").unlink()
    with pytest.raises(MlcoreError, match=r"annotation file .*c.xml' does not exist"):
        mlcore.create("dataset", "voc2012", root=str(tmp_path), split="train")
    with pytest.raises(MlcoreError, match=r"dataset root .* does not exist"):
        mlcore.create("dataset", "voc2012", root=str(tmp_path / "gone"), split="train")


def test_shapes_is_generated_once_in_voc_layout(tmp_path):
    ds = mlcore.create("dataset", "shapes", root=str(tmp_path / "s"), num_train=12, num_val=5, image_size=32)
    assert (tmp_path / "s/ImageSets/Main/train.txt").read_text().count("\n") == 12
    assert len(list((tmp_path / "s/Annotations").glob("*.xml"))) == 17
    assert ds.targets.shape == (12, 10) and ds.targets.sum(1).min() >= 1
    mtime = (tmp_path / "s/JPEGImages/train_000000.jpg").stat().st_mtime_ns
    again = mlcore.create("dataset", "shapes", root=str(tmp_path / "s"), num_train=12, num_val=5, image_size=32)
    assert (tmp_path / "s/JPEGImages/train_000000.jpg").stat().st_mtime_ns == mtime
    assert np.array_equal(again.targets, ds.targets)


def test_transforms_give_fixed_sizes_and_are_seeded(tmp_path):
    img = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    assert EvalTransform(40, 32)(img).shape == (3, 32, 32)
    tf = TrainTransform(40, 32, crops=[24, 40], hflip=True)
    torch.manual_seed(0)
    a = tf(img)
    torch.manual_seed(0)
    assert torch.equal(a, tf(img)) and a.shape == (3, 32, 32) and a.dtype == torch.uint8
    # the fused crop-resize shows the same region as resize-then-crop-then-resize
    flat = torch.zeros(3, 80, 80, dtype=torch.uint8)
    flat[:, :40] = 255  # top half white
    whole = TrainTransform(40, 20, crops=[40], hflip=False)(flat)
    assert whole[:, :9].min() == 255 and whole[:, 11:].max() == 0
    aug = TrainTransform(40, 32, randaugment=True, cutout=0.5)
    torch.manual_seed(1)
    b = aug(img)
    assert b.shape == (3, 32, 32) and b.dtype == torch.uint8
    assert ((b == torch.tensor([124, 116, 104], dtype=torch.uint8).view(3, 1, 1)).all(0)).sum() >= 64  # the cutout


def test_read_image_names_bad_files(tmp_path):
    p = tmp_path / "x.png"
    Image.new("L", (5, 4), 7).save(p)
    assert read_image(p).shape == (3, 4, 5)  # grey becomes RGB
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(BadImageError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(BadImageError, match="no such file"):
        read_image(tmp_path / "gone.jpg")


def test_label_info_counts_and_cooccurrence():
    info = mlcore.LabelInfo.from_targets(["a", "b", "c"], [[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    assert info.counts.tolist() == [2, 2, 1] and info.num_images == 3
    assert info.cooccurrence.tolist() == [[2, 1, 0], [1, 2, 1], [0, 1, 1]]


def test_random_resized_crop_is_torchvisions_on_the_decoded_image():
    from torchvision import transforms as T

    img = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)
    ours = TrainTransform(64, 48, hflip=False, random_resized_crop=[0.7, 1.0])
    theirs = T.RandomResizedCrop(48, scale=(0.7, 1.0), antialias=True)
    for seed in range(5):
        torch.manual_seed(seed)
        a = ours(img)
        torch.manual_seed(seed)
        b = theirs(img)  # the same box; torchvision's v1 resize rounds uint8 a little differently
        assert a.shape == (3, 48, 48) and (a.int() - b.int()).abs().max() <= 1
    assert "random_resized_crop=[0.7, 1.0]" in repr(ours)


@pytest.mark.parametrize("value, message", [([0.0, 1.0], "must be \\[min, max\\] area fractions"),
                                            ([0.8, 0.7], "must be \\[min, max\\] area fractions"),
                                            ([0.7], "must be \\[min, max\\] area fractions")])
def test_random_resized_crop_is_checked(tmp_path, value, message):
    from conftest import tiny_config

    cfg = tiny_config(tmp_path, data={"scale_size": 32, "crop_size": 32, "random_resized_crop": value})
    with pytest.raises(mlcore.ConfigError, match="data.random_resized_crop: " + message):
        mlcore.load_config(cfg)
    cfg["data"] = {"scale_size": 32, "crop_size": 32, "train_crops": [28], "random_resized_crop": [0.7, 1]}
    with pytest.raises(mlcore.ConfigError, match="replaces train_crops"):
        mlcore.load_config(cfg)
