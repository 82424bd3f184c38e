"""MLflow tracking, the only module that talks to MLflow: an experiment per suite, a parent run per
invocation, a child run per trial, written by the driver and read back by the reports.

The driver is the single writer (trials return their outcome instead of logging), which keeps
the default SQLite store safe under concurrent trials; any tracking URI (an ``mlflow server``)
works the same. Child runs are linked to the parent explicitly with the ``mlflow.parentRunId``
tag. Degradation curves are logged as one metric per (family, sweep, metric),
``curve/<family>/<sweep>/<metric>``, with **step = round(1000 · rho)** (:func:`robustmsa.suite.rho_step`):
step 0 is the absent end, step 1000 the clean end, so a chart with step on its x-axis reads left to
right from absent to clean, the curves of several runs overlay on one rho axis, and the value MLflow
shows as "Latest" (the highest step) is the clean one. Levels off the 1/1000 grid are refused when
the suite loads, so no two levels share a step. ``clean/<metric>`` is logged at step 1000 (rho = 1),
training curves (``train/*``) at step = epoch. Each point's physical parameter (SNR, drop rate, ...)
and every per-point metric are in the tidy ``rows.csv`` artifact (``param_*`` columns).

Writing: :class:`Tracker` (``start_parent``, ``log_trial``, ``log_failure``, ``finish``,
``mark_orphans_failed``) and :func:`trial_artifacts`, the bytes a trial serialises in its worker.
Opening a store: :func:`probe_store` checks it answers (or, for SQLite, that its directory is
writable) in a few seconds, before anything runs; a SQLite store is initialised under a file lock
(``<db>.lock`` beside it), so invocations starting at once on a new store do not race on its tables.

Leases (``docs/reliability.md``): :meth:`Tracker.acquire_lease` gives one live invocation per
(experiment, suite) a :class:`Lease`, a RUNNING run tagged ``robustmsa.kind = lease`` holding its
owner (host, pid, since) and a heartbeat the driver refreshes; ``mark_orphans_failed`` marks FAILED
only runs whose owner is provably gone.

Reading: :meth:`Tracker.existing` opens an experiment without creating it;
``finished_trial_runs`` returns its FINISHED trial runs as plain :class:`TrialRun` records,
``completed_trials`` the latest run of each trial identity, ``artifact_names`` and ``download``
its artifacts.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import math
import os
import re
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from corruptions.grids import is_curve_sweep

from .errors import StoreError, StoreWriteError
from .suite import rho_step

__all__ = ["Tracker", "TrialRun", "Lease", "LeaseOwner", "flatten", "TAG", "trial_artifacts", "probe_store",
           "sqlite_path", "TrialRunSpec", "TrialEnding", "DatasetRef", "headline", "trial_note", "NOTE"]

TAG = "robustmsa"  # tag prefix
_FINISHED_TRIALS = f"tags.`{TAG}.kind` = 'trial' and attributes.status = 'FINISHED'"
PROBE_TIMEOUT_S = 3.0
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3's UI: "custom_model_development" is its "Model training" view


def _eq(key: str, value: str) -> str:
    """``key = value`` for an MLflow filter string, the value quoted so any suite name fits (MLflow's
    parser has no escapes: a value with a single quote is written in double quotes)."""
    if "'" not in value:
        return f"{key} = '{value}'"
    if '"' not in value:
        return f'{key} = "{value}"'
    raise StoreError(f"the name {value!r} holds both kinds of quote, which MLflow cannot search for",
                     hint="rename the suite (or set tracking.experiment) without quotes")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other URI or in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path[1:])
    return Path(path) if path and path != ":memory:" else None


def _check_writable_dir(directory: Path, what: str, uri: str) -> None:
    probe = directory
    while not probe.exists() and probe != probe.parent:  # a directory still to be created: its first existing ancestor
        probe = probe.parent
    if not probe.is_dir():
        raise StoreError(f"the {what} of the tracking store {uri} is not a directory: {probe}",
                         hint="fix tracking.uri")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise StoreError(f"the {what} of the tracking store {uri} is not writable: {probe} ({e.strerror})",
                         hint="run from a writable directory or point tracking.uri at one") from e


def probe_store(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast (in about ``timeout`` seconds) when the store at ``uri`` cannot be used: an HTTP
    server that does not answer ``/health``, or a SQLite file whose directory (or the default
    artifact root ``./mlruns``) is not writable. Raises :class:`StoreError`; touches nothing."""
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - the user's tracking URI
                ok = r.status == 200
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise StoreError(f"the tracking server {uri} is not reachable: {reason}",
                             hint="start it (mlflow server ...) or fix tracking.uri") from e
        if not ok:
            raise StoreError(f"the tracking server {uri} does not answer like an MLflow server",
                             hint="fix tracking.uri")
        return
    db = sqlite_path(uri)
    if db is not None:
        if db.exists() and not os.access(db, os.R_OK | os.W_OK):
            raise StoreError(f"the tracking store {uri} is not writable: {db}", hint="fix its permissions or tracking.uri")
        if not db.resolve().parent.is_dir():
            raise StoreError(f"the directory of the tracking store {uri} does not exist: {db.resolve().parent}",
                             hint="create it or fix tracking.uri")
        _check_writable_dir(db.resolve().parent, "directory", uri)


def _local_dir(location: str) -> Path | None:
    """The local directory of an artifact location (None for a remote one)."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    return Path(location) if not parts.scheme else None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


@contextlib.contextmanager
def _writing(what: str) -> Iterator[None]:
    """Any failure to write ``what`` (a full disk, a store gone away) as one :class:`StoreWriteError`."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, SQLAlchemy and MLflow errors alike
        raise StoreWriteError(f"writing {what} to the tracking store failed: {_first_line(e)}",
                              hint="free space or fix the store, then run the same command again: "
                                   "completed trials are reused") from e


@contextlib.contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """Serialises opening a SQLite store across processes (MLflow creates a new store's tables on
    first use, and two processes doing it at once fail): an exclusive lock on ``<db>.lock``."""
    db = sqlite_path(uri)
    fd = None
    if db is not None:
        with contextlib.suppress(OSError):  # an unwritable directory: reading goes on unlocked
            fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"a.b.c": "value"} for MLflow params: lists (and what they hold) as JSON, None
    values left out (no ``"None"`` strings in the UI), booleans as ``true``/``false``."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif d is None:
        pass
    elif isinstance(d, (list, tuple, bool)):
        out[prefix[:-1]] = json.dumps(d, sort_keys=True, default=str)
    else:
        out[prefix[:-1]] = str(d)
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


LEASE_STALE_S = 60.0  # a lease whose heartbeat is older than this is dead (ROBUSTMSA_LEASE_STALE_S)
LEASE_HEARTBEAT_S = 10.0  # how often the driver refreshes its lease (ROBUSTMSA_LEASE_HEARTBEAT_S)
LEASE_SETTLE_S = 1.0  # how long a contender waits between writing its candidate and reading the others


def lease_stale_s() -> float:
    return float(os.environ.get("ROBUSTMSA_LEASE_STALE_S", LEASE_STALE_S))


def _host() -> tuple[str, str]:
    """(host name, boot id): a pid is only meaningful on the same host since the same boot."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return socket.gethostname(), boot


def _proc_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ("" when unknown): with the pid,
    it tells the owner from a later process that reuses its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def pid_alive(pid: int, proc: str = "") -> bool:
    """Whether process ``pid`` (started at ``proc`` ticks, if given) is alive on this host (a zombie is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc: signal 0 says whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return fields[0] not in ("Z", "X") and (not proc or fields[19] == proc)


@dataclass(frozen=True)
class LeaseOwner:
    """Who holds (or bids for) a suite's lease, as read from its lease run."""

    run_id: str
    suite: str
    host: str
    boot: str
    pid: int
    proc: str
    since: float
    heartbeat: float
    state: str  # "candidate" or "held"
    start_time: int

    @classmethod
    def of(cls, run: Any) -> LeaseOwner:
        t = run.data.tags

        def num(key: str) -> float:
            try:
                return float(t.get(f"{TAG}.lease.{key}", "0"))
            except ValueError:
                return 0.0

        return cls(run.info.run_id, t.get(f"{TAG}.suite", ""), t.get(f"{TAG}.lease.host", ""),
                   t.get(f"{TAG}.lease.boot", ""), int(num("pid")), t.get(f"{TAG}.lease.proc", ""), num("since"),
                   num("heartbeat"), t.get(f"{TAG}.lease.state", ""), run.info.start_time or 0)

    def order(self) -> tuple[int, str]:
        return self.start_time, self.run_id

    def alive(self, stale_s: float) -> bool:
        """Not provably gone: its heartbeat is fresh and, on this host, its process still runs."""
        if time.time() - self.heartbeat > stale_s:
            return False
        if (self.host, self.boot) == _host():
            return pid_alive(self.pid, self.proc)
        return True

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return (f"host {self.host}, pid {self.pid}, since {since} "
                f"(heartbeat {max(0.0, time.time() - self.heartbeat):.0f} s ago)")


class Lease:
    """A held suite lease: a daemon thread refreshes its heartbeat until :meth:`release`."""

    def __init__(self, tracker: Tracker, run_id: str, suite: str):
        self.tracker, self.run_id, self.suite = tracker, run_id, suite
        self.heartbeat_s = float(os.environ.get("ROBUSTMSA_LEASE_HEARTBEAT_S", LEASE_HEARTBEAT_S))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="robustmsa-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(Exception):  # a missed beat is retried; too many and the lease goes stale
                self.tracker.client.set_tag(self.run_id, f"{TAG}.lease.heartbeat", f"{time.time():.3f}")

    def release(self) -> None:
        """Stop the heartbeat, end the lease run and delete it."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.tracker._drop_run(self.run_id, "FINISHED")


class Tracker:
    """Thin layer over ``MlflowClient`` for one experiment; ``Tracker(uri, experiment)`` creates
    the experiment if needed and makes ``uri`` the process's tracking URI (for writing)."""

    def __init__(self, uri: str, experiment: str):
        import mlflow

        with _init_lock(uri):
            self._connect(uri)
            exp = self._get_experiment(experiment)
            if exp is None:
                exp_id = self._create_experiment(experiment)
            else:
                exp_id = exp.experiment_id
                self._check_artifacts(exp.artifact_location)
            self._mark_model_training(exp_id, exp)
        mlflow.set_tracking_uri(uri)
        self.experiment_id, self.experiment = exp_id, experiment

    def _mark_model_training(self, exp_id: str, exp: Any) -> None:
        """Tag the experiment as "Model training" (``mlflow.experimentKind``), so MLflow 3's UI opens
        it on its runs table, not on the GenAI overview; a kind set by hand is kept."""
        if exp is not None and exp.tags.get(EXPERIMENT_KIND):
            return
        with _writing("the experiment's kind"):
            self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND, "custom_model_development")

    def _connect(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        # MLflow's INFO lines about creating/migrating a new SQLite store are noise on the console
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def _get_experiment(self, name: str) -> Any:
        """The experiment called ``name`` (None if absent); the first call opens (and for a new
        SQLite file initialises) the store, so it runs under :func:`_init_lock`."""
        try:
            return self.client.get_experiment_by_name(name)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy and MLflow errors alike: one line, not 180
            raise StoreError(f"cannot open the tracking store {self.uri}: {_first_line(e)}",
                             hint="check tracking.uri (run with --debug for the traceback)") from e

    def _create_experiment(self, name: str) -> str:
        if sqlite_path(self.uri) is not None:
            self._check_artifacts(str(Path.cwd() / "mlruns"))  # MLflow's default artifact root
        try:
            return self.client.create_experiment(name)
        except Exception:  # another invocation (a server store) created it meanwhile
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _check_artifacts(self, location: str) -> None:
        local = _local_dir(location)
        if local is not None:
            _check_writable_dir(local, f"artifact directory {local}", self.uri)

    @classmethod
    def existing(cls, uri: str, experiment: str) -> Tracker | None:
        """The experiment at ``uri`` for reading, or None when it does not exist (nothing is created,
        not even a SQLite file)."""
        db = sqlite_path(uri)
        if db is not None and not db.exists():
            return None
        self = cls.__new__(cls)
        with _init_lock(uri):
            self._connect(uri)
            exp = self._get_experiment(experiment)
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
        filt = _FINISHED_TRIALS + (" and " + _eq(f"tags.`{TAG}.suite`", suite) if suite else "")
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
    def mark_orphans_failed(self, mine: Lease | None = None) -> int:
        """Runs left RUNNING by an invocation that is provably gone are marked FAILED (tag
        ``robustmsa.orphaned``); their number. A run's owner is the lease in its ``robustmsa.lease``
        tag: gone when that lease is no longer live (:meth:`LeaseOwner.alive`). A run without one
        (an older version's) is orphaned unless another live lease holds its suite. Dead leases are
        ended and deleted."""
        runs = self._search(f"tags.`{TAG}.kind` != '' and attributes.status = 'RUNNING'")
        stale = lease_stale_s()
        owners = {r.info.run_id: LeaseOwner.of(r) for r in runs if r.data.tags.get(f"{TAG}.kind") == "lease"}
        live = {rid for rid, o in owners.items() if o.alive(stale)}
        held = {owners[rid].suite for rid in live if owners[rid].state == "held" and (not mine or rid != mine.run_id)}
        count = 0
        for r in runs:
            rid, tags = r.info.run_id, r.data.tags
            if rid in owners:
                if rid not in live:
                    self._drop_run(rid, "FAILED")
                continue
            owner = tags.get(f"{TAG}.lease")
            if (owner in live) if owner else (tags.get(f"{TAG}.suite", "") in held):
                continue
            self.client.set_tag(rid, f"{TAG}.orphaned", "true")
            self.client.set_terminated(rid, status="FAILED")
            count += 1
        return count

    def _drop_run(self, run_id: str, status: str) -> None:
        """End a lease run and delete it (hidden from searches, so leases do not pile up)."""
        with contextlib.suppress(Exception):  # best effort: a lease left behind goes stale
            self.client.set_terminated(run_id, status=status)
            self.client.delete_run(run_id)

    # ------------------------------------------------------------------ leases
    def _lease_owners(self, suite: str) -> list[LeaseOwner]:
        filt = f"tags.`{TAG}.kind` = 'lease' and attributes.status = 'RUNNING' and " + _eq(f"tags.`{TAG}.suite`", suite)
        return [LeaseOwner.of(r) for r in self._search(filt)]

    def lease_holder(self, suite: str) -> LeaseOwner | None:
        """The live owner of ``suite``'s lease, or None."""
        stale = lease_stale_s()
        live = [o for o in self._lease_owners(suite) if o.state == "held" and o.alive(stale)]
        return min(live, key=LeaseOwner.order) if live else None

    def acquire_lease(self, suite: str, settle_s: float = LEASE_SETTLE_S) -> Lease | LeaseOwner:
        """The suite's lease (a :class:`Lease`, heartbeating), or the live owner that holds it.

        Without compare-and-swap in MLflow: every contender writes a candidate run, waits
        ``settle_s`` and reads the leases back; a live held lease wins, else the earliest live
        candidate (by the stored start time, then run id; every contender reads the same values).
        A contender that arrives after the winner's read sees its lease held, as long as marking it
        held takes less than ``settle_s``."""
        now = f"{time.time():.3f}"
        host = _host()
        tags = {f"{TAG}.kind": "lease", f"{TAG}.suite": suite, **{f"{TAG}.lease.{k}": v for k, v in {
            "host": host[0], "boot": host[1], "pid": str(os.getpid()), "proc": _proc_start(os.getpid()),
            "since": now, "heartbeat": now, "state": "candidate"}.items()}}
        mine = self.client.create_run(self.experiment_id, run_name=f"lease {suite}", tags=tags).info.run_id
        time.sleep(settle_s)
        stale = lease_stale_s()
        live = [o for o in self._lease_owners(suite) if o.run_id == mine or o.alive(stale)]
        held = [o for o in live if o.state == "held" and o.run_id != mine]
        winner = min(held or live, key=LeaseOwner.order)
        if winner.run_id != mine:
            self._drop_run(mine, "FINISHED")
            return winner
        self.client.set_tag(mine, f"{TAG}.lease.state", "held")
        return Lease(self, mine, suite)

    def start_parent(self, suite_name: str, tags: dict[str, str], params: dict[str, Any], run_name: str = "",
                     description: str = "") -> str:
        """The RUNNING parent run of an invocation (``run_name`` and ``description`` say what the suite is)."""
        with _writing(f"the parent run of {suite_name}"):
            run = self.client.create_run(self.experiment_id,
                                         run_name=run_name or f"{suite_name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                         tags={f"{TAG}.kind": "invocation", **({NOTE: description} if description
                                                                                else {}), **tags})
            self._log_params(run.info.run_id, flatten(params))
        return run.info.run_id

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
        for chunk in _chunks(items, 100):
            self.client.log_batch(run_id, params=chunk)

    def _log_metrics(self, run_id: str, metrics: list[tuple[str, float, int]], time_ms: int | None = None) -> None:
        from mlflow.entities import Metric

        now = time_ms or int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(s)) for k, v, s in metrics]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(run_id, metrics=chunk)

    def start_trial(self, parent_id: str, run: TrialRunSpec, start_ms: int | None = None) -> str:
        """Create the RUNNING child run of a trial that starts now (or at ``start_ms``, epoch ms): its
        name, description, tags, params and dataset input. Its id."""
        with _writing(f"trial {run.name}"):
            created = self.client.create_run(
                self.experiment_id, start_time=start_ms, run_name=run.name,
                tags={"mlflow.parentRunId": parent_id, f"{TAG}.kind": "trial", f"{TAG}.trial_id": run.trial_id,
                      NOTE: run.description, **run.tags})
            rid = created.info.run_id
            self._log_params(rid, flatten(run.params))
            if run.dataset is not None:
                self._log_dataset(rid, run.dataset)
        return rid

    def _log_dataset(self, run_id: str, ref: DatasetRef) -> None:
        """``ref`` as the run's MLflow dataset input (name, digest = the data's content hash, source):
        a meta dataset, so nothing is read, copied or downloaded."""
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        ds = MetaDataset(CodeDatasetSource(dict(ref.source)), name=ref.name, digest=ref.digest)
        self.client.log_inputs(run_id, datasets=[DatasetInput(ds._to_mlflow_entity(),
                                                              tags=[InputTag("mlflow.data.context", ref.context)])])

    def log_epoch(self, run_id: str, row: Mapping[str, Any], time_ms: int | None = None) -> None:
        """One epoch of a running trial's training curve (``train/<key>`` at step = epoch)."""
        with _writing("a training epoch"):
            self._log_metrics(run_id, _epoch_metrics(row), time_ms)

    def end_trial(self, run_id: str, outcome: Any, ending: TrialEnding) -> None:
        """Log a returned trial's results into its run (curves, the epochs not logged live, artifacts,
        the final description) and end it FINISHED at ``ending.end_ms``; FAILED if writing fails."""
        arts = getattr(outcome, "artifacts", None)
        if not arts:
            raise ValueError(f"trial {outcome.trial_id} has no serialised artifacts: "
                             "set outcome.artifacts = trial_artifacts(outcome, curve_figure) first")
        with _writing(f"trial {outcome.name}"):
            try:
                self.client.set_tag(run_id, NOTE, ending.note or trial_note(outcome, ending.main_metric))
                self._log_trial_content(run_id, outcome, arts, ending)
            except BaseException:
                with contextlib.suppress(Exception):  # the write error is the one to report
                    self.client.set_terminated(run_id, status="FAILED")
                raise
            self.client.set_terminated(run_id, status="FINISHED", end_time=ending.end_ms)

    def fail_trial(self, run_id: str, error: str, end_ms: int | None = None, note: str = "") -> None:
        """End a trial's run FAILED, its error in the ``robustmsa.error`` tag and its description."""
        with _writing("the failure of a trial"):
            last = (error.strip().splitlines() or ["?"])[-1]
            self.client.set_tag(run_id, f"{TAG}.error", error[:4000])
            self.client.set_tag(run_id, NOTE, f"{note}\n\n**failed**: `{last[:300]}`".strip())
            self.client.set_terminated(run_id, status="FAILED", end_time=end_ms)

    def log_trial(self, parent_id: str, outcome: Any, tags: dict[str, str], log_predictions: bool = True,
                  log_checkpoint: bool = True) -> str:
        """Create and end, in one go, the FINISHED child run of a trial that already returned (tests,
        benchmarks; ``run_suite`` creates the run when the trial starts: :meth:`start_trial`).

        ``outcome.artifacts`` holds the bytes of ``curves.png`` and ``predictions.csv.gz``
        (:func:`trial_artifacts`, called by the trial in its worker)."""
        if not getattr(outcome, "artifacts", None):
            raise ValueError(f"trial {outcome.trial_id} has no serialised artifacts: "
                             "set outcome.artifacts = trial_artifacts(outcome, curve_figure) first")
        run = TrialRunSpec(outcome.name, outcome.trial_id, tags, outcome.resolved, "")
        rid = self.start_trial(parent_id, run, outcome.info.get("start_ms"))
        self.end_trial(rid, outcome, TrialEnding(log_predictions, log_checkpoint, outcome.info.get("end_ms")))
        return rid

    def _log_trial_content(self, rid: str, outcome: Any, arts: Mapping[str, bytes], ending: TrialEnding) -> None:
        end_ms = ending.end_ms or int(time.time() * 1000)
        self._log_metrics(rid, _trial_metrics(outcome, ending.epochs_logged), end_ms)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            pd.DataFrame(outcome.rows).to_csv(d / "rows.csv", index=False)
            pd.DataFrame(outcome.history).to_csv(d / "history.csv", index=False)
            (d / "trial.json").write_text(json.dumps(
                {"trial_id": outcome.trial_id, "name": outcome.name, "resolved": outcome.resolved,
                 "info": outcome.info}, indent=2, sort_keys=True, default=str))
            names = ["curves.png", *(["predictions.csv.gz"] if ending.log_predictions else [])]
            for name in names:
                (d / name).write_bytes(arts[name])
            self.client.log_artifacts(rid, str(d))
            if ending.log_checkpoint and outcome.checkpoint:  # a reference trial trains nothing
                ck = d / "checkpoint"
                ck.mkdir()
                (ck / "model.pt").write_bytes(outcome.checkpoint)
                self.client.log_artifacts(rid, str(ck), artifact_path="checkpoint")

    def log_failure(self, parent_id: str, name: str, trial_id: str, error: str, tags: dict[str, str]) -> str:
        """A FAILED child run for a trial that failed before its run was created."""
        with _writing(f"the failure of trial {name}"):
            run = self.client.create_run(
                self.experiment_id, run_name=name,
                tags={"mlflow.parentRunId": parent_id, f"{TAG}.kind": "trial", f"{TAG}.trial_id": trial_id,
                      f"{TAG}.error": error[:4000], **tags})
            self.client.set_terminated(run.info.run_id, status="FAILED")
        return run.info.run_id


NOTE = "mlflow.note.content"  # the run's description in the MLflow UI (Markdown)


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as an MLflow dataset input: its display name, digest (the content hash), source."""

    name: str
    digest: str
    source: Mapping[str, str]
    context: str = "train/valid/test"


@dataclass(frozen=True)
class TrialRunSpec:
    """What the driver knows of a trial's run before the trial returns."""

    name: str
    trial_id: str
    tags: Mapping[str, str]
    params: Mapping[str, Any]
    description: str
    dataset: DatasetRef | None = None


@dataclass(frozen=True)
class TrialEnding:
    """How a returned trial's run is completed: what to log, when it ended (epoch ms), its description."""

    log_predictions: bool = True
    log_checkpoint: bool = True
    end_ms: int | None = None
    epochs_logged: int = 0  # training epochs already logged live: not logged again
    main_metric: str = "mae"
    note: str = ""


def _epoch_metrics(row: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    ep = int(row["epoch"])
    return [(f"train/{k}", float(v), ep) for k, v in row.items() if k != "epoch" and _finite(v)]


def headline(outcome: Any, main_metric: str = "mae", limit: int = 6) -> str:
    """The clean value and AUDC (:func:`robustmsa.robustness.audc` over the curve rows) of
    ``main_metric``, per predictor, in one line: ``clean MAE 0.512 · AUDC MAE noise/joint 0.83, ...``."""
    from .metrics import METRIC_INFO
    from .robustness import audc

    label = METRIC_INFO[main_metric].label if main_metric in METRIC_INFO else main_metric
    rows = pd.DataFrame([r for r in outcome.rows if r.get("metric") == main_metric and _finite(r.get("value"))])
    if rows.empty:
        return f"no finite {label}"
    parts = []
    for model, g in rows.groupby("model", sort=False):
        who = f"{model}: " if rows["model"].nunique() > 1 else ""
        clean = g[(g["level"] == 1.0) & (g["level_index"] == 0)]["value"]
        curves = [f"{fam}/{sw} {audc(c['level'], c['value']):.3g}" for (fam, sw), c in
                  g[(g["family"] != "clean") & g["sweep"].map(is_curve_sweep)].groupby(["family", "sweep"], sort=False)]
        more = f" (+{len(curves) - limit} more)" if len(curves) > limit else ""
        text = f"clean {label} {clean.iloc[0]:.3g}" if len(clean) else f"{label}"
        parts.append(f"{who}{text} · AUDC {label} {', '.join(curves[:limit])}{more}")
    return "; ".join(parts)


def trial_note(outcome: Any, main_metric: str = "mae", intro: str = "") -> str:
    """A finished trial's description: ``intro`` (what the trial is) and its headline numbers."""
    info = outcome.info
    facts = [f"{info['epochs_run']} epochs (best {info['best_epoch']})" if info.get("epochs_run") else "",
             f"trained {info['train_seconds']:.1f} s" if _finite(info.get("train_seconds")) else "",
             f"evaluated {info['eval_seconds']:.1f} s" if _finite(info.get("eval_seconds")) else ""]
    return (f"{intro}\n\n" if intro else "") + f"**{headline(outcome, main_metric)}**  \n" + \
        " · ".join(f for f in facts if f)


def _trial_metrics(outcome: Any, epochs_logged: int = 0) -> list[tuple[str, float, int]]:
    """The metrics of a returned trial: its training curve (past the ``epochs_logged`` first epochs,
    logged live), clean values, degradation curves at step round(1000 rho), and timings."""
    out: list[tuple[str, float, int]] = []
    for h in outcome.history[epochs_logged:]:
        out += _epoch_metrics(h)
    for r in outcome.rows:
        if not _finite(r["value"]):
            continue
        # a reference trial holds several predictors: their metrics are prefixed with the name
        pre = re.sub(r"[^0-9A-Za-z]+", "_", r["model"]).strip("_") + "/" if r.get("regime_kind") == "reference" else ""
        if r["family"] == "clean" or (r["level"] == 1.0 and r["level_index"] == 0):  # every sweep starts clean
            out.append((f"{pre}clean/{r['metric']}", r["value"], rho_step(1.0)))
        if r["family"] != "clean" and is_curve_sweep(r["sweep"]):  # product and qmc grids are in rows.csv
            out.append((f"{pre}curve/{r['family']}/{r['sweep']}/{r['metric']}", r["value"], rho_step(r["level"])))
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


def download_run_checkpoint(uri: str, run_id: str, dst: str | Path) -> Path:
    """The ``checkpoint/model.pt`` artifact of MLflow run ``run_id`` in the store at ``uri``,
    downloaded into the directory ``dst`` (kept there: a later call reads it back without the store).
    A missing run or artifact is a :class:`StoreError` naming the run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    target = Path(dst) / "checkpoint" / "model.pt"
    if target.is_file():
        return target
    probe_store(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise StoreError(f"run:{run_id}: no such MLflow run in {uri}",
                         hint="give the run id of a finished trial (its child run), and tracking.uri=<its store>") from None
    if "checkpoint/model.pt" not in {a.path for a in client.list_artifacts(run_id, "checkpoint")}:
        raise StoreError(f"run:{run_id}: the run has no checkpoint/model.pt artifact",
                         hint="only trained trials log a checkpoint (tracking.log_checkpoint: true)")
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, "checkpoint/model.pt", str(dst)))
