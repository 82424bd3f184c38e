"""Reports for publications: table rendering, statistics, recomputation from predictions, determinism.

Fast unit tests on synthetic tidy rows and per-sample predictions; the rows are computed from the
predictions with :func:`robustmsa.metrics.compute_metrics`, as a trial does. The end-to-end run
through MLflow is in tests/test_report_e2e.py.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustmsa.errors import SuiteError
from robustmsa.metrics import compute_metrics
from robustmsa.reports import Settings, Variant, from_frames, write_report_data
from robustmsa.reports.core import Context, add_significance
from robustmsa.reports.stats import (
    CHUNK_POINTS,
    bootstrap_compare,
    holm,
    resample_counts,
    seed_test,
    weighted_metrics,
    weighted_metrics_many,
)
from robustmsa.reports.tables import (
    Cell,
    Column,
    Provenance,
    Row,
    Table,
    fmt_number,
    latex_escape,
    mark_extremes,
    markdown_escape,
    to_csv,
    to_latex,
    to_markdown,
)
from robustmsa.robustness import audc, corruption_error, effective_robustness

MODS = ("text", "audio", "vision")
PROV = Provenance("demo", "1", ("t1", "t2"), ("abc",), ("0.1.0",), ("noise=1",), "2026-01-01 00:00 UTC")


# ---------------------------------------------------------------------------- synthetic runs


def synthetic(models=(("late_fusion", "late_fusion"), ("qa_moe", "qa_moe")), regimes=(("clean", "clean"),
              ("spectrum", "spectrum")), seeds=(0, 1, 2), families=("missing", "noise"), sweeps=("text", "joint"),
              levels=(1.0, 0.5, 0.0), n=40, quality=("qa_moe",), products=(), specialists=(), seed=0):
    """Tidy rows and predictions of a fake suite; metrics computed from the predictions."""
    rng = np.random.default_rng(seed)
    y = np.clip(np.round(rng.normal(0, 1.5, n), 1), -3, 3)
    y[:3] = 0.0
    ids = [f"vid{i}$_$clip" for i in range(n)]
    rows, preds, trials = [], [], []

    def emit(base, fam, sweep, idx, level, rho, pred, q):
        point = {**base, "family": fam, "sweep": sweep, "level_index": idx, "level": level, "rho_text": rho[0],
                 "rho_audio": rho[1], "rho_vision": rho[2], "corruption_version": "1"}
        rows.extend({**point, "metric": k, "value": float(v)} for k, v in compute_metrics(pred, y, "mosi").items())
        d = {"trial_id": base["trial_id"], "grid": f"{fam}/{sweep}/{idx}", "family": fam, "sweep": sweep,
             "level_index": idx, "level": level, "sample_id": ids, "label": y, "pred": pred}
        if q is not None:
            d.update({f"quality_{m}": q[:, j] for j, m in enumerate(MODS)})
        preds.append(pd.DataFrame(d))

    protocols = [(r, k, None) for r, k in regimes] + [(r, "specialist", c) for r, c in specialists]
    for mi, (label, name) in enumerate(models):
        for ri, (regime, kind, cond) in enumerate(protocols):
            for s in seeds:
                tid = f"trial{mi}{ri}{s}"
                base = {"trial_id": tid, "suite": "demo", "suite_version": 1, "dataset": "synthetic",
                        "data_hash": "abc123", "model": label, "model_name": name, "regime": regime,
                        "regime_kind": kind, "condition": json.dumps(cond, sort_keys=True) if cond else "",
                        "seed": s, "split": "test"}
                trials.append({**{k: base[k] for k in ("trial_id", "dataset", "model", "model_name", "regime",
                                                       "regime_kind", "condition", "seed", "data_hash")},
                               "run_id": f"run{tid}", "end_time": 1_700_000_000_000 + 1000 * len(trials),
                               "code_version": "0.1.0+test", "config": json.dumps({"variant": label}),
                               "train_seconds": 10.0 + mi + 0.5 * s, "eval_seconds": 2.0, "total_seconds": 12.0,
                               "n_params": 1000.0 * (mi + 1), "best_epoch": 1.0})
                r2 = np.random.default_rng(1000 * mi + 100 * ri + s + seed)
                skill = 0.5 + 0.15 * mi + 0.05 * ri
                noise = r2.normal(0, 1, n)

                def pred_at(rho, skill=skill, noise=noise):
                    m = float(np.mean(rho))
                    p = y * skill * m + (0.6 + (1 - m)) * noise
                    return p.astype(np.float32).astype(np.float64)

                def qual(rho, r2=r2, label=label):
                    if label not in quality:
                        return None
                    return np.clip(np.array(rho)[None, :] + r2.normal(0, 0.1, (n, 3)), 0, 1)

                for fam in families:
                    for sweep in (*sweeps, *products):
                        if "+" in sweep:
                            a, b = sweep.split("+")
                            k = 0
                            for la in levels:
                                for lb in levels:
                                    rho = [1.0, 1.0, 1.0]
                                    rho[MODS.index(a)], rho[MODS.index(b)] = la, lb
                                    emit(base, fam, sweep, k, (la + lb) / 2, rho, pred_at(rho), qual(rho))
                                    k += 1
                            continue
                        for idx, lv in enumerate(levels):
                            rho = [lv] * 3 if sweep == "joint" else [lv if m == sweep else 1.0 for m in MODS]
                            emit(base, fam, sweep, idx, lv, rho, pred_at(rho), qual(rho))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True), pd.DataFrame(trials)


@pytest.fixture(scope="module")
def demo() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return synthetic()


def _data(rows, preds, trials=None, **kw):
    return from_frames(rows, preds, trials, model_order=["late_fusion", "qa_moe", "qa_moe -gate"],
                       regime_order=["clean", "spectrum", "spec"], **kw)


SETTINGS = Settings(reference_model="late_fusion", bootstrap=200)


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report_data(_data(*demo[:2]), out, SETTINGS)
    return out


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"group": str, "row": str, "column": str, "display": str, "emphasis": str,
                                    "marks": str}, keep_default_na=False)


# ---------------------------------------------------------------------------- table model


def _table(values: dict[str, dict[str, dict[int, float]]], groups: dict[str, str] | None = None) -> Table:
    cols = [Column("mae", "MAE", "down"), Column("corr", "Corr", "up"), Column("note", "Note")]
    rows = [Row(label, {k: Cell.of(v) for k, v in cells.items()}, (groups or {}).get(label, ""), ("t1",))
            for label, cells in values.items()]
    return Table("demo", "Demo", "A caption.", cols, rows, PROV)


def test_best_bold_and_second_underlined_follow_the_metric_direction() -> None:
    t = _table({"a": {"mae": {0: 0.50}, "corr": {0: 0.70}}, "b": {"mae": {0: 0.40}, "corr": {0: 0.60}},
                "c": {"mae": {0: 0.60}, "corr": {0: 0.80}}})
    mark_extremes(t)
    emph = {(r.label, k): c.emphasis for r in t.rows for k, c in r.cells.items()}
    assert emph[("b", "mae")] == "best" and emph[("a", "mae")] == "second" and emph[("c", "mae")] == ""
    assert emph[("c", "corr")] == "best" and emph[("a", "corr")] == "second" and emph[("b", "corr")] == ""
    md = to_markdown(t)
    assert "| b | **0.400** | 0.600 |" in md and "<u>0.500</u>" in md
    tex = to_latex(t)
    assert r"{\boldmath$0.400$}" in tex and r"\underline{$0.500$}" in tex and r"MAE $\downarrow$" in tex


def test_ties_at_the_displayed_precision_share_the_mark_and_groups_are_separate() -> None:
    t = _table({"a": {"mae": {0: 0.5001}}, "b": {"mae": {0: 0.4999}}, "c": {"mae": {0: 0.7}},
                "d": {"mae": {0: 0.9}}, "e": {"mae": {0: 0.8}}}, groups={"d": "g2", "e": "g2"})
    mark_extremes(t)
    e = {r.label: r.cells["mae"].emphasis for r in t.rows}
    assert e == {"a": "best", "b": "best", "c": "second", "d": "second", "e": "best"}


def test_a_single_competitor_or_undefined_values_get_no_mark() -> None:
    t = _table({"a": {"mae": {0: 0.5}, "corr": {0: math.nan}}, "b": {"corr": {0: 0.3}}})
    mark_extremes(t)
    assert all(c.emphasis == "" for r in t.rows for c in r.cells.values())


def test_mean_and_std_over_seeds() -> None:
    c = Cell.of({2: 4.0, 0: 1.0, 1: 2.0})
    assert c.mean == pytest.approx(7 / 3) and c.std == pytest.approx(np.std([1, 2, 4], ddof=1))
    t = _table({"a": {"mae": {0: 1.0, 1: 2.0, 2: 4.0}}, "b": {"mae": {5: 0.25}}, "c": {"mae": {0: 1.0, 1: math.nan}}})
    md = to_markdown(t)
    assert "2.333 ± 1.528" in md and "| b | 0.250 |" in md and "| c | n/a |" in md
    assert r"$2.333_{\pm 1.528}$" in to_latex(t)
    assert fmt_number(-0.0001, 3) == "0.000" and fmt_number(math.inf, 3) == "n/a" and fmt_number(-1.25, 1) == "-1.2"


def test_latex_and_markdown_escaping() -> None:
    assert latex_escape(r"a_b & 50% #1 {x} ~ ^ $ \ ") == (r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} "
                                                            r"\textasciicircum{} \$ \textbackslash{} ")
    assert latex_escape("ρ ± ↑") == r"$\rho$ $\pm$ $\uparrow$"
    with pytest.raises(ValueError, match="no LaTeX form"):
        latex_escape("naïve")
    assert markdown_escape("a|b*c<d>") == r"a\|b\*c&lt;d&gt;"
    t = _table({"m_1 & 50%": {"mae": {0: 1.0}}, "x|y": {"mae": {0: 2.0}}})
    tex, md = to_latex(t), to_markdown(t)
    assert r"m\_1 \& 50\%" in tex and "m_1 & 50%" not in tex.replace(r"m\_1 \& 50\%", "")
    assert r"x\|y" in md


def test_csv_has_the_same_cells_with_full_precision_and_provenance() -> None:
    t = _table({"a": {"mae": {0: 1 / 3, 1: 2 / 3}}, "b": {"mae": {0: 0.25, 1: 0.5}, "note": {}}})
    t.rows[1].cells["note"] = Cell(text="text cell")
    mark_extremes(t)
    df = _csv_text(to_csv(t))
    a = df[(df["row"] == "a") & (df["column"] == "mae")].iloc[0]
    assert float(a["mean"]) == np.mean([1 / 3, 2 / 3]) and a["display"] == "0.500 ± 0.236"
    assert json.loads(a["seeds"]) == {"0": 1 / 3, "1": 2 / 3} and a["emphasis"] == "second"
    assert set(df["suite"]) == {"demo"} and set(df["data_hash"]) == {"abc"} and set(df["trial_ids"]) == {"t1"}
    assert df[df["column"] == "note"]["display"].tolist() == ["text cell"]
    md = to_markdown(t)
    assert md.count("| a |") == 1 and "trials: 2: t1 t2" in md


def _csv_text(text: str) -> pd.DataFrame:
    import io

    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


# ---------------------------------------------------------------------------- statistics


def test_holm_matches_a_hand_computed_example() -> None:
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_seed_tests_are_scipy_paired_tests_over_common_seeds() -> None:
    a = {0: 0.50, 1: 0.55, 2: 0.61, 3: 0.40, 9: 1.0}
    b = {0: 0.45, 1: 0.52, 2: 0.50, 3: 0.41}
    x, y = [a[s] for s in range(4)], [b[s] for s in range(4)]
    assert seed_test(a, b, "ttest") == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-12)
    assert seed_test(a, b, "wilcoxon") == pytest.approx(stats.wilcoxon(np.subtract(x, y)).pvalue, rel=1e-12)
    assert math.isnan(seed_test({0: 1.0}, {0: 2.0}))
    assert seed_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}) == 1.0
    assert seed_test({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5}, "ttest") == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # identical up to rounding: decided here, not by scipy's warning
        assert seed_test({0: 0.1 + 0.2, 1: 0.3}, {0: 0.0, 1: 0.0}, "ttest") == 0.0
        assert 0.0 < seed_test({0: 0.3, 1: 0.31}, {0: 0.0, 1: 0.0}, "ttest") < 1.0
    with pytest.raises(ValueError, match="allowed: ttest, wilcoxon"):
        seed_test(a, b, "anova")


@pytest.mark.parametrize("family", ["mosi", "sims"])
def test_weighted_metrics_equal_compute_metrics_on_the_resampled_set(family: str) -> None:
    rng = np.random.default_rng(3)
    scale = 3.0 if family == "mosi" else 1.0
    y = np.round(rng.uniform(-scale, scale, 80), 1)
    y[:5] = 0.0
    p = (y + rng.normal(0, 0.7 * scale, 80)).astype(np.float32).astype(np.float64)
    ones = weighted_metrics(p, y, family, np.ones((1, 80)))
    ref = compute_metrics(p, y, family)
    assert list(ones) == list(ref)
    for k, v in ref.items():
        assert ones[k][0] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    idx = rng.integers(0, 80, 80)
    w = np.bincount(idx, minlength=80)[None, :].astype(float)
    got, want = weighted_metrics(p, y, family, w), compute_metrics(p[idx], y[idx], family)
    for k, v in want.items():
        assert got[k][0] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    const = weighted_metrics(np.zeros(80), y, family, np.ones((2, 80)))
    assert np.isnan(const["corr"]).all()


@pytest.mark.parametrize("family", ["mosi", "sims"])
def test_weighted_metrics_of_many_points_at_once_are_those_of_each_point(family: str) -> None:
    """The vectorised bootstrap (several chunks of points in one product) gives every point the
    same bits as the point alone, constant predictions and labels without a non-zero included."""
    rng = np.random.default_rng(5)
    scale = 3.0 if family == "mosi" else 1.0
    w = resample_counts(60, 200, seed=1)
    points = []
    for i in range(CHUNK_POINTS + 7):
        y = np.round(rng.uniform(-scale, scale, 60), 1) if i != 3 else np.zeros(60)
        p = np.zeros(60) if i == 5 else y + rng.normal(0, 0.5 * scale, 60)
        points.append((p, y))
    many = weighted_metrics_many(points, family, w)
    assert len(many) == len(points)
    for (p, y), got in zip(points, many):
        alone = weighted_metrics(p, y, family, w)
        assert list(got) == list(alone)
        for k in alone:
            assert np.array_equal(got[k], alone[k], equal_nan=True), k
    assert np.isnan(many[5]["corr"]).all() and (family == "sims" or np.isnan(many[3]["non0_acc2"]).all())
    with pytest.raises(ValueError, match="must match"):
        weighted_metrics_many([(np.zeros(59), np.zeros(59))], family, w)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    a, b = resample_counts(50, 100, seed=7), resample_counts(50, 100, seed=7)
    assert np.array_equal(a, b) and not np.array_equal(a, resample_counts(50, 100, seed=8))
    assert a.shape == (100, 50) and np.all(a.sum(axis=1) == 50)
    same = bootstrap_compare(np.ones(99), np.ones(99))
    assert same["p"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0
    shifted = bootstrap_compare(np.linspace(1, 2, 99), np.zeros(99))
    assert shifted["p"] == pytest.approx(2 / 100) and 1.0 < shifted["ci_low"] < shifted["ci_high"] < 2.0
    assert math.isnan(bootstrap_compare(np.array([np.nan]), np.array([0.0]))["p"])


def test_significance_markers_use_holm_corrected_seed_tests(demo) -> None:
    ctx = Context(_data(*demo), "synthetic", replicates=0)
    seeds = range(5)
    best = {s: 0.50 + 0.001 * s for s in seeds}
    worse = {s: 0.80 + 0.02 * (s % 2) for s in seeds}
    tied = {s: 0.50 + 0.001 * s + (0.01 if s % 2 == 0 else -0.01) for s in seeds}
    slight = {s: 0.53 + 0.04 * (-1) ** s for s in seeds}
    t = _table({"best": {"mae": best}, "worse": {"mae": worse}, "tied": {"mae": tied}, "slight": {"mae": slight}})
    recs = add_significance(t, ctx)
    raw = {r.row: r.p_ttest for r in recs}
    adj = dict(zip(raw, holm(list(raw.values()))))
    marks = {r.label: r.cells["mae"].marks for r in t.rows}
    assert {r.row for r in recs} == {"worse", "tied", "slight"} and all(r.reference == "best" for r in recs)
    assert {r.row: r.p_seed_holm for r in recs} == pytest.approx(adj)
    assert marks == {"best": "", "worse": "†", "tied": "", "slight": ""}
    assert raw["worse"] < 0.05 / 3 and adj["tied"] > 0.05


# ---------------------------------------------------------------------------- the report


def _points(preds: pd.DataFrame) -> dict[tuple[str, str, str, int], tuple[float, np.ndarray, np.ndarray]]:
    """(trial, family, sweep, level index) -> (level, pred, label) in the stored sample order."""
    return {(t, f, s, int(i)): (float(g["level"].iloc[0]), g["pred"].to_numpy(), g["label"].to_numpy())
            for (t, f, s, i), g in preds.groupby(["trial_id", "family", "sweep", "level_index"], sort=True)}


def _recompute(points: dict, trial: str, family: str, sweep: str) -> tuple[list[float], list[dict[str, float]]]:
    """Levels and metrics (index order) of one curve, recomputed from the stored predictions."""
    keys = sorted(k for k in points if k[:3] == (trial, family, sweep))
    return ([points[k][0] for k in keys], [compute_metrics(points[k][1], points[k][2], "mosi") for k in keys])


def _expected_main(points: dict, trials: pd.DataFrame, model: str, regime: str, group: str, metric: str,
                   families: list[str]) -> float:
    """The documented definition: per seed, the clean value or the mean over families (sorted) of
    the AUDC of the sweep; then the mean over seeds (ascending)."""
    sel = trials[(trials["model"] == model) & (trials["regime"] == regime)].sort_values("seed")
    per_seed = []
    for tid in sel["trial_id"]:
        if group == "clean":  # every sweep starts at the same clean point
            first = min(k for k in points if k[0] == tid and k[3] == 0)
            per_seed.append(_recompute(points, tid, first[1], first[2])[1][0][metric])
            continue
        areas = []
        for fam in sorted(families):
            levels, metrics = _recompute(points, tid, fam, group.removesuffix(" sweep"))
            areas.append(audc(levels, [m[metric] for m in metrics]))
        per_seed.append(float(np.mean(areas)))
    return float(np.mean(per_seed))


def test_main_table_numbers_equal_a_recomputation_from_the_predictions(demo, report) -> None:
    rows, preds, _ = demo
    points, trials = _points(preds), _data(rows, preds).trials
    df = _csv(report / "main.csv")
    assert set(df["group"]) == {"clean", "text sweep", "joint sweep"}
    checked = 0
    for _, r in df.iterrows():
        if r["row"].startswith("planted"):
            continue
        model, regime = r["row"].rsplit(" (", 1)
        want = _expected_main(points, trials, model, regime.rstrip(")"), r["group"], r["column"],
                              ["missing", "noise"])
        assert float(r["mean"]) == want, (r["row"], r["group"], r["column"])
        checked += 1
    assert checked == 4 * 3 * 7
    per_family = _csv(report / "main_noise.csv")
    r = per_family[(per_family["row"] == "qa_moe (spectrum)") & (per_family["group"] == "joint sweep")
                   & (per_family["column"] == "mae")].iloc[0]
    assert float(r["mean"]) == _expected_main(points, trials, "qa_moe", "spectrum", "joint sweep", "mae", ["noise"])


def test_main_table_marks_best_by_direction_and_explains_markers(report) -> None:
    df = _csv(report / "main.csv")
    for (group, col), g in df.groupby(["group", "column"]):
        means = g["mean"].astype(float)
        best = means.min() if col == "mae" else means.max()
        shown = g[g["emphasis"] == "best"]["display"].str.split(" ").str[0].astype(float)
        assert len(shown) >= 1 and (shown == round(best, 3)).all(), (group, col)
    md = (report / "main.md").read_text()
    assert "MAE ↓" in md and "Acc-2 (Has0) ↑" in md and "F1 (Non0) ↑" in md
    assert "Has0 = negative vs non-negative" in md and "† significantly" not in md and "†/‡: significantly" in md
    tex = (report / "main.tex").read_text()
    assert r"\multicolumn{2}{c}{Acc-2}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    sig = _csv(report / "significance_all.csv")
    assert {"p_ttest", "p_wilcoxon", "p_seed_holm", "p_boot", "p_boot_holm"} <= set(sig.columns)
    main = sig[sig["table"] == "main"]
    for _, g in main.groupby(["group", "column"]):
        p = g["p_ttest"].replace("", "nan").astype(float).tolist()
        assert g["p_seed_holm"].replace("", "nan").astype(float).tolist() == pytest.approx(holm(p), nan_ok=True)
    marked = df[df["marks"].str.contains("‡")]
    assert len(marked) > 0  # the synthetic models differ: some comparisons are significant


def test_robustness_summary_uses_the_robustness_functions(demo, report) -> None:
    rows, _, _ = demo
    df = _csv(report / "robustness.csv")
    mae = rows[rows["metric"] == "mae"]

    def curve(model, regime, seed, fam, sweep):
        g = mae[(mae["model"] == model) & (mae["regime"] == regime) & (mae["seed"] == seed) & (mae["family"] == fam)
                & (mae["sweep"] == sweep)].sort_values("level_index")
        return g["level"].tolist(), g["value"].tolist()

    curves = [(f, s) for s in ("text", "joint") for f in ("missing", "noise")]
    er, ce, area = {}, {}, {}
    for seed in (0, 1, 2):
        ers, errs, refs, areas = [], {}, {}, []
        for f, s in curves:
            lv, v = curve("qa_moe", "spectrum", seed, f, s)
            _, ref = curve("late_fusion", "spectrum", seed, f, s)
            ers.append(effective_robustness(lv, v, ref, False))
            errs[f"{f}/{s}"], refs[f"{f}/{s}"] = v[1:], ref[1:]
            areas.append(audc(lv, v))
        er[seed], ce[seed], area[seed] = np.mean(ers), corruption_error(errs, refs)["mce"], np.mean(areas)
    row = df[df["row"] == "qa_moe (spectrum)"].set_index("column")
    assert float(row.loc["er", "mean"]) == pytest.approx(np.mean(list(er.values())), rel=1e-12)
    assert float(row.loc["mce", "mean"]) == pytest.approx(np.mean(list(ce.values())), rel=1e-12)
    assert float(row.loc["audc", "mean"]) == pytest.approx(np.mean(list(area.values())), rel=1e-12)
    ref_row = df[df["row"] == "late_fusion (spectrum)"].set_index("column")
    assert ref_row.loc["er", "display"] == ref_row.loc["mce", "display"] == "reference"  # 0 and 1 by definition
    assert ref_row.loc["er", "emphasis"] == ""
    rr = df[df["column"] == "rr"]["mean"].astype(float)
    assert rr.between(0, 1).all()
    by_sweep = _csv(report / "robustness_by_sweep.csv")
    assert set(by_sweep["group"]) == {"text sweep", "joint sweep"}


def test_every_table_carries_its_provenance(demo, report) -> None:
    _, _, _ = demo
    tables = sorted(p.stem for p in report.glob("*.tex") if p.name != "report.tex")
    assert {"main", "main_missing", "main_noise", "robustness", "robustness_by_sweep", "quality",
            "significance"} <= set(tables)
    for name in tables:
        tex, md = (report / f"{name}.tex").read_text(), (report / f"{name}.md").read_text()
        csv = _csv(report / f"{name}.csv")
        for text in (tex, md):
            assert "suite: demo (version 1)" in text and "data hash: abc123" in text
            assert "corruption versions: missing=1, noise=1" in text and "trials: " in text
        assert "% date: unknown" in tex  # from_frames without trial metadata has no end time
        assert len(csv) and set(csv["suite"]) == {"demo"} and all(csv["trial_ids"].str.len() > 0)
    prov = json.loads((report / "provenance.json").read_text())
    assert prov["suite"] == "demo" and len(prov["trial_ids"]) == 12


def test_provenance_date_and_code_version_come_from_the_trials(demo, tmp_path) -> None:
    rows, preds, trials = demo
    write_report_data(_data(rows, preds, trials), tmp_path, SETTINGS, figures=False)
    tex = (tmp_path / "main.tex").read_text()
    newest = pd.Timestamp(int(trials["end_time"].max()), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
    assert f"% date: {newest}" in tex and "% code version: 0.1.0+test" in tex
    assert f"{newest[:10]}." in tex  # short provenance in the caption
    cost = _csv(tmp_path / "training_cost.csv")
    total = cost[(cost["row"] == "qa_moe (spectrum)") & (cost["column"] == "train_total")].iloc[0]
    want = trials[(trials["model"] == "qa_moe") & (trials["regime"] == "spectrum")]["train_seconds"].sum()
    assert float(total["mean"]) == want and total["display"] == f"{want:.1f}"


def test_same_runs_give_byte_identical_files_whatever_the_input_order(demo, report, tmp_path) -> None:
    rows, preds, _ = demo
    shuffled = rows.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pshuffled = preds.sample(frac=1.0, random_state=2).reset_index(drop=True)
    write_report_data(_data(shuffled, pshuffled), tmp_path, SETTINGS)
    names = sorted(p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert any(n.startswith("results/") and n.endswith(".json") for n in names)  # the results documents too
    for name in names:
        assert (report / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_bootstrap_seed_changes_only_bootstrap_results(demo, report, tmp_path) -> None:
    write_report_data(_data(*demo[:2]), tmp_path, Settings(reference_model="late_fusion", bootstrap=200,
                                                              bootstrap_seed=1), figures=False)
    a, b = _csv(report / "significance_all.csv"), _csv(tmp_path / "significance_all.csv")
    assert a["p_ttest"].tolist() == b["p_ttest"].tolist()
    assert a["p_boot"].tolist() != b["p_boot"].tolist()
    assert _csv(report / "robustness.csv")["mean"].tolist() == _csv(tmp_path / "robustness.csv")["mean"].tolist()


def test_figures_for_curves_heatmaps_and_quality(tmp_path) -> None:
    rows, preds, _ = synthetic(seeds=(0, 1), families=("noise",), sweeps=("audio", "joint"),
                               products=("audio+vision",))
    paths = write_report_data(_data(rows, preds), tmp_path, Settings(bootstrap=0))
    for stem in ("curves_noise", "heatmap_noise_audio-vision", "quality_noise"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"CreationDate" not in (tmp_path / f"{stem}.pdf").read_bytes()
    assert "heatmap_noise_audio-vision.png" in paths["figures"]
    main = _csv(tmp_path / "main.csv")
    assert set(main["group"]) == {"clean", "audio sweep", "joint sweep"}  # products are grids, not curves
    rows2, preds2, _ = synthetic(seeds=(0,), families=("noise",), sweeps=("audio",), quality=())
    write_report_data(_data(rows2, preds2), tmp_path, Settings(bootstrap=0))
    assert not list(tmp_path.glob("heatmap_*")) and not list(tmp_path.glob("quality*"))  # stale files removed
    assert "±" not in (tmp_path / "main.md").read_text().split("| **clean**")[1]  # one seed: no std


def test_quality_table_is_the_correlation_of_quality_with_rho(demo, report) -> None:
    _, preds, _ = demo
    df = _csv(report / "quality.csv")
    assert set(df["row"]) == {"qa_moe (clean)", "qa_moe (spectrum)"}
    r = df[(df["row"] == "qa_moe (spectrum)") & (df["group"] == "noise family") & (df["column"] == "spearman_audio")]
    rows, _, _ = demo
    rho = rows.drop_duplicates(["trial_id", "family", "sweep", "level_index"])
    vals = {}
    for seed in (0, 1, 2):
        tid = rho[(rho["model"] == "qa_moe") & (rho["regime"] == "spectrum") & (rho["seed"] == seed)]["trial_id"].iloc[0]
        p = preds[(preds["trial_id"] == tid) & (preds["family"] == "noise")]
        m = p.merge(rho[rho["trial_id"] == tid][["family", "sweep", "level_index", "rho_audio"]],
                    on=["family", "sweep", "level_index"])
        vals[seed] = stats.spearmanr(m["rho_audio"], m["quality_audio"])[0]
    assert float(r.iloc[0]["mean"]) == pytest.approx(np.mean(list(vals.values())), rel=1e-12)
    assert float(r.iloc[0]["mean"]) > 0.8


def test_ablations_compare_variants_with_the_unablated_model(tmp_path) -> None:
    models = (("late_fusion", "late_fusion"), ("qa_moe", "qa_moe"), ("qa_moe -gate", "qa_moe"))
    rows, preds, trials = synthetic(models=models, regimes=(("spectrum", "spectrum"),), families=("noise",))
    trials.loc[trials["model"] == "qa_moe -gate", "config"] = json.dumps({"quality_gate": "False", "variant": "x"})
    trials.loc[trials["model"] == "qa_moe", "config"] = json.dumps({"quality_gate": "True", "variant": "x"})
    variants = [Variant("late_fusion", "late_fusion"), Variant("qa_moe", "qa_moe"),
                Variant("qa_moe -gate", "qa_moe", json.dumps({"quality_gate": False}))]
    write_report_data(_data(rows, preds, trials), tmp_path, SETTINGS, variants=variants, figures=False)
    df = _csv(tmp_path / "ablations.csv")
    assert df["row"].drop_duplicates().tolist() == ["qa_moe (spectrum)", "qa_moe -gate (spectrum)"]
    ch = df[df["column"] == "changes"].set_index("row")["display"]
    assert ch["qa_moe (spectrum)"] == "full model" and ch["qa_moe -gate (spectrum)"] == "quality_gate=False"
    full = df[(df["row"] == "qa_moe (spectrum)") & (df["column"] == "all")].iloc[0]
    var = df[(df["row"] == "qa_moe -gate (spectrum)") & (df["column"] == "all")].iloc[0]
    delta = df[(df["row"] == "qa_moe -gate (spectrum)") & (df["column"] == "delta")].iloc[0]
    d = {k: json.loads(var["seeds"])[k] - json.loads(full["seeds"])[k] for k in ("0", "1", "2")}
    assert json.loads(delta["seeds"]) == pytest.approx(d)
    sig = _csv(tmp_path / "significance_all.csv")
    assert set(sig[sig["table"] == "ablations"]["reference"]) == {"qa_moe (spectrum)"}
    train = df[(df["row"] == "qa_moe -gate (spectrum)") & (df["column"] == "train")].iloc[0]
    assert float(train["mean"]) == pytest.approx(np.mean([12.0, 12.5, 13.0]))
    assert "ablations.tex" in {p.name for p in tmp_path.iterdir()}


def test_no_ablation_or_specialist_table_without_their_data(report) -> None:
    written = {p.name for p in report.iterdir()}
    assert {"main.csv", "robustness.csv", "significance_all.csv"} <= written  # the report was written ...
    assert "ablations.csv" not in written and "specialists.csv" not in written  # ... without these two


def test_one_checkpoint_vs_specialists_at_the_condition(tmp_path) -> None:
    cond = {"family": "noise", "sweep": "text", "level": 0.5}
    rows, preds, trials = synthetic(regimes=(("spectrum", "spectrum"),), families=("noise",),
                                    specialists=[("spec", cond)])
    write_report_data(_data(rows, preds, trials), tmp_path, SETTINGS, figures=False)
    df = _csv(tmp_path / "specialists.csv")
    assert set(df["group"]) == {"late_fusion at noise:text=0.5", "qa_moe at noise:text=0.5"}
    got = df[(df["row"] == "qa_moe (spec)") & (df["column"] == "acc7")].iloc[0]
    tids = trials[(trials["model"] == "qa_moe") & (trials["regime"] == "spec")].sort_values("seed")["trial_id"]
    points = _points(preds)
    want = np.mean([_recompute(points, t, "noise", "text")[1][1]["acc7"] for t in tids])
    assert float(got["mean"]) == want
    cost = _csv(tmp_path / "training_cost.csv")
    kinds = cost[cost["column"] == "kind"].set_index("row")["display"]
    assert kinds["qa_moe (spec)"] == "specialists" and kinds["qa_moe (spectrum)"] == "one checkpoint"


def test_without_stored_predictions_only_the_seed_test_is_reported(demo, report, tmp_path) -> None:
    rows, _, _ = demo
    write_report_data(_data(rows, None), tmp_path, SETTINGS, figures=False)
    md = (tmp_path / "main.md").read_text()
    assert "†: significantly different" in md and "bootstrap" not in md and "‡" not in md
    assert not (tmp_path / "quality.csv").exists()
    a, b = _csv(report / "main.csv"), _csv(tmp_path / "main.csv")
    assert a["mean"].tolist() == b["mean"].tolist()  # the numbers come from the tracked rows


def test_one_set_of_tables_per_dataset(tmp_path) -> None:
    parts = []
    for ds, seed in (("mosi", 0), ("mosei", 1)):
        rows, preds, _ = synthetic(seeds=(0, 1), families=("noise",), sweeps=("audio",), quality=(), seed=seed)
        for frame in (rows, preds):
            frame["trial_id"] = ds + frame["trial_id"]
        rows["dataset"] = ds
        parts.append((rows, preds))
    rows = pd.concat([p[0] for p in parts], ignore_index=True)
    preds = pd.concat([p[1] for p in parts], ignore_index=True)
    write_report_data(_data(rows, preds), tmp_path, SETTINGS, figures=False)
    for ds in ("mosi", "mosei"):
        df = _csv(tmp_path / f"main_{ds}.csv")
        assert all(t.startswith(ds) for ids in df["trial_ids"] for t in ids.split(";"))
        assert (tmp_path / f"robustness_{ds}.tex").exists()
    assert not (tmp_path / "main.csv").exists()


def test_report_settings_are_validated(repo: Path) -> None:
    from robustmsa.suite import load_suite

    s = load_suite(repo / "suites" / "smoke.yaml", ["report.seed_test=wilcoxon", "report.bootstrap=10"])
    assert s.report.seed_test == "wilcoxon" and s.report.bootstrap == 10
    with pytest.raises(SuiteError, match="report.main_metric.*did you mean mae"):
        load_suite(repo / "suites" / "smoke.yaml", ["report.main_metric=maee"])
    with pytest.raises(SuiteError, match="report.seed_test"):
        load_suite(repo / "suites" / "smoke.yaml", ["report.seed_test=anova"])
    with pytest.raises(SuiteError, match="report.bootstrap"):
        load_suite(repo / "suites" / "smoke.yaml", ["report.bootstrap=-1"])


def test_reference_models_missing_from_the_report_drop_their_columns(demo, tmp_path) -> None:
    rows, preds, _ = demo
    write_report_data(_data(rows, preds), tmp_path, Settings(reference_model="alexnet", effective_reference="lf",
                                                             bootstrap=0), figures=False)
    df = _csv(tmp_path / "robustness.csv")
    assert set(df["column"]) == {"clean", "audc", "drop", "worst", "rr"}
    md = (tmp_path / "robustness.md").read_text()
    assert "mCE omitted: the reference model alexnet" in md and "ER omitted: the late-fusion reference lf" in md


# ---------------------------------------------------------------------------- LaTeX


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed "
                    "(apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_tables_compile_in_a_minimal_standalone_document(report, tmp_path) -> None:
    for f in report.iterdir():
        if f.is_file():  # (results/ holds the JSON documents)
            shutil.copy(f, tmp_path / f.name)
    tables = sorted(p.stem for p in report.glob("*.tex") if p.name != "report.tex")
    doc = "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\begin{document}",
                     *[rf"\input{{{t}.tex}}\clearpage" for t in tables], r"\end{document}", ""])
    (tmp_path / "minimal.tex").write_text(doc)
    for name in ("minimal.tex", "report.tex"):
        res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout[-3000:]
        assert (tmp_path / name.replace(".tex", ".pdf")).stat().st_size > 1000


# ---------------------------------------------------------------------------- end to end


def test_report_of_a_tracked_run_through_the_cli(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny suite run and tracked on SQLite, the report written by ``robustmsa report`` from the store
    alone: tables agree exactly with metrics recomputed from the stored predictions, a second report
    is byte-identical, and the LaTeX compiles (when pdflatex is there)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    from robustmsa.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = [str(repo / "suites" / "smoke.yaml"), f"tracking.uri={uri}", f"report.dir={tmp_path / 'reports'}",
             "seeds=[0,1]", "regimes=[spectrum]", "report.bootstrap=200"]
    assert main(["run", suite[0], "--backend", "local", "--no-report", *suite[1:]]) == 0
    assert main(["report", *suite]) == 0
    assert "results.md" in capsys.readouterr().out
    out = tmp_path / "reports" / "smoke"
    for name in ("main", "main_missing", "main_noise", "robustness", "robustness_by_sweep", "training_cost",
                 "quality", "significance"):
        assert {(out / f"{name}.{ext}").exists() for ext in ("tex", "md", "csv")} == {True}, name
    for stem in ("curves_missing", "curves_noise", "quality_missing", "quality_noise"):
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.pdf").exists()

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("smoke")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("robustmsa.kind") == "trial"
            and r.data.params.get("kind") != "reference"]
    assert len(runs) == 4
    frames, meta = [], []
    for r in runs:
        d = tmp_path / "artifacts" / r.info.run_id
        d.mkdir(parents=True)
        p = pd.read_csv(download_artifacts(run_id=r.info.run_id, artifact_path="predictions.csv.gz", dst_path=str(d),
                                           tracking_uri=uri), dtype={"sample_id": str})
        p.insert(0, "trial_id", r.data.tags["robustmsa.trial_id"])
        frames.append(p)
        first = pd.read_csv(download_artifacts(run_id=r.info.run_id, artifact_path="rows.csv", dst_path=str(d),
                                               tracking_uri=uri)).iloc[0]
        meta.append({"trial_id": r.data.tags["robustmsa.trial_id"], "model": first["model"],
                     "regime": first["regime"], "seed": int(first["seed"])})
    points, trials = _points(pd.concat(frames, ignore_index=True)), pd.DataFrame(meta)
    main_csv = _csv(out / "main.csv")
    probe = main_csv[main_csv["row"] == "linear probe"]  # the reference trial's probe: shown, never ranked
    assert set(probe["group"]) == {"clean", "audio sweep", "joint sweep"} and set(probe["emphasis"]) == {""}
    assert "latent noise floor" in (out / "main.md").read_text()  # the planted floor: a footnote
    oracle = main_csv[main_csv["row"] == "oracle (observable)"]  # the smoke data set has an oracle
    assert set(oracle["group"]) == {"clean", "audio sweep", "joint sweep"} and set(oracle["emphasis"]) == {""}
    main_csv = main_csv[~main_csv["row"].isin(["linear probe", "oracle (observable)"])]
    assert set(main_csv["row"]) == {"late_fusion (spectrum)", "qa_moe (spectrum)"}
    oracle_clean = float(oracle[(oracle["group"] == "clean") & (oracle["column"] == "mae")]["mean"].iloc[0])
    gap = _csv(out / "oracle_gap.csv")
    assert set(gap["row"]) == {"late_fusion (spectrum)", "qa_moe (spectrum)"}
    for _, r in gap[gap["column"] == "clean"].iterrows():
        model_clean = main_csv[(main_csv["row"] == r["row"]) & (main_csv["group"] == "clean")
                               & (main_csv["column"] == "mae")]["mean"].astype(float).iloc[0]
        assert float(r["mean"]) == pytest.approx(model_clean - oracle_clean, rel=1e-12, abs=1e-12)
    assert float(gap[gap["column"] == "clean"]["mean"].astype(float).min()) > 0  # nothing beats the oracle here
    fallback = _csv(out / "fallback.csv")
    assert set(fallback["row"]) == {"linear probe without the swept modality", "late_fusion (spectrum)",
                                    "qa_moe (spectrum)"} and set(fallback["column"]) == {"audio_worst", "audio_ok"}
    rows_csv = pd.read_csv(out / "rows.csv")
    assert {"oracle", "linear probe"} <= set(rows_csv[rows_csv["regime_kind"] == "reference"]["model"])
    assert set(main_csv["group"]) == {"clean", "audio sweep", "joint sweep"}
    for _, r in main_csv.iterrows():
        model, regime = r["row"].removesuffix(")").split(" (")
        want = _expected_main(points, trials, model, regime, r["group"], r["column"], ["missing", "noise"])
        if math.isnan(want):
            assert r["mean"] == "" and r["display"] == "n/a"
        else:
            assert float(r["mean"]) == want, (r["row"], r["group"], r["column"])
            assert r["display"].split(" ")[0] == fmt_number(want, 3)
    tex = (out / "main.tex").read_text()
    tags = runs[0].data.tags
    assert f"% code version: {tags['robustmsa.code_version']}" in tex
    assert f"% data hash: {tags['robustmsa.data_hash']}" in tex
    assert all(r.data.tags["robustmsa.trial_id"] in tex for r in runs)
    quality = _csv(out / "quality.csv")
    assert set(quality["row"]) == {"qa_moe (spectrum)", "present/absent detector (bound)"}
    bound = quality[quality["row"] == "present/absent detector (bound)"]
    assert set(bound["group"]) == {"missing family"} and set(bound["emphasis"]) == {""}
    assert quality["mean"].replace("", "nan").astype(float).dropna().between(-1, 1).all()

    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["report", *suite]) == 0
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # same runs -> byte-identical

    if shutil.which("pdflatex"):
        res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=out,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout[-3000:]


def test_expert_usage_figure_from_stored_routing_weights(tmp_path) -> None:
    rows, preds, _ = synthetic(seeds=(0,), families=("noise",), sweeps=("joint",))
    paths = write_report_data(_data(rows, preds), tmp_path, Settings(bootstrap=0))
    assert not (tmp_path / "experts_noise.png").exists()  # no routing weights stored: no figure
    preds = preds.copy()
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(4), size=len(preds))
    for k in range(4):
        preds[f"expert_weights_{k}"] = w[:, k]
    paths = write_report_data(_data(rows, preds), tmp_path, Settings(bootstrap=0))
    assert (tmp_path / "experts_noise.png").read_bytes()[:4] == b"\x89PNG"
    assert b"CreationDate" not in (tmp_path / "experts_noise.pdf").read_bytes()
    assert "experts_noise.png" in paths["figures"]
    first = (tmp_path / "experts_noise.png").read_bytes()
    write_report_data(_data(rows, preds), tmp_path, Settings(bootstrap=0))
    assert (tmp_path / "experts_noise.png").read_bytes() == first


def test_bootstrap_of_each_group_resamples_that_groups_statistic(report) -> None:
    """MAE is linear in the resampling weights, so the mean bootstrap difference of a cell must be
    close to the difference of the cells themselves: every row group (clean, each sweep) has its own."""
    df = pd.read_csv(report / "significance_all.csv")
    main = df[(df["table"] == "main") & (df["column"] == "mae") & df["boot_diff"].notna()]
    assert set(main["group"]) >= {"clean", "joint sweep"}
    for _, r in main.iterrows():
        assert abs(r["boot_diff"] - r["diff"]) < 0.02, (r["group"], r["row"], r["boot_diff"], r["diff"])
    by_group = main.groupby("group")["boot_diff"].apply(lambda s: tuple(np.round(s.to_numpy(), 6)))
    assert len(set(by_group)) == len(by_group)  # not one group's bootstrap copied into every group


def test_presence_bound_of_the_missing_family() -> None:
    """The present/absent detector row: Spearman of rho with presence read from a zero quality,
    only where the family removes modalities (never absent at rho 1, always absent at rho 0)."""
    from scipy.stats import spearmanr

    from robustmsa.reports.build import _presence_bound

    rng = np.random.default_rng(0)
    rho = np.repeat([1.0, 0.5, 0.0], 40)
    present = np.where(rho == 1.0, True, np.where(rho == 0.0, False, rng.random(rho.size) < 0.5))
    q = np.where(present, rng.uniform(0.2, 1.0, rho.size), 0.0)
    pairs = {("qa_moe (spectrum)", 0, "missing", "audio"): (rho, q)}
    cells = _presence_bound(pairs, "missing", ["audio"])
    assert cells["spearman_audio"].mean == pytest.approx(spearmanr(rho, present).statistic)
    assert cells["spearman_audio"].mean > spearmanr(rho, q).statistic  # the content-dependent q ranks worse
    assert _presence_bound({("m", 0, "missing", "audio"): (rho, np.where(rho > 0, 0.5, 0.1))}, "missing",
                           ["audio"]) is None  # never exactly zero: absence unknown


# ---------------------------------------------------------------------------- registry of tables and figures


def test_every_file_of_a_report_is_owned_by_a_declaration_or_the_frame(report) -> None:
    import fnmatch

    from robustmsa.reports import FRAME_FILES
    from robustmsa.reports.registry import FIGURES, TABLES, owned_files

    assert TABLES.names() == sorted(["main", "robustness", "ablations", "specialists", "oracle_gap", "fallback",
                                     "training_cost", "quality", "significance", "results_json", "published"])
    assert FIGURES.names() == ["curves", "experts", "heatmaps", "quality"]
    owned = [*owned_files(), *FRAME_FILES]
    files = [p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file()]
    assert any(f.startswith("results/") for f in files)
    assert all(any(fnmatch.fnmatch(f, pat) for pat in owned) for f in files)


def test_registering_a_taken_name_or_place_fails_and_unknown_names_list_close_matches(monkeypatch) -> None:
    from corruptions.registry import DuplicateNameError
    from robustmsa.reports.registry import TABLES, Built, register_table

    monkeypatch.setattr(TABLES, "_items", dict(TABLES._items))  # declarations made here are dropped afterwards
    with pytest.raises(DuplicateNameError, match="'main' is already registered"):
        register_table("main", owns=("main*",), order=999)(lambda r: Built())
    with pytest.raises(DuplicateNameError, match="order 10 is already taken by 'main'"):
        register_table("another", owns=("another*",), order=10)(lambda r: Built())
    with pytest.raises(KeyError, match=r"did you mean significance\?"):
        TABLES.get("significanse")


def test_a_new_table_is_one_declaration(demo, tmp_path, monkeypatch) -> None:
    """A table declared once is written in three formats, listed in results.md and report.tex in its
    order, and its files from an earlier report are removed when it no longer writes them."""
    import dataclasses

    from robustmsa.reports.registry import TABLES, Built, register_table

    monkeypatch.setattr(TABLES, "_items", dict(TABLES._items))
    made = []

    @register_table("extra", owns=("extra*",), order=15)  # between main and robustness
    def _extra(r):
        main = r.tables["main"][0]
        made.append(r.ctx.dataset)
        return Built.of(dataclasses.replace(main, name="extra", title="Extra") if len(made) == 1 else None)

    write_report_data(_data(*demo[:2]), tmp_path, Settings(bootstrap=0), figures=False)
    assert {p.name for p in tmp_path.glob("extra.*")} == {"extra.tex", "extra.md", "extra.csv"}
    tex = (tmp_path / "report.tex").read_text()
    assert tex.index("\\input{main_noise.tex}") < tex.index("\\input{extra.tex}") < tex.index("\\input{robustness.tex}")
    assert "Extra" in (tmp_path / "results.md").read_text()
    write_report_data(_data(*demo[:2]), tmp_path, Settings(bootstrap=0), figures=False)  # now it builds nothing
    assert not list(tmp_path.glob("extra.*"))


def test_every_figure_has_a_caption_and_bands_need_three_seeds(tmp_path) -> None:
    """results.md and report.tex caption every figure (what is plotted, over what, the band); with
    fewer than 3 seeds the curves carry no band and the caption says so; rho runs 0 -> 1."""
    from robustmsa.reports.figures import MIN_SEEDS_FOR_BAND, RHO_LIMITS

    assert MIN_SEEDS_FOR_BAND == 3 and RHO_LIMITS[0] < RHO_LIMITS[1]  # absent on the left, clean on the right
    for seeds, band in (((0, 1), "no band: fewer than 3 seeds"), ((0, 1, 2), "band: 95% Student-t interval")):
        out = tmp_path / f"s{len(seeds)}"
        rows, preds, _ = synthetic(seeds=seeds, families=("noise",), sweeps=("audio", "joint"))
        write_report_data(_data(rows, preds), out, Settings(bootstrap=0))
        md = (out / "results.md").read_text()
        figures = md.split("## Figures")[1]
        stems = [p.stem for p in out.glob("*.png")]
        assert stems and all(f"*Figure {k} (`" in figures for k in range(1, len(stems) + 1))
        curves = next(line for line in figures.splitlines() if line.startswith("*Figure") and "curves_noise" in line)
        assert "against the reliability ρ of the noise corruption (0 = absent, 1 = clean)" in curves
        assert band in curves and f"mean over {len(seeds)} seeds" in curves
        quality = next(line for line in figures.splitlines() if "quality_noise" in line and line.startswith("*"))
        assert "band: interquartile range" in quality
        tex = (out / "report.tex").read_text()
        assert r"\listoffigures" in tex and r"\caption{curves_noise}" not in tex
        assert tex.count(r"\caption[") == len(stems) and r"\label{fig:curves_noise}" in tex


def test_rows_carry_the_physical_parameter_of_each_point() -> None:
    from robustmsa.evaluation import build_grid
    from robustmsa.suite import GridSpec
    from robustmsa.trial import physical_parameters

    grid = GridSpec(families=["noise", {"name": "drop"}], levels=[1.0, 0.5, 0.0], sweeps=["audio", "audio+vision"])
    columns = physical_parameters(grid.families)
    by = {(g.family, g.sweep, g.index): columns(g) for g in build_grid(grid)}
    assert by[("noise", "audio", 1)] == {"param_name": "SNR", "param_unit": "dB", "param_text": float("inf"),
                                        "param_audio": 0.0, "param_vision": float("inf")}
    assert by[("noise", "audio", 2)]["param_audio"] == float("-inf")
    assert by[("drop", "audio+vision", 5)]["param_audio"] == 0.5 and by[("drop", "audio+vision", 5)]["param_vision"] == 1.0
    assert by[("drop", "audio+vision", 5)]["param_name"] == "drop rate"
