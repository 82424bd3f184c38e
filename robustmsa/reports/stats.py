"""Statistics of the report: paired tests over seeds, Holm correction, confidence intervals, and a
paired bootstrap over test samples computed from the stored per-sample predictions.

The bootstrap resamples test samples with replacement: replicate ``b`` gives every sample a count
``W[b, i]`` (a multinomial draw from an explicit seed), and every metric of
:func:`robustmsa.metrics.compute_metrics` is evaluated on the resampled set through sums
``W @ x`` of per-sample quantities (absolute errors, class agreements, confusion indicators,
centred moments). With ``W`` all ones the values equal ``compute_metrics`` up to floating-point
rounding (tests check 1e-12). The same ``W`` serves every model and grid point, so comparisons are
paired by sample. Everything is deterministic for a given seed.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from ..metrics import metric_keys

__all__ = [
    "holm",
    "seed_test",
    "mean_ci",
    "resample_counts",
    "weighted_metrics",
    "weighted_metrics_many",
    "bootstrap_compare",
    "SEED_TESTS",
]

FloatArray = NDArray[np.float64]
SEED_TESTS = ("ttest", "wilcoxon")


# ---------------------------------------------------------------------------- over seeds


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; nan stays nan and is not counted.

    With the m finite p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    (i, j from 1); ties keep their input order.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return out.tolist()
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[idx])))
        out[idx] = running
    return out.tolist()


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> FloatArray:
    """Differences ``a[s] - b[s]`` over the seeds both have with finite values, by ascending seed."""
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
    return np.array([float(a[s]) - float(b[s]) for s in seeds], dtype=np.float64)


def seed_test(a: Mapping[int, float], b: Mapping[int, float], test: str = "ttest") -> float:
    """Two-sided p-value of a paired test of ``a`` against ``b`` over their common seeds.

    ``ttest``: :func:`scipy.stats.ttest_rel`; ``wilcoxon``: :func:`scipy.stats.wilcoxon` (exact for
    small samples, zero differences dropped). nan with fewer than two pairs. Degenerate cases are
    decided without calling scipy: all differences 0 gives p = 1; identical non-zero differences
    (to 1e-12 relative: differences of rounded metrics, which scipy would reject as a catastrophic
    cancellation) give p = 0 for the t-test (infinite t statistic).
    """
    if test not in SEED_TESTS:
        raise ValueError(f"unknown seed test {test!r}; allowed: {', '.join(SEED_TESTS)}")
    return _seed_p(tuple(_paired(a, b).tolist()), test)


@functools.lru_cache(maxsize=4096)
def _seed_p(diffs: tuple[float, ...], test: str) -> float:
    """:func:`seed_test` of the paired differences ``diffs`` (a report tests the same pairs in
    several tables: each is computed once)."""
    d = np.array(diffs, dtype=np.float64)
    if d.size < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    if test == "ttest":
        if np.ptp(d) <= 1e-12 * np.max(np.abs(d)):  # identical up to rounding (e.g. 0.1 + 0.2 vs 0.3)
            return 0.0
        return float(stats.ttest_rel(d, np.zeros_like(d)).pvalue)
    nonzero = d[d != 0]
    return float(stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided").pvalue)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean; (nan, nan) with fewer than two values or any nan."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or not np.all(np.isfinite(v)):
        return float("nan"), float("nan")
    m = float(np.mean(v))
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * float(np.std(v, ddof=1)) / math.sqrt(v.size)
    return m - half, m + half


# ---------------------------------------------------------------------------- over samples


def resample_counts(n: int, replicates: int, seed: int) -> FloatArray:
    """``[replicates, n]`` bootstrap counts: row b says how often replicate b draws each sample."""
    if n < 1 or replicates < 1:
        raise ValueError(f"need n >= 1 and replicates >= 1, got n={n}, replicates={replicates}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _weighted_f1(n: FloatArray, tp: FloatArray, n_true: FloatArray, n_pred: FloatArray) -> FloatArray:
    """Weighted F1 of two classes from (weighted) confusion counts, as in robustmsa.metrics."""
    tn = n - n_true - n_pred + tp
    with np.errstate(invalid="ignore", divide="ignore"):
        den_neg = (n - n_true) + (n - n_pred)
        den_pos = n_true + n_pred
        f_neg = np.where(den_neg > 0, 2.0 * tn / np.where(den_neg > 0, den_neg, 1.0), 0.0)
        f_pos = np.where(den_pos > 0, 2.0 * tp / np.where(den_pos > 0, den_pos, 1.0), 0.0)
        return (f_neg * (n - n_true) + f_pos * n_true) / n


def _pearson(w: FloatArray, n: FloatArray, p: FloatArray, y: FloatArray) -> FloatArray:
    """Weighted Pearson correlation per replicate (``n``: the rows' sums of ``w``); nan where either
    side is constant. Its own product of ``w`` with the five moments: a product over more columns
    may sum in another order for small sizes (BLAS small-matrix kernels), and these sums are real."""
    if np.all(p == p[0]) or np.all(y == y[0]):
        return np.full(w.shape[0], np.nan)
    pc, yc = p - p.mean(), y - y.mean()
    sums = w @ np.column_stack([pc, yc, pc * pc, yc * yc, pc * yc])
    mp, my = sums[:, 0] / n, sums[:, 1] / n
    vp, vy = sums[:, 2] / n - mp * mp, sums[:, 3] / n - my * my
    cov = sums[:, 4] / n - mp * my
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vp * vy)
    return np.where((vp > 0) & (vy > 0), r, np.nan)


def _binary(s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Acc-2 and weighted F1 of a binary split from the weighted sums of its :func:`_binary_columns`."""
    n = s[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = s[:, 1] / n
    return acc, _weighted_f1(n, s[:, 2], s[:, 3], s[:, 4])


def _binary_columns(true_pos: NDArray[np.bool_], pred_pos: NDArray[np.bool_],
                    keep: NDArray[np.bool_] | None = None) -> list[NDArray[np.bool_]]:
    """Indicators of a binary split over the samples ``keep`` (default all): kept, agreement, true
    positive, positive truth, positive prediction."""
    k = np.ones_like(true_pos) if keep is None else keep
    return [k, k & (true_pos == pred_pos), k & true_pos & pred_pos, k & true_pos, k & pred_pos]


@dataclass(frozen=True)
class _Point:
    """One (pred, truth) pair's per-sample quantities: the real-valued ones (absolute error; the
    Pearson moments from ``p`` and ``y``) and the class indicators, whose weighted sums are counts."""

    p: FloatArray
    y: FloatArray
    accuracies: tuple[str, ...]  # metric names of the agreement indicators, in order
    binaries: tuple[tuple[str, str, bool], ...]  # (acc name, F1 name, has samples: else both nan)
    indicators: list[NDArray[np.bool_]]  # the agreements, then 5 per binary split with samples


def _mosi_point(p: FloatArray, y: FloatArray) -> _Point:
    agree = [np.round(np.clip(p, -b, b)) == np.round(np.clip(y, -b, b)) for b in (3, 2, 1)]
    cols = agree + _binary_columns(y >= 0, p >= 0)
    keep = y != 0
    if keep.any():
        cols += _binary_columns(y > 0, p > 0, keep)
    splits = (("has0_acc2", "has0_f1", True), ("non0_acc2", "non0_f1", bool(keep.any())))
    return _Point(p, y, ("acc7", "acc5", "acc3"), splits, cols)


_SIMS_EDGES = {2: [0.0], 3: [-0.1, 0.1], 5: [-0.7, -0.1, 0.1, 0.7]}


def _sims_point(p: FloatArray, y: FloatArray) -> _Point:
    p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)

    def cls(x: FloatArray, k: int) -> NDArray[np.intp]:
        return np.searchsorted(np.array(_SIMS_EDGES[k]), x, side="left")

    cols = [cls(p, k) == cls(y, k) for k in (3, 5)] + _binary_columns(cls(y, 2) == 1, cls(p, 2) == 1)
    return _Point(p, y, ("acc3", "acc5"), (("acc2", "f1", True),), cols)


def _classes(w: FloatArray, p: FloatArray, y: FloatArray) -> dict[str, FloatArray]:
    """Classification metrics of class indices under weights ``w`` [R, N] (per-class sums ``W @ onehot``):
    F1 averaged over the classes a replicate has in truth or prediction, as with all ones."""
    k = int(max(p.max(), y.max())) + 1
    true = (y[:, None] == np.arange(k)).astype(np.float64)
    hit = true * (p == y)[:, None]
    n_true, n_pred = w @ true, w @ (p[:, None] == np.arange(k)).astype(np.float64)
    tp, seen = w @ hit, (n_true + n_pred) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(seen, 2.0 * tp / np.where(seen, n_true + n_pred, 1.0), 0.0)
        out = {"weighted_f1": (f1 * n_true).sum(axis=1) / n_true.sum(axis=1),
               "accuracy": tp.sum(axis=1) / w.sum(axis=1),
               "macro_f1": f1.sum(axis=1) / seen.sum(axis=1)}
        out.update({f"class_acc_{c}": np.where(n_true[:, c] > 0, tp[:, c] / n_true[:, c], np.nan) for c in range(k)})
    return out


def _metrics_of(pt: _Point, w: FloatArray, n: FloatArray, counts: FloatArray) -> dict[str, FloatArray]:
    """Every metric of one point from the weighted counts of its indicators (``counts``)."""
    out = {"mae": w @ np.abs(pt.p - pt.y) / n, "corr": _pearson(w, n, pt.p, pt.y)}
    out.update({k: counts[:, j] / n for j, k in enumerate(pt.accuracies)})
    at = len(pt.accuracies)
    for acc_name, f1_name, present in pt.binaries:
        if present:
            out[acc_name], out[f1_name] = _binary(counts[:, at:at + 5])
            at += 5
        else:
            out[acc_name] = out[f1_name] = np.full(w.shape[0], np.nan)
    return out


#: points whose indicators are summed in one matrix product (bounds the memory of the product)
CHUNK_POINTS = 64


def weighted_metrics_many(points: Sequence[tuple[Sequence[float], Sequence[float]]], family: str,
                          weights: FloatArray) -> list[dict[str, FloatArray]]:
    """:func:`weighted_metrics` of many (pred, truth) pairs under the same ``weights``, vectorised.

    The class indicators (agreements, confusion cells) of :data:`CHUNK_POINTS` pairs at a time are
    weighted in one matrix product: their sums are integer counts, exact in any summation order.
    The real-valued sums (absolute errors, Pearson moments) keep the products of one pair at a
    time, so every value is what :func:`weighted_metrics` gave pair by pair, to the last bit."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n = w.sum(axis=1)
    pairs = []
    for pred, truth in points:
        p = np.asarray(pred, dtype=np.float64).reshape(-1)
        y = np.asarray(truth, dtype=np.float64).reshape(-1)
        if p.size != y.size or w.shape[1] != p.size:
            raise ValueError(f"pred ({p.size}), truth ({y.size}) and weights ({w.shape[1]} columns) must match")
        pairs.append((p, y))
    keys = metric_keys(family)
    if family == "classification":  # class indices: per-class sums of one pair at a time
        return [{k: m[k] for k in keys if k in m} for m in (_classes(w, p, y) for p, y in pairs)]
    make = _sims_point if family == "sims" else _mosi_point
    prepared = [make(p, y) for p, y in pairs]
    out: list[dict[str, FloatArray]] = []
    for start in range(0, len(prepared), CHUNK_POINTS):
        chunk = prepared[start:start + CHUNK_POINTS]
        counts = w @ np.column_stack([c for pt in chunk for c in pt.indicators]).astype(np.float64)
        at = 0
        for pt in chunk:
            m = _metrics_of(pt, w, n, counts[:, at:at + len(pt.indicators)])
            at += len(pt.indicators)
            out.append({k: m[k] for k in keys})
    return out


def weighted_metrics(pred: Sequence[float], truth: Sequence[float], family: str,
                     weights: FloatArray) -> dict[str, FloatArray]:
    """Every metric of ``family`` under each row of ``weights`` (sample counts), shape ``[rows]``.

    ``weights`` of all ones reproduces :func:`robustmsa.metrics.compute_metrics`.
    """
    return weighted_metrics_many([(pred, truth)], family, weights)[0]


def bootstrap_compare(model: FloatArray, reference: FloatArray, level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap of ``model - reference`` (replicates of the same statistic).

    Returns the percentile ``ci_low``/``ci_high`` of the difference and a two-sided p-value
    ``min(1, 2 (1 + min(#{d <= 0}, #{d >= 0})) / (B + 1))``; nan where any replicate is nan.
    """
    d = np.asarray(model, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if d.size == 0 or not np.all(np.isfinite(d)):
        return {"ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan")}
    lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
    tail = min(int(np.count_nonzero(d <= 0)), int(np.count_nonzero(d >= 0)))
    return {"ci_low": float(lo), "ci_high": float(hi), "p": min(1.0, 2.0 * (1 + tail) / (d.size + 1))}
