"""mlcore.wordvectors: label vectors from GloVe/word2vec text or a C×d .npy, cached."""
from __future__ import annotations

import os

import numpy as np
import pytest

from mlcore import MlcoreError, label_vectors, label_words

CLASSES = ["person", "dog", "traffic light", "diningtable", "red_circle", "cat"]
VOCAB = {"person": 1, "dog": 2, "traffic": 3, "light": 5, "dining": 7, "table": 9, "red": 11, "circle": 13,
         "Cat": 17}


def glove_lines() -> list[str]:
    return [f"{w} " + " ".join(str(v + i / 10) for i in range(4)) for w, v in VOCAB.items()]


def test_label_words_split_multiword_and_spell_out_voc_names():
    assert label_words("traffic light") == ["traffic", "light"]
    assert label_words("red_circle") == ["red", "circle"]
    assert label_words("tvmonitor") == ["tv", "monitor"] and label_words("pottedplant") == ["potted", "plant"]
    assert label_words("person") == ["person"]


def test_glove_text_with_multiword_labels_and_missing_words(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    glove = tmp_path / "glove.txt"
    glove.write_text("\n".join(["the 0 0 0 0", "e.g . 1 1 1 1"] + glove_lines()) + "\n")
    vec = label_vectors(str(glove), CLASSES)
    assert vec.shape == (6, 4) and vec.dtype == np.float32
    assert np.allclose(vec[2], [4.0, 4.1, 4.2, 4.3])  # mean of traffic and light
    assert np.allclose(vec[3], [8.0, 8.1, 8.2, 8.3])  # diningtable read as "dining table"
    assert np.allclose(vec[4], [12.0, 12.1, 12.2, 12.3])  # red_circle
    assert np.allclose(vec[5], [17.0, 17.1, 17.2, 17.3])  # found case-insensitively
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 4\n" + "\n".join(glove_lines()[:2]) + "\n")  # word2vec's "count dim" header
    with pytest.raises(MlcoreError, match=r"lacks words of 4 label\(s\): traffic light: traffic, light"):
        label_vectors(str(w2v), CLASSES)
    zero = label_vectors(w2v, CLASSES, missing_words="zero")
    assert np.allclose(zero[0], [1.0, 1.1, 1.2, 1.3]) and np.all(zero[2] == 0)
    with pytest.raises(MlcoreError, match="Unknown value 'skip' for argument missing_words"):
        label_vectors(str(w2v), CLASSES, missing_words="skip")


def test_text_results_are_cached_and_refreshed_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    glove = tmp_path / "glove.txt"
    glove.write_text("\n".join(glove_lines()) + "\n")
    first = label_vectors(str(glove), CLASSES)
    (cached,) = os.listdir(tmp_path / "cache" / "embeddings")
    np.save(tmp_path / "cache" / "embeddings" / cached, first * 2)  # what the cache holds is what is read
    assert np.allclose(label_vectors(str(glove), CLASSES), first * 2)
    glove.write_text("\n".join(glove_lines()) + "\nextra 0 0 0 0\n")  # another size: read again
    assert np.allclose(label_vectors(str(glove), CLASSES), first)
    assert not [n for n in os.listdir(tmp_path / "cache" / "embeddings") if ".tmp" in n]  # atomic writes


def test_npy_files_and_their_errors(tmp_path):
    good = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.save(tmp_path / "good.npy", good)
    got = label_vectors(str(tmp_path / "good.npy"), CLASSES)
    assert got.dtype == np.float32 and np.array_equal(got, good.astype(np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((3, 2)))
    with pytest.raises(MlcoreError, match=r"has shape \(3, 2\); expected 6×d"):
        label_vectors(str(tmp_path / "bad.npy"), CLASSES)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 6, dtype=object), allow_pickle=True)
    with pytest.raises(MlcoreError, match="is not a plain .npy array"):
        label_vectors(str(tmp_path / "objects.npy"), CLASSES)
    with pytest.raises(MlcoreError, match=r"embeddings file .*nope.txt' does not exist; give a GloVe"):
        label_vectors(str(tmp_path / "nope.txt"), CLASSES)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(MlcoreError, match="is empty"):
        label_vectors(str(tmp_path / "empty.txt"), CLASSES)
