"""Per-class decision thresholds, chosen exactly from a labelled split's scores.

A threshold ``t`` predicts a label when its score is ``>= t``. Between two distinct score
values nothing changes, so the only thresholds worth trying are the distinct scores
themselves: each is tried, none is interpolated (no grid), and tied scores are one
threshold — a prediction cannot tell tied samples apart, so the result never depends on
their order. The threshold reported is the score at the chosen cut itself (not a
midpoint to the next lower score), so ``score >= t`` reproduces exactly the precision and
recall reported for the calibration split.

Each label's known scores are sorted once, best first (unknown targets, -1, and NaN scores
— images skipped as unreadable — are left out, as the ``map`` and ``prf`` metrics do);
cumulative sums then give, at every cut, the positives ``tp`` and the predictions ``pp``
at or above it, from which precision ``tp/pp``, recall ``tp/npos`` and F1
``2·tp/(pp+npos)`` follow exactly (all integer counts; ratios compared as correctly
rounded doubles, so equal ratios tie exactly). Labels are handled a block at a time, all
labels of a block at once.

Objectives (:func:`parse_objective`), each never picking a point that another candidate
beats on both precision and recall:

* ``f1``: the highest F1; among equal F1, the highest threshold.
* ``precision:P``: the highest recall among thresholds whose precision is at least P;
  among those, the highest threshold (fewest false positives, so the best precision).
* ``recall:R``: the best precision among thresholds whose recall is at least R; among
  equal precision, the lowest threshold (the most positives found).

A label without a known positive, or whose target no threshold reaches (precision:P),
falls back to one global threshold: the same objective applied to every known entry of
every label pooled (micro-averaged counts, chosen the same exact way), or, when even the
pooled entries cannot reach the target, the pooled (micro) F1 optimum.

numpy only: importing this module is light.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import MlcoreError

#: how many score entries one block holds: labels are calibrated this many entries at a
#: time, bounding the temporary arrays (a few times this many 8-byte values)
BLOCK_ENTRIES = 1 << 22
OBJECTIVE_HELP = "f1, precision:P, recall:R (0 < P, R <= 1)"
_UNKNOWN_KEY = np.uint32(0xFFFFFFFF)


@dataclass(frozen=True)
class Objective:
    """What a threshold is chosen for: ``kind`` f1, precision or recall, and the
    precision or recall ``target`` to reach (None for f1)."""

    kind: str
    target: float | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target!r}"


def parse_objective(text: str | Objective) -> Objective:
    """``f1``, ``precision:P`` or ``recall:R`` (0 < P, R <= 1) as an :class:`Objective`;
    anything else is one :class:`MlcoreError` listing what is valid."""
    if isinstance(text, Objective):
        return text
    bad = MlcoreError(f"Unknown value {text!r} for argument --objective. Valid values are {OBJECTIVE_HELP}")
    word = str(text).strip().lower()
    if word == "f1":
        return Objective("f1")
    kind, sep, value = word.partition(":")
    if kind not in ("precision", "recall") or not sep:
        raise bad
    try:
        target = float(value)
    except ValueError:
        raise bad from None
    if not (math.isfinite(target) and 0 < target <= 1):
        raise bad
    return Objective(kind, target)


@dataclass
class Calibration:
    """The chosen thresholds and the counts at them, one entry per label.

    ``thresholds[c]``: predict label c when its score is ``>= thresholds[c]``.
    ``fallback[c]``: label c took ``global_threshold`` (no known positive, or its target
    unreachable). ``tp``/``pp``: true positives and predictions at the threshold on the
    calibration split; ``support``: known positives; ``known``: known entries.
    ``global_objective``: what the global threshold was chosen for (the objective, or
    ``f1`` where the pooled entries could not reach the target either).
    """

    thresholds: np.ndarray
    fallback: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    support: np.ndarray
    known: np.ndarray
    objective: Objective
    global_threshold: float
    global_objective: Objective

    @property
    def precision(self) -> np.ndarray:
        """tp/pp; NaN where nothing is predicted (undefined)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pp > 0, self.tp / np.maximum(self.pp, 1), np.nan)

    @property
    def recall(self) -> np.ndarray:
        """tp/support; NaN for a label without a known positive (undefined)."""
        return np.where(self.support > 0, self.tp / np.maximum(self.support, 1), np.nan)

    @property
    def f1(self) -> np.ndarray:
        """2·tp/(pp+support); NaN where there is neither a prediction nor a positive."""
        den = self.pp + self.support
        return np.where(den > 0, 2 * self.tp / np.maximum(den, 1), np.nan)


def check_targets(targets: np.ndarray, what: str = "the split") -> None:
    """Refuse targets nothing can be calibrated on: no known entry (every target -1, or
    no sample), or no positive at all. Cheap: callers check before scoring a split."""
    t = np.asarray(targets)
    if t.ndim != 2 or t.size == 0 or not bool((t >= 0).any()):
        raise MlcoreError(f"{what} has no known labels (every target is unknown, or there is no sample): "
                          f"thresholds are calibrated on a labelled split")
    if not bool((t > 0).any()):
        raise MlcoreError(f"{what} has no positive label: thresholds are calibrated on a split with positives")


def calibrate(scores: np.ndarray, targets: np.ndarray, objective: str | Objective = "f1") -> Calibration:
    """One threshold per column of ``scores`` (N×C) for ``targets`` (N×C: > 0 positive,
    0 negative, < 0 unknown and left out; a NaN score is left out too), chosen for
    ``objective`` as the module describes."""
    obj = parse_objective(objective)
    s = np.asarray(scores)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise MlcoreError(f"scores and targets must be N×C of one shape, got {s.shape} and {t.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    known = (t >= 0) & ~np.isnan(s)
    check_targets(np.where(known, t, -1))
    pos = (t > 0) & known
    n, c = s.shape
    npos = pos.sum(0).astype(np.int64)
    nknown = known.sum(0).astype(np.int64)

    packed = _packable(s, known)
    thresholds = np.empty(c, np.float64)
    tp = np.zeros(c, np.int64)
    pp = np.zeros(c, np.int64)
    ok = np.zeros(c, bool)
    sorted_keys = np.empty((c, n), np.uint32) if packed else None  # kept: the pooled sort starts from them
    rows = max(1, BLOCK_ENTRIES // max(n, 1))
    for lo in range(0, c, rows):
        hi = min(c, lo + rows)
        keys, kpos, decode = _sorted_desc(s[:, lo:hi].T, known[:, lo:hi].T, pos[:, lo:hi].T, packed)
        best, idx, btp, bpp = _scan(keys, kpos, None, 0, np.zeros(hi - lo, np.int64),
                                    npos[lo:hi], nknown[lo:hi], obj)
        good = (best > -np.inf) & (npos[lo:hi] > 0)
        safe = np.where(good, idx, 0)
        thresholds[lo:hi] = decode(keys[np.arange(hi - lo), safe])
        tp[lo:hi], pp[lo:hi], ok[lo:hi] = btp, bpp, good
        if packed:
            sorted_keys[lo:hi] = keys
        del keys, kpos

    # the pooled (micro) optimum: the fallback of classes that cannot be calibrated alone
    total = int(nknown.sum())
    if packed:  # the classes' sorted runs, merged: unknown keys (the largest) end up past `total`
        flat = sorted_keys.reshape(-1)
        flat.sort()
        gkeys = flat[:total].reshape(1, -1)
        gpos, gdecode = (gkeys & np.uint32(1)) == 0, _decode_keys
    else:
        gkeys, gpos, gdecode = _sorted_desc(s.reshape(1, -1), known.reshape(1, -1), pos.reshape(1, -1), False,
                                            pooled=True)
    gtotal, gknown = np.array([int(npos.sum())]), np.array([total])
    gobj = obj
    best, at = _choose_segmented(gkeys, gpos, gtotal, gknown, obj)
    if not best[0] > -np.inf:
        gobj = Objective("f1")
        best, at = _choose_segmented(gkeys, gpos, gtotal, gknown, gobj)
    global_threshold = float(gdecode(gkeys[0, at[0]]))
    del gkeys, gpos, sorted_keys

    fallback = ~ok
    if fallback.any():  # their counts at the global threshold, read off directly
        cols = np.flatnonzero(fallback)
        above = known[:, cols] & (s[:, cols] >= global_threshold)
        thresholds[cols] = global_threshold
        tp[cols] = (above & pos[:, cols]).sum(0)
        pp[cols] = above.sum(0)
    return Calibration(thresholds=thresholds, fallback=fallback, tp=tp, pp=pp, support=npos, known=nknown,
                       objective=obj, global_threshold=global_threshold, global_objective=gobj)


# -- sorting -------------------------------------------------------------------------------

def _decode_keys(keys: np.ndarray) -> np.ndarray:
    """The scores packed in uint32 keys ``~(((bits + 1) << 1) | positive)``, as float64."""
    bits = (np.uint32(0x7FFFFFFF) - (np.asarray(keys, np.uint32) >> np.uint32(1))) - np.uint32(1)
    return np.asarray(bits, np.uint32).view(np.float32).astype(np.float64)


def _decode_values(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float64)


def _packable(s: np.ndarray, known: np.ndarray) -> bool:
    """Whether every known score is a non-negative float32 value (probabilities: what a
    model gives), so that :func:`_sorted_desc` may pack it into a uint32 key."""
    if s.dtype not in (np.float16, np.float32) and not np.array_equal(s[known].astype(np.float32), s[known]):
        return False
    return bool(np.min(s, where=known, initial=np.inf) >= 0)


def _sorted_desc(s: np.ndarray, known: np.ndarray, pos: np.ndarray, packed: bool, pooled: bool = False):
    """Each row of ``s`` (R×L) sorted best first, unknown entries last, as ``(keys, pos,
    decode)``: keys compare equal exactly when the scores do (``_tie_values``), ``pos``
    flags the positives in that order, and ``decode(keys)`` gives back scores.

    ``packed`` (see :func:`_packable`): each score is packed with its positive flag into
    one uint32 key, ``~(((float32 bits + 1) << 1) | positive)``, and the keys sorted as
    plain integers — several times faster than an argsort and a gather; unknown entries
    get the largest key. Otherwise (negative scores, float64 values float32 cannot hold)
    the scores are argsorted. ``pooled`` (not packed): one row, unknown entries dropped.
    """
    if packed:
        # in the layout ``s`` comes in (a transposed view): only the finished keys are copied
        # row-contiguous, once
        f32 = np.where(known, s, 0).astype(np.float32, copy=False)
        f32 += np.float32(0)  # -0.0 becomes 0.0: one key for zero
        keys = f32.view(np.uint32)
        keys += np.uint32(1)
        keys <<= np.uint32(1)
        np.bitwise_or(keys, pos, out=keys, casting="unsafe")
        np.invert(keys, out=keys)
        np.putmask(keys, ~known, _UNKNOWN_KEY)
        keys = np.ascontiguousarray(keys)
        keys.sort(axis=1)
        return keys, (keys & np.uint32(1)) == 0, _decode_keys
    v = np.where(known, -s.astype(np.float64), np.nan)  # NaN sorts last
    if pooled:
        keep = known.reshape(-1)
        v, p = v.reshape(1, -1)[:, keep], pos.reshape(1, -1)[:, keep]
    else:
        p = pos
    v = np.ascontiguousarray(v)
    order = np.argsort(v, axis=1)
    vals = -np.take_along_axis(v, order, axis=1)
    return vals, np.take_along_axis(p, order, axis=1), _decode_values


def _tie_values(keys: np.ndarray) -> np.ndarray:
    """What decides ties: the score part of the keys (the flag bit dropped), or the
    scores themselves."""
    return keys >> np.uint32(1) if keys.dtype == np.uint32 else keys


# -- choosing --------------------------------------------------------------------------------

def _scan(keys: np.ndarray, pos: np.ndarray, after: np.ndarray | None, start: int, tp0: np.ndarray,
          npos: np.ndarray, nknown: np.ndarray, obj: Objective):
    """The best cut of each row of a block of sorted entries, for ``obj``.

    ``keys`` (R×L) are entries ``start`` … ``start+L-1`` of each row's best-first order,
    ``tp0`` the positives before them, ``after`` the tie value of the entry following the
    block (None: the block ends its rows). A cut is valid at the last entry of a tie
    group among the known ones. Returns per row ``(score, index, tp, pp)``: the objective's
    ranking value at the chosen cut (-inf: no valid cut reaches the target), its index in
    the row, and the counts there.
    """
    r, n = keys.shape
    small = start + n < 2**30  # counts (and pp + npos) fit int32: half the memory traffic of int64
    itype = np.int32 if small else np.int64
    tp = np.cumsum(pos, axis=1, dtype=itype)
    if tp0.any():
        tp += tp0.astype(itype)[:, None]
    pp = np.arange(start + 1, start + n + 1, dtype=itype)[None, :]
    v = _tie_values(keys)
    end = np.empty(keys.shape, bool)
    np.not_equal(v[:, :-1], v[:, 1:], out=end[:, :-1])
    end[:, -1] = True if after is None else v[:, -1] != after
    if (nknown < start + n).any():  # unknown entries (sorted last) end no cut
        end &= pp <= nknown[:, None]
    last = False
    with np.errstate(invalid="ignore", divide="ignore"):
        if obj.kind == "f1":  # tp/(pp+npos): half the F1, the same order and ties
            score = np.true_divide(tp, pp + npos.astype(itype)[:, None], dtype=np.float64)
        elif obj.kind == "precision":
            score = tp.astype(np.float64)
            end &= np.true_divide(tp, pp, dtype=np.float64) >= obj.target
        else:
            end &= (npos[:, None] > 0) & (np.true_divide(tp, np.maximum(npos, 1)[:, None], dtype=np.float64)
                                          >= obj.target)
            score = np.true_divide(tp, pp, dtype=np.float64)
            last = True  # equal precision: the lower threshold finds more positives
        np.putmask(score, ~end, -np.inf)
    if last:
        idx = n - 1 - np.argmax(score[:, ::-1], axis=1)
    else:
        idx = np.argmax(score, axis=1)
    rows = np.arange(r)
    return score[rows, idx], idx + start, tp[rows, idx].astype(np.int64), pp[0, idx].astype(np.int64)


def _choose_segmented(keys: np.ndarray, pos: np.ndarray, npos: np.ndarray, nknown: np.ndarray, obj: Objective):
    """:func:`_scan` over one long sorted row (the pooled entries) a block at a time,
    carrying the counts, so the temporaries stay block-sized; returns ``(score, index)``
    as one-element arrays."""
    total = keys.shape[1]
    best, at, tp0 = np.array([-np.inf]), np.array([0]), np.zeros(1, np.int64)
    for lo in range(0, total, BLOCK_ENTRIES):
        hi = min(total, lo + BLOCK_ENTRIES)
        p = pos[:, lo:hi]
        after = None if hi == total else _tie_values(keys[:, hi])
        score, idx, _, _ = _scan(keys[:, lo:hi], p, after, lo, tp0, npos, nknown, obj)
        better = score > best if obj.kind != "recall" else (score >= best) & (score > -np.inf)
        best, at = np.where(better, score, best), np.where(better, idx, at)
        tp0 = tp0 + p.sum(1)
    return best, at
