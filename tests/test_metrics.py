"""Tests of robustmsa.metrics: hand-computed cases and a cross-check against a loop re-implementation."""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from robustmsa.errors import NonFiniteError
from robustmsa.metrics import (
    METRIC_FAMILIES,
    METRIC_INFO,
    REGRESSION_FAMILIES,
    compute_metrics,
    direction_arrow,
    metric_keys,
    mosi_metrics,
    sims_metrics,
)

# ---------------------------------------------------------------------------- reference (loops)


def _ref_multiclass_acc(pred: list[float], truth: list[float], bound: float) -> float:
    """Clip element by element, round half to even with Python's round(), count equal classes."""
    hits = 0
    for p, y in zip(pred, truth):
        if round(min(max(p, -bound), bound)) == round(min(max(y, -bound), bound)):
            hits += 1
    return hits / float(len(truth))


def _ref_f1(y_true: list, y_pred: list) -> float:
    """scikit-learn's weighted F1 with its default zero_division ("warn" acts as 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(f1_score(y_true, y_pred, average="weighted"))


def _ref_corr(p: np.ndarray, y: np.ndarray) -> float:
    """The reference's np.corrcoef; nan stated explicitly for constant inputs (undefined)."""
    if len(set(p.tolist())) == 1 or len(set(y.tolist())) == 1:
        return math.nan
    return float(np.corrcoef(p, y)[0][1])


def _ref_mosi(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    p, y = pred.tolist(), truth.tolist()
    non_zeros = [i for i, v in enumerate(y) if v != 0]
    nz_truth = [y[i] > 0 for i in non_zeros]
    nz_pred = [p[i] > 0 for i in non_zeros]
    has0_truth = [v >= 0 for v in y]
    has0_pred = [v >= 0 for v in p]
    return {
        # MAE and Corr exactly as the reference writes them (numpy reductions).
        "mae": float(np.mean(np.absolute(pred - truth))),
        "corr": _ref_corr(pred, truth),
        "acc7": _ref_multiclass_acc(p, y, 3.0),
        "acc5": _ref_multiclass_acc(p, y, 2.0),
        "acc3": _ref_multiclass_acc(p, y, 1.0),
        "has0_acc2": float(accuracy_score(has0_pred, has0_truth)),
        "has0_f1": _ref_f1(has0_truth, has0_pred),
        "non0_acc2": float(accuracy_score(nz_pred, nz_truth)) if non_zeros else math.nan,
        "non0_f1": _ref_f1(nz_truth, nz_pred) if non_zeros else math.nan,
    }


def _ref_sims_class(x: float, edges: list[float]) -> float:
    for i in range(len(edges) - 1):
        if edges[i] < x <= edges[i + 1]:
            return float(i)
    raise AssertionError(f"{x} outside the SIMS bins")


def _ref_sims(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    p = np.array([min(max(v, -1.0), 1.0) for v in pred.tolist()])
    y = np.array([min(max(v, -1.0), 1.0) for v in truth.tolist()])
    out: dict[str, float] = {"mae": float(np.mean(np.absolute(p - y))), "corr": _ref_corr(p, y)}
    edges = {
        2: [-1.01, 0.0, 1.01],
        3: [-1.01, -0.1, 0.1, 1.01],
        5: [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01],
    }
    classes = {}
    for k, ms in edges.items():
        pc = [_ref_sims_class(v, ms) for v in p.tolist()]
        yc = [_ref_sims_class(v, ms) for v in y.tolist()]
        classes[k] = (pc, yc)
        out[f"acc{k}"] = sum(a == b for a, b in zip(pc, yc)) / float(len(yc))
    out["f1"] = _ref_f1(classes[2][1], classes[2][0])
    return {key: out[key] for key in ("mae", "corr", "acc2", "acc3", "acc5", "f1")}


def _draw(rng: np.random.Generator, family: str, n: int) -> np.ndarray:
    """Values that hit the hard cases often: halves, exact zeros, bin edges, out-of-range values."""
    if family == "mosi":
        pool = [-3.5, -3.0, -2.5, -1.5, -1.0, -0.5, -0.0, 0.0, 0.0, 0.5, 1.5, 2.5, 3.0, 4.0, 1 / 3, -2 / 3]
        continuous = rng.uniform(-3.6, 3.6, n)
    else:
        pool = [-1.3, -1.0, -0.7, -0.1, -0.0, 0.0, 0.1, 0.7, 1.0, 1.2, -0.4, 0.4]
        continuous = rng.uniform(-1.3, 1.3, n)
    return np.where(rng.random(n) < 0.5, rng.choice(pool, n), continuous)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("family", REGRESSION_FAMILIES)
def test_matches_loop_reference_exactly(family: str) -> None:
    rng = np.random.default_rng(20240611)
    ours = mosi_metrics if family == "mosi" else sims_metrics
    ref = _ref_mosi if family == "mosi" else _ref_sims
    for draw in range(200):
        n = int(rng.integers(1, 60))
        truth, pred = _draw(rng, family, n), _draw(rng, family, n)
        if draw % 25 == 0:
            pred = np.full(truth.size, 0.1)  # constant prediction; its float mean is not 0.1
        if draw % 40 == 7:
            truth = np.zeros(truth.size)  # no non-zero label at all
        got, want = ours(pred, truth), ref(pred, truth)
        assert list(got) == list(want)
        for key in want:
            assert _same(got[key], want[key]), (draw, key, got[key], want[key])


# ---------------------------------------------------------------------------- MOSI, by hand


def test_rounding_is_half_to_even() -> None:
    # 2.5 -> 2, -0.5 -> -0, 1.5 -> 2 match; 0.4 -> 0 misses 1. Half away from zero would give 1/4.
    m = mosi_metrics([2.5, -0.5, 1.5, 0.4], [2.0, 0.0, 2.0, 1.0])
    assert m["acc7"] == 0.75
    assert m["acc5"] == 0.75
    assert m["acc3"] == 0.75  # clipped to [-1, 1]: 1, -0, 1, 0 vs 1, 0, 1, 1


def test_clipping_for_accuracy_but_not_for_mae() -> None:
    m = mosi_metrics([5.0, -4.0], [3.0, -3.0])
    assert m["acc7"] == 1.0
    assert m["mae"] == 1.5  # (|5 - 3| + |-4 + 3|) / 2 on unclipped values
    m = mosi_metrics([2.4, 0.2], [3.0, 0.0])
    assert m["acc7"] == 0.5  # round(2.4) = 2 != 3
    assert m["acc5"] == 1.0  # both clip to 2, then 0 == 0
    assert m["acc3"] == 1.0


def test_zero_labels_dropped_by_non0_and_non_negative_in_has0() -> None:
    truth = [0.0, 0.0, 1.0, -1.0]
    pred = [-0.2, 0.3, 0.5, 0.5]
    m = mosi_metrics(pred, truth)
    # Has0: truth>=0 [T, T, T, F], pred>=0 [F, T, T, T]
    assert m["has0_acc2"] == 0.5
    # class T: tp 2, 3 true, 3 predicted -> 2/3 (weight 3); class F: tp 0 -> 0 (weight 1)
    assert m["has0_f1"] == pytest.approx(0.5, abs=1e-15)
    # Non0 keeps samples 2 and 3: truth>0 [T, F], pred>0 [T, T]
    assert m["non0_acc2"] == 0.5
    assert m["non0_f1"] == pytest.approx(1 / 3, abs=1e-15)


def test_f1_argument_order_is_true_then_pred() -> None:
    # truth>0 [T, F], pred>0 [T, T]: f1(true, pred) = (2/3 * 1 + 0 * 1) / 2 = 1/3, whereas the
    # swapped call f1(pred, true) weights class T by 2 predictions: (2/3 * 2) / 2 = 2/3.
    m = mosi_metrics([0.5, 0.5], [1.0, -1.0])
    assert m["non0_f1"] == pytest.approx(1 / 3, abs=1e-15)
    assert m["non0_f1"] != pytest.approx(2 / 3)


def test_exact_zero_prediction_and_truth_count_as_non_negative() -> None:
    m = mosi_metrics([0.0, -0.1], [0.0, 0.0])
    assert m["has0_acc2"] == 0.5
    assert math.isnan(m["non0_acc2"]) and math.isnan(m["non0_f1"])


def test_mae_and_corr_by_hand() -> None:
    m = mosi_metrics([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])
    assert m["mae"] == pytest.approx((1 + 2 + 4) / 3, abs=1e-15)
    # deviations [-1, 0, 1] and [-7/3, -1/3, 8/3]: cov sum 5, squares 2 and 114/9
    assert m["corr"] == pytest.approx(5 / math.sqrt(2 * 114 / 9), abs=1e-14)


@pytest.mark.parametrize(
    ("pred", "truth"),
    [([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [0.7, 0.7, 0.7]), ([0.3], [0.3])],
)
def test_constant_inputs_give_nan_corr_without_warning(pred: list[float], truth: list[float]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for family in REGRESSION_FAMILIES:
            m = compute_metrics(pred, truth, family)
            assert math.isnan(m["corr"])
            assert all(math.isfinite(v) for k, v in m.items() if k not in ("corr", "non0_acc2", "non0_f1"))


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_corr_is_nan_without_warning_when_variance_under_or_overflows(scale: float) -> None:
    # np.corrcoef alone warns and returns a clipped 1.0 here: its variances are 0 or inf.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = mosi_metrics([scale, 2 * scale, 3 * scale], [1.0, 2.0, 4.0])
    assert math.isnan(m["corr"])
    assert m["acc7"] == (0.0 if scale < 1 else 1 / 3)  # predictions round to 0 or clip to 3


@pytest.mark.parametrize(
    ("truth", "pred"),
    [
        ([True, True, True], [True, True, True]),
        ([True, True, True], [False, True, True]),
        ([False, True, True], [True, True, True]),
        ([True, False], [False, False]),
        ([False, False, False], [True, False, True]),
    ],
)
def test_weighted_f1_single_class_edge_cases_equal_sklearn(truth: list[bool], pred: list[bool]) -> None:
    y = np.where(truth, 1.0, -1.0)
    p = np.where(pred, 1.0, -1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = mosi_metrics(p, y)
    assert m["has0_f1"] == _ref_f1(truth, pred)
    assert m["non0_f1"] == _ref_f1(truth, pred)


def test_shapes_are_flattened_and_torch_accepted() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    truth = rng.uniform(-3, 3, 40)
    pred = torch.tensor(rng.uniform(-3, 3, (40, 1)), dtype=torch.float32, requires_grad=True)
    want = mosi_metrics(pred.detach().numpy().astype(np.float64).ravel(), truth)
    assert mosi_metrics(pred, torch.from_numpy(truth)) == want


# ---------------------------------------------------------------------------- SIMS, by hand


def test_sims_bins_at_exact_edges() -> None:
    truth = [-0.1, 0.1, 0.7, 0.0, -0.7]
    pred = [-0.5, 0.05, 0.5, -0.3, -0.9]
    m = sims_metrics(pred, truth)
    # 2 classes (0 is negative): truth [0, 1, 1, 0, 0], pred [0, 1, 1, 0, 0]
    assert m["acc2"] == 1.0
    assert m["f1"] == 1.0
    # 3 classes (lo < x <= hi): truth [0, 1, 2, 1, 0], pred [0, 1, 2, 0, 0]
    assert m["acc3"] == 0.8
    # 5 classes: truth [1, 2, 3, 2, 0], pred [1, 2, 3, 1, 0]
    assert m["acc5"] == 0.8


def test_sims_clips_before_mae() -> None:
    m = sims_metrics([1.5, -2.0, 0.5], [1.0, -1.0, 0.0])
    assert m["mae"] == pytest.approx(0.5 / 3, abs=1e-15)  # unclipped would be 2/3
    assert m["acc2"] == 2 / 3  # 0.5 is positive, 0.0 is negative


def test_sims_clipping_can_make_predictions_constant() -> None:
    m = sims_metrics([1.5, 2.0, 3.0], [-0.5, 0.2, 0.9])
    assert math.isnan(m["corr"])


# ---------------------------------------------------------------------------- errors and metadata


def test_empty_and_mismatched_inputs_raise() -> None:
    with pytest.raises(ValueError, match="empty"):
        mosi_metrics([], [])
    with pytest.raises(ValueError, match="3 values but truth has 2"):
        mosi_metrics([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="real numbers"):
        mosi_metrics(["a", "b"], [1.0, 2.0])


def test_non_finite_predictions_raise_with_count() -> None:
    with pytest.raises(NonFiniteError, match="2 of 4 predictions") as info:
        sims_metrics([0.1, np.nan, np.inf, 0.2], [0.0, 0.1, 0.2, 0.3])
    assert info.value.hint
    with pytest.raises(NonFiniteError, match="1 of 2 truth labels"):
        mosi_metrics([0.1, 0.2], [np.nan, 0.3])


def test_unknown_family_lists_allowed() -> None:
    with pytest.raises(ValueError, match="'mosi'.*'sims'"):
        compute_metrics([1.0], [1.0], "mosei")
    with pytest.raises(ValueError, match="allowed"):
        metric_keys("imagenet")


@pytest.mark.parametrize("family", METRIC_FAMILIES)
def test_keys_order_and_metadata(family: str) -> None:
    scores = family in REGRESSION_FAMILIES
    m = compute_metrics([0.5, -1.0, 2.0] if scores else [1, 0, 2], [1.0, -0.5, 0.0] if scores else [1, 0, 0],
                        family, num_classes=0 if scores else 3)
    assert list(m) == metric_keys(family, 3)
    for key in m:
        info = METRIC_INFO[key]
        assert info.name == key and info.label and info.description
    assert set(METRIC_INFO) == {k for fam in METRIC_FAMILIES for k in metric_keys(fam)}


def test_direction_and_labels() -> None:
    assert direction_arrow("mae") == "↓"
    assert direction_arrow("acc7") == "↑" and direction_arrow("corr") == "↑"
    assert [k for k, info in METRIC_INFO.items() if not info.higher_is_better] == ["mae"]
    assert METRIC_INFO["has0_acc2"].label == "Acc-2 (Has0)"
    assert METRIC_INFO["non0_f1"].label == "F1 (Non0)"
    with pytest.raises(ValueError, match="did you mean acc7"):
        direction_arrow("acc_7")
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRIC_INFO["mae"].higher_is_better = True  # type: ignore[misc]
