"""What the reference predictors add to a report: the oracle beside every model, and the fallback check.

The reference trial of a dataset (:mod:`robustmsa.references`) logs the ``oracle`` (where the
dataset has one) and ``linear probe`` over the evaluation grid, and two-modality probes at the
clean point. They are never ranked with the models; they appear as

- rows of the main table set apart as references (``oracle (observable)``, ``linear probe``);
- a dashed (oracle) and a dotted (probe) line in every curve figure;
- ``oracle_gap``: per model and sweep, how far its area under the curve is from the oracle's
  (gap, in metric units) and the oracle-normalised AUDC (1 = as good as the oracle);
- ``fallback``: per spectrum-trained model and single-modality sweep, its worst point against a
  linear probe on the two modalities left, i.e. whether it falls back on what remains.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..metrics import METRIC_INFO
from ..references import ORACLE, PROBE, probe_label
from ..robustness import audc, oracle_normalised
from .core import Context, Entity
from .tables import Cell, Column, Row, Table, mark_extremes

__all__ = ["reference_rows", "reference_curve", "oracle_gap_table", "fallback_table", "ORACLE_LABEL",
           "FLOOR_NOTE"]

ORACLE_LABEL = "oracle (observable)"
MODALITIES = ("text", "audio", "vision")
FLOOR_NOTE = ("The latent noise floor of the generator (E[label | latent], which no observation contains) "
              "is MAE {mae}: a lower bound, not a target.")


def _refs(ctx: Context) -> pd.DataFrame:
    r = ctx.data.references
    if r is None:
        return pd.DataFrame(columns=["dataset", "model", "family", "sweep", "level_index", "level", "metric", "value",
                                     "rho_text", "rho_audio", "rho_vision"])
    return r[r["dataset"] == ctx.dataset]


def reference_curve(ctx: Context, name: str, family: str, sweep: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(levels, values) of reference ``name`` on one curve, clean end first; None if it was not evaluated."""
    return ctx.reference_curves.get((name, family, sweep, metric))


def _clean_value(ctx: Context, name: str, metric: str) -> float:
    r = _refs(ctx)
    g = r[(r["model"] == name) & (r["metric"] == metric) & (r["rho_text"] == 1.0) & (r["rho_audio"] == 1.0)
          & (r["rho_vision"] == 1.0)]
    return float(g["value"].iloc[0]) if not g.empty else math.nan


def reference_rows(ctx: Context, metrics: Sequence[str],
                   groups: Sequence[tuple[str, list[str] | None, list[str] | None]]) -> list[Row]:
    """Rows of the oracle and the linear probe for the main table: clean metrics and, per sweep
    group, the AUDC averaged over the group's families (as the models' cells)."""
    out = []
    names = [(ORACLE, ORACLE_LABEL), (PROBE, PROBE)]
    for gname, fams, sweeps in groups:
        for name, label in names:
            cells = {}
            for m in metrics:
                if fams is None:
                    v = _clean_value(ctx, name, m)
                else:
                    curves = [reference_curve(ctx, name, f, sw, m) for f in fams for sw in (sweeps or [])]
                    v = float(np.mean([audc(*c) for c in curves])) if curves and all(c is not None for c in curves) \
                        else math.nan
                if math.isfinite(v):
                    cells[m] = Cell.of(v)
            if cells:
                out.append(Row(label, cells, gname, compare=False))
    return out


def _curve_values(ctx: Context, tid: str, family: str, sweep: str, metric: str) -> tuple[tuple, list[float]] | None:
    c = ctx.curves.get(tid, {}).get((family, sweep))
    if c is None:
        return None
    return c[1], [ctx.values.get((tid, family, sweep, i, metric), math.nan) for i in c[0]]


def oracle_gap_table(ctx: Context, metric: str, ents: Sequence[Entity], digits: int, suffix: str = "",
                     title_suffix: str = "") -> Table | None:
    """Per model: the AUDC gap to the oracle on each sweep (averaged over the families the oracle
    covers), and the oracle-normalised AUDC over every such curve; None without an oracle."""
    hib = METRIC_INFO[metric].higher_is_better
    fams = [f for f in ctx.families if any(reference_curve(ctx, ORACLE, f, sw, metric) is not None for sw in ctx.sweeps)]
    if not fams:
        return None
    sweeps = [sw for sw in ctx.sweeps if any(reference_curve(ctx, ORACLE, f, sw, metric) is not None for f in fams)]
    label = METRIC_INFO[metric].label
    cols = [Column("clean", "Clean", "down", group=f"gap in {label}")]
    cols += [Column(sw, sw, "down", group=f"gap in {label}") for sw in sweeps]
    cols += [Column("normalised", "Oracle-norm. AUDC", "up")]
    rows = []
    for e in ents:
        per: dict[str, dict[int, float]] = {c.key: {} for c in cols}
        for seed, tid in e.trials:
            gaps: dict[str, list[float]] = {sw: [] for sw in sweeps}
            norms, clean = [], []
            for f in fams:
                for sw in sweeps:
                    ref = reference_curve(ctx, ORACLE, f, sw, metric)
                    mine = _curve_values(ctx, tid, f, sw, metric)
                    if ref is None or mine is None or tuple(mine[0]) != tuple(ref[0]):
                        continue
                    a_m, a_o = audc(mine[0], mine[1]), audc(*ref)
                    gaps[sw].append((a_m - a_o) * (-1 if hib else 1))
                    norms.append(oracle_normalised(a_m, a_o, hib))
                    clean.append((mine[1][0] - ref[1][0]) * (-1 if hib else 1))
            for sw, v in gaps.items():
                if v:
                    per[sw][seed] = float(np.mean(v))
            if norms:
                per["normalised"][seed] = float(np.mean(norms))
                per["clean"][seed] = float(np.mean(clean))
        cells = {k: Cell.of(v) for k, v in per.items() if v}
        rows.append(Row(e.label, cells, "", e.trial_ids))
    caption = (f"Distance to the oracle on {label} ({'↑' if hib else '↓'} for the metric). Gap: the model's "
               f"area under the degradation curve minus the oracle's on the same test inputs, oriented so that "
               f"> 0 is worse than the oracle (0 = as good as achievable); per sweep, mean over the families the "
               f"oracle covers ({', '.join(fams)}); Clean: the same at the clean point. Oracle-norm. AUDC: the "
               f"oracle's AUDC divided by the model's ({'model / oracle' if hib else 'oracle / model'}), mean "
               f"over every curve; 1 = oracle level. The oracle predicts each clip from what its corrupted "
               f"features still contain, exactly (docs/benchmark.md). Mean ± std over seeds.")
    t = Table(f"oracle_gap{suffix}", f"Gap to the oracle{title_suffix}", caption, cols, rows,
              ctx.data.provenance({t for r in rows for t in r.trial_ids}), digits=digits)
    mark_extremes(t)
    return t


def fallback_table(ctx: Context, metric: str, ents: Sequence[Entity], digits: int, suffix: str = "",
                   title_suffix: str = "") -> Table | None:
    """Spectrum-trained models on each single-modality sweep against the probe on the other two."""
    hib = METRIC_INFO[metric].higher_is_better
    chosen = [e for e in ents if e.regime_kind == "spectrum"]
    probes = {m: _clean_value(ctx, probe_label(tuple(x for x in MODALITIES if x != m)), metric) for m in MODALITIES}
    sweeps = [m for m in MODALITIES if m in ctx.sweeps and math.isfinite(probes[m])]
    if not chosen or not sweeps:
        return None
    cols = []
    for m in sweeps:
        cols += [Column(f"{m}_worst", "worst", "up" if hib else "down", group=f"{m} sweep"),
                 Column(f"{m}_ok", "points ≤ probe" if not hib else "points ≥ probe", std=False, group=f"{m} sweep")]
    rows = [Row(f"{PROBE} without the swept modality",
                {f"{m}_worst": Cell.of(probes[m]) for m in sweeps}, "", compare=False)]
    for e in chosen:
        cells: dict[str, Cell] = {}
        for m in sweeps:
            worst: dict[int, float] = {}
            ok, total = 0, 0
            for seed, tid in e.trials:
                vals = [v for f in ctx.families if (c := _curve_values(ctx, tid, f, m, metric)) for v in c[1]]
                if not vals:
                    continue
                worst[seed] = float(min(vals) if hib else max(vals))
                good = [(v >= probes[m]) if hib else (v <= probes[m]) for v in vals]
                ok, total = ok + sum(good), total + len(good)
            if worst:
                cells[f"{m}_worst"] = Cell.of(worst)
                cells[f"{m}_ok"] = Cell(text=f"{ok}/{total}")
        rows.append(Row(e.label, cells, "", e.trial_ids))
    caption = (f"Does a model trained on the reliability spectrum fall back on the modalities left? For each "
               f"single-modality sweep: the model's worst {METRIC_INFO[metric].label} over every point of the "
               f"sweep and every family, against a linear probe (ridge on mean-pooled features, penalty chosen on "
               f"validation) trained on the two other modalities only (first row); points ≤ probe: how many "
               f"(point, seed) pairs are no worse than that probe. Mean ± std over seeds.")
    t = Table(f"fallback{suffix}", f"Fallback on the modalities left{title_suffix}", caption, cols, rows,
              ctx.data.provenance({t for r in rows for t in r.trial_ids}), digits=digits)
    return t
