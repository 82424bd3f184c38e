"""Results that travel: one model's results on one dataset and protocol as a versioned JSON document.

Every report writes ``results/<model>__<regime>__<dataset>.json`` per (model, regime[, specialist
condition]) of each dataset (declared in :mod:`.catalogue`, so stale files are cleaned). The schema
is ``robustmsa/schemas/results-1.schema.json`` (docs/results_schema.md); :mod:`.leaderboard`
merges such files from several runs into one ranking.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from corruptions.keys import MODALITIES

from ..metrics import METRIC_INFO
from ..robustness import effective_robustness, relative_robustness, summarise_curve
from .build import file_part
from .core import Context, Entity, condition_text, is_curve_sweep
from .published import published_rows

__all__ = ["RESULTS_SCHEMA", "RESULTS_SCHEMA_VERSION", "results_documents", "protocol_fingerprint", "dumps"]

RESULTS_SCHEMA = "robustmsa-results"
RESULTS_SCHEMA_VERSION = "1.1"  # 1.1: ``published``


def _num(x: Any) -> float | None:
    """A JSON number, or null for nan/inf."""
    x = float(x)
    return x if math.isfinite(x) else None


def _stats(per_seed: dict[int, float]) -> dict[str, Any]:
    v = np.array([per_seed[s] for s in sorted(per_seed)], dtype=float)
    std = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return {"mean": _num(np.mean(v)) if v.size else None, "std": _num(std),
            "per_seed": {str(s): _num(per_seed[s]) for s in sorted(per_seed)}}


def _text(x: Any) -> str:
    """A string column's value ("" for a missing column or NaN: rows of runs older than the column)."""
    return x if isinstance(x, str) else ""


def dumps(doc: dict[str, Any]) -> str:
    """The document as written: sorted keys, two-space indent, a final newline (byte-stable)."""
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"


def protocol_fingerprint(rows: pd.DataFrame) -> dict[str, Any]:
    """The grid the rows were evaluated on (families, sweeps, levels, rho and parameter per modality,
    split) and its sha256 (``id``): two results are comparable only when their ids are equal."""
    rows = rows if "param_name" in rows else rows.assign(param_name="")
    cols = ["family", "sweep", "level_index", "level", *(f"rho_{m}" for m in MODALITIES), "param_name"]
    grid = rows.drop_duplicates(["family", "sweep", "level_index"])[cols].sort_values(cols[:3], kind="mergesort")
    points = [[str(r.family), str(r.sweep), int(r.level_index), round(float(r.level), 9),
               *(round(float(getattr(r, f"rho_{m}")), 9) for m in MODALITIES), _text(r.param_name)]
              for r in grid.itertuples(index=False)]
    split = sorted({str(s) for s in rows["split"]}) if "split" in rows else []
    blob = json.dumps({"points": points, "split": split}, sort_keys=True).encode()
    families = sorted({p[0] for p in points if p[0] != "clean"})
    return {"id": hashlib.sha256(blob).hexdigest()[:16], "split": ",".join(split), "families": families,
            "sweeps": sorted({p[1] for p in points if p[1] != "clean"}), "points": len(points)}


def _values(rows: pd.DataFrame) -> dict[tuple, float]:
    return {k: float(v) for k, v in zip(zip(rows["seed"], rows["family"], rows["sweep"], rows["level_index"],
                                            rows["metric"]), rows["value"])}


def _clean(ctx: Context, e: Entity, metrics: list[str]) -> dict[str, Any]:
    out = {}
    for m in metrics:
        per_seed = {}
        for seed, tid in e.trials:
            term = ctx.clean_points.get(tid)
            v = ctx.values.get((tid, term.family, term.sweep, term.indices[0], m)) if term else None
            if v is not None:
                per_seed[seed] = v
        out[m] = _stats(per_seed)
    return out


def _point(g: pd.DataFrame, rows: pd.DataFrame, metrics: list[str]) -> dict[str, Any]:
    first = g.iloc[0]
    vals = _values(g)
    key = (first["family"], first["sweep"], int(first["level_index"]))
    seeds = sorted({int(s) for s in rows["seed"]})
    return {"level_index": int(first["level_index"]), "level": _num(first["level"]),
            "rho": {m: _num(first[f"rho_{m}"]) for m in MODALITIES},
            "param": {m: _num(first.get(f"param_{m}", float("nan"))) for m in MODALITIES},
            "metrics": {m: _stats({s: vals[(s, *key, m)] for s in seeds if (s, *key, m) in vals}) for m in metrics}}


def _curve_summary(levels: list[float], per_seed: dict[int, list[float]], hib: bool) -> dict[str, Any]:
    sums = {s: summarise_curve(levels, f, hib) for s, f in per_seed.items()}
    out = {k: _stats({s: v[k] for s, v in sums.items()}) for k in ("audc", "drop", "relative", "worst")}
    out["mean_over_levels"] = _stats({s: float(np.mean(f)) for s, f in per_seed.items()})
    return out


def _curve_values(ctx: Context, e: Entity, fam: str, sweep: str, metric: str) -> tuple[list[float], dict[int, list]]:
    levels: list[float] = []
    per_seed: dict[int, list[float]] = {}
    for seed, tid in e.trials:
        c = ctx.curves.get(tid, {}).get((fam, sweep))
        if c is None:
            continue
        vals = [ctx.values.get((tid, fam, sweep, i, metric), float("nan")) for i in c[0]]
        levels, per_seed[seed] = list(c[1]), vals
    return levels, per_seed


def _curves(ctx: Context, e: Entity, metrics: list[str], main: str, rows: pd.DataFrame) -> list[dict[str, Any]]:
    hib = METRIC_INFO[main].higher_is_better
    out = []
    r = rows[(rows["family"] != "clean") & rows["sweep"].map(is_curve_sweep)]
    for (fam, sweep), g in r.groupby(["family", "sweep"], sort=True):
        first = g.iloc[0]
        levels, per_seed = _curve_values(ctx, e, fam, sweep, main)
        points = [_point(p, g, metrics) for _, p in g.groupby("level_index", sort=True)]
        out.append({"family": fam, "sweep": sweep, "corruption_version": _text(first.get("corruption_version")),
                    "param_name": _text(first.get("param_name")), "param_unit": _text(first.get("param_unit")),
                    "points": points, "summary": _curve_summary(levels, per_seed, hib) if per_seed else {}})
    return out


def _comparisons(ctx: Context, entities: list[Entity], main: str, reference: str | None) -> dict[tuple, dict]:
    """(entity key) -> {(family, sweep): {"er": per seed, "rr": per seed}} over the entities of one regime."""
    hib = METRIC_INFO[main].higher_is_better
    out: dict[tuple, dict] = {}
    for regime in sorted({e.regime for e in entities}):
        group = [e for e in entities if e.regime == regime]
        ref = next((e for e in group if e.model == reference and not e.condition), None)
        curves = {k for e in group for tid in (t for _, t in e.trials) for k in ctx.curves.get(tid, {})}
        for fam, sweep in sorted(curves):
            data = {(e.model, e.condition): _curve_values(ctx, e, fam, sweep, main) for e in group}
            seeds = sorted({s for _, ps in data.values() for s in ps})
            for s in seeds:
                audcs = {k: summarise_curve(lv, ps[s], hib)["audc"] for k, (lv, ps) in data.items() if s in ps}
                rr = relative_robustness({str(k): v for k, v in audcs.items()}, hib) if audcs else {}
                for k, (lv, ps) in data.items():
                    slot = out.setdefault((regime, *k), {}).setdefault((fam, sweep), {"er": {}, "rr": {}})
                    if s in ps and str(k) in rr:
                        slot["rr"][s] = rr[str(k)]
                    if ref is not None and s in ps and s in data[(ref.model, ref.condition)][1]:
                        slot["er"][s] = effective_robustness(lv, ps[s], data[(ref.model, ref.condition)][1][s], hib)
    return out


def _overall(curves: list[dict[str, Any]], comp: dict) -> dict[str, Any]:
    """Per seed, the mean over curves of AUDC, mean over levels, ER and RR; then mean and std over seeds."""
    def mean_of(pick: Iterable[dict[str, float]]) -> dict[str, Any]:
        per_seed: dict[int, list[float]] = {}
        for d in pick:
            for s, v in d.items():
                per_seed.setdefault(int(s), []).append(v if v is not None else float("nan"))
        return _stats({s: float(np.mean(v)) for s, v in per_seed.items()})

    summaries = [c["summary"] for c in curves if c["summary"]]
    return {"audc": mean_of(s["audc"]["per_seed"] for s in summaries),
            "mean_over_levels": mean_of(s["mean_over_levels"]["per_seed"] for s in summaries),
            "effective_robustness": mean_of(v["er"] for v in comp.values() if v["er"]) if any(
                v["er"] for v in comp.values()) else None,
            "relative_robustness": mean_of(v["rr"] for v in comp.values())}


def _attach(curves: list[dict[str, Any]], comp: dict) -> None:
    for c in curves:
        v = comp.get((c["family"], c["sweep"]))
        if v and c["summary"]:
            c["summary"]["effective_robustness"] = _stats(v["er"]) if v["er"] else None
            c["summary"]["relative_robustness"] = _stats(v["rr"])


def _provenance(ctx: Context, e: Entity, rows: pd.DataFrame) -> dict[str, Any]:
    prov = ctx.data.provenance([tid for _, tid in e.trials])
    versions = {str(f): str(v) for f, v in zip(rows["family"], rows["corruption_version"]) if isinstance(v, str) and v}
    return {"code_versions": list(prov.code_versions), "data_hashes": list(prov.data_hashes),
            "corruption_versions": dict(sorted(versions.items())), "trial_ids": list(prov.trial_ids),
            "date": prov.date}


def _document(ctx: Context, e: Entity, main: str, metrics: list[str], comp: dict) -> dict[str, Any]:
    ids = {tid for _, tid in e.trials}
    rows = ctx.rows[ctx.rows["trial_id"].isin(ids) & ctx.rows["metric"].isin(metrics)]
    curves = _curves(ctx, e, metrics, main, rows)
    _attach(curves, comp)
    prov = _provenance(ctx, e, rows)
    return {
        "schema": RESULTS_SCHEMA, "schema_version": RESULTS_SCHEMA_VERSION,
        "model": {"label": e.model, "name": e.model_name},
        "regime": {"name": e.regime, "kind": e.regime_kind, "condition": json.loads(e.condition) if e.condition else None},
        "dataset": {"name": ctx.dataset, "data_hash": prov["data_hashes"][0] if len(prov["data_hashes"]) == 1 else None},
        "protocol": {"suite": ctx.data.suite, "suite_version": str(ctx.data.suite_version),
                     **protocol_fingerprint(ctx.rows)},
        "metric_family": ctx.family, "main_metric": main,
        "higher_is_better": {m: METRIC_INFO[m].higher_is_better for m in metrics},
        "seeds": [s for s, _ in e.trials], "clean": _clean(ctx, e, metrics), "curves": curves,
        "overall": _overall(curves, comp), "provenance": prov,
        "published": [r.as_dict() for r in published_rows(ctx)],
    }


def results_documents(ctx: Context, main: str, reference: str | None) -> dict[str, dict[str, Any]]:
    """``results/<model>__<regime>__<dataset>.json`` -> document, for every model entity of the dataset."""
    metrics = sorted(m for m in set(ctx.rows["metric"]) if m in METRIC_INFO)
    if main not in metrics:
        return {}
    entities = [e for e in ctx.entities if e.regime_kind != "reference"]
    comps = _comparisons(ctx, entities, main, reference)
    out = {}
    for e in entities:
        regime = e.regime + (f"@{condition_text(e.condition)}" if e.condition else "")
        name = "__".join(file_part(x) for x in (e.model, regime, ctx.dataset))
        out[f"results/{name}.json"] = _document(ctx, e, main, metrics, comps.get((e.regime, e.model, e.condition), {}))
    return out
