"""Reports rendered from the tracking store alone (never from a run's memory).

``write_report(suite)`` reads the tidy ``rows.csv`` of every completed trial of the suite from
MLflow (by trial identity), and writes into ``<report.dir>/<suite>/``: ``results.md`` (clean
metrics and robustness tables, metric direction marked, mean ± std over seeds, provenance),
``rows.csv`` (all rows, long form) and one degradation-curve figure per corruption family
(PNG and PDF). The same runs always give byte-identical tables.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from .metrics import METRIC_INFO
from .robustness import audc
from .suite import Suite
from .tracking import Tracker

__all__ = ["collect_rows", "write_report", "render_tables"]

CLEAN_METRICS = ["mae", "corr", "acc7", "has0_acc2", "non0_acc2", "non0_f1"]
SIMS_CLEAN_METRICS = ["mae", "corr", "acc2", "acc3", "acc5", "f1"]


def collect_rows(suite: Suite) -> pd.DataFrame:
    """All rows of the suite's completed trials, read back from the tracking store."""
    from .runner import plan_suite

    tracker = Tracker(suite.tracking.uri, suite.experiment)
    done = tracker.completed_trials()
    frames = [tracker.read_rows(done[p.trial_id]) for p in plan_suite(suite) if p.trial_id in done]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["model", "regime", "condition", "seed", "family", "sweep", "level_index", "metric"],
                          kind="mergesort").reset_index(drop=True)


_SWEEP_ORDER = ("text", "audio", "vision", "joint")


def _sweep_rank(sweep: str) -> tuple[int, str]:
    """Sweeps in the order text, audio, vision, joint, then anything else alphabetically."""
    return (_SWEEP_ORDER.index(sweep) if sweep in _SWEEP_ORDER else len(_SWEEP_ORDER), sweep)


def _fmt(mean: float, std: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if np.isfinite(std) else f"{mean:.{digits}f}"


def _bold_best(table: pd.DataFrame, means: pd.DataFrame, higher: dict[str, bool]) -> pd.DataFrame:
    out = table.copy()
    for col in table.columns:
        vals = means[col].astype(float)
        if vals.notna().sum() < 2:
            continue
        best = vals.max() if higher.get(col, False) else vals.min()
        for idx in vals.index[np.isclose(vals, best, rtol=0, atol=1e-12)]:
            out.loc[idx, col] = f"**{out.loc[idx, col]}**"
    return out


def _md(df: pd.DataFrame) -> str:
    cols = [df.index.name or ""] + list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def _label(model: str, regime: str, condition: str) -> str:
    return f"{model} ({regime}{' ' + condition if condition else ''})"


def render_tables(df: pd.DataFrame, metric_family: str = "mosi", main_metric: str = "mae",
                  ceiling: dict[str, Any] | None = None) -> str:
    """Markdown tables from long-form rows (deterministic for the same rows)."""
    df = df.copy()
    df["row"] = [_label(m, r, c) for m, r, c in zip(df["model"], df["regime"], df["condition"].fillna(""))]
    keys = SIMS_CLEAN_METRICS if metric_family == "sims" else CLEAN_METRICS
    clean = df[(df["level_index"] == 0) & (df["metric"].isin(keys))]
    clean = clean.drop_duplicates(["row", "seed", "metric"])
    g = clean.groupby(["row", "metric"])["value"]
    means, stds = g.mean().unstack(), g.std(ddof=1).unstack()
    cols = [k for k in keys if k in means.columns]
    higher = {k: METRIC_INFO[k].higher_is_better for k in cols}
    table = pd.DataFrame({k: [_fmt(means.loc[i, k], stds.loc[i, k]) for i in means.index] for k in cols},
                         index=means.index)
    table = _bold_best(table, means[cols], higher)
    if ceiling:
        table.loc["planted ceiling (generator)"] = [_fmt(float(ceiling[k]), float("nan")) if k in ceiling
                                                    else "" for k in cols]
    table.columns = [f"{METRIC_INFO[k].label} {'↑' if higher[k] else '↓'}" for k in cols]
    table.index.name = "model (regime)"
    parts = ["## Clean test performance", "", "Mean ± std over seeds; best in bold. "
             "Acc-2/F1 variants: Has0 = negative vs non-negative, Non0 = negative vs positive (zeros dropped).",
             "", _md(table), ""]
    info = METRIC_INFO[main_metric]
    arrow = "↑" if info.higher_is_better else "↓"
    curves = df[(df["metric"] == main_metric) & (df["family"] != "clean")]
    rows: dict[str, dict[str, list[float]]] = {}
    for (row, _seed, fam, sweep), grp in curves.groupby(["row", "seed", "family", "sweep"]):
        grp = grp.sort_values("level_index")
        rows.setdefault(row, {}).setdefault(f"{fam}/{sweep}", []).append(
            audc(grp["level"].to_numpy(), grp["value"].to_numpy()))
    if rows:
        colnames = sorted({c for r in rows.values() for c in r},
                          key=lambda c: (c.split("/")[0], _sweep_rank(c.split("/")[1])))
        m = pd.DataFrame({c: [float(np.mean(rows[r].get(c, [np.nan]))) for r in sorted(rows)] for c in colnames},
                         index=sorted(rows))
        s = pd.DataFrame({c: [float(np.std(rows[r].get(c, [np.nan]), ddof=1)) if len(rows[r].get(c, [])) > 1
                              else float("nan") for r in sorted(rows)] for c in colnames}, index=sorted(rows))
        t = pd.DataFrame({c: [_fmt(m.loc[i, c], s.loc[i, c]) for i in m.index] for c in colnames}, index=m.index)
        t = _bold_best(t, m, {c: info.higher_is_better for c in colnames})
        t.index.name = "model (regime)"
        parts += [f"## Robustness: normalised area under the {info.label} degradation curve ({arrow})", "",
                  "Columns are family/sweep; a sweep degrades one modality (others clean) or all three (joint) "
                  "from ρ = 1 (clean) to ρ = 0 (absent). Mean ± std over seeds; best in bold.", "", _md(t), ""]
    return "\n".join(parts)


def _figures(df: pd.DataFrame, out: Path, metric: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    sub = df[(df["metric"] == metric) & (df["family"] != "clean")].copy()
    sub["row"] = [_label(m, r, c) for m, r, c in zip(sub["model"], sub["regime"], sub["condition"].fillna(""))]
    palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
    colours = {r: palette[i % len(palette)] for i, r in enumerate(sorted(sub["row"].unique()))}
    for fam, fdf in sub.groupby("family"):
        sweeps = sorted(fdf["sweep"].unique(), key=_sweep_rank)
        fig, axes = plt.subplots(1, len(sweeps), figsize=(2.6 * len(sweeps), 2.4), sharey=True, squeeze=False)
        for ax, sweep in zip(axes[0], sweeps):
            for row, g in fdf[fdf["sweep"] == sweep].groupby("row"):
                stats = g.groupby("level")["value"].agg(["mean", "std"]).sort_index()
                ax.plot(stats.index, stats["mean"], marker="o", ms=3, lw=1.2, color=colours[row], label=row)
                ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0),
                                stats["mean"] + stats["std"].fillna(0), color=colours[row], alpha=0.15, lw=0)
            ax.set_title(f"{fam}: {sweep}", fontsize=8)
            ax.set_xlabel("reliability ρ", fontsize=8)
            ax.invert_xaxis()
            ax.tick_params(labelsize=7)
        arrow = "↑" if METRIC_INFO[metric].higher_is_better else "↓"
        axes[0][0].set_ylabel(f"{METRIC_INFO[metric].label} {arrow}", fontsize=8)
        axes[0][-1].legend(fontsize=6, frameon=False)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            p = out / f"curves_{fam}.{ext}"
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=150, metadata={"CreationDate": None} if ext == "pdf" else None)
            _atomic_write(p, buf.getvalue())
            paths.append(p)
        plt.close(fig)
    return paths


def write_report(suite: Suite, console: Console | None = None) -> dict[str, str]:
    """Write tables and figures of ``suite`` into ``<report.dir>/<suite name>/``; return the paths."""
    console = console or Console(stderr=True)
    df = collect_rows(suite)
    out = Path(suite.report.dir) / suite.name
    out.mkdir(parents=True, exist_ok=True)
    if df.empty:
        console.print("[yellow]no completed trials to report yet[/yellow]")
        return {}
    family = "sims" if "acc2" in set(df["metric"]) and "acc7" not in set(df["metric"]) else "mosi"
    ceiling = _ceiling(suite)
    body = render_tables(df, family, suite.report.main_metric, ceiling)
    versions = sorted({f"{f}={v}" for f, v in zip(df["family"], df["corruption_version"].astype(str)) if v})
    header = [
        f"# {suite.name}: robustness report", "",
        f"- suite: `{suite.source}` (version {suite.version})",
        f"- trials: {df['trial_id'].nunique()} ({', '.join(sorted(df['trial_id'].unique()))})",
        f"- data hash: {', '.join(sorted(df['data_hash'].astype(str).unique()))}",
        f"- corruption versions: {', '.join(versions)}",
        f"- tracking: `{suite.tracking.uri}`, experiment `{suite.experiment}`",
        "", ""
    ]
    _atomic_write(out / "results.md", ("\n".join(header) + body + "\n").encode("utf-8"))
    _atomic_write(out / "rows.csv", df.drop(columns=["row"], errors="ignore").to_csv(index=False).encode("utf-8"))
    figs = _figures(df, out, suite.report.main_metric)
    return {"table": str(out / "results.md"), "rows": str(out / "rows.csv"),
            "figures": ", ".join(str(p) for p in figs if p.suffix == ".png")}


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a failed run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _ceiling(suite: Suite) -> dict[str, Any] | None:
    try:
        from .data.registry import load_dataset

        d = suite.datasets[0]
        c = load_dataset(d.name, d.params).info.get("ceiling") or {}
        return c.get("test") if isinstance(c.get("test"), dict) else None
    except Exception:  # noqa: BLE001 - the ceiling row is optional
        return None
