"""``mlcore calibrate``: per-class thresholds, exact against a brute-force search, and the
command end to end on a tiny trained run."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

from conftest import run_cli, run_main, tiny_config, write_yaml
from mlcore import calibration
from mlcore.calibration import calibrate, check_targets, parse_objective
from mlcore.errors import MlcoreError

OBJECTIVES = ["f1", "precision:0.5", "precision:0.8", "precision:1", "recall:0.5", "recall:0.75", "recall:1"]


# -- the brute force: every distinct score tried, in exact fractions ------------------------

def _rank(kind: str, target: Fraction | None, tp: int, pp: int, npos: int):
    """The objective's ranking value at a cut (None: infeasible), in exact fractions."""
    if kind == "f1":
        return Fraction(2 * tp, pp + npos)
    if kind == "precision":
        return Fraction(tp) if Fraction(tp, pp) >= target else None
    return Fraction(tp, pp) if Fraction(tp, npos) >= target else None


def _brute(scores: np.ndarray, pos: np.ndarray, obj: str):
    """``(threshold, tp, pp)`` the rule picks among all distinct scores, or None when no
    threshold qualifies (or there is no positive). Ties in the ranking: the highest
    threshold, except recall:R (the lowest: more positives at equal precision)."""
    o = parse_objective(obj)
    target = None if o.target is None else Fraction(obj.split(":")[1])
    npos = int(pos.sum())
    if npos == 0:
        return None
    best = None
    for t in sorted(set(scores.tolist()), reverse=True):  # highest first
        above = scores >= t
        tp, pp = int((above & pos).sum()), int(above.sum())
        value = _rank(o.kind, target, tp, pp, npos)
        if value is None:
            continue
        if best is None or value > best[0] or (o.kind == "recall" and value == best[0]):
            best = (value, t, tp, pp)
    return None if best is None else best[1:]


def _brute_all(s: np.ndarray, t: np.ndarray, obj: str):
    known = (t >= 0) & ~np.isnan(s)
    per_class = [_brute(s[known[:, j], j], t[known[:, j], j] > 0, obj) for j in range(s.shape[1])]
    pooled = _brute(s[known], t[known] > 0, obj)
    if pooled is None:
        pooled = _brute(s[known], t[known] > 0, "f1")
    return per_class, pooled


def _random_case(rng, n: int, c: int, decimals: int, negative: bool = False):
    s = np.round(rng.random((n, c)), decimals)  # rounded: many ties
    t = (rng.random((n, c)) < rng.uniform(0.1, 0.6)).astype(np.int64)
    s = np.clip(s + 0.2 * t * rng.random((n, c)), 0, 1).round(decimals)  # positives score a bit higher
    t[rng.random((n, c)) < 0.15] = -1  # unknown entries
    t[:, 0] = np.where(t[:, 0] > 0, 0, t[:, 0])  # a class without positives
    if negative:
        return (s - 0.5).astype(np.float64), t  # the argsort path
    return s.astype(np.float32), t  # the packed-key path


@pytest.mark.parametrize("block", [calibration.BLOCK_ENTRIES, 7])
@pytest.mark.parametrize("negative", [False, True])
def test_matches_brute_force_on_tied_scores(monkeypatch, block, negative):
    monkeypatch.setattr(calibration, "BLOCK_ENTRIES", block)  # 7: classes and pooled entries in pieces
    rng = np.random.default_rng(11 + negative)
    for trial in range(12):
        s, t = _random_case(rng, int(rng.integers(5, 40)), int(rng.integers(2, 6)), int(rng.integers(1, 3)),
                            negative)
        if not (t > 0).any():
            continue
        for obj in OBJECTIVES:
            cal = calibrate(s, t, obj)
            per_class, pooled = _brute_all(s, t, obj)
            assert cal.global_threshold == pooled[0], (trial, obj)
            for j, want in enumerate(per_class):
                if want is None:
                    assert cal.fallback[j] and cal.thresholds[j] == cal.global_threshold, (trial, obj, j)
                else:
                    got = (cal.thresholds[j], cal.tp[j], cal.pp[j])
                    assert not cal.fallback[j] and got == want, (trial, obj, j, got, want)
            # the thresholds are scores: `score >= t` gives back exactly the counts reported
            known = t >= 0
            above = known & (s >= cal.thresholds[None, :])
            assert (above.sum(0) == cal.pp).all() and ((above & (t > 0)).sum(0) == cal.tp).all()


def test_ties_are_one_threshold_and_equal_f1_takes_the_higher():
    # 0.5 twice, one positive and one negative: no cut can split them
    cal = calibrate(np.array([[0.9], [0.5], [0.5], [0.1]], np.float32), np.array([[1], [1], [0], [0]]))
    assert cal.thresholds[0] == 0.5 and (cal.tp[0], cal.pp[0]) == (2, 3)
    assert cal.f1[0] == pytest.approx(0.8)
    # F1 2/3 at 0.9 (1 of 1 predicted) and at 0.3 (2 of 4): the higher threshold
    cal = calibrate(np.array([[0.9], [0.7], [0.5], [0.3]], np.float32), np.array([[1], [0], [0], [1]]))
    assert cal.thresholds[0] == np.float32(0.9) and (cal.tp[0], cal.pp[0]) == (1, 1)


def test_precision_and_recall_targets():
    s = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], np.float32)[:, None]
    t = np.array([1, 1, 0, 1, 0, 0, 1, 0])[:, None]
    p = calibrate(s, t, "precision:0.75")  # 3 of 4 at 0.7; 0.6 and below fall under 0.75
    assert p.thresholds[0] == np.float32(0.7) and (p.tp[0], p.pp[0]) == (3, 4)
    full = calibrate(s, t, "precision:1")  # the highest cut with the most recall at precision 1
    assert full.thresholds[0] == np.float32(0.9) and (full.tp[0], full.pp[0]) == (2, 2)
    r = calibrate(s, t, "recall:0.75")  # 0.7 reaches 3 of 4 positives at precision 3/4
    assert r.thresholds[0] == np.float32(0.7) and r.recall[0] == 0.75 and r.precision[0] == 0.75
    everything = calibrate(s, t, "recall:1")
    assert everything.thresholds[0] == np.float32(0.4) and everything.recall[0] == 1


def test_fallbacks_unknowns_and_nan_scores():
    rng = np.random.default_rng(5)
    s = rng.random((30, 4)).astype(np.float32)
    t = (rng.random((30, 4)) < 0.4).astype(np.int64)
    t[:, 1] = 0  # no positive
    t[:, 2] = -1  # nothing known
    t[0, 3], s[0, 3] = 0, 1.0  # the top score of class 3 is a negative: precision 1 is out of reach
    t[1, 0], s[1, 0] = 1, 1.0  # class 0's is a positive: precision 1 at 1.0 at least
    cal = calibrate(s, t, "precision:1")
    assert list(cal.fallback) == [False, True, True, True]
    assert (cal.thresholds[1:] == cal.global_threshold).all() and cal.support[2] == 0 and cal.known[2] == 0
    assert np.isnan(cal.recall[1]) and cal.tp[1] == 0
    # unknown entries and NaN scores are left out: adding them changes nothing
    extra_s = np.vstack([s, np.full((3, 4), 0.999, np.float32), np.full((2, 4), np.nan, np.float32)])
    extra_t = np.vstack([t, -np.ones((3, 4), np.int64), np.ones((2, 4), np.int64)])
    for obj in ("f1", "recall:0.5", "precision:1"):
        a, b = calibrate(s, t, obj), calibrate(extra_s, extra_t, obj)
        assert np.array_equal(a.thresholds, b.thresholds) and np.array_equal(a.fallback, b.fallback)
        assert np.array_equal(a.tp, b.tp) and np.array_equal(a.pp, b.pp) and a.global_threshold == b.global_threshold


def test_unreachable_everywhere_falls_back_to_pooled_f1():
    s = np.array([[0.9, 0.9], [0.8, 0.2]], np.float32)
    t = np.array([[0, 0], [1, 1]])  # a negative on top everywhere: precision 1 nowhere
    cal = calibrate(s, t, "precision:1")
    assert cal.fallback.all() and str(cal.global_objective) == "f1" and str(cal.objective) == "precision:1.0"


def test_objectives_parse_or_fail_with_one_message():
    assert parse_objective(" F1 ") == parse_objective("f1")
    assert str(parse_objective("precision:.9")) == "precision:0.9" and parse_objective("recall:1").target == 1
    for bad in ("x", "f2", "precision", "precision:", "precision:0", "recall:1.5", "recall:-1", "recall:nan",
                "precision:0.9:1", "accuracy:0.5"):
        with pytest.raises(MlcoreError) as info:
            parse_objective(bad)
        assert str(info.value) == (f"Unknown value {bad!r} for argument --objective. Valid values are "
                                   f"f1, precision:P, recall:R (0 < P, R <= 1)")


def test_targets_nothing_can_be_calibrated_on():
    with pytest.raises(MlcoreError, match="no known labels"):
        check_targets(-np.ones((4, 2)))
    with pytest.raises(MlcoreError, match="no positive label"):
        calibrate(np.ones((4, 2), np.float32), np.zeros((4, 2)))
    with pytest.raises(MlcoreError, match="no known labels"):  # the only known entries have NaN scores
        calibrate(np.array([[np.nan], [0.5]], np.float32), np.array([[1], [-1]]))


# -- the command --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained through the CLI (in this process: torch is imported once)."""
    from mlcore.cli.main import main

    tmp = tmp_path_factory.mktemp("calibrate")
    cfg = tiny_config(tmp / "run")
    cfg["train"] = {**cfg["train"], "epochs": 1}
    cfg["dataset"] = {**cfg["dataset"], "num_train": 16}
    cfg["train"]["batch_size"] = 16  # one step: the weights only need to exist
    path = write_yaml(tmp / "tiny.yaml", cfg)
    assert main(["train", str(path)]) == 0
    return tmp, path


_main = run_main  # mlcore in this process: (exit code, stdout, stderr)


def test_calibrate_writes_thresholds_beside_the_checkpoint(trained, capsys):
    from mlcore.weights import _checksum_of, safe_load

    tmp, cfg = trained
    best = tmp / "run" / "checkpoints" / "best.pt"
    code, out, err = _main(capsys, "calibrate", cfg)
    assert code == 0, err
    result = json.loads((best.parent / "thresholds.json").read_text())
    held = safe_load(best)
    assert result["classes"] == list(held["classes"]) and len(result["thresholds"]) == len(result["classes"])
    assert result["objective"] == "f1" and result["split"] == "val" and result["checkpoint"] == str(best)
    assert result["checkpoint_sha256"] == _checksum_of(str(best))[1]
    assert (result["step"], result["epoch"]) == (held["step"], held["epoch"])
    assert set(result["per_class"]) == set(result["classes"])
    for c, th in zip(result["classes"], result["thresholds"]):
        row = result["per_class"][c]
        assert set(row) == {"threshold", "precision", "recall", "f1", "support"} and row["threshold"] == th
    assert set(result["fallback_classes"]) <= set(result["classes"]) and result["global_threshold"] is not None
    assert "threshold  precision" in out and f"wrote {best.parent / 'thresholds.json'}" in out

    # another checkpoint, another folder, another objective
    other = tmp / "other"
    other.mkdir()
    shutil.copy(tmp / "run" / "checkpoints" / "last.pt", other / "last.pt")
    code, out, err = _main(capsys, "calibrate", cfg, "--checkpoint", other / "last.pt",
                           "--objective", "precision:0.9", "--set", "train.eval_batch_size=4")
    assert code == 0, err
    result = json.loads((other / "thresholds.json").read_text())
    assert result["objective"] == "precision:0.9" and result["checkpoint"] == str(other / "last.pt")
    for c in result["fallback_classes"]:
        assert result["per_class"][c]["threshold"] == result["global_threshold"]
    for c in set(result["classes"]) - set(result["fallback_classes"]):
        assert result["per_class"][c]["precision"] >= 0.9


def test_calibrate_bad_inputs_exit_2_with_one_message(trained, capsys):
    import torch

    tmp, cfg = trained
    proc = run_cli("calibrate", cfg, "--objective", "x")  # a real process: exit status, no traceback
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("mlcore: error: Unknown value 'x' for argument --objective. "
                                   "Valid values are f1, precision:P, recall:R (0 < P, R <= 1)")
    code, _, err = _main(capsys, "calibrate", cfg, "--objective", "recall:0")
    assert code == 2 and "Unknown value 'recall:0'" in err

    # a checkpoint trained on other labels (same number: the weights would load)
    held = torch.load(tmp / "run" / "checkpoints" / "best.pt", weights_only=True)
    held["classes"] = ["dark " + held["classes"][0]] + held["classes"][1:]
    folder = tmp / "relabelled"
    folder.mkdir()
    torch.save(held, folder / "best.pt")
    code, _, err = _main(capsys, "calibrate", cfg, "--checkpoint", folder / "best.pt")
    assert code == 2 and "other labels" in err and "Traceback" not in err
    assert not (folder / "thresholds.json").exists()

    # the file cannot be written: named in the error
    blocked = tmp / "blocked"
    blocked.mkdir()
    shutil.copy(tmp / "run" / "checkpoints" / "best.pt", blocked / "best.pt")
    (blocked / "thresholds.json").mkdir()
    code, _, err = _main(capsys, "calibrate", cfg, "--checkpoint", blocked / "best.pt")
    assert code == 2 and str(blocked / "thresholds.json") in err

    code, _, err = _main(capsys, "calibrate", cfg, "--checkpoint", tmp / "nope.pt")
    assert code == 2 and "does not exist" in err
