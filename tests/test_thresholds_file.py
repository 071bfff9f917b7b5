"""``thresholds.json`` read back: every way a wrong file would silently mislead is one
clear error naming the file; a file in another class order is reordered."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlcore.errors import MlcoreError
from mlcore.thresholds_file import FILE_NAME, path_beside, read_thresholds

CLASSES = ["cat", "dog", "bird"]
SHA = "ab" * 32


def _write(tmp_path: Path, data, name: str = FILE_NAME) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _good(**over) -> dict:
    data = {"classes": list(CLASSES), "thresholds": [0.25, 0.5, 0.75], "objective": "f1", "split": "val",
            "checkpoint": "runs/x/checkpoints/best.pt", "checkpoint_sha256": SHA, "step": 12, "epoch": 3}
    data.update(over)
    return data


def test_reads_a_good_file_and_keeps_where_it_came_from(tmp_path):
    path = _write(tmp_path, _good())
    thr = read_thresholds(path, classes=CLASSES, checkpoint_sha256=SHA)
    assert thr.classes == CLASSES and thr.thresholds.dtype == np.float64
    assert thr.thresholds.tolist() == [0.25, 0.5, 0.75]
    assert (thr.objective, thr.split, thr.path) == ("f1", "val", str(path))
    assert (thr.checkpoint_sha256, thr.step, thr.epoch) == (SHA, 12, 3)
    # the rule is >=: a score equal to its threshold is predicted
    pred = thr.predict(np.array([[0.25, 0.49, 0.75], [0.24, 0.5, np.nan]]))
    assert pred.tolist() == [[True, False, True], [False, True, False]]


def test_path_beside_the_checkpoint(tmp_path):
    assert path_beside(tmp_path / "checkpoints" / "last.pt") == tmp_path / "checkpoints" / "thresholds.json"


def test_a_permutation_of_the_classes_is_reordered(tmp_path):
    path = _write(tmp_path, _good(classes=["bird", "cat", "dog"], thresholds=[0.75, 0.25, 0.5]))
    thr = read_thresholds(path, classes=CLASSES)
    assert thr.classes == CLASSES and thr.thresholds.tolist() == [0.25, 0.5, 0.75]
    # without classes to match, the file's own order
    assert read_thresholds(path).classes == ["bird", "cat", "dog"]


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON (line 1)"),
    ("[1, 2]", "must hold a JSON object, not list"),
    ("", "not valid JSON"),
])
def test_bad_json(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(MlcoreError) as info:
        read_thresholds(path, classes=CLASSES)
    assert words in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("drop", [["classes"], ["thresholds"], ["classes", "thresholds"]])
def test_missing_keys_are_named(tmp_path, drop):
    data = _good()
    for k in drop:
        del data[k]
    path = _write(tmp_path, data)
    with pytest.raises(MlcoreError) as info:
        read_thresholds(path)
    msg = str(info.value)
    assert all(repr(k) in msg for k in drop) and "not a file written by `mlcore calibrate`" in msg


@pytest.mark.parametrize("value, shown", [
    ("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ('"0.5"', "'0.5'"), ("null", "None"),
    ("true", "True"), ("1" + "0" * 400, "10000000000000000000…"),
])
def test_non_finite_or_non_numeric_thresholds(tmp_path, value, shown):
    path = _write(tmp_path, '{"classes": ["cat", "dog", "bird"], "thresholds": [0.1, %s, 0.3]}' % value)
    with pytest.raises(MlcoreError) as info:
        read_thresholds(path, classes=CLASSES)
    assert str(info.value) == (f"thresholds file {str(path)!r}: the threshold of class 'dog' is {shown}, "
                               f"not a finite number")


@pytest.mark.parametrize("over, words", [
    ({"thresholds": [0.1, 0.2]}, "must be a list of 3 numbers (one per class)"),
    ({"thresholds": 0.5}, "must be a list of 3 numbers"),
    ({"classes": ["cat", "cat", "bird"]}, "names a class twice"),
    ({"classes": "cat,dog,bird"}, "'classes' must be a list of names"),
    ({"classes": ["cat", 1, "bird"]}, "'classes' must be a list of names"),
])
def test_malformed_lists(tmp_path, over, words):
    with pytest.raises(MlcoreError, match="thresholds file .*" + re.escape(words)):
        read_thresholds(_write(tmp_path, _good(**over)), classes=CLASSES)


def test_other_classes_are_refused_naming_the_difference(tmp_path):
    path = _write(tmp_path, _good(classes=["cat", "dog", "fish"]))
    with pytest.raises(MlcoreError) as info:
        read_thresholds(path, classes=CLASSES)
    msg = str(info.value)
    assert "calibrated for other classes than the checkpoint's" in msg and "'fish'" in msg and "'bird'" in msg
    assert "run `mlcore calibrate` again" in msg
    with pytest.raises(MlcoreError, match="3 classes in the file, 4 in the checkpoint"):
        read_thresholds(path, classes=CLASSES + ["cow"])


def test_another_checkpoint_is_refused_when_both_checksums_are_known(tmp_path):
    path = _write(tmp_path, _good())
    other = "cd" * 32
    with pytest.raises(MlcoreError) as info:
        read_thresholds(path, classes=CLASSES, checkpoint_sha256=other)
    msg = str(info.value)
    assert "calibrated for another checkpoint" in msg and SHA[:12] in msg and other[:12] in msg
    # unknown on either side: nothing to compare, accepted
    assert read_thresholds(path, classes=CLASSES).checkpoint_sha256 == SHA
    unchecked = _write(tmp_path, _good(checkpoint_sha256=None), "unchecked.json")
    assert read_thresholds(unchecked, classes=CLASSES, checkpoint_sha256=other).checkpoint_sha256 is None


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(MlcoreError, match="no thresholds file .*run `mlcore calibrate` first"):
        read_thresholds(tmp_path / "nope.json")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(MlcoreError, match="cannot read thresholds file"):
        read_thresholds(tmp_path / "folder.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MlcoreError, match="thresholds file"):
        read_thresholds(binary)
