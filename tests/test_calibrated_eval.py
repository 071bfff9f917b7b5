"""``evaluate`` with calibrated thresholds (``calibrated_*`` beside ``threshold_*``), the
warning when they were fitted on the evaluated split, and honest held-out calibration data:
``data.calib_split`` and ``data.calib_holdout`` (the train split's ``calib`` part)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_main, tiny_config, write_yaml
from mlcore.errors import MlcoreError

NUM_TRAIN, FRACTION = 24, 0.25


def _config(tmp, **data) -> dict:
    cfg = tiny_config(tmp / "run")
    cfg["dataset"] = {**cfg["dataset"], "num_train": NUM_TRAIN}
    cfg["data"] = {**cfg["data"], **data}
    cfg["train"] = {**cfg["train"], "epochs": 1}
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run trained with a quarter of its train split kept aside (in this process)."""
    from mlcore.cli.main import main

    tmp = tmp_path_factory.mktemp("calibrated")
    path = write_yaml(tmp / "tiny.yaml", _config(tmp, calib_holdout=FRACTION))
    assert main(["train", str(path)]) == 0
    return tmp, path


_main = run_main  # mlcore in this process: (exit code, stdout, stderr)


def _prf_numpy(pred: np.ndarray, targets: np.ndarray) -> dict:
    """The seed's CP/CR/CF1/OP/OR/OF1, written out in numpy: unknown (-1) entries count
    neither as predictions nor as ground truth; a 0/0 counts 0."""
    known = targets >= 0
    pred = pred & known
    pos = targets > 0
    nc, npred, ng = (pred & pos).sum(0), pred.sum(0), pos.sum(0)
    cp = np.mean([a / b if b else 0.0 for a, b in zip(nc, npred)])
    cr = np.mean([a / b if b else 0.0 for a, b in zip(nc, ng)])
    op = nc.sum() / npred.sum() if npred.sum() else 0.0
    orr = nc.sum() / ng.sum() if ng.sum() else 0.0

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    return {"cp": cp, "cr": cr, "cf1": f1(cp, cr), "op": op, "or": orr, "of1": f1(op, orr)}


# -- the metric's counting, reused -----------------------------------------------------------

def test_prf_metric_at_per_class_thresholds_matches_numpy():
    import torch

    import mlcore

    rng = np.random.default_rng(5)
    scores = rng.random((50, 6)).astype(np.float32)
    targets = (rng.random((50, 6)) < 0.4).astype(np.int8)
    targets[rng.random((50, 6)) < 0.2] = -1  # unknown entries, left out
    targets[:, 5] = 0  # a class never present
    thr = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2])
    thr[2], targets[7, 2] = scores[7, 2], 1  # a score equal to its threshold is predicted (>=)
    m = mlcore.create("metric", "prf", num_classes=6)
    m.update(torch.from_numpy(scores[:20]), torch.from_numpy(targets[:20]))
    m.update(torch.from_numpy(scores[20:]), torch.from_numpy(targets[20:]))
    got = m.at_thresholds(thr)
    want = _prf_numpy(scores >= thr[None, :], targets)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    # the fixed threshold through the same function gives compute()'s threshold_* figures
    fixed = m.compute()
    assert all(fixed[f"threshold_{k}"] == pytest.approx(v, abs=1e-6)
               for k, v in _prf_numpy(scores > 0.5, targets).items())
    with pytest.raises(ValueError, match="expected 6 thresholds"):
        m.at_thresholds(thr[:5])
    empty = mlcore.create("metric", "prf", num_classes=6)
    assert all(v != v for v in empty.at_thresholds(thr).values())  # nothing evaluated: NaN


# -- held-out calibration data -------------------------------------------------------------

def test_calib_holdout_keeps_a_deterministic_disjoint_part_aside(run, tmp_path):
    import mlcore

    tmp, path = run
    full = mlcore.build(_config(tmp_path)).train_set
    a, b = mlcore.build(path), mlcore.build(path)
    held = round(NUM_TRAIN * FRACTION)
    assert len(full) == NUM_TRAIN and len(a.train_set) == NUM_TRAIN - held
    calib = a.split_set("calib")
    assert len(calib) == held and calib.classes == full.classes
    assert set(calib.images).isdisjoint(a.train_set.images)
    assert sorted(calib.images + a.train_set.images) == sorted(full.images)
    assert b.train_set.images == a.train_set.images and b.split_set("calib").images == calib.images
    # the rows of targets follow their images; an item is the base split's item
    rows = {p: t.tolist() for p, t in zip(full.images, np.asarray(full.targets))}
    assert [rows[p] for p in calib.images] == np.asarray(calib.targets).tolist()
    j = full.images.index(calib.images[1])
    assert np.array_equal(calib[1][1].numpy(), full[j][1].numpy())
    # the model's label statistics, and `--split train`, see the kept part only
    assert a.label_info.num_images == NUM_TRAIN - held
    assert a.split_set("train").images == a.train_set.images
    # another seed draws another part; no holdout: `calib` is no split of shapes
    other = mlcore.build(path, ["train.seed=1"])
    assert other.split_set("calib").images != calib.images and len(other.split_set("calib")) == held
    with pytest.raises(MlcoreError):
        mlcore.build(_config(tmp_path)).split_set("calib")


def test_holdout_needs_dense_targets_and_two_images():
    from mlcore.data.holdout import holdout_indices, split_off

    class Sparse:
        classes = ["a"]

        def __len__(self):
            return 10

    with pytest.raises(MlcoreError, match="no dense targets matrix.*data.calib_split"):
        split_off(Sparse(), 0.2, 0, held=True)
    with pytest.raises(MlcoreError, match="at least 2"):
        holdout_indices(1, 0.5, 0)
    kept, held = holdout_indices(3, 0.01, 7)  # at least one aside, at least one kept
    assert len(held) == 1 and len(kept) == 2


@pytest.mark.parametrize("setting, words", [
    ("data.calib_holdout=0.6", "data.calib_holdout: must be a fraction of the train split in (0, 0.5]"),
    ("data.calib_holdout=-0.1", "data.calib_holdout: must be a fraction"),
    ("data.calib_split=train", "data.calib_split: must name a labelled split other than the train split"),
])
def test_bad_calibration_settings_are_config_errors(run, capsys, setting, words):
    _, path = run
    code, _, err = _main(capsys, "check", path, "--set", setting)
    assert code == 2 and words in err and "Traceback" not in err


# -- evaluate with calibrated thresholds ---------------------------------------------------

def test_calibrate_defaults_to_the_held_out_split_and_evaluate_scores_with_it(run, capsys):
    import mlcore

    tmp, path = run
    ckpt_dir = tmp / "run" / "checkpoints"
    code, out, err = _main(capsys, "calibrate", path)  # data.calib_holdout: fitted on `calib`
    assert code == 0, err
    fitted = json.loads((ckpt_dir / "thresholds.json").read_text())
    assert fitted["split"] == "calib" and fitted["num_images"] == round(NUM_TRAIN * FRACTION)

    code, out, err = _main(capsys, "evaluate", path, "--out", tmp / "eval_val")
    assert code == 0, err
    result = json.loads((tmp / "eval_val" / "result.json").read_text())
    scores = np.load(tmp / "eval_val" / "scores.npy")
    targets = np.asarray(mlcore.build(path).split_set("val").targets)
    thr = np.array(fitted["thresholds"])
    want = _prf_numpy(scores >= thr[None, :], targets)
    for k, v in want.items():
        assert result[f"calibrated_{k}"] == pytest.approx(v, abs=1e-9), k
    for k, v in _prf_numpy(scores > 0.5, targets).items():  # the fixed ones, untouched, beside them
        assert result[f"threshold_{k}"] == pytest.approx(v, abs=1e-6), k
    assert result["thresholds"] == {"path": str(ckpt_dir / "thresholds.json"), "objective": "f1",
                                    "split": "calib"}
    assert result["calibrated_on_evaluated_split"] is False
    assert "calibrated" in out and "optimistic" not in out

    # evaluated on the split they were fitted on: said in result.json and in the printout
    code, out, err = _main(capsys, "evaluate", path, "--split", "calib", "--out", tmp / "eval_calib")
    assert code == 0, err
    result = json.loads((tmp / "eval_calib" / "result.json").read_text())
    assert result["calibrated_on_evaluated_split"] is True and result["split"] == "calib"
    assert "optimistic" in out and "data.calib_split" in out and "data.calib_holdout" in out


def own_checkpoint(run, tmp_path):
    """The run's config, and a copy of its best.pt in a folder of the test's own (a
    calibration writes its thresholds file beside the checkpoint): (config, folder, copy)."""
    tmp, path = run
    folder = tmp_path / "ckpt"
    folder.mkdir()
    ckpt = folder / "best.pt"
    shutil.copy(tmp / "run" / "checkpoints" / "best.pt", ckpt)
    return path, folder, ckpt


def test_calib_split_is_the_default_of_calibrate_and_evaluating_it_is_flagged(run, capsys, tmp_path):
    path, folder, ckpt = own_checkpoint(run, tmp_path)
    code, _, err = _main(capsys, "calibrate", path, "--checkpoint", ckpt,
                         "--set", "data.calib_split=val")
    assert code == 0, err
    assert json.loads((folder / "thresholds.json").read_text())["split"] == "val"
    code, out, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--out", tmp_path / "e")
    assert code == 0, err
    result = json.loads((tmp_path / "e" / "result.json").read_text())
    assert result["calibrated_on_evaluated_split"] is True and result["thresholds"]["split"] == "val"
    assert "warning: the calibrated figures are optimistic" in out

    # --thresholds none: no calibrated figures at all
    code, out, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--out", tmp_path / "n",
                           "--thresholds", "none")
    assert code == 0, err
    result = json.loads((tmp_path / "n" / "result.json").read_text())
    assert not any(k.startswith("calibrated") for k in result) and "thresholds" not in result
    assert "threshold_cf1" in result and "optimistic" not in out


def test_wrong_thresholds_files_are_one_clear_error(run, capsys, tmp_path):
    import mlcore
    from mlcore.weights import _checksum_of, safe_load

    path, folder, ckpt = own_checkpoint(run, tmp_path)
    classes = list(safe_load(ckpt)["classes"])
    good = {"classes": classes, "thresholds": np.linspace(0.05, 0.6, len(classes)).tolist(),
            "objective": "f1", "split": "val", "checkpoint": str(ckpt),
            "checkpoint_sha256": _checksum_of(str(ckpt))[1]}

    # other classes, beside the checkpoint or named: exit 2, the file named, nothing written
    other = {**good, "classes": [c + "_x" if i == 0 else c for i, c in enumerate(good["classes"])]}
    (folder / "thresholds.json").write_text(json.dumps(other))
    code, _, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--out", tmp_path / "e1")
    assert code == 2 and "calibrated for other classes" in err and str(folder / "thresholds.json") in err
    assert "Traceback" not in err and not (tmp_path / "e1" / "result.json").exists()
    named = tmp_path / "named.json"
    named.write_text(json.dumps(other))
    code, _, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--thresholds", named,
                         "--out", tmp_path / "e2")
    assert code == 2 and "calibrated for other classes" in err and str(named) in err

    # the classes in another order: reordered to the checkpoint's
    perm = list(reversed(range(len(good["classes"]))))
    shuffled = {**good, "classes": [good["classes"][j] for j in perm],
                "thresholds": [good["thresholds"][j] for j in perm]}
    (folder / "thresholds.json").write_text(json.dumps(shuffled))
    code, _, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--out", tmp_path / "e3")
    assert code == 0, err
    result = json.loads((tmp_path / "e3" / "result.json").read_text())
    scores = np.load(tmp_path / "e3" / "scores.npy")
    targets = np.asarray(mlcore.build(path).split_set("val").targets)
    for k, v in _prf_numpy(scores >= np.array(good["thresholds"])[None, :], targets).items():
        assert result[f"calibrated_{k}"] == pytest.approx(v, abs=1e-9), k

    # calibrated for another checkpoint: named, an error; merely beside it, a note and no figures
    foreign = {**good, "checkpoint_sha256": "0" * 64, "checkpoint": "elsewhere/best.pt"}
    named.write_text(json.dumps(foreign))
    code, _, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--thresholds", named,
                         "--out", tmp_path / "e5")
    assert code == 2 and "calibrated for another checkpoint" in err
    (folder / "thresholds.json").write_text(json.dumps(foreign))
    code, out, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--out", tmp_path / "e6")
    assert code == 0, err
    assert "calibrated for another checkpoint" in out
    assert "calibrated_cf1" not in json.loads((tmp_path / "e6" / "result.json").read_text())

    # a named file that is not there
    code, _, err = _main(capsys, "evaluate", path, "--checkpoint", ckpt, "--thresholds",
                         tmp_path / "missing.json")
    assert code == 2 and "no thresholds file" in err
