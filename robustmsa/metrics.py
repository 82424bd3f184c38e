"""Standard multimodal sentiment analysis metrics, equal to the field's reference definitions.

Two families of metrics exist (see ``/work/shared/PROTOCOLS.md``, "Standard MSA metrics"):

* ``"mosi"`` -- CMU-MOSI, CMU-MOSEI and the synthetic benchmark, labels in [-3, 3]:
  MAE, Corr, Acc-7, Acc-5, Acc-3, Acc-2/F1 "Has0" (negative vs non-negative over all samples)
  and Acc-2/F1 "Non0" (negative vs positive, samples labelled exactly 0 dropped).
* ``"sims"`` -- CH-SIMS, labels in [-1, 1]: values clipped to [-1, 1], MAE and Corr on the
  clipped values, Acc-2/3/5 from fixed bins where class ``i`` holds ``lo_i < x <= hi_i``.
* ``"classification"`` -- categorical datasets (MELD- and IEMOCAP-style emotions): predictions
  and truths are class indices; accuracy, weighted F1, macro F1 and per-class accuracy (recall),
  equal to scikit-learn's ``accuracy_score``, ``f1_score(average="weighted"|"macro")`` and
  ``recall_score(average=None, zero_division=nan)`` (tests compare them digit for digit).
  Robustness curves use weighted F1 (higher is better); a corruption error is ``1 - weighted F1``.

The values equal MMSA's ``metricsTop.py`` digit for digit on float64 inputs, without its
4-decimal rounding (round for display only). Deliberate differences, all on inputs where the
reference crashes, warns or returns noise:

* inputs are cast to float64 first (the reference compares float32 tensors against the bin edges
  in float32, which moves values lying exactly on an edge such as 0.1);
* Corr is ``nan`` without a warning when predictions or truths are constant;
* Non0 Acc-2 and Non0 F1 are ``nan`` when every truth is exactly 0;
* non-finite predictions raise :class:`~robustmsa.errors.NonFiniteError`.

Weighted F1 is computed from the four confusion counts with the same floating-point operations,
in the same order, as ``sklearn.metrics.f1_score(y_true, y_pred, average="weighted")``
(tests check equality with scikit-learn itself): all MOSI metrics of 4,659 samples take ~0.25 ms,
where the four scikit-learn F1 calls alone take ~11 ms, which matters because metrics are computed
at every point of a robustness grid; it also can never emit ``UndefinedMetricWarning``. Everything is vectorised: no Python loop runs over samples.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from corruptions.registry import Registry, did_you_mean
from robustmsa.errors import NonFiniteError

__all__ = [
    "METRIC_FAMILIES",
    "REGRESSION_FAMILIES",
    "METRIC_INFO",
    "METRICS",
    "MetricInfo",
    "register_metric",
    "compute_metrics",
    "direction_arrow",
    "metric_keys",
    "mosi_metrics",
    "sims_metrics",
    "classification_metrics",
    "MAX_CLASSES",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

METRIC_FAMILIES: tuple[str, ...] = ("mosi", "sims", "classification")
"""Allowed ``family`` names: ``"mosi"`` serves MOSI, MOSEI and the synthetic benchmark,
``"classification"`` every categorical dataset."""
REGRESSION_FAMILIES: tuple[str, ...] = ("mosi", "sims")
"""The families of sentiment scores (the others take class indices)."""

MAX_CLASSES = 16
"""The most classes a classification dataset may have (one registered per-class key each)."""

# Interior bin edges of the SIMS classes (the outer edges -1.01 and 1.01 enclose every clipped
# value). Class i holds the values with edge[i-1] < x <= edge[i].
_SIMS_EDGES: dict[int, FloatArray] = {
    2: np.array([0.0]),
    3: np.array([-0.1, 0.1]),
    5: np.array([-0.7, -0.1, 0.1, 0.7]),
}


@dataclass(frozen=True)
class MetricInfo:
    """Display metadata of one metric key."""

    name: str
    label: str
    higher_is_better: bool
    description: str


METRICS: Registry[MetricInfo] = Registry("metric")
"""Every metric key :func:`compute_metrics` can return, registered once with its display metadata."""


def register_metric(name: str, label: str, higher_is_better: bool, description: str) -> MetricInfo:
    """Declare a metric key (a name taken twice is an error); its computation lives in the metric
    family's function (:func:`mosi_metrics`, :func:`sims_metrics`), which returns every key at once."""
    info = MetricInfo(name, label, higher_is_better, description)
    METRICS.register(name, info)
    return info


register_metric("mae", "MAE", False, "mean absolute error (MOSI: unclipped values; SIMS: clipped to [-1, 1])")
register_metric("corr", "Corr", True, "Pearson correlation (MOSI: unclipped; SIMS: clipped); nan if constant")
register_metric("acc7", "Acc-7", True, "7-class accuracy: values clipped to [-3, 3], rounded half to even")
register_metric("acc5", "Acc-5", True, "5-class accuracy (MOSI: clipped to [-2, 2] and rounded; "
                "SIMS: bins with edges -0.7, -0.1, 0.1, 0.7)")
register_metric("acc3", "Acc-3", True,
                "3-class accuracy (MOSI: clipped to [-1, 1] and rounded; SIMS: bins with edges -0.1, 0.1)")
register_metric("has0_acc2", "Acc-2 (Has0)", True, "binary accuracy, negative vs non-negative (y >= 0), all samples")
register_metric("has0_f1", "F1 (Has0)", True, "weighted F1, negative vs non-negative (y >= 0), all samples")
register_metric("non0_acc2", "Acc-2 (Non0)", True,
                "binary accuracy, negative vs positive, samples with y == 0 dropped")
register_metric("non0_f1", "F1 (Non0)", True, "weighted F1, negative vs positive, samples with y == 0 dropped")
register_metric("acc2", "Acc-2", True, "SIMS binary accuracy: bins [-1, 0] and (0, 1]")
register_metric("f1", "F1", True, "SIMS weighted F1 on the bins [-1, 0] and (0, 1]")
register_metric("weighted_f1", "Weighted F1", True,
                "classification: per-class F1 averaged with the class supports as weights (scikit-learn's "
                "average='weighted' over the classes in truth or prediction)")
register_metric("accuracy", "Accuracy", True, "classification: fraction of samples whose predicted class is right")
register_metric("macro_f1", "Macro F1", True,
                "classification: unweighted mean of the per-class F1 over the classes in truth or prediction")
for _c in range(MAX_CLASSES):
    register_metric(f"class_acc_{_c}", f"Acc (class {_c})", True,
                    f"classification: accuracy on the samples of class {_c} (its recall); nan when absent")

METRIC_INFO: Mapping[str, MetricInfo] = METRICS.view()
"""The registered metrics in declaration order (the order of report columns), read-only."""

_FAMILY_KEYS: dict[str, tuple[str, ...]] = {
    "mosi": ("mae", "corr", "acc7", "acc5", "acc3", "has0_acc2", "has0_f1", "non0_acc2", "non0_f1"),
    "sims": ("mae", "corr", "acc2", "acc3", "acc5", "f1"),
    "classification": ("weighted_f1", "accuracy", "macro_f1", *(f"class_acc_{c}" for c in range(MAX_CLASSES))),
}


# ---------------------------------------------------------------------------- input checks


def _as_float_vector(values: Any, name: str) -> FloatArray:
    """Flatten a numpy array, torch tensor or nested sequence to a float64 vector."""
    if hasattr(values, "detach"):  # a torch tensor; no torch import needed (also covers bfloat16)
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
    return array.astype(np.float64).reshape(-1)


def _check_finite(values: FloatArray, what: str) -> None:
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise NonFiniteError(
            f"{bad} of {values.size} {what} are not finite (NaN or inf)",
            hint="the model diverged or its inputs hold NaN/inf; check the data and the training loss",
        )


def _prepare(pred: Any, truth: Any) -> tuple[FloatArray, FloatArray]:
    """Validated float64 vectors ``(pred, truth)`` of the same, non-zero length."""
    p = _as_float_vector(pred, "pred")
    y = _as_float_vector(truth, "truth")
    if p.size != y.size:
        raise ValueError(f"pred has {p.size} values but truth has {y.size}; they must match")
    if p.size == 0:
        raise ValueError("cannot compute metrics on empty predictions")
    _check_finite(p, "predictions")
    _check_finite(y, "truth labels")
    return p, y


# ---------------------------------------------------------------------------- building blocks


def _mae(p: FloatArray, y: FloatArray) -> float:
    with np.errstate(over="ignore"):  # |p - y| beyond 1.8e308 is inf, not a warning
        return float(np.mean(np.absolute(p - y)))


def _is_constant(x: FloatArray) -> bool:
    return bool(np.all(x == x[0]))


def _pearson(p: FloatArray, y: FloatArray) -> float:
    """``np.corrcoef(p, y)[0, 1]``; nan without a warning where it is undefined."""
    if _is_constant(p) or _is_constant(y):
        return float("nan")
    with np.errstate(all="ignore"):
        c = np.corrcoef(p, y)
    # A variance that under- or overflows (|x| ~ 1e-160 or 1e160) leaves a nan on the diagonal
    # while the off-diagonal entry may be a clipped, meaningless +-1.
    if not (np.isfinite(c[0, 0]) and np.isfinite(c[1, 1])):
        return float("nan")
    return float(c[0, 1])


def _accuracy(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Fraction of equal entries (``count / n``, bit-identical to ``np.mean(a == b)``)."""
    return int(np.count_nonzero(a == b)) / a.size


def _rounded_accuracy(p: FloatArray, y: FloatArray, bound: float) -> float:
    """Accuracy after clipping to [-bound, bound] and rounding half to even."""
    return _accuracy(np.round(np.clip(p, -bound, bound)), np.round(np.clip(y, -bound, bound)))


def _class_f1(hits: int, n_true: int, n_pred: int) -> float:
    denominator = n_true + n_pred
    return 2.0 * hits / denominator if denominator else 0.0


def _weighted_f1(true_pos: BoolArray, pred_pos: BoolArray) -> float:
    """``f1_score(true_pos, pred_pos, average="weighted")`` of two boolean vectors, exactly.

    Per class F1 = 2 tp / (n_true + n_pred), averaged with the class supports as weights, summed
    in label order (negative, then positive) and divided by n, as scikit-learn does.
    """
    n = true_pos.size
    tp = int(np.count_nonzero(true_pos & pred_pos))
    n_true = int(np.count_nonzero(true_pos))
    n_pred = int(np.count_nonzero(pred_pos))
    tn = n - n_true - n_pred + tp
    f_negative = _class_f1(tn, n - n_true, n - n_pred)
    f_positive = _class_f1(tp, n_true, n_pred)
    return (f_negative * (n - n_true) + f_positive * n_true) / n


def _non0_binary(p: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Acc-2 and weighted F1 of negative vs positive with truths equal to 0 dropped."""
    keep = y != 0
    if not keep.any():
        return float("nan"), float("nan")
    true_pos, pred_pos = y[keep] > 0, p[keep] > 0
    return _accuracy(pred_pos, true_pos), _weighted_f1(true_pos, pred_pos)


def _sims_classes(x: FloatArray, n_classes: int) -> NDArray[np.intp]:
    """SIMS class index of values in [-1, 1]: the number of interior edges strictly below x."""
    return np.searchsorted(_SIMS_EDGES[n_classes], x, side="left")


# ---------------------------------------------------------------------------- public API


def mosi_metrics(pred: Any, truth: Any) -> dict[str, float]:
    """MOSI/MOSEI metrics of regression predictions against truths in [-3, 3].

    ``pred`` and ``truth``: array-likes (numpy, torch, sequences) of any shape with the same
    number of elements; flattened and cast to float64. Returns the keys of
    ``metric_keys("mosi")`` in that order. ``corr`` is nan when either input is constant,
    ``non0_acc2``/``non0_f1`` are nan when every truth is 0.

    Raises ValueError on empty or mismatched inputs, NonFiniteError on NaN/inf.
    """
    p, y = _prepare(pred, truth)
    non0_acc2, non0_f1 = _non0_binary(p, y)
    has0_true, has0_pred = y >= 0, p >= 0
    return {
        "mae": _mae(p, y),
        "corr": _pearson(p, y),
        "acc7": _rounded_accuracy(p, y, 3.0),
        "acc5": _rounded_accuracy(p, y, 2.0),
        "acc3": _rounded_accuracy(p, y, 1.0),
        "has0_acc2": _accuracy(has0_pred, has0_true),
        "has0_f1": _weighted_f1(has0_true, has0_pred),
        "non0_acc2": non0_acc2,
        "non0_f1": non0_f1,
    }


def sims_metrics(pred: Any, truth: Any) -> dict[str, float]:
    """CH-SIMS metrics of regression predictions against truths in [-1, 1].

    Both inputs are clipped to [-1, 1] first; MAE and Corr use the clipped values. Class ``i`` of
    Acc-2/3/5 holds ``lo_i < x <= hi_i`` for the edges -1.01, 0, 1.01 / -1.01, -0.1, 0.1, 1.01 /
    -1.01, -0.7, -0.1, 0.1, 0.7, 1.01. F1 is the weighted F1 of the two Acc-2 classes.
    Returns the keys of ``metric_keys("sims")`` in that order; same input rules as
    :func:`mosi_metrics`.
    """
    p, y = _prepare(pred, truth)
    p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)
    p2, y2 = _sims_classes(p, 2), _sims_classes(y, 2)
    return {
        "mae": _mae(p, y),
        "corr": _pearson(p, y),
        "acc2": _accuracy(p2, y2),
        "acc3": _accuracy(_sims_classes(p, 3), _sims_classes(y, 3)),
        "acc5": _accuracy(_sims_classes(p, 5), _sims_classes(y, 5)),
        "f1": _weighted_f1(y2 == 1, p2 == 1),
    }


def _class_indices(values: FloatArray, what: str) -> NDArray[np.int64]:
    bad = (values != np.round(values)) | (values < 0)
    if bad.any():
        raise ValueError(f"{what} must be class indices (integers >= 0), got {values[np.flatnonzero(bad)[0]]!r}")
    return values.astype(np.int64)


def _per_class_f1(y: NDArray[np.int64], p: NDArray[np.int64], labels: NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """(F1, true support) of each class in ``labels`` (each is in ``y`` or ``p``, so no denominator is 0):
    ``2 tp / (n_true + n_pred)``, the floating-point operations of scikit-learn's ``precision_recall_fscore_support``."""
    size = int(labels.max()) + 1
    tp = np.bincount(y[y == p], minlength=size)[labels]
    n_true = np.bincount(y, minlength=size)[labels]
    n_pred = np.bincount(p, minlength=size)[labels]
    return (2.0 * tp) / (1.0 * n_true + n_pred), n_true.astype(np.float64)


def classification_metrics(pred: Any, truth: Any, num_classes: int = 0) -> dict[str, float]:
    """Classification metrics of predicted class indices against true ones.

    ``pred`` and ``truth``: array-likes of class indices (integers >= 0, any numeric dtype).
    ``accuracy``, ``weighted_f1`` and ``macro_f1`` equal scikit-learn's defaults (F1 averaged
    over the classes present in truth or prediction; weighted by the true supports).
    ``class_acc_<c>`` for ``c < num_classes`` (default: the largest index seen + 1) is the
    recall of class ``c``, nan when no true sample has that class. Same input rules as
    :func:`mosi_metrics`; more than :data:`MAX_CLASSES` classes is a ValueError.
    """
    p, y = _prepare(pred, truth)
    pi, yi = _class_indices(p, "pred"), _class_indices(y, "truth")
    k = int(num_classes) or int(max(pi.max(), yi.max())) + 1
    if k > MAX_CLASSES or yi.max() >= k:
        raise ValueError(f"class indices must lie in 0..{k - 1} with at most {MAX_CLASSES} classes; "
                         f"got truth up to {int(yi.max())}, pred up to {int(pi.max())}")
    labels = np.union1d(yi, pi)
    f1, support = _per_class_f1(yi, pi, labels)
    hits = np.bincount(yi[yi == pi], minlength=k)[:k]
    sizes = np.bincount(yi, minlength=k)[:k]
    out = {
        "weighted_f1": float(np.average(f1, weights=support)),
        "accuracy": _accuracy(pi, yi),
        "macro_f1": float(np.average(f1)),
    }
    for c in range(k):
        out[f"class_acc_{c}"] = float(hits[c] / sizes[c]) if sizes[c] else float("nan")
    return out


def _check_family(family: str) -> str:
    if family not in _FAMILY_KEYS:
        raise ValueError(
            f"unknown metric family {family!r}; allowed: 'mosi' (MOSI, MOSEI, synthetic), 'sims', 'classification'"
        )
    return family


def compute_metrics(pred: Any, truth: Any, family: str, num_classes: int = 0) -> dict[str, float]:
    """Metrics of ``family`` (``"mosi"``, ``"sims"`` or ``"classification"``); see :func:`mosi_metrics`,
    :func:`sims_metrics`, :func:`classification_metrics` (``num_classes`` is only read by the last)."""
    if _check_family(family) == "sims":
        return sims_metrics(pred, truth)
    if family == "classification":
        return classification_metrics(pred, truth, num_classes)
    return mosi_metrics(pred, truth)


def metric_keys(family: str, num_classes: int = MAX_CLASSES) -> list[str]:
    """The metric keys of ``family`` in their canonical order (the order of the returned dicts);
    for ``"classification"`` the per-class keys of the first ``num_classes`` classes."""
    keys = _FAMILY_KEYS[_check_family(family)]
    if family == "classification":
        keys = keys[: 3 + num_classes]
    return list(keys)


def direction_arrow(key: str) -> str:
    """``"↑"`` for metrics where higher is better, ``"↓"`` for error metrics (MAE)."""
    info = METRIC_INFO.get(key)
    if info is None:
        hint = did_you_mean(key, METRIC_INFO)
        raise ValueError(f"unknown metric key {key!r}{f' ({hint})' if hint else ''}; known keys: {', '.join(METRIC_INFO)}")
    return "↑" if info.higher_is_better else "↓"
