"""Open Images V6 image-level labels in their real file formats: sparse targets (1 / 0 /
-1 unknown) densified per sample, the trainable classes' order, label statistics over
known positives, the memory-mapped cache, bad data, and training with a missing image."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import mlcore
from conftest import tiny_config
from mlcore.errors import MlcoreError
from mlcore_builtins.openimages import reader as reader_mod
from mlcore_builtins.openimages.evaluation import average_precision_known

DESCRIPTIONS = (
    "LabelName,DisplayName\n"
    "/m/01,Cat\n"
    '/m/02,"Dog, domestic"\n'
    "/m/03,Car\n"
    "/m/04,Tree\n"  # described, not trainable
    "/m/05,Person\n"
)
TRAINABLE = "/m/03\n/m/01\n/m/02\n/m/05\n"  # not alphabetical: the classes keep this order
CLASSES = ["/m/03", "/m/01", "/m/02", "/m/05"]
HEADER = "ImageID,Source,LabelName,Confidence\n"
TRAIN_ROWS = [
    "0001a,verification,/m/01,1",
    "0001a,verification,/m/02,0",
    "0001a,crowdsource-verification,/m/04,1",  # not trainable: ignored
    "0001a,verification,/m/03,1",
    "0002b,verification,/m/01,1",
    "0002b,verification,/m/03,1",
    "0002b,verification,/m/05,0",
    "0003c,verification,/m/04,1",  # only a non-trainable row: in the split, everything unknown
    "0004d,verification,/m/02,0",
    "0004d,crowdsource-verification,/m/02,1",  # listed twice: positive wins
]
TRAIN_IDS = ["0001a", "0002b", "0003c", "0004d"]
#                      /m/03 /m/01 /m/02 /m/05
TRAIN_TARGETS = np.array([[1, 1, 0, -1],
                          [1, 1, -1, 0],
                          [-1, -1, -1, -1],
                          [-1, -1, 1, -1]], dtype=np.int8)
VAL_ROWS = ["0101,verification,/m/05,1", "0101,verification,/m/01,0", "0102,verification,/m/03,1"]


def write_dataset(root, train_rows=TRAIN_ROWS, val_rows=VAL_ROWS, crlf=False):
    root.mkdir(parents=True, exist_ok=True)
    nl = "\r\n" if crlf else "\n"
    (root / "oidv6-class-descriptions.csv").write_text(DESCRIPTIONS)
    (root / "oidv6-classes-trainable.txt").write_text(TRAINABLE)
    (root / "oidv6-train-annotations-human-imagelabels.csv").write_bytes(
        (HEADER + nl.join(train_rows) + nl).replace("\n", nl).replace("\r\r", "\r").encode())
    (root / "validation-annotations-human-imagelabels.csv").write_text(HEADER + "\n".join(val_rows) + "\n")
    for split, ids in (("train", TRAIN_IDS), ("validation", ["0101", "0102"])):
        (root / split).mkdir(exist_ok=True)
        for k, image_id in enumerate(ids):
            Image.new("RGB", (20, 16), (40 * k, 100, 200)).save(root / split / f"{image_id}.jpg")
    return root


@pytest.fixture
def oi(tmp_path):
    return write_dataset(tmp_path / "openimages")


def dense(ds):
    return np.stack([ds[i][1].numpy() for i in range(len(ds))]).astype(np.int8)


def test_targets_classes_and_display_names(oi):
    ds = mlcore.create("dataset", "openimages", root=str(oi), split="train")
    assert ds.classes == CLASSES
    assert ds.display_names == ["Car", "Cat", "Dog, domestic", "Person"]
    assert len(ds) == 4 and [ds.images[i].rsplit("/", 1)[1] for i in range(4)] == [f"{i}.jpg" for i in TRAIN_IDS]
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and target.dtype == torch.float32
    np.testing.assert_array_equal(dense(ds), TRAIN_TARGETS)
    np.testing.assert_array_equal(ds.targets_of([3, 0]), TRAIN_TARGETS[[3, 0]])
    np.testing.assert_array_equal(np.asarray(ds.targets), TRAIN_TARGETS)  # small: a dense view is allowed
    assert ds.num_unknown == int((TRAIN_TARGETS < 0).sum()) == 9
    val = mlcore.create("dataset", "openimages", root=str(oi), split="validation")
    assert val.classes == CLASSES and len(val) == 2
    np.testing.assert_array_equal(dense(val), [[-1, 0, -1, 1], [1, -1, -1, -1]])
    alias = mlcore.create("dataset", "openimages", root=str(oi), split="val")
    assert alias.images[0] == val.images[0]
    with pytest.raises(MlcoreError, match=r"Unknown value 'minival' for argument split"):
        mlcore.create("dataset", "openimages", root=str(oi), split="minival")


def test_label_info_counts_known_positives_only(oi):
    info = mlcore.create("dataset", "openimages", root=str(oi), split="train").label_info()
    assert info.classes == CLASSES and info.num_images == 4
    np.testing.assert_array_equal(info.counts, [2, 2, 1, 0])  # by hand: unknowns and negatives not counted
    expected = np.array([[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(info.cooccurrence, expected)
    assert info.cooccurrence.dtype == np.int32
    dense_info = mlcore.LabelInfo.from_targets(CLASSES, TRAIN_TARGETS)
    np.testing.assert_array_equal(info.cooccurrence, dense_info.cooccurrence)


def test_unsorted_crlf_and_chunked_files_give_the_same_index(tmp_path):
    a = write_dataset(tmp_path / "a")
    rows = TRAIN_ROWS[5:] + TRAIN_ROWS[:5]  # 0002b split in two runs
    b = write_dataset(tmp_path / "b", train_rows=rows, crlf=True)
    ref = reader_mod.build_index(str(a / "oidv6-class-descriptions.csv"), str(a / "oidv6-classes-trainable.txt"),
                                 str(a / "oidv6-train-annotations-human-imagelabels.csv"))
    for chunk in (7, 64, 1 << 20):
        got = reader_mod.build_index(str(b / "oidv6-class-descriptions.csv"), str(b / "oidv6-classes-trainable.txt"),
                                     str(b / "oidv6-train-annotations-human-imagelabels.csv"), chunk_bytes=chunk)
        assert got.image_ids.tolist() == ref.image_ids.tolist() == [i.encode() for i in TRAIN_IDS]
        for name in ("offsets", "labels", "positive"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))


def reference_index(trainable, rows):
    """The index by the plainest reading: a dict per image of class -> positive-any."""
    class_of = {name: j for j, name in enumerate(trainable)}
    images: dict[str, dict[int, bool]] = {}
    for image_id, _source, label, confidence in rows:
        known = images.setdefault(image_id, {})
        if label in class_of:
            j = class_of[label]
            known[j] = known.get(j, False) or confidence == "1"
    ids = sorted(images, key=str.encode)
    offsets, labels, positive = [0], [], []
    for image_id in ids:
        for j in sorted(images[image_id]):
            labels.append(j)
            positive.append(images[image_id][j])
        offsets.append(len(labels))
    return ids, offsets, labels, positive


@pytest.mark.parametrize("seed", range(6))
def test_random_files_match_a_plain_reading_at_any_chunk_size(tmp_path, seed):
    # sorted or not, duplicates, ids and names of varied length, CRLF, blank lines, a last
    # line with or without its newline: the chunked parser gives what a dict of rows gives
    rng = np.random.default_rng(seed)
    names = [f"/m/{'x' * int(rng.integers(0, 14))}{i:x}" for i in range(40)]
    trainable = [names[i] for i in rng.permutation(40)[:25]]
    image_ids = sorted({"".join(rng.choice(list("0123456789abcdef"), int(rng.integers(1, 21))))
                        for _ in range(30)})
    rows = []
    for image_id in image_ids:
        for _ in range(int(rng.integers(1, 6))):
            rows.append((image_id, "verification", names[int(rng.integers(0, 40))], str(int(rng.integers(0, 2)))))
    if seed % 2:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    nl = "\r\n" if seed % 3 == 0 else "\n"
    lines = [",".join(r) for r in rows]
    if seed == 4:
        lines.insert(len(lines) // 2, "")
    text = "ImageID,Source,LabelName,Confidence" + nl + nl.join(lines) + (nl if seed != 2 else "")
    (tmp_path / "d.csv").write_text("LabelName,DisplayName\n" + "".join(f"{n},N{n}\n" for n in names))
    (tmp_path / "t.txt").write_text("\n".join(trainable) + "\n")
    (tmp_path / "l.csv").write_bytes(text.encode())
    ids, offsets, labels, positive = reference_index(trainable, rows)
    for chunk in (1, 5, 37, 256, 1 << 20):
        got = reader_mod.build_index(str(tmp_path / "d.csv"), str(tmp_path / "t.txt"), str(tmp_path / "l.csv"),
                                     chunk_bytes=chunk)
        assert got.image_ids.tolist() == [i.encode() for i in ids], chunk
        assert got.offsets.tolist() == offsets and got.labels.tolist() == labels, chunk
        assert got.positive.tolist() == positive, chunk


def test_the_cache_is_reused_memory_mapped(oi, monkeypatch):
    first = mlcore.create("dataset", "openimages", root=str(oi), split="train")
    assert isinstance(first.labels, np.memmap) and isinstance(first.offsets, np.memmap)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(reader_mod, "build_index", no_rebuild)
    second = mlcore.create("dataset", "openimages", root=str(oi), split="train")
    assert isinstance(second.positive, np.memmap)
    assert second.index.folder == first.index.folder
    np.testing.assert_array_equal(dense(second), TRAIN_TARGETS)
    monkeypatch.undo()
    # a damaged cache is rebuilt, with a warning
    (second.index.folder and open(f"{second.index.folder}/offsets.npy", "wb").close())
    with pytest.warns(UserWarning, match="damaged openimages label index"):
        third = mlcore.create("dataset", "openimages", root=str(oi), split="train")
    np.testing.assert_array_equal(dense(third), TRAIN_TARGETS)
    # an edited labels file is a new index
    path = oi / "oidv6-train-annotations-human-imagelabels.csv"
    path.write_text(HEADER + "0001a,verification,/m/05,1\n")
    fourth = mlcore.create("dataset", "openimages", root=str(oi), split="train")
    assert len(fourth) == 1 and fourth.index.folder != first.index.folder


@pytest.mark.parametrize("row, line, message", [
    ("0002b,verification,/m/99,1", 3, r"LabelName '/m/99' is not in the class descriptions .*oidv6-class-descr"),
    ("0002b,verification,/m/01,0.5", 3, r"Confidence '0.5' is neither 1 \(positive\) nor 0"),
    ("0002b,verification,/m/01", 3, r"expected 4 comma-separated fields"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, line, message):
    root = write_dataset(tmp_path / "oi", train_rows=["0001a,verification,/m/01,1", row])
    with pytest.raises(MlcoreError, match=rf"oidv6-train-annotations-human-imagelabels.csv', line {line}: {message}"):
        mlcore.create("dataset", "openimages", root=str(root), split="train")


@pytest.mark.parametrize("chunk", [1, 13, 64, 1 << 20])
def test_a_bad_row_is_named_by_its_line_whatever_the_chunks(tmp_path, chunk):
    rows = TRAIN_ROWS[:6] + ["", "0002b,verification,/m/01,2"] + TRAIN_ROWS[6:]  # line 9 (a blank line 8)
    root = write_dataset(tmp_path / "oi", train_rows=rows, crlf=chunk == 13)
    with pytest.raises(MlcoreError, match=r"imagelabels.csv', line 9: Confidence '2' is neither"):
        reader_mod.build_index(str(root / "oidv6-class-descriptions.csv"), str(root / "oidv6-classes-trainable.txt"),
                               str(root / "oidv6-train-annotations-human-imagelabels.csv"), chunk_bytes=chunk)


@pytest.mark.parametrize("bad", [
    ("0001a,verification,/m/99,1", "0001a,verification,/m/01,7", r"line 2: LabelName '/m/99' is not in"),
    (",verification,/m/01,1", "0001a,verification,/m/01,7", r"line 2: empty ImageID"),
    ("0001a,verification,/m/01,5", "0001a,verification,/m/01", r"line 2: Confidence '5' is neither"),
    ("0001a,verification,/m/01,1", "0001a,verification,/m/99", r"line 3: expected 4 comma-separated fields"),
])
def test_of_several_bad_rows_the_first_is_named_whatever_the_chunks(tmp_path, bad):
    first, second, message = bad
    root = write_dataset(tmp_path / "oi", train_rows=[first, second])
    for chunk in (1, 1 << 20):
        with pytest.raises(MlcoreError, match=rf"imagelabels.csv', {message}"):
            reader_mod.build_index(str(root / "oidv6-class-descriptions.csv"), str(root / "oidv6-classes-trainable.txt"),
                                   str(root / "oidv6-train-annotations-human-imagelabels.csv"), chunk_bytes=chunk)


def test_missing_files_are_named(oi):
    with pytest.raises(MlcoreError, match=r"labels file .*test-annotations-human-imagelabels.csv' does not exist"):
        mlcore.create("dataset", "openimages", root=str(oi), split="test")
    with pytest.raises(MlcoreError, match=r"labels file .*mine.csv' does not exist"):
        mlcore.create("dataset", "openimages", root=str(oi), split="train", train_labels="mine.csv")
    (oi / "oidv6-classes-trainable.txt").write_text("/m/03\n/m/77\n")
    with pytest.raises(MlcoreError, match=r"oidv6-classes-trainable.txt', line 2: LabelName '/m/77' is not in"):
        mlcore.create("dataset", "openimages", root=str(oi), split="train")


@pytest.mark.parametrize("block", [None, 1, 120])  # the whole matrix at once; one label; two labels per block
def test_sparse_average_precision_matches_the_map_metric(block, monkeypatch):
    if block is not None:  # the map metric ranks a block of labels at a time: the blocks must not show
        from mlcore_builtins.metrics import metrics as metrics_mod

        monkeypatch.setattr(metrics_mod, "BLOCK_ENTRIES", block)
    rng = np.random.default_rng(0)
    n, c = 60, 7
    targets = rng.choice([-1, 0, 1], size=(n, c), p=[0.5, 0.3, 0.2]).astype(np.int8)
    scores = np.round(rng.random((n, c)), 1).astype(np.float32)  # ties on purpose
    known = targets >= 0
    offsets = np.r_[0, np.cumsum(known.sum(1))]
    rows, cols = np.nonzero(known)
    for interpolated in (True, False):
        ap = average_precision_known(scores, offsets, cols, targets[rows, cols] == 1, c, interpolated)
        metric = mlcore.create("metric", "map", num_classes=c, interpolated=interpolated)
        metric.update(torch.from_numpy(scores), torch.from_numpy(targets))  # int8, as the engine hands them
        ref = [np.nan if v is None else v for v in metric.compute()["ap_list"]]
        np.testing.assert_allclose(ap, ref, atol=1e-9)


def test_training_with_a_missing_image_warns_and_completes(oi, tmp_path):
    (oi / "train" / "0002b.jpg").unlink()
    cfg = tiny_config(tmp_path / "run", dataset={"name": "openimages", "root": str(oi)},
                      data={"scale_size": 32, "crop_size": 32, "train_split": "train", "val_split": "validation"})
    cfg["train"] = {**cfg["train"], "epochs": 1, "batch_size": 4}
    exp = mlcore.build(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = exp.fit()
    assert any("0002b.jpg" in str(w.message) or "unreadable training image" in str(w.message) for w in caught)
    assert "mAP" in result
    assert exp.label_info.counts.tolist() == [2, 2, 1, 0]


def test_prepare_summarizes_the_sparse_splits_without_a_dense_matrix(oi, monkeypatch, capsys):
    """prepare (and analyze) count from the sparse labels: never a dense N×C matrix (the
    train split's would be 86 GB), the same figures as counting the dense targets."""
    from mlcore.cli.main import main
    from mlcore.data.stats import positives_per_class, positives_per_image
    from mlcore_builtins.openimages.dataset import SparseTargets

    ds = mlcore.create("dataset", "openimages", root=str(oi), split="train")
    want = (TRAIN_TARGETS > 0)
    np.testing.assert_array_equal(positives_per_image(ds), want.sum(1))
    np.testing.assert_array_equal(positives_per_class(ds), want.sum(0))

    def refuse(self, dtype=None, copy=None):
        raise AssertionError("a dense targets matrix was made")

    monkeypatch.setattr(SparseTargets, "__array__", refuse)
    assert main(["prepare", "openimages", "--root", str(oi), "--splits", "train,validation"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["train"])
    per = want.sum(1)
    assert row.split()[1:] == [str(len(per)), f"{per.mean():.2f}", str(int((per == 0).sum()))]
