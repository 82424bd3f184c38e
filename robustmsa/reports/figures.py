"""Figures of a report (matplotlib, PNG and PDF), sized and styled for a two-column paper.

- ``curves_<family>``: the main metric against reliability, one panel per curve sweep, one line
  per model and regime; with 3 or more seeds a band of the 95% Student-t interval of the mean
  over seeds (with fewer, no band: two seeds give intervals wider than the curves' differences);
- ``heatmap_<family>_<a>-<b>``: the main metric over a two-modality product grid, one panel per
  model and regime (only where the evaluation had such a sweep);
- ``quality_<family>``: the predicted quality r_m against the applied reliability of each modality
  (only for models that estimate quality);
- ``experts_<family>``: mean routing weight per expert along the joint sweep (only for models
  whose predictions carry ``expert_weights_<k>``, i.e. mixture-of-experts models).

:func:`trial_curve_png` draws the ``curves.png`` artifact each trial logs to the tracking store
(its own rows, before any report exists).

Reliability runs one way everywhere: ρ = 0 (absent) on the left, ρ = 1 (clean) on the right, as in
MLflow's charts of the curve metrics. Every figure comes with its caption (:class:`Drawn`), which
says what is plotted, over what, and what the band is; ``results.md`` and ``report.tex`` print it.

Colours follow the Okabe-Ito palette (colour-blind safe) and are fixed per model across every
figure; the line style is fixed per regime. Text is 7-8 pt at the printed size (a full row of
panels is 7 in wide, the width of a two-column page). Files carry no timestamps or software
versions, so the same runs give the same bytes.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from corruptions.catalogue import format_parameter
from corruptions.grids import is_curve_sweep

from ..metrics import METRIC_INFO, direction_arrow
from .build import compared, quality_pairs
from .core import Context, Entity
from .references import ORACLE_LABEL, reference_curve

__all__ = ["PALETTE", "Styles", "Drawn", "MIN_SEEDS_FOR_BAND", "curve_figures", "heatmap_figures", "quality_figures", "expert_figures", "save_figure",
           "trial_curve_png", "STYLE"]

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
         "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3.5, "axes.linewidth": 0.6,
         "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.pad_inches": 0.02,
         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False}
WIDTH = 7.0  # inches: the text width of a two-column paper
#: the reference curves: (name in the rows, legend label, line style); drawn after the models
REFERENCE_STYLES = (("oracle", ORACLE_LABEL, {"color": "#000000", "linestyle": "--", "linewidth": 1.0}),
                    ("linear probe", "linear probe", {"color": "#7f7f7f", "linestyle": ":", "linewidth": 1.0}))


#: fewer seeds than this: curves carry no band (a t-interval over two seeds spans most of the plot)
MIN_SEEDS_FOR_BAND = 3
#: the x-axis of every reliability plot: absent on the left, clean on the right
RHO_LIMITS = (-0.02, 1.02)


@dataclass(frozen=True)
class Drawn:
    """One figure written in PNG and PDF (``paths``), its caption and a short title (lists of figures)."""

    stem: str
    caption: str
    paths: tuple[Path, ...]
    title: str = ""


class Styles:
    """Colour and marker per model, line style per regime, fixed for the whole report."""

    def __init__(self, models: list[str], regimes: list[str]):
        self.models = list(dict.fromkeys(models))
        self.regimes = list(dict.fromkeys(regimes))

    def of(self, e: Entity) -> dict[str, object]:
        i = self.models.index(e.model) if e.model in self.models else len(self.models)
        j = self.regimes.index(e.regime) if e.regime in self.regimes else len(self.regimes)
        return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)],
                "linestyle": LINESTYLES[j % len(LINESTYLES)]}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: object, out: Path, stem: str, write: Callable[[Path, bytes], None]) -> list[Path]:
    """``stem.png`` (200 dpi) and ``stem.pdf`` (TrueType fonts), without timestamps or versions. The
    layout is computed once, for the PNG; the PDF reuses it."""
    paths = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Creator": None, "Producer": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=200, metadata=meta)  # type: ignore[attr-defined]
        fig.set_layout_engine("none")  # type: ignore[attr-defined]
        path = out / f"{stem}.{ext}"
        write(path, buf.getvalue())
        paths.append(path)
    return paths


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and its 95% Student-t interval (the mean itself with one seed)."""
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def _parameter_axis(ax: object, ctx: Context, fam: str, sweep: str) -> None:
    """A top axis with the family's physical parameter (SNR in dB, drop rate, ...) at the swept
    levels, from the rows' ``param_*`` columns (absent in rows of older trials: no axis)."""
    r = ctx.rows
    col = f"param_{'text' if sweep == 'joint' else sweep}"
    if col not in r or "param_name" not in r:
        return
    sub = r[(r["family"] == fam) & (r["sweep"] == sweep)].drop_duplicates("level")
    if sub.empty or not str(sub["param_name"].iloc[0]):
        return
    levels = sub["level"].astype(float).to_list()
    labels = [format_parameter(v) for v in sub[col].astype(float)]
    top = ax.secondary_xaxis("top")  # type: ignore[attr-defined]
    top.set_xticks(levels, labels, fontsize=5)
    unit = str(sub["param_unit"].iloc[0])
    top.set_xlabel(f"{sub['param_name'].iloc[0]}" + (f" ({unit})" if unit and len(unit) <= 4 else ""), fontsize=6)


def _legend(fig: object, axes: list, n: int) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        width = fig.get_figwidth()  # type: ignore[attr-defined]
        longest = max(len(lb) for lb in labels)
        ncol = max(1, min(len(handles), int(width / (0.45 + 0.055 * longest))))
        fig.legend(handles, labels, loc="outside upper center", ncol=ncol,  # type: ignore[attr-defined]
                   handlelength=2.4, columnspacing=1.2)


def _curve_caption(ctx: Context, metric: str, fam: str, sweeps: list[str], seeds: list[int]) -> str:
    info = METRIC_INFO[metric]
    n_lo, n_hi = (min(seeds), max(seeds)) if seeds else (0, 0)
    n = (f"{n_lo}" if n_lo == n_hi else f"{n_lo}-{n_hi}") + (" seed" if n_hi == 1 else " seeds")
    band = ("band: 95% Student-t interval of the mean over seeds" if n_lo >= MIN_SEEDS_FOR_BAND else
            f"no band: fewer than {MIN_SEEDS_FOR_BAND} seeds, too few for an interval over seeds "
            "(the tables' paired bootstrap over test samples tests the differences)")
    refs = [label for name, label, _ in REFERENCE_STYLES if any(
        reference_curve(ctx, name, fam, sw, metric) is not None for sw in sweeps)]
    ref_text = (f" Reference predictors, not competitors: {' and '.join(refs)} (black dashed: the oracle, grey "
                "dotted: the linear probe)." if refs else "")
    return (f"{info.label} ({'higher' if info.higher_is_better else 'lower'} is better) against the reliability ρ "
            f"of the {fam} corruption (0 = absent, 1 = clean), one panel per sweep ({', '.join(sweeps)}; a modality "
            f"sweep degrades that modality alone, joint all three at once). Lines: mean over {n} of each model "
            f"and training regime; {band}. Top axis: the corruption's physical parameter at each level.{ref_text}")


def curve_figures(ctx: Context, metric: str, styles: Styles, out: Path, write: Callable[[Path, bytes], None],
                  suffix: str = "") -> list[Drawn]:
    plt = _plt()
    info = METRIC_INFO[metric]
    arrow = "↑" if info.higher_is_better else "↓"
    ents = compared(ctx)
    drawn: list[Drawn] = []
    for fam in ctx.families:
        sweeps = [sw for sw in ctx.sweeps if any((fam, sw) in ctx.curves.get(t, {}) for e in ents for _, t in e.trials)]
        if not sweeps:
            continue
        seeds: list[int] = []
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(1, len(sweeps), figsize=(WIDTH * min(1.0, max(2, len(sweeps)) / 4), 2.3),
                                     sharey=True, squeeze=False, layout="constrained")
            for ax, sw in zip(axes[0], sweeps):
                for e in ents:
                    curves = [ctx.curves.get(t, {}).get((fam, sw)) for _, t in e.trials]
                    if not curves or any(c is None for c in curves) or len({c[1] for c in curves}) != 1:
                        continue
                    levels = np.array(curves[0][1])
                    vals = np.array([[ctx.values.get((t, fam, sw, i, metric), np.nan) for i in c[0]]
                                     for (_, t), c in zip(e.trials, curves)])
                    mean, lo, hi = _band(vals)
                    st = styles.of(e)
                    ax.plot(levels, mean, label=e.label, **st)
                    seeds.append(vals.shape[0])
                    if vals.shape[0] >= MIN_SEEDS_FOR_BAND:
                        ax.fill_between(levels, lo, hi, color=st["color"], alpha=0.15, linewidth=0)
                for name, label, style in REFERENCE_STYLES:
                    ref = reference_curve(ctx, name, fam, sw, metric)
                    if ref is not None:
                        ax.plot(ref[0], ref[1], label=label, **style)
                ax.set_title(f"{fam}: {sw}")
                ax.set_xlim(*RHO_LIMITS)
                _parameter_axis(ax, ctx, fam, sw)
                ax.grid(True, linewidth=0.3, alpha=0.5)
            fig.supxlabel("reliability ρ (0 absent, 1 clean)", fontsize=8)
            axes[0][0].set_ylabel(f"{info.label} {arrow}")
            _legend(fig, list(axes[0]), len(ents))
            stem = f"curves_{fam}{suffix}"
            drawn.append(Drawn(stem, _curve_caption(ctx, metric, fam, sweeps, seeds),
                               tuple(save_figure(fig, out, stem, write)), f"{info.label} against reliability: {fam}"))
            plt.close(fig)
    return drawn


def product_sweeps(ctx: Context) -> list[tuple[str, str, tuple[str, str]]]:
    """(family, sweep, (modality a, modality b)) of every two-modality product grid in the rows."""
    r = ctx.rows
    out = set()
    for fam, sw in zip(r["family"], r["sweep"]):
        parts = tuple(sw.split("+"))
        if len(parts) == 2:
            out.add((fam, sw, parts))
    return sorted(out)


def _heatmap_caption(metric: str, fam: str, a: str, b: str) -> str:
    info = METRIC_INFO[metric]
    return (f"{info.label} ({'higher' if info.higher_is_better else 'lower'} is better) over the product grid of the "
            f"{fam} corruption on {a} and {b} (ρ of {a} across, of {b} upwards; 0 = absent, 1 = clean; the third "
            "modality clean), one panel per model and training regime, mean over seeds; one colour scale for all "
            "panels.")


def _product_grids(sub: pd.DataFrame, ents: list[Entity], mods: tuple[str, str], xs: list[float],
                   ys: list[float]) -> list[tuple[Entity, np.ndarray]]:
    """Per entity, the metric (mean over seeds) on the product grid: rows = rho of ``mods[1]``."""
    a, b = mods
    grids = []
    for e in ents:
        g = sub[sub["trial_id"].isin(e.trial_ids)]
        if not g.empty:
            m = g.groupby([f"rho_{b}", f"rho_{a}"])["value"].mean()
            grids.append((e, np.array([[m.get((y, x), np.nan) for x in xs] for y in ys])))
    return grids


def heatmap_figures(ctx: Context, metric: str, out: Path, write: Callable[[Path, bytes], None],
                    suffix: str = "") -> list[Drawn]:
    plt = _plt()
    info = METRIC_INFO[metric]
    arrow = "↑" if info.higher_is_better else "↓"
    ents = compared(ctx)
    drawn: list[Drawn] = []
    r = ctx.rows[ctx.rows["metric"] == metric]
    for fam, sw, (a, b) in product_sweeps(ctx):
        sub = r[(r["family"] == fam) & (r["sweep"] == sw)]
        xs = sorted(set(sub[f"rho_{a}"].astype(float)))
        ys = sorted(set(sub[f"rho_{b}"].astype(float)))
        grids = _product_grids(sub, ents, (a, b), xs, ys)
        if not grids:
            continue
        vmin = np.nanmin([np.nanmin(g) for _, g in grids]) if any(np.isfinite(g).any() for _, g in grids) else 0.0
        vmax = np.nanmax([np.nanmax(g) for _, g in grids]) if any(np.isfinite(g).any() for _, g in grids) else 1.0
        ncol = min(4, len(grids))
        nrow = math.ceil(len(grids) / ncol)
        cmap = "viridis" if info.higher_is_better else "viridis_r"
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH * max(2, ncol) / 4, 1.9 * nrow + 0.3), squeeze=False,
                                     sharex=True, sharey=True, layout="constrained")
            for k, ax in enumerate(axes.flat):
                if k >= len(grids):
                    ax.axis("off")
                    continue
                e, grid = grids[k]
                im = ax.imshow(grid, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
                ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
                ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
                if k >= len(grids) - ncol:
                    ax.set_xlabel(f"ρ {a}")
                if k % ncol == 0:
                    ax.set_ylabel(f"ρ {b}")
                ax.set_title(e.label, fontsize=7)
                if len(xs) <= 6 and len(ys) <= 6:
                    mid = (vmin + vmax) / 2
                    digits = 2 if vmax - vmin >= 0.05 else 3
                    for yi in range(len(ys)):
                        for xi in range(len(xs)):
                            v = grid[yi, xi]
                            if np.isfinite(v):
                                dark = (v < mid) == info.higher_is_better
                                ax.text(xi, yi, f"{v:.{digits}f}", ha="center", va="center", fontsize=5,
                                        color="white" if dark else "black")
            cb = fig.colorbar(im, ax=list(axes.flat), shrink=0.9)
            cb.set_label(f"{info.label} {arrow}")
            fig.suptitle(f"{fam}: {a} × {b}", fontsize=8)
            stem = f"heatmap_{fam}_{a}-{b}{suffix}"
            drawn.append(Drawn(stem, _heatmap_caption(metric, fam, a, b), tuple(save_figure(fig, out, stem, write)),
                               f"{info.label} over the {a} x {b} grid: {fam}"))
            plt.close(fig)
    return drawn


def quality_figures(ctx: Context, styles: Styles, out: Path, write: Callable[[Path, bytes], None],
                    suffix: str = "", pairs: dict | None = None) -> list[Drawn]:
    plt = _plt()
    pairs = quality_pairs(ctx) if pairs is None else pairs
    if not pairs:
        return []
    ents = {e.label: e for e in compared(ctx)}
    drawn: list[Drawn] = []
    for fam in sorted({k[2] for k in pairs}):
        mods = [m for m in ("text", "audio", "vision") if any(k[2] == fam and k[3] == m for k in pairs)]
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(1, len(mods), figsize=(WIDTH * max(2, len(mods)) / 4, 2.3), sharey=True,
                                     squeeze=False, layout="constrained")
            for ax, m in zip(axes[0], mods):
                for label in [lb for lb in ents if any(k[0] == lb and k[2] == fam and k[3] == m for k in pairs)]:
                    rho = np.concatenate([v[0] for k, v in pairs.items() if k[0] == label and k[2] == fam and k[3] == m])
                    q = np.concatenate([v[1] for k, v in pairs.items() if k[0] == label and k[2] == fam and k[3] == m])
                    xs = np.array(sorted(set(rho.tolist())))
                    mean = np.array([np.nanmean(q[rho == x]) for x in xs])
                    q25 = np.array([np.nanpercentile(q[rho == x], 25) for x in xs])
                    q75 = np.array([np.nanpercentile(q[rho == x], 75) for x in xs])
                    st = styles.of(ents[label])
                    ax.plot(xs, mean, label=label, **st)
                    ax.fill_between(xs, q25, q75, color=st["color"], alpha=0.15, linewidth=0)
                ax.set_title(f"{fam}: {m}")
                ax.set_xlim(*RHO_LIMITS)
                ax.grid(True, linewidth=0.3, alpha=0.5)
            fig.supxlabel("applied reliability ρ (0 absent, 1 clean)", fontsize=8)
            axes[0][0].set_ylabel("predicted quality r")
            _legend(fig, list(axes[0]), len(ents))
            stem = f"quality_{fam}{suffix}"
            caption = (f"Quality estimates against the truth: the quality r each model predicts for a modality against "
                       f"the reliability ρ the {fam} corruption applied to it (0 = absent, 1 = clean), one panel per "
                       "modality, test samples of every grid point and seed pooled. Line: mean r at each applied ρ; "
                       "band: interquartile range of r over those samples.")
            drawn.append(Drawn(stem, caption, tuple(save_figure(fig, out, stem, write)),
                               f"Quality estimates against reliability: {fam}"))
            plt.close(fig)
    return drawn


def expert_columns(ctx: Context) -> list[str]:
    """The per-sample routing-weight columns (``expert_weights_<k>``) of the stored predictions."""
    p = ctx.data.predictions
    if p is None:
        return []
    cols = [c for c in p.columns if c.startswith("expert_weights_") and c.rsplit("_", 1)[1].isdigit()]
    return sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))


def expert_figures(ctx: Context, out: Path, write: Callable[[Path, bytes], None], suffix: str = "") -> list[Drawn]:
    """``experts_<family>``: mean routing weight of each expert (rows) along the joint sweep (columns),
    one panel per mixture-of-experts model and regime, averaged over seeds and test samples.

    Shows whether routing shifts as inputs lose reliability (QA-MoE's quality gate) or stays put.
    """
    cols = expert_columns(ctx)
    if not cols:
        return []
    plt = _plt()
    p = ctx.data.predictions
    drawn: list[Drawn] = []
    for fam in ctx.families:
        panels = []
        for e in compared(ctx):
            tids = [tid for _, tid in e.trials]
            sub = p[p["trial_id"].isin(tids) & (p["family"] == fam) & (p["sweep"] == "joint")]
            if sub.empty or sub[cols].isna().all().all():
                continue
            g = sub.groupby("level", sort=True)[cols].mean()
            g = g.loc[sorted(g.index)]  # absent (rho = 0) on the left, clean on the right
            panels.append((e.label, g))
        if not panels:
            continue
        with plt.rc_context(STYLE):
            ncol = min(3, len(panels))
            nrow = math.ceil(len(panels) / ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH * ncol / 3, 1.9 * nrow), squeeze=False,
                                     layout="constrained")
            vmax = max(float(np.nanmax(g.to_numpy())) for _, g in panels)
            im = None
            for ax, (label, g) in zip(axes.flat, panels):
                im = ax.imshow(g.to_numpy().T, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax,
                               interpolation="nearest")
                ax.set_xticks(range(len(g.index)), [f"{v:g}" for v in g.index])
                ax.set_yticks(range(len(cols)), [c.rsplit("_", 1)[1] for c in cols])
                ax.set_title(label)
                ax.set_xlabel(f"{fam}, joint sweep: ρ")
                ax.set_ylabel("expert")
            for ax in list(axes.flat)[len(panels):]:
                ax.set_visible(False)
            fig.colorbar(im, ax=list(axes.flat)[: len(panels)], label="mean routing weight", shrink=0.9)
            stem = f"experts_{fam}{suffix}"
            caption = (f"Expert routing along the joint sweep of the {fam} corruption: the mean routing weight of each "
                       "expert (rows) at each reliability ρ of all three modalities (columns, 0 = absent on the left, "
                       "1 = clean on the right), one panel per mixture-of-experts model and training regime, averaged "
                       "over seeds and test samples.")
            drawn.append(Drawn(stem, caption, tuple(save_figure(fig, out, stem, write)),
                               f"Expert routing along the joint sweep: {fam}"))
            plt.close(fig)
    return drawn


def trial_curve_png(rows: list[dict], title: str, metric: str = "mae") -> bytes:
    """The ``curves.png`` artifact of one trial: ``metric`` against reliability, one panel per
    family, one line per curve sweep (a reference trial: its oracle, else its first predictor);
    weighted F1 for a classification trial, whose rows have no MAE."""
    plt = _plt()
    df = pd.DataFrame(rows)
    if metric not in set(df["metric"]) and "weighted_f1" in set(df["metric"]):
        metric = "weighted_f1"
    models = list(dict.fromkeys(df["model"]))
    shown = "oracle" if "oracle" in models else models[0]  # a reference trial: its oracle (else its probe)
    df = df[(df["metric"] == metric) & (df["family"] != "clean") & (df["model"] == shown)]
    df = df[df["sweep"].map(is_curve_sweep)]
    fams = sorted(df["family"].unique())
    fig, axes = plt.subplots(1, max(1, len(fams)), figsize=(3.2 * max(1, len(fams)), 2.8), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        sub = df[df["family"] == fam]
        for sweep, g in sub.groupby("sweep"):
            g = g.sort_values("level")
            ax.plot(g["level"], g["value"], marker="o", ms=3, label=sweep)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("reliability ρ (0 absent, 1 clean)", fontsize=8)
        ax.set_xlim(*RHO_LIMITS)
        ax.tick_params(labelsize=7)
    info = METRIC_INFO[metric]
    axes[0][0].set_ylabel(f"{metric.upper()} (↓)" if metric == "mae" else f"{info.label} ({direction_arrow(metric)})",
                          fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
