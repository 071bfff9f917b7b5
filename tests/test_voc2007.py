"""VOC2007 in its real layout (trainval and test merged in one folder): the splits, the
three ``difficult`` modes, and unknown labels kept through the cached index."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import mlcore
from mlcore.data import index as index_mod
from mlcore.errors import ConfigError, MlcoreError
from mlcore.registry import Registry


def voc_xml(filename: str, objects) -> str:
    """An annotation as the VOC2007 release writes it (tabs, source, size, bndbox…)."""
    objs = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Left</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>1</xmin>\n\t\t\t<ymin>2</ymin>\n"
        f"\t\t\t<xmax>20</xmax>\n\t\t\t<ymax>18</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for name, difficult in objects)
    return (f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{filename}</filename>\n"
            f"\t<source>\n\t\t<database>The VOC2007 Database</database>\n\t</source>\n"
            f"\t<size>\n\t\t<width>24</width>\n\t\t<height>20</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objs}</annotation>\n")


IMAGES = {
    "000005": [("chair", 0), ("chair", 1), ("diningtable", 1)],  # chair: one box not difficult
    "000007": [("car", 0)],
    "000009": [("horse", 0), ("person", 1), ("person", 1)],
    "000001": [("dog", 0), ("person", 0)],  # test
    "000002": [("train", 1)],  # test: all difficult
}
SPLITS = {"train": ["000005", "000007"], "val": ["000009"], "trainval": ["000005", "000007", "000009"],
          "test": ["000001", "000002"]}


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for image_id, objects in IMAGES.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", objects))
        Image.new("RGB", (24, 20), (10, 200, 40)).save(root / "JPEGImages" / f"{image_id}.jpg")
    for split, ids in SPLITS.items():
        (root / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for c in ("car", "dog"):  # the per-class lists the release has beside them: not splits
            (root / "ImageSets/Main" / f"{c}_{split}.txt").write_text("".join(f"{i} -1\n" for i in ids))
    return root


def rows(ds, image_ids):
    out = {}
    for image_id, row in zip(image_ids, ds.targets):
        out[image_id] = {ds.classes[j]: int(v) for j, v in enumerate(row) if v != 0}
    return out


def test_splits_and_the_drop_rule(voc):
    ds = mlcore.create("dataset", "voc2007", root=str(voc), split="trainval")
    assert len(ds) == 3 and len(ds.classes) == 20 and ds.targets.dtype == np.uint8
    assert rows(ds, SPLITS["trainval"]) == {"000005": {"chair": 1}, "000007": {"car": 1}, "000009": {"horse": 1}}
    test = mlcore.create("dataset", "voc2007", root=str(voc), split="test")
    assert rows(test, SPLITS["test"]) == {"000001": {"dog": 1, "person": 1}, "000002": {}}
    with pytest.raises(MlcoreError, match=r"Unknown value 'minival' for argument split. Valid values are "
                                          r"\['test', 'train', 'trainval', 'val'\]"):
        mlcore.create("dataset", "voc2007", root=str(voc), split="minival")


def test_positive_and_ignore_rules(voc):
    pos = mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult="positive")
    assert rows(pos, SPLITS["trainval"]) == {"000005": {"chair": 1, "diningtable": 1}, "000007": {"car": 1},
                                             "000009": {"horse": 1, "person": 1}}
    ign = mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult="ignore")
    assert ign.targets.dtype == np.int8
    assert rows(ign, SPLITS["trainval"]) == {"000005": {"chair": 1, "diningtable": -1}, "000007": {"car": 1},
                                             "000009": {"horse": 1, "person": -1}}
    _, target = ign[2]
    assert target[ign.classes.index("person")] == -1 and target[ign.classes.index("horse")] == 1
    test = mlcore.create("dataset", "voc2007", root=str(voc), split="test", difficult="ignore")
    assert rows(test, SPLITS["test"])["000002"] == {"train": -1}


def test_unknowns_survive_the_cache_and_each_mode_has_its_own_index(voc, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    first = mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult="ignore").targets
    cached = sorted((tmp_path / "cache" / "index").glob("voc2007-*.npz"))
    assert len(cached) == 1
    again = mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult="ignore").targets
    assert again.dtype == np.int8 and np.array_equal(first, again)
    loaded = index_mod.load(str(cached[0])).split("trainval").targets
    assert np.array_equal(loaded, first)
    mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult="drop")
    assert len(list((tmp_path / "cache" / "index").glob("voc2007-*.npz"))) == 2


def test_the_difficult_setting_is_checked_like_any_config_key(voc, tmp_path):
    from conftest import tiny_config

    cfg = tiny_config(tmp_path / "run", dataset={"name": "voc2007", "root": str(voc), "difficult": "hard"})
    with pytest.raises(ConfigError, match=r"dataset.difficult: .*'hard'"):
        mlcore.load_config(cfg)
    cfg["dataset"] = {"name": "voc2012", "root": str(voc), "difficult": "ignore"}
    mlcore.load_config(cfg)  # voc2012 takes the same setting


@dataclass
class NoParams:
    pass


class Recording:
    """A third-party loss that does not say it handles unknown labels; it records the
    smallest target it was given."""

    seen: list = []

    def __call__(self, logits, targets):
        Recording.seen.append(float(targets.min()))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.clamp(min=0))


def test_unknown_labels_from_the_dataset_to_the_loss_and_the_metrics(voc, tmp_path):
    from conftest import tiny_config

    reg = Registry()
    plugin = mlcore.Plugin("loss", "recording", "records targets", NoParams, lambda cfg, num_classes: Recording())
    reg.register("loss", "recording", plugin)
    dataset = {"name": "voc2007", "root": str(voc), "difficult": "ignore"}
    train = {**tiny_config("x")["train"], "epochs": 1, "batch_size": 3}
    data = {**tiny_config("x")["data"], "train_split": "trainval", "val_split": "test"}
    cfg = tiny_config(tmp_path / "a", dataset=dataset, data=data, train=train, loss="recording")
    with pytest.raises(ConfigError, match=r"loss: the training set has 2 unknown label\(s\) \(-1\) and loss "
                                          r"'recording' does not say .* data.unknown_labels: negative"):
        mlcore.build(cfg, registry=reg).fit()
    assert not (tmp_path / "a" / "checkpoints").exists()
    Recording.seen = []
    cfg = tiny_config(tmp_path / "b", dataset=dataset, data={**data, "unknown_labels": "negative"}, train=train,
                      loss="recording")
    mlcore.build(cfg, registry=reg).fit()
    assert Recording.seen and min(Recording.seen) == 0  # the unknown entries arrived as negatives
    exp = mlcore.build(tiny_config(tmp_path / "c", dataset=dataset, data=data, train=train))  # bce: ignores them
    exp.fit()
    metrics = exp.evaluate("test")
    assert metrics["num_labels_without_positives"] == 18  # of 20: dog and person are known positives


def test_difficult_per_split_as_ml_gcn_trains_and_evaluates(voc, tmp_path):
    from conftest import tiny_config

    modes = {"trainval": "positive", "test": "ignore"}
    trainval = mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult=modes)
    assert rows(trainval, SPLITS["trainval"])["000009"] == {"horse": 1, "person": 1}
    test = mlcore.create("dataset", "voc2007", root=str(voc), split="test", difficult=modes)
    assert rows(test, SPLITS["test"])["000002"] == {"train": -1}
    train = mlcore.create("dataset", "voc2007", root=str(voc), split="train", difficult=modes)  # not named: drop
    assert rows(train, SPLITS["train"])["000005"] == {"chair": 1}
    cfg = tiny_config(tmp_path / "run", dataset={"name": "voc2007", "root": str(voc),
                                                 "difficult": {"trainval": "positive", "test": "hard"}})
    with pytest.raises(ConfigError, match=r"dataset.difficult: test: Unknown value 'hard'"):
        mlcore.load_config(cfg)


def test_a_misspelt_split_in_the_difficult_mapping_and_a_bad_difficult_value_are_errors(voc):
    with pytest.raises(MlcoreError, match=r"difficult: 'trianval' is not a split of .*VOC2007'; its splits are "
                                          r"\['test', 'train', 'trainval', 'val'\]"):
        mlcore.create("dataset", "voc2007", root=str(voc), split="test", difficult={"trianval": "positive"})
    (voc / "ImageSets/Main/test.txt").unlink()  # the trainval release alone: the recipe's mapping still works
    mlcore.create("dataset", "voc2007", root=str(voc), split="trainval", difficult={"trainval": "positive", "test": "ignore"})
    (voc / "Annotations" / "000007.xml").write_text(voc_xml("000007.jpg", [("car", "x")]))
    with pytest.raises(MlcoreError, match=r"000007.xml': the <object> 'car' has <difficult>x</difficult>; "
                                          r"expected 0 or 1"):
        mlcore.create("dataset", "voc2007", root=str(voc), split="train")

