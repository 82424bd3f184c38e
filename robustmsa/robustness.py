"""Robustness summaries of degradation curves (PROTOCOLS.md, "Robustness summaries").

A *curve* is a metric ``f_i`` measured at reliability levels ``x_i`` (rho; 1 = clean input,
0 = modality absent). Functions accept the levels in any order and sort them internally so that
the clean end -- the highest level, ``x_0`` -- comes first. All functions are pure, work on
plain numbers or numpy arrays, and return Python floats or dicts of floats.

Direction: every summary whose meaning depends on the metric's direction takes
``higher_is_better`` (False for error metrics such as MAE) and is oriented so that its sign
reads the same way for every metric:

* ``drop`` > 0 always means degradation: ``f_clean - AUDC`` for accuracies and correlations,
  ``AUDC - f_clean`` for error metrics;
* ``worst`` is the minimum for accuracies, the maximum for error metrics;
* effective robustness > 0 always means "degrades less than the reference";
* relative robustness 1 is always the most robust compared model.

Direction-free quantities: AUDC (mean height of the curve, in the metric's own units) and the
relative score ``AUDC / f_clean`` (for error metrics a relative score above 1 means worse).

Corruption errors (ImageNet-C style) take *errors*, not metrics: the caller passes ``1 - acc``
for accuracies or MAE itself, so that lower is better and the ratios are meaningful.

NaN metric values (e.g. Corr of a model that predicts a constant at heavy corruption) propagate
to the summaries that use them instead of raising; levels must be finite and distinct.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MEAN_CE_KEY",
    "audc",
    "corruption_error",
    "drop_from_clean",
    "effective_robustness",
    "oracle_normalised",
    "relative_corruption_error",
    "relative_robustness",
    "relative_score",
    "summarise_curve",
    "worst_case",
]

FloatArray = NDArray[np.float64]

MEAN_CE_KEY = "mce"
"""Key of the mean over corruptions in the dicts returned by the corruption-error functions."""


# ---------------------------------------------------------------------------- validation


def _vector(values: Any, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def _curve(levels: Any, *curves: Any) -> tuple[FloatArray, list[FloatArray]]:
    """Levels sorted clean-first (descending) and each curve permuted to match."""
    x = _vector(levels, "levels")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"levels must be finite, got {x.tolist()}")
    if np.unique(x).size != x.size:
        raise ValueError(f"levels must be distinct, got {x.tolist()}")
    order = np.argsort(-x, kind="stable")
    sorted_curves = []
    for k, values in enumerate(curves):
        f = _vector(values, "values" if k == 0 else "reference values")
        if f.size != x.size:
            raise ValueError(f"{x.size} levels but {f.size} values; one value per level is needed")
        sorted_curves.append(f[order])
    return x[order], sorted_curves


# ---------------------------------------------------------------------------- one curve


def _audc_sorted(x: FloatArray, f: FloatArray) -> float:
    if x.size == 1:
        return float(f[0])
    widths = np.abs(np.diff(x))
    heights = (f[:-1] + f[1:]) / 2.0
    return float(np.sum(widths * heights) / abs(x[-1] - x[0]))


def _oriented_drop(clean: float, area: float, higher_is_better: bool) -> float:
    return clean - area if higher_is_better else area - clean


def _relative(area: float, clean: float) -> float:
    return float("nan") if clean == 0 else area / clean


def audc(levels: Any, values: Any) -> float:
    """Normalised area under the degradation curve: the trapezoid mean height over the levels.

    ``(1 / |x_last - x_0|) * sum_i |x_{i+1} - x_i| (f_i + f_{i+1}) / 2`` with levels sorted
    clean-first; uneven spacing is weighted by the interval widths. One level: its value.
    """
    x, (f,) = _curve(levels, values)
    return _audc_sorted(x, f)


def drop_from_clean(levels: Any, values: Any, higher_is_better: bool) -> float:
    """Degradation from the clean value to the AUDC; positive always means worse than clean.

    ``f_clean - AUDC`` when higher is better, ``AUDC - f_clean`` for error metrics (MAE).
    """
    x, (f,) = _curve(levels, values)
    return _oriented_drop(float(f[0]), _audc_sorted(x, f), higher_is_better)


def relative_score(levels: Any, values: Any) -> float:
    """``AUDC / f_clean`` (nan when ``f_clean == 0``); for error metrics above 1 means worse."""
    x, (f,) = _curve(levels, values)
    return _relative(_audc_sorted(x, f), float(f[0]))


def worst_case(values: Any, higher_is_better: bool) -> float:
    """The worst value of a curve: its minimum when higher is better, its maximum otherwise."""
    f = _vector(values, "values")
    return float(np.min(f) if higher_is_better else np.max(f))


def summarise_curve(levels: Any, values: Any, higher_is_better: bool) -> dict[str, float]:
    """``audc``, ``drop``, ``relative``, ``worst`` and ``clean`` of one curve in a single call."""
    x, (f,) = _curve(levels, values)
    clean = float(f[0])
    area = _audc_sorted(x, f)
    return {
        "audc": area,
        "drop": _oriented_drop(clean, area, higher_is_better),
        "relative": _relative(area, clean),
        "worst": worst_case(f, higher_is_better),
        "clean": clean,
    }


# ---------------------------------------------------------------------------- comparisons


def effective_robustness(levels: Any, values: Any, ref_values: Any, higher_is_better: bool) -> float:
    """MultiBench effective robustness against a reference curve on the same levels.

    ``sum_i [(f_i - f_0) - (LF_i - LF_0)]`` with index 0 the clean level and ``LF`` the late-fusion
    reference trained in the same sweep. Returned as is when higher is better and negated for
    error metrics, so a positive value always means the model degrades less than the reference.
    """
    _, (f, ref) = _curve(levels, values, ref_values)
    total = float(np.sum((f - f[0]) - (ref - ref[0])))
    return total if higher_is_better else -total


def relative_robustness(audcs: Mapping[str, float], higher_is_better: bool) -> dict[str, float]:
    """Min-max normalised AUDC across the compared models: 1 = most robust, 0 = least.

    When all finite AUDCs are equal every model gets 1.0. Models whose AUDC is not finite get
    nan and take no part in the minimum and maximum.
    """
    if not audcs:
        raise ValueError("relative robustness needs at least one model")
    names = list(audcs)
    values = np.array([float(audcs[name]) for name in names])
    finite = np.isfinite(values)
    scores = np.full(values.shape, np.nan)
    if finite.any():
        lo, hi = values[finite].min(), values[finite].max()
        if hi == lo:
            scores[finite] = 1.0
        else:
            distance = values[finite] - lo if higher_is_better else hi - values[finite]
            scores[finite] = distance / (hi - lo)
    return {name: float(score) for name, score in zip(names, scores)}


# ---------------------------------------------------------------------------- corruption errors


def _error_table(
    errors: Mapping[str, Any], ref_errors: Mapping[str, Any]
) -> list[tuple[str, FloatArray, FloatArray]]:
    """Validated ``(corruption, model errors, reference errors)`` over severities."""
    if not errors:
        raise ValueError("corruption error needs at least one corruption")
    if MEAN_CE_KEY in errors:
        raise ValueError(f"{MEAN_CE_KEY!r} is reserved for the mean; rename that corruption")
    if set(errors) != set(ref_errors):
        raise ValueError(
            f"model and reference must cover the same corruptions; only in the model: "
            f"{sorted(set(errors) - set(ref_errors))}, only in the reference: "
            f"{sorted(set(ref_errors) - set(errors))}"
        )
    table = []
    for name in errors:
        e = _error_vector(errors[name], f"errors[{name!r}]")
        r = _error_vector(ref_errors[name], f"ref_errors[{name!r}]")
        if e.size != r.size:
            raise ValueError(f"corruption {name!r}: {e.size} model severities but {r.size} reference ones")
        table.append((name, e, r))
    return table


def _error_vector(values: Any, name: str) -> FloatArray:
    e = _vector(values, name)
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ValueError(f"{name} must be finite, non-negative errors (1 - acc or MAE), got {e.tolist()}")
    return e


def _clean_error(value: float, name: str) -> float:
    return float(_error_vector([value], name)[0])


def _ratio(numerator: float, denominator: float) -> float:
    return float("nan") if denominator == 0 else numerator / denominator


def _with_mean(ces: dict[str, float]) -> dict[str, float]:
    ces[MEAN_CE_KEY] = float(np.mean(list(ces.values())))
    return ces


def corruption_error(errors: Mapping[str, Any], ref_errors: Mapping[str, Any]) -> dict[str, float]:
    """ImageNet-C corruption error of a model against a named reference model.

    ``errors[c]`` and ``ref_errors[c]`` hold one error per severity of corruption ``c`` (the caller
    turns metrics into errors: ``1 - acc`` for accuracies, MAE as is). Returns
    ``CE_c = sum_s E_sc / sum_s E^ref_sc`` for every corruption plus ``"mce"``, their mean.
    CE_c is nan where the reference's errors sum to 0; 1 everywhere means "as robust as the reference".
    """
    table = _error_table(errors, ref_errors)
    return _with_mean({name: _ratio(float(e.sum()), float(r.sum())) for name, e, r in table})


def relative_corruption_error(
    errors: Mapping[str, Any],
    clean_error: float,
    ref_errors: Mapping[str, Any],
    ref_clean_error: float,
) -> dict[str, float]:
    """ImageNet-C relative corruption error: the degradation beyond the clean error.

    ``CE_c = sum_s (E_sc - E_clean) / sum_s (E^ref_sc - E^ref_clean)`` per corruption plus
    ``"mce"``, their mean; errors as in :func:`corruption_error`. CE_c is nan where the reference
    does not degrade at all (its differences sum to 0).
    """
    table = _error_table(errors, ref_errors)
    clean = _clean_error(clean_error, "clean_error")
    ref_clean = _clean_error(ref_clean_error, "ref_clean_error")
    return _with_mean(
        {name: _ratio(float(np.sum(e - clean)), float(np.sum(r - ref_clean))) for name, e, r in table}
    )


def oracle_normalised(model_audc: float, oracle_audc: float, higher_is_better: bool) -> float:
    """AUDC relative to the oracle's on the same curve: 1 = as good as the oracle, lower = worse.

    ``oracle / model`` for an error metric (MAE), ``model / oracle`` when higher is better; nan when
    the denominator is not positive.
    """
    num, den = (model_audc, oracle_audc) if higher_is_better else (oracle_audc, model_audc)
    return float(num / den) if den > 0 and np.isfinite(num) else float("nan")
