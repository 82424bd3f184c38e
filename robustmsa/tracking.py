"""MLflow tracking, the only module that talks to MLflow: an experiment per suite, a parent run per
invocation, a child run per trial, written by the driver and read back by the reports.

The driver is the single writer (trials return their outcome instead of logging), which keeps
the default SQLite store safe under concurrent trials; any tracking URI (an ``mlflow server``)
works the same. Child runs are linked to the parent explicitly with the ``mlflow.parentRunId``
tag. Degradation curves are logged as one metric per (family, sweep, metric) with
``step`` = level index, so the MLflow UI overlays the curves of several runs; the level values
and every per-point metric are in the tidy ``rows.csv`` artifact.

Writing: :class:`Tracker` (``start_parent``, ``log_trial``, ``log_failure``, ``finish``,
``mark_orphans_failed``) and :func:`trial_artifacts`, the bytes a trial serialises in its worker.
Reading: :meth:`Tracker.existing` opens an experiment without creating it;
``finished_trial_runs`` returns its FINISHED trial runs as plain :class:`TrialRun` records,
``completed_trials`` the latest run of each trial identity, ``artifact_names`` and ``download``
its artifacts.
"""
from __future__ import annotations

import io
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from corruptions.grids import is_curve_sweep

__all__ = ["Tracker", "TrialRun", "flatten", "TAG", "trial_artifacts"]

TAG = "robustmsa"  # tag prefix
_FINISHED_TRIALS = f"tags.`{TAG}.kind` = 'trial' and attributes.status = 'FINISHED'"


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


@dataclass(frozen=True)
class TrialRun:
    """A trial run as read back from the store, in plain values (no MLflow types)."""

    run_id: str
    start_time: int | None
    end_time: int | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]

    @property
    def trial_id(self) -> str:
        """The trial identity (``""`` when the run carries none)."""
        return self.tag("trial_id")

    def tag(self, key: str, default: str = "") -> str:
        """The value of the ``robustmsa.<key>`` tag."""
        return self.tags.get(f"{TAG}.{key}", default)


def _trial_run(run: Any) -> TrialRun:
    return TrialRun(run.info.run_id, run.info.start_time, run.info.end_time, dict(run.data.tags),
                    dict(run.data.params), dict(run.data.metrics))


class Tracker:
    """Thin layer over ``MlflowClient`` for one experiment; ``Tracker(uri, experiment)`` creates
    the experiment if needed and makes ``uri`` the process's tracking URI (for writing)."""

    def __init__(self, uri: str, experiment: str):
        import mlflow

        self._connect(uri)
        mlflow.set_tracking_uri(uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.experiment = experiment

    def _connect(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        # MLflow's INFO lines about creating/migrating a new SQLite store are noise on the console
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    @classmethod
    def existing(cls, uri: str, experiment: str) -> Tracker | None:
        """The experiment at ``uri`` for reading, or None when it does not exist (nothing is created)."""
        self = cls.__new__(cls)
        self._connect(uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        self.experiment_id, self.experiment = exp.experiment_id, experiment
        return self

    # ------------------------------------------------------------------ reading
    def _search(self, filter_string: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                           max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def finished_trial_runs(self, suite: str | None = None) -> list[TrialRun]:
        """Every FINISHED trial run (only those tagged with ``suite`` if given), in the store's order."""
        filt = _FINISHED_TRIALS + (f" and tags.`{TAG}.suite` = '{suite}'" if suite else "")
        return [_trial_run(r) for r in self._search(filt)]

    def unfinished_trial_runs(self, suite: str | None = None) -> dict[str, str]:
        """trial identity -> status (FAILED, RUNNING, KILLED) of its latest trial run that did not
        finish, for the trials (of ``suite`` if given) with such a run."""
        filt = f"tags.`{TAG}.kind` = 'trial' and attributes.status != 'FINISHED'"
        filt += f" and tags.`{TAG}.suite` = '{suite}'" if suite else ""
        latest: dict[str, tuple[int, str]] = {}
        for run in self._search(filt):
            tid, key = run.data.tags.get(f"{TAG}.trial_id", ""), run.info.start_time or 0
            if tid and (tid not in latest or key > latest[tid][0]):
                latest[tid] = (key, run.info.status)
        return {k: v[1] for k, v in sorted(latest.items())}

    def completed_trials(self) -> dict[str, str]:
        """trial identity -> run id of its latest FINISHED child run."""
        out: dict[str, tuple[int, str]] = {}
        for r in self.finished_trial_runs():
            tid = r.trial_id
            if tid and (tid not in out or r.start_time > out[tid][0]):
                out[tid] = (r.start_time, r.run_id)
        return {k: v[1] for k, v in out.items()}

    def artifact_names(self, run_id: str) -> set[str]:
        """The paths of the run's top-level artifacts."""
        return {a.path for a in self.client.list_artifacts(run_id)}

    def download(self, run_id: str, path: str, dst: str) -> Path:
        """Artifact ``path`` of the run downloaded into the directory ``dst``; its local path."""
        import mlflow

        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=dst,
                                                        tracking_uri=self.uri))

    # ------------------------------------------------------------------ writing
    def mark_orphans_failed(self) -> int:
        """Runs left RUNNING by an interrupted invocation are marked FAILED (and tagged)."""
        runs = self._search(f"tags.`{TAG}.kind` != '' and attributes.status = 'RUNNING'")
        for r in runs:
            self.client.set_tag(r.info.run_id, f"{TAG}.orphaned", "true")
            self.client.set_terminated(r.info.run_id, status="FAILED")
        return len(runs)

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
