"""MLflow tracking: an experiment per suite, a parent run per invocation, a child run per trial.

The driver is the single writer (trials return their outcome instead of logging), which keeps
the default SQLite store safe under concurrent trials; any tracking URI (an ``mlflow server``)
works the same. Child runs are linked to the parent explicitly with the ``mlflow.parentRunId``
tag. Degradation curves are logged as one metric per (family, sweep, metric) with
``step`` = level index, so the MLflow UI overlays the curves of several runs; the level values
and every per-point metric are in the tidy ``rows.csv`` artifact.
"""
from __future__ import annotations

import io
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from corruptions.spectrum import is_curve_sweep

__all__ = ["Tracker", "flatten", "TAG", "trial_artifacts"]

TAG = "robustmsa"  # tag prefix


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"a.b.c": "value"} (lists JSON-encoded) for MLflow params."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(d, sort_keys=True) if isinstance(d, (list, tuple)) else str(d)
    return out


def _chunks(xs: list, n: int) -> Iterable[list]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


class Tracker:
    """Thin layer over ``MlflowClient`` for one experiment."""

    def __init__(self, uri: str, experiment: str):
        import mlflow
        from mlflow.tracking import MlflowClient

        # MLflow's INFO lines about creating/migrating a new SQLite store are noise on the console
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)

        self.uri = uri
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.experiment = experiment

    # ------------------------------------------------------------------ queries
    def _search(self, filter_string: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                           max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def completed_trials(self) -> dict[str, str]:
        """trial identity -> run id of its latest FINISHED child run."""
        runs = self._search(f"tags.`{TAG}.kind` = 'trial' and attributes.status = 'FINISHED'")
        out: dict[str, tuple[int, str]] = {}
        for r in runs:
            tid = r.data.tags.get(f"{TAG}.trial_id")
            if tid and (tid not in out or r.info.start_time > out[tid][0]):
                out[tid] = (r.info.start_time, r.info.run_id)
        return {k: v[1] for k, v in out.items()}

    def mark_orphans_failed(self) -> int:
        """Runs left RUNNING by an interrupted invocation are marked FAILED (and tagged)."""
        runs = self._search(f"tags.`{TAG}.kind` != '' and attributes.status = 'RUNNING'")
        for r in runs:
            self.client.set_tag(r.info.run_id, f"{TAG}.orphaned", "true")
            self.client.set_terminated(r.info.run_id, status="FAILED")
        return len(runs)

    # ------------------------------------------------------------------ writing
    def start_parent(self, suite_name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=f"{suite_name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                     tags={f"{TAG}.kind": "invocation", **tags})
        self._log_params(run.info.run_id, flatten(params))
        return run.info.run_id

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
        for chunk in _chunks(items, 100):
            self.client.log_batch(run_id, params=chunk)

    def _log_metrics(self, run_id: str, metrics: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(s)) for k, v, s in metrics]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(run_id, metrics=chunk)

    def log_trial(self, parent_id: str, outcome: Any, tags: dict[str, str], log_predictions: bool = True,
                  log_checkpoint: bool = True) -> str:
        """Create the FINISHED child run of one trial with params, curves and artifacts.

        ``outcome.artifacts`` holds the bytes of ``curves.png`` and ``predictions.csv.gz``
        (:func:`trial_artifacts`, called by the trial in its worker)."""
        arts = getattr(outcome, "artifacts", None)
        if not arts:
            raise ValueError(f"trial {outcome.trial_id} has no serialised artifacts: "
                             "set outcome.artifacts = trial_artifacts(outcome, curve_figure) first")
        run = self.client.create_run(
            self.experiment_id, run_name=outcome.name,
            tags={"mlflow.parentRunId": parent_id, f"{TAG}.kind": "trial",
                  f"{TAG}.trial_id": outcome.trial_id, **tags})
        rid = run.info.run_id
        try:
            self._log_params(rid, flatten(outcome.resolved))
            self._log_metrics(rid, _trial_metrics(outcome))
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp)
                pd.DataFrame(outcome.rows).to_csv(d / "rows.csv", index=False)
                pd.DataFrame(outcome.history).to_csv(d / "history.csv", index=False)
                (d / "trial.json").write_text(json.dumps(
                    {"trial_id": outcome.trial_id, "name": outcome.name, "resolved": outcome.resolved,
                     "info": outcome.info}, indent=2, sort_keys=True, default=str))
                names = ["curves.png", *(["predictions.csv.gz"] if log_predictions else [])]
                for name in names:
                    (d / name).write_bytes(arts[name])
                self.client.log_artifacts(rid, str(d))
                if log_checkpoint and outcome.checkpoint:  # a reference trial trains nothing
                    ck = d / "checkpoint"
                    ck.mkdir()
                    (ck / "model.pt").write_bytes(outcome.checkpoint)
                    self.client.log_artifacts(rid, str(ck), artifact_path="checkpoint")
        except BaseException:
            self.client.set_terminated(rid, status="FAILED")
            raise
        self.client.set_terminated(rid, status="FINISHED")
        return rid

    def log_failure(self, parent_id: str, name: str, trial_id: str, error: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=name,
            tags={"mlflow.parentRunId": parent_id, f"{TAG}.kind": "trial", f"{TAG}.trial_id": trial_id,
                  f"{TAG}.error": error[:4000], **tags})
        self.client.set_terminated(run.info.run_id, status="FAILED")
        return run.info.run_id

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    def download(self, run_id: str, path: str, dst: str) -> Path:
        import mlflow

        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=dst,
                                                        tracking_uri=self.uri))

    def read_rows(self, run_id: str) -> pd.DataFrame:
        with tempfile.TemporaryDirectory() as tmp:
            df = pd.read_csv(self.download(run_id, "rows.csv", tmp),
                             dtype={"condition": str, "corruption_version": str, "value": float})
            df[["condition", "corruption_version"]] = df[["condition", "corruption_version"]].fillna("")
            return df


def _trial_metrics(outcome: Any) -> list[tuple[str, float, int]]:
    out: list[tuple[str, float, int]] = []
    for h in outcome.history:
        ep = int(h["epoch"])
        out += [(f"train/{k}", v, ep) for k, v in h.items() if k != "epoch" and _finite(v)]
    for r in outcome.rows:
        if not _finite(r["value"]):
            continue
        # a reference trial holds several predictors: their metrics are prefixed with the name
        pre = re.sub(r"[^0-9A-Za-z]+", "_", r["model"]).strip("_") + "/" if r.get("regime_kind") == "reference" else ""
        if r["family"] == "clean" or (r["level"] == 1.0 and r["level_index"] == 0):  # every sweep starts clean
            out.append((f"{pre}clean/{r['metric']}", r["value"], 0))
        if r["family"] != "clean" and is_curve_sweep(r["sweep"]):  # product and qmc grids are in rows.csv
            out.append((f"{pre}curve/{r['family']}/{r['sweep']}/{r['metric']}", r["value"], int(r["level_index"])))
    seen: set[tuple[str, int]] = set()
    uniq = []
    for k, v, s in out:
        if (k, s) not in seen:
            seen.add((k, s))
            uniq.append((k, v, s))
    for k in ("train_seconds", "eval_seconds", "total_seconds", "n_params", "best_epoch"):
        if _finite(outcome.info.get(k)):
            uniq.append((f"info/{k}", float(outcome.info[k]), 0))
    return uniq


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def trial_artifacts(outcome: Any, curve_figure: Callable[[list[dict], str], bytes]) -> dict[str, bytes]:
    """The bulky artifacts of a trial as bytes: ``predictions.csv.gz`` (per-sample predictions of
    every grid point; gzip level 1, about 5x faster than the default and 15 % larger; mtime 0, so
    the same predictions give the same bytes) and ``curves.png``, drawn by ``curve_figure(rows,
    title)`` (:func:`robustmsa.reports.figures.trial_curve_png`). Trials call this in their
    worker, so the single-writer driver only copies bytes."""
    buf = io.BytesIO()
    pd.DataFrame(outcome.predictions).to_csv(buf, index=False,
                                             compression={"method": "gzip", "compresslevel": 1, "mtime": 0})
    return {"predictions.csv.gz": buf.getvalue(), "curves.png": curve_figure(outcome.rows, outcome.name)}
