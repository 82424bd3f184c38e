"""Report input: tracked trials read back from the tracking store, or the tidy tables the runs logged.

Never the memory of a run: :func:`load_from_tracking` reads, through :mod:`robustmsa.tracking`,
every FINISHED trial run of an experiment (which ones: a :class:`Selection`) from any tracking
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
from ..tracking import Tracker, TrialRun
from .tables import Provenance

__all__ = ["ReportData", "NothingToReport", "Selection", "load_from_tracking", "from_frames", "metric_family_of",
           "ROW_KEY"]

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
    ``releases``: dataset display name -> the public MMSA release it was recognised as (MOSI,
    MOSEI, SIMS; :func:`robustmsa.reports.published.dataset_releases`), for the published numbers.
    ``missing``: the (dataset, model, regime, condition, seed) cells that were asked for (the
    selection's ``cells``) but have no finished trial; ``incomplete``: the note every table and
    ``results.md`` carry when cells are missing ("" when the report is complete).
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
    missing: tuple[tuple, ...] = ()
    incomplete: str = ""
    releases: dict[str, str] = field(default_factory=dict)  # dataset -> public release (reports.published)

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
            incomplete=self.incomplete,
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
    """``"classification"`` when the rows hold weighted F1, ``"sims"`` when they hold SIMS metrics (acc2
    without acc7), else ``"mosi"``."""
    keys = set(rows["metric"])
    if "weighted_f1" in keys:
        return "classification"
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


# ---------------------------------------------------------------------------- tracking store


@dataclass(frozen=True)
class Selection:
    """Which finished trials of an experiment a report reads, and the order of its rows.

    ``suite``: only runs tagged with that suite; ``trial_ids``: only those identities; ``cells``:
    only those (dataset, model, regime, condition, seed) cells; ``prefer``: identities taken first
    in their cell (the suite as defined now); ``model_order`` / ``regime_order``: row order.
    """

    suite: str | None = None
    trial_ids: frozenset[str] | None = None
    cells: frozenset[tuple] | None = None
    prefer: frozenset[str] = frozenset()
    model_order: tuple[str, ...] = ()
    regime_order: tuple[str, ...] = ()

    def __post_init__(self) -> None:  # any iterables in, hashable sets and tuples kept
        for name, kind in (("trial_ids", frozenset), ("cells", frozenset)):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "prefer", frozenset(self.prefer or ()))
        object.__setattr__(self, "model_order", tuple(self.model_order or ()))
        object.__setattr__(self, "regime_order", tuple(self.regime_order or ()))


def _latest_per_trial(runs: list[TrialRun]) -> list[TrialRun]:
    best: dict[str, TrialRun] = {}
    for r in runs:
        tid = r.trial_id
        if not tid:
            continue
        key = (r.start_time or 0, r.run_id)
        if tid not in best or key > (best[tid].start_time or 0, best[tid].run_id):
            best[tid] = r
    return [best[t] for t in sorted(best)]


def _trial_line(run: TrialRun, rows: pd.DataFrame) -> dict[str, Any]:
    first = rows.iloc[0]
    config = {k.removeprefix("model.config."): v for k, v in run.params.items() if k.startswith("model.config.")}
    reference = first["regime_kind"] == REFERENCE_KIND  # several predictors: the cell is the trial's
    line = {"trial_id": run.trial_id, "run_id": run.run_id,
            "dataset": first["dataset"], "model": "references" if reference else first["model"],
            "model_name": first["model_name"],
            "regime": first["regime"], "regime_kind": first["regime_kind"], "condition": first["condition"],
            "seed": int(first["seed"]), "end_time": run.end_time,
            "data_hash": run.tag("data_hash", str(first.get("data_hash", ""))),
            "code_version": run.tag("code_version"),
            "config": json.dumps(dict(sorted(config.items())), sort_keys=True)}
    for k in _INFO:
        line[k] = run.metrics.get(f"info/{k}", np.nan)
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


def _runs(tracker: Tracker, sel: Selection) -> dict[str, TrialRun]:
    """trial identity -> its latest FINISHED run, of the selected suite and identities."""
    runs = _latest_per_trial(tracker.finished_trial_runs(sel.suite))
    if sel.trial_ids is not None:
        runs = [r for r in runs if r.trial_id in sel.trial_ids]
    return {r.trial_id: r for r in runs}


def _read_rows(tracker: Tracker, by_id: dict[str, TrialRun], tmp: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for tid, run in sorted(by_id.items()):
        d = tmp / tid
        d.mkdir()
        frames[tid] = _clean_rows(pd.read_csv(tracker.download(run.run_id, "rows.csv", str(d)), dtype=_ROW_DTYPES))
    return frames


def _read_extras(tracker: Tracker, lines: list[dict[str, Any]], by_id: dict[str, TrialRun],
                 frames: dict[str, pd.DataFrame], tmp: Path,
                 predictions: bool) -> tuple[dict[str, pd.DataFrame], dict[str, float] | None]:
    """The predictions of the selected model trials (if asked for) and the dataset's ceiling (the
    ``info.ceiling`` of the first selected trial that logged ``trial.json``)."""
    preds: dict[str, pd.DataFrame] = {}
    ceiling = None
    for line in lines:
        tid, run_id = line["trial_id"], by_id[line["trial_id"]].run_id
        d = tmp / tid
        names = tracker.artifact_names(run_id)
        if predictions and "predictions.csv.gz" in names and line["regime_kind"] != REFERENCE_KIND:
            p = pd.read_csv(tracker.download(run_id, "predictions.csv.gz", str(d)),
                            dtype={"sample_id": str, "grid": str, "family": str, "sweep": str})
            p.insert(0, "trial_id", tid)
            preds[tid] = p
        if ceiling is None and "trial.json" in names:
            info = json.loads(tracker.download(run_id, "trial.json", str(d)).read_text()).get("info", {})
            split = str(frames[tid]["split"].iloc[0]) if "split" in frames[tid] else "test"
            c = (info.get("ceiling") or {}).get(split)
            ceiling = c if isinstance(c, dict) else None
    return preds, ceiling


def load_from_tracking(uri: str, experiment: str, selection: Selection | None = None,
                       predictions: bool = True) -> ReportData:
    """Read the FINISHED trial runs of ``experiment`` from the tracking store at ``uri``.

    Which runs: ``selection`` (default: every trial of the experiment). Then one trial per
    (dataset, model, regime, condition, seed) cell, only the selected ``cells`` if any: an identity
    in ``prefer`` (the suite as defined now) first, else the run that ended last (a trial of an
    earlier definition of the suite, e.g. before a model default changed).
    """
    sel = selection or Selection()
    tracker = Tracker.existing(uri, experiment)
    if tracker is None:
        raise NothingToReport(f"no experiment {experiment!r} in the tracking store {uri}",
                              hint="run the suite first, or check tracking.uri and tracking.experiment")
    by_id = _runs(tracker, sel)
    with tempfile.TemporaryDirectory() as tmp:
        frames = _read_rows(tracker, by_id, Path(tmp))
        lines = _select([_trial_line(by_id[t], frames[t]) for t in sorted(by_id)],
                        set(sel.cells) if sel.cells is not None else None, set(sel.prefer) if sel.prefer else None)
        if not lines:
            raise NothingToReport(f"no finished trials of {sel.suite or experiment!r} in {uri}",
                                  hint="run the suite first")
        preds, ceiling = _read_extras(tracker, lines, by_id, frames, Path(tmp), predictions)
    trials = pd.DataFrame(lines)
    keep = list(trials["trial_id"])
    by_kind = dict(zip(trials["trial_id"], trials["regime_kind"]))
    rows = pd.concat([frames[t] for t in keep], ignore_index=True)
    models = [t for t in keep if by_kind[t] != REFERENCE_KIND]
    pred = pd.concat([preds[t] for t in models], ignore_index=True) if models and len(preds) == len(models) else None
    first = by_id[keep[0]]
    data = from_frames(rows, pred, trials, suite=sel.suite or first.tag("suite", experiment),
                       suite_version=first.tag("suite_version"), model_order=list(sel.model_order),
                       regime_order=list(sel.regime_order), ceiling=ceiling)
    if sel.cells is not None:  # the cells asked for that have no finished trial
        data.missing = tuple(sorted(set(sel.cells) - {tuple(line[k] for k in ROW_KEY) for line in lines}))
    return data
