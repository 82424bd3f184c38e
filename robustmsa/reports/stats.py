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

import math
from collections.abc import Mapping, Sequence

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
    give p = 0 for the t-test (infinite t statistic).
    """
    if test not in SEED_TESTS:
        raise ValueError(f"unknown seed test {test!r}; allowed: {', '.join(SEED_TESTS)}")
    d = _paired(a, b)
    if d.size < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    if test == "ttest":
        if np.all(d == d[0]):
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


def _pearson(w: FloatArray, p: FloatArray, y: FloatArray) -> FloatArray:
    """Weighted Pearson correlation per replicate; nan where either side is constant."""
    if np.all(p == p[0]) or np.all(y == y[0]):
        return np.full(w.shape[0], np.nan)
    pc, yc = p - p.mean(), y - y.mean()
    sums = w @ np.column_stack([pc, yc, pc * pc, yc * yc, pc * yc])
    n = w.sum(axis=1)
    mp, my = sums[:, 0] / n, sums[:, 1] / n
    vp, vy = sums[:, 2] / n - mp * mp, sums[:, 3] / n - my * my
    cov = sums[:, 4] / n - mp * my
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vp * vy)
    return np.where((vp > 0) & (vy > 0), r, np.nan)


def _accuracies(w: FloatArray, agree: Mapping[str, NDArray[np.bool_]]) -> dict[str, FloatArray]:
    keys = list(agree)
    sums = w @ np.column_stack([agree[k] for k in keys]).astype(np.float64)
    n = w.sum(axis=1)
    return {k: sums[:, j] / n for j, k in enumerate(keys)}


def _binary(w: FloatArray, true_pos: NDArray[np.bool_], pred_pos: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Acc-2 and weighted F1 of a binary split under weights ``w``."""
    x = np.column_stack([true_pos == pred_pos, true_pos & pred_pos, true_pos, pred_pos]).astype(np.float64)
    s = w @ x
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = s[:, 0] / n
    return acc, _weighted_f1(n, s[:, 1], s[:, 2], s[:, 3])


def _mosi(w: FloatArray, p: FloatArray, y: FloatArray) -> dict[str, FloatArray]:
    out = {"mae": w @ np.abs(p - y) / w.sum(axis=1), "corr": _pearson(w, p, y)}
    out.update(_accuracies(w, {f"acc{2 * b + 1}": np.round(np.clip(p, -b, b)) == np.round(np.clip(y, -b, b))
                               for b in (3, 2, 1)}))
    out["has0_acc2"], out["has0_f1"] = _binary(w, y >= 0, p >= 0)
    keep = y != 0
    if keep.any():
        out["non0_acc2"], out["non0_f1"] = _binary(w[:, keep], y[keep] > 0, p[keep] > 0)
    else:
        out["non0_acc2"] = out["non0_f1"] = np.full(w.shape[0], np.nan)
    return out


_SIMS_EDGES = {2: [0.0], 3: [-0.1, 0.1], 5: [-0.7, -0.1, 0.1, 0.7]}


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


def _sims(w: FloatArray, p: FloatArray, y: FloatArray) -> dict[str, FloatArray]:
    p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)

    def cls(x: FloatArray, k: int) -> NDArray[np.intp]:
        return np.searchsorted(np.array(_SIMS_EDGES[k]), x, side="left")

    out = {"mae": w @ np.abs(p - y) / w.sum(axis=1), "corr": _pearson(w, p, y)}
    out.update(_accuracies(w, {f"acc{k}": cls(p, k) == cls(y, k) for k in (3, 5)}))
    out["acc2"], out["f1"] = _binary(w, cls(y, 2) == 1, cls(p, 2) == 1)
    return out


def weighted_metrics(pred: Sequence[float], truth: Sequence[float], family: str,
                     weights: FloatArray) -> dict[str, FloatArray]:
    """Every metric of ``family`` under each row of ``weights`` (sample counts), shape ``[rows]``.

    ``weights`` of all ones reproduces :func:`robustmsa.metrics.compute_metrics`.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(truth, dtype=np.float64).reshape(-1)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if p.size != y.size or w.shape[1] != p.size:
        raise ValueError(f"pred ({p.size}), truth ({y.size}) and weights ({w.shape[1]} columns) must match")
    out = _sims(w, p, y) if family == "sims" else _classes(w, p, y) if family == "classification" else _mosi(w, p, y)
    return {k: out[k] for k in metric_keys(family) if k in out}


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
