"""Report input: tracked trials read back from MLflow, or the tidy tables the runs logged.

Never the memory of a run: :func:`load_from_tracking` reads every FINISHED trial run of an
experiment (optionally one suite's, optionally a given set of trial identities) from any tracking
URI: its ``rows.csv`` and ``predictions.csv.gz`` artifacts, its tags (data hash, code version,
corruption versions), its ``info/*`` metrics (training cost) and its ``model.config.*`` params.
:func:`from_frames` builds the same :class:`ReportData` from tidy tables alone. Everything is
sorted, so the same runs always give the same data in the same order.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RobustMSAError
from .tables import Provenance

__all__ = ["ReportData", "NothingToReport", "load_from_tracking", "from_frames", "metric_family_of", "ROW_KEY"]

TAG = "robustmsa"
REFERENCE_KIND = "reference"
ROW_KEY = ["dataset", "model", "regime", "condition", "seed"]
_INFO = ("train_seconds", "eval_seconds", "total_seconds", "n_params", "best_epoch")
_ROW_DTYPES = {"condition": str, "corruption_version": str, "value": float, "sweep": str, "family": str,
               "model": str, "regime": str, "trial_id": str, "data_hash": str}


class NothingToReport(RobustMSAError):
    """The tracking store holds no finished trial of what was asked for."""


@dataclass
class ReportData:
    """Everything a report is computed from.

    ``rows``: the tidy rows (one per trial, grid point and metric). ``trials``: one line per trial
    (identity, model, regime, condition, seed, dataset, costs, provenance, ``config`` as JSON).
    ``predictions``: per-sample predictions with a ``trial_id`` column, or None when not logged.
    ``references``: the rows of the reference predictors (oracle, linear probes; regime kind
    ``reference``), kept apart from ``rows`` so that no table ranks them as models.
    """

    rows: pd.DataFrame
    trials: pd.DataFrame
    predictions: pd.DataFrame | None
    suite: str
    suite_version: str
    model_order: list[str] = field(default_factory=list)
    regime_order: list[str] = field(default_factory=list)
    ceiling: dict[str, float] | None = None
    references: pd.DataFrame | None = None

    def provenance(self, trial_ids: Iterable[str] | None = None) -> Provenance:
        """Provenance of the given trials (default: all of them)."""
        t, rows = self.trials, self.rows
        if trial_ids is not None:
            ids = set(trial_ids)
            t, rows = t[t["trial_id"].isin(ids)], rows[rows["trial_id"].isin(ids)]
        versions = sorted({f"{f}={v}" for f, v in zip(rows["family"], rows["corruption_version"])
                           if isinstance(v, str) and v})
        return Provenance(
            suite=self.suite, suite_version=self.suite_version,
            trial_ids=tuple(sorted(t["trial_id"])),
            data_hashes=tuple(sorted({str(h) for h in t["data_hash"] if isinstance(h, str) and h})),
            code_versions=tuple(sorted({str(c) for c in t["code_version"] if isinstance(c, str) and c})),
            corruption_versions=tuple(versions),
            date=_date(t["end_time"]),
        )

    def order_key(self, model: str, regime: str) -> tuple:
        mi = self.model_order.index(model) if model in self.model_order else len(self.model_order)
        ri = self.regime_order.index(regime) if regime in self.regime_order else len(self.regime_order)
        return (ri, regime, mi, model)


def _date(end_times: Iterable[Any]) -> str:
    """The end time of the newest trial run (UTC), so the same runs always give the same date."""
    vals = [int(v) for v in end_times if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not vals:
        return "unknown"
    return datetime.fromtimestamp(max(vals) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def metric_family_of(rows: pd.DataFrame) -> str:
    """``"sims"`` when the rows hold SIMS metrics (acc2 without acc7), else ``"mosi"``."""
    keys = set(rows["metric"])
    return "sims" if "acc2" in keys and "acc7" not in keys else "mosi"


def _clean_rows(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in ("condition", "corruption_version"):
        if col not in df:
            df[col] = ""
        df[col] = df[col].fillna("").astype(str)
    df["seed"] = df["seed"].astype(int)
    df["level_index"] = df["level_index"].astype(int)
    df["level"] = df["level"].astype(float)
    df["value"] = df["value"].astype(float)
    for col in ("regime_kind", "model_name", "dataset"):
        if col not in df:
            df[col] = {"regime_kind": "spectrum", "model_name": df["model"], "dataset": "data"}[col]
    return df.sort_values(["dataset", "model", "regime", "condition", "seed", "trial_id", "family", "sweep",
                           "level_index", "metric"], kind="mergesort").reset_index(drop=True)


def _trials_from_rows(rows: pd.DataFrame) -> pd.DataFrame:
    cols = ["trial_id", "dataset", "model", "model_name", "regime", "regime_kind", "condition", "seed", "data_hash"]
    t = rows[[c for c in cols if c in rows]].drop_duplicates("trial_id").copy()
    for c in cols:
        if c not in t:
            t[c] = ""
    for c in (*_INFO, "end_time"):
        t[c] = np.nan
    t["code_version"] = ""
    t["run_id"] = ""
    t["config"] = "{}"
    return t.sort_values("trial_id", kind="mergesort").reset_index(drop=True)


def from_frames(rows: pd.DataFrame, predictions: pd.DataFrame | None = None, trials: pd.DataFrame | None = None,
                suite: str | None = None, suite_version: str | None = None, model_order: list[str] | None = None,
                regime_order: list[str] | None = None, ceiling: dict[str, float] | None = None) -> ReportData:
    """ReportData from tidy tables (the ``rows.csv`` and ``predictions.csv.gz`` the runs logged)."""
    if rows.empty:
        raise RobustMSAError("no rows to report", hint="run the suite first")
    rows = _clean_rows(rows)
    is_ref = rows["regime_kind"] == REFERENCE_KIND
    references = rows[is_ref].reset_index(drop=True) if is_ref.any() else None
    rows = rows[~is_ref].reset_index(drop=True)
    if rows.empty:
        raise NothingToReport("no finished model trial to report (only the reference predictors)",
                              hint="run the suite first")
    if trials is None:
        trials = _trials_from_rows(rows)
    trials = trials[trials["trial_id"].isin(set(rows["trial_id"]))].reset_index(drop=True)
    if predictions is not None:
        predictions = predictions.copy()
        predictions["sample_id"] = predictions["sample_id"].astype(str)
        predictions["level_index"] = predictions["level_index"].astype(int)
        predictions = predictions.sort_values(["trial_id", "family", "sweep", "level_index", "sample_id"],
                                              kind="mergesort").reset_index(drop=True)
    return ReportData(
        rows=rows, trials=trials, predictions=predictions,
        suite=suite or str(rows["suite"].iloc[0] if "suite" in rows else "report"),
        suite_version=str(suite_version or (rows["suite_version"].iloc[0] if "suite_version" in rows else "")),
        model_order=list(model_order or []), regime_order=list(regime_order or []), ceiling=ceiling,
        references=references,
    )


# ---------------------------------------------------------------------------- MLflow


def _search(client: Any, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _latest_per_trial(runs: list) -> list:
    best: dict[str, Any] = {}
    for r in runs:
        tid = r.data.tags.get(f"{TAG}.trial_id")
        if not tid:
            continue
        key = (r.info.start_time or 0, r.info.run_id)
        if tid not in best or key > (best[tid].info.start_time or 0, best[tid].info.run_id):
            best[tid] = r
    return [best[t] for t in sorted(best)]


def _download(uri: str, run_id: str, path: str, dst: str) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=dst,
                                                    tracking_uri=uri))


def _trial_line(run: Any, rows: pd.DataFrame) -> dict[str, Any]:
    first = rows.iloc[0]
    config = {k.removeprefix("model.config."): v for k, v in run.data.params.items() if k.startswith("model.config.")}
    reference = first["regime_kind"] == REFERENCE_KIND  # several predictors: the cell is the trial's
    line = {"trial_id": run.data.tags[f"{TAG}.trial_id"], "run_id": run.info.run_id,
            "dataset": first["dataset"], "model": "references" if reference else first["model"],
            "model_name": first["model_name"],
            "regime": first["regime"], "regime_kind": first["regime_kind"], "condition": first["condition"],
            "seed": int(first["seed"]), "end_time": run.info.end_time,
            "data_hash": run.data.tags.get(f"{TAG}.data_hash", str(first.get("data_hash", ""))),
            "code_version": run.data.tags.get(f"{TAG}.code_version", ""),
            "config": json.dumps(dict(sorted(config.items())), sort_keys=True)}
    for k in _INFO:
        line[k] = run.data.metrics.get(f"info/{k}", np.nan)
    return line


def _select(lines: list[dict[str, Any]], cells: set[tuple] | None, prefer: set[str] | None) -> list[dict[str, Any]]:
    """One trial per (dataset, model, regime, condition, seed) cell, only ``cells`` if given: a
    preferred identity first, then the run that ended last."""
    best: dict[tuple, dict[str, Any]] = {}
    for line in lines:
        cell = tuple(line[k] for k in ROW_KEY)
        if cells is not None and cell not in cells:
            continue
        rank = (line["trial_id"] in (prefer or ()), line["end_time"] or 0, line["run_id"])
        if cell not in best or rank > best[cell]["_rank"]:
            best[cell] = {**line, "_rank": rank}
    return sorted(({k: v for k, v in x.items() if k != "_rank"} for x in best.values()), key=lambda x: x["trial_id"])


def load_from_tracking(uri: str, experiment: str, suite: str | None = None, trial_ids: Iterable[str] | None = None,
                       cells: Iterable[tuple] | None = None, prefer: Iterable[str] | None = None,
                       predictions: bool = True, model_order: list[str] | None = None,
                       regime_order: list[str] | None = None) -> ReportData:
    """Read FINISHED trial runs of ``experiment`` from the tracking store at ``uri``.

    ``suite``: only runs tagged with that suite; ``trial_ids``: only those identities. Then one trial
    per (dataset, model, regime, condition, seed) cell, only the given ``cells`` if any: an identity
    in ``prefer`` (the suite as defined now) first, else the run that ended last (a trial of an
    earlier definition of the suite, e.g. before a model default changed).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise NothingToReport(f"no experiment {experiment!r} in the tracking store {uri}",
                              hint="run the suite first, or check tracking.uri and tracking.experiment")
    filt = f"tags.`{TAG}.kind` = 'trial' and attributes.status = 'FINISHED'"
    if suite:
        filt += f" and tags.`{TAG}.suite` = '{suite}'"
    runs = _latest_per_trial(_search(client, exp.experiment_id, filt))
    if trial_ids is not None:
        wanted = set(trial_ids)
        runs = [r for r in runs if r.data.tags[f"{TAG}.trial_id"] in wanted]
    by_id = {r.data.tags[f"{TAG}.trial_id"]: r for r in runs}
    frames: dict[str, pd.DataFrame] = {}
    preds: dict[str, pd.DataFrame] = {}
    ceiling = None
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for tid, run in sorted(by_id.items()):
            d = Path(tmp) / tid
            d.mkdir()
            frames[tid] = _clean_rows(pd.read_csv(_download(uri, run.info.run_id, "rows.csv", str(d)), dtype=_ROW_DTYPES))
            lines.append(_trial_line(run, frames[tid]))
        lines = _select(lines, set(cells) if cells is not None else None, set(prefer) if prefer else None)
        if not lines:
            raise NothingToReport(f"no finished trials of {suite or experiment!r} in {uri}", hint="run the suite first")
        for line in lines:
            tid, run = line["trial_id"], by_id[line["trial_id"]]
            d = Path(tmp) / tid
            names = {a.path for a in client.list_artifacts(run.info.run_id)}
            if predictions and "predictions.csv.gz" in names and line["regime_kind"] != REFERENCE_KIND:
                p = pd.read_csv(_download(uri, run.info.run_id, "predictions.csv.gz", str(d)),
                                dtype={"sample_id": str, "grid": str, "family": str, "sweep": str})
                p.insert(0, "trial_id", tid)
                preds[tid] = p
            if ceiling is None and "trial.json" in names:
                info = json.loads(_download(uri, run.info.run_id, "trial.json", str(d)).read_text()).get("info", {})
                split = str(frames[tid]["split"].iloc[0]) if "split" in frames[tid] else "test"
                c = (info.get("ceiling") or {}).get(split)
                ceiling = c if isinstance(c, dict) else None
    trials = pd.DataFrame(lines)
    keep = list(trials["trial_id"])
    by_kind = dict(zip(trials["trial_id"], trials["regime_kind"]))
    rows = pd.concat([frames[t] for t in keep], ignore_index=True)
    models = [t for t in keep if by_kind[t] != REFERENCE_KIND]
    pred = pd.concat([preds[t] for t in models], ignore_index=True) if models and len(preds) == len(models) else None
    tags = by_id[keep[0]].data.tags
    return from_frames(rows, pred, trials, suite=suite or tags.get(f"{TAG}.suite", experiment),
                       suite_version=tags.get(f"{TAG}.suite_version", ""), model_order=model_order,
                       regime_order=regime_order, ceiling=ceiling)
