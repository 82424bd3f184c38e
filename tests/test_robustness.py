"""Tests of robustmsa.robustness with hand-computed curves."""
from __future__ import annotations

import math

import numpy as np
import pytest

from robustmsa.robustness import (
    MEAN_CE_KEY,
    audc,
    corruption_error,
    drop_from_clean,
    effective_robustness,
    relative_corruption_error,
    relative_robustness,
    relative_score,
    summarise_curve,
    worst_case,
)

# Accuracy at uneven levels, given out of order: clean first is (1.0, 0.8), (0.8, 0.6), (0.2, 0.3).
LEVELS = [0.2, 1.0, 0.8]
ACC = [0.3, 0.8, 0.6]
# Trapezoids: 0.2 * (0.8 + 0.6) / 2 = 0.14 and 0.6 * (0.6 + 0.3) / 2 = 0.27; (0.14 + 0.27) / 0.8.
ACC_AUDC = 0.5125

# MAE rises as reliability falls: (0.5 * 1.6 / 2 + 0.5 * 2.2 / 2) / 1.0 = 0.95.
MAE_LEVELS = [1.0, 0.5, 0.0]
MAE = [0.7, 0.9, 1.3]


def test_audc_on_uneven_levels_by_hand() -> None:
    assert audc(LEVELS, ACC) == pytest.approx(ACC_AUDC, abs=1e-12)
    # Evenly spaced trapezoids would give (0.7 + 0.45) / 2 = 0.575; the given order 0.9667.
    assert audc(np.array(LEVELS), np.array(ACC)) == pytest.approx(ACC_AUDC, abs=1e-12)


def test_audc_of_flat_curve_is_its_value_and_single_level_is_the_value() -> None:
    assert audc([1.0, 0.7, 0.1, 0.0], [0.4, 0.4, 0.4, 0.4]) == pytest.approx(0.4, abs=1e-15)
    assert audc([1.0], [0.83]) == 0.83


def test_drop_relative_worst_for_accuracy() -> None:
    assert drop_from_clean(LEVELS, ACC, higher_is_better=True) == pytest.approx(0.8 - ACC_AUDC, abs=1e-12)
    assert relative_score(LEVELS, ACC) == pytest.approx(ACC_AUDC / 0.8, abs=1e-12)
    assert worst_case(ACC, higher_is_better=True) == 0.3


def test_mae_direction_flips_drop_and_worst_case() -> None:
    assert audc(MAE_LEVELS, MAE) == pytest.approx(0.95, abs=1e-12)
    assert drop_from_clean(MAE_LEVELS, MAE, higher_is_better=False) == pytest.approx(0.25, abs=1e-12)
    assert drop_from_clean(MAE_LEVELS, MAE, higher_is_better=True) == pytest.approx(-0.25, abs=1e-12)
    assert worst_case(MAE, higher_is_better=False) == 1.3
    assert worst_case(MAE, higher_is_better=True) == 0.7
    assert relative_score(MAE_LEVELS, MAE) == pytest.approx(0.95 / 0.7, abs=1e-12)  # > 1: worse


def test_summarise_curve_matches_the_single_functions() -> None:
    s = summarise_curve(MAE_LEVELS[::-1], MAE[::-1], higher_is_better=False)
    assert list(s) == ["audc", "drop", "relative", "worst", "clean"]
    assert s["clean"] == 0.7
    assert s["audc"] == audc(MAE_LEVELS, MAE)
    assert s["drop"] == drop_from_clean(MAE_LEVELS, MAE, higher_is_better=False)
    assert s["relative"] == relative_score(MAE_LEVELS, MAE)
    assert s["worst"] == 1.3


def test_relative_score_is_nan_for_zero_clean_value() -> None:
    assert math.isnan(relative_score([1.0, 0.0], [0.0, -0.2]))


def test_nan_values_propagate_without_warning() -> None:
    s = summarise_curve([1.0, 0.5, 0.0], [0.6, 0.4, float("nan")], higher_is_better=True)
    assert math.isnan(s["audc"]) and math.isnan(s["drop"]) and math.isnan(s["worst"])
    assert s["clean"] == 0.6


@pytest.mark.parametrize(
    ("levels", "values", "message"),
    [
        ([1.0, 0.5, 0.5], [0.1, 0.2, 0.3], "distinct"),
        ([1.0, 0.5], [0.1, 0.2, 0.3], "2 levels but 3 values"),
        ([1.0, float("nan")], [0.1, 0.2], "finite"),
        ([], [], "empty"),
        ([[1.0, 0.5]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_invalid_curves_raise(levels: list, values: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        audc(levels, values)


def test_effective_robustness_sign() -> None:
    levels = [0.0, 1.0, 0.5]
    model = [0.6, 0.8, 0.7]  # clean first: 0.8, 0.7, 0.6 -> differences 0, -0.1, -0.2
    late_fusion = [0.4, 0.8, 0.6]  # 0.8, 0.6, 0.4 -> differences 0, -0.2, -0.4
    assert effective_robustness(levels, model, late_fusion, True) == pytest.approx(0.3, abs=1e-12)
    assert effective_robustness(levels, late_fusion, model, True) == pytest.approx(-0.3, abs=1e-12)
    assert effective_robustness(levels, model, model, True) == 0.0
    # MAE: the model rises by 0.1 and 0.2, the reference by 0.3 and 0.6 -> model more robust.
    mae_model, mae_ref = [0.9, 0.7, 0.8], [1.3, 0.7, 1.0]
    assert effective_robustness(levels, mae_model, mae_ref, False) == pytest.approx(0.6, abs=1e-12)
    with pytest.raises(ValueError, match="3 levels but 2 values"):
        effective_robustness(levels, model, [0.8, 0.6], True)


def test_relative_robustness_min_max_normalisation() -> None:
    audcs = {"a": 0.5, "b": 0.7, "c": 0.6}
    high = relative_robustness(audcs, higher_is_better=True)
    assert high == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.5}, abs=1e-12)
    low = relative_robustness(audcs, higher_is_better=False)
    assert low == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.5}, abs=1e-12)
    assert relative_robustness({"a": 0.4, "b": 0.4}, True) == {"a": 1.0, "b": 1.0}
    assert relative_robustness({"only": 0.9}, False) == {"only": 1.0}


def test_relative_robustness_leaves_nan_models_out() -> None:
    r = relative_robustness({"a": 0.2, "b": float("nan"), "c": 0.6}, higher_is_better=True)
    assert r["a"] == 0.0 and r["c"] == 1.0 and math.isnan(r["b"])
    with pytest.raises(ValueError, match="at least one"):
        relative_robustness({}, True)


# Errors in binary-exact numbers: noise and blur at two severities each.
ERRORS = {"noise": [0.5, 0.75], "blur": [0.25, 0.5]}
REF_ERRORS = {"noise": [0.75, 1.0], "blur": [0.5, 0.5]}


def test_corruption_error_is_one_against_itself() -> None:
    ce = corruption_error(ERRORS, ERRORS)
    assert ce == {"noise": 1.0, "blur": 1.0, MEAN_CE_KEY: 1.0}


def test_corruption_error_by_hand() -> None:
    ce = corruption_error(ERRORS, REF_ERRORS)
    assert list(ce) == ["noise", "blur", "mce"]
    assert ce["noise"] == pytest.approx(1.25 / 1.75, abs=1e-15)
    assert ce["blur"] == 0.75
    assert ce["mce"] == pytest.approx((1.25 / 1.75 + 0.75) / 2, abs=1e-15)


def test_relative_corruption_error_by_hand() -> None:
    rce = relative_corruption_error(ERRORS, 0.25, REF_ERRORS, 0.25)
    assert rce["noise"] == 0.6  # (0.25 + 0.5) / (0.5 + 0.75)
    assert rce["blur"] == 0.5  # (0 + 0.25) / (0.25 + 0.25)
    assert rce["mce"] == pytest.approx(0.55, abs=1e-15)
    flat_ref = relative_corruption_error(ERRORS, 0.25, {"noise": [0.75, 1.0], "blur": [0.25, 0.25]}, 0.25)
    assert math.isnan(flat_ref["blur"]) and math.isnan(flat_ref["mce"])


@pytest.mark.parametrize(
    ("errors", "ref", "message"),
    [
        ({"noise": [0.1]}, {"blur": [0.1]}, "only in the model: \\['noise'\\]"),
        ({"mce": [0.1]}, {"mce": [0.1]}, "reserved"),
        ({"noise": [-0.1]}, {"noise": [0.1]}, "non-negative"),
        ({"noise": [0.1, float("inf")]}, {"noise": [0.1, 0.2]}, "finite"),
        ({"noise": [0.1, 0.2]}, {"noise": [0.1]}, "2 model severities but 1"),
        ({}, {}, "at least one"),
    ],
)
def test_corruption_error_validation(errors: dict, ref: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        corruption_error(errors, ref)
