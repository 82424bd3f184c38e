"""How long a suite will take on this machine, and how much of it a rerun reuses.

``robustmsa validate`` prints it. A trial's time comes, in order of preference, from the store
(the median ``info/total_seconds`` of finished trials of the same model, regime kind, dataset
and epochs, from any suite of the experiment) or from a short calibration: a few timed training
steps and one timed forward pass of each model on its dataset, scaled by the trial's sample passes
(training epochs x train split, validation grids, evaluation grid x evaluated split). Early
stopping only shortens a trial, so calibrated times are upper bounds; a calibration is remembered on
this machine for a week (``<cache>/calibration.json``, keyed by the trial's config without its seed,
the data, the threads, the CPU and the code version), so a second ``validate`` trains nothing. The wall time divides the
trials over the parallel slots of this machine (cores / ``resources.cpus_per_trial``, at most
``runner.max_concurrent``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .data.batch import batches, split_to_batch
from .datasets import load_dataset
from .evaluation import predict
from .models import create_model
from .plan import PlannedTrial, code_version, validation_grid
from .suite import Suite

if TYPE_CHECKING:  # the store is read only when it exists; MLflow and pandas load then
    from .tracking import Tracker

__all__ = ["WallTime", "estimate_wall_time", "parallel_slots", "slots_of", "recorded_durations", "duration_key",
           "duration_text"]

#: seconds a run spends outside its trials (Ray start, planning); the report is measured apart
OVERHEAD_S = 8.0


@dataclass(frozen=True)
class WallTime:
    """The estimate: seconds of wall time for the trials to run, and where each trial's time came from."""

    seconds: float
    to_run: int
    reused: int
    slots: int
    from_store: int
    calibrated: int
    untimed: int = 0
    remembered: int = 0  # of the calibrated: from an earlier calibration on this machine

    def text(self) -> str:
        how = [f"{self.from_store} timed from finished trials in the store"] if self.from_store else []
        earlier = (f"; {self.remembered} remembered from an earlier validate on this machine, --recalibrate "
                   "measures again") if self.remembered else ""
        how += [f"{self.calibrated} from a short calibration, an upper bound{earlier}"] if self.calibrated else []
        how += [f"{self.untimed} reference trial(s) not timed: no record yet"] if self.untimed else []
        return (f"about {duration_text(self.seconds)} on this machine for {self.to_run} trial(s) over {self.slots} "
                f"parallel slot(s) ({'; '.join(how) or 'nothing to run'}); a rerun reuses {self.reused} finished "
                "trial(s)")


def duration_text(seconds: float) -> str:
    """``42 s``, ``3:05``, ``1:02:03``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def slots_of(node_cpus: list[float], cpus_per_trial: float) -> int:
    """Trials that run at once on nodes with these CPU counts (at least one)."""
    per = max(cpus_per_trial, 1e-9)
    return max(1, sum(int(c // per) for c in node_cpus))


def parallel_slots(suite: Suite) -> int:
    """Trials that run at once on this machine (local Ray: one per ``cpus_per_trial`` cores)."""
    if suite.runner.backend == "local" and not suite.runner.ray_address:
        return 1
    slots = slots_of([float(os.cpu_count() or 1)], suite.resources.cpus_per_trial)
    return min(slots, suite.runner.max_concurrent or slots)


def _store(suite: Suite) -> Tracker | None:
    """The suite's experiment for reading, without creating a store that is not there."""
    uri = suite.tracking.uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    from .tracking import Tracker

    return Tracker.existing(uri, suite.experiment)


def recorded_durations(store: Tracker | None) -> dict[tuple[str, str, str, str], list[float]]:
    """(model, regime kind, dataset, epochs) -> total seconds of the finished trials in the store."""
    out: dict[tuple[str, str, str, str], list[float]] = {}
    for r in store.finished_trial_runs() if store else []:
        secs = r.metrics.get("info/total_seconds")
        key = (r.params.get("model.name", ""), r.params.get("regime.kind", ""), r.params.get("dataset.name", ""),
               r.params.get("training.epochs", ""))
        if secs is not None and key[0]:
            out.setdefault(key, []).append(float(secs))
    return out


def duration_key(p: PlannedTrial) -> tuple[str, str, str, str]:
    """What a trial's duration is compared by: (model, regime kind, dataset, epochs)."""
    s = p.spec
    return (s.model.name, s.regime.kind, s.dataset.name, str(s.training.epochs))


def _calibrate(p: PlannedTrial, threads: int) -> float:
    """Upper-bound seconds of one trial from timed training steps and a timed forward pass."""
    spec = p.spec
    ds = load_dataset(spec.dataset.name, spec.dataset.params)
    train, test = split_to_batch(ds["train"]), split_to_batch(ds[spec.evaluation.split])
    model = create_model(spec.model.name, dims=ds.dims, lengths=ds.lengths, seed=0, **spec.model.overrides)
    evaluate_only = spec.is_evaluate  # a model with its weights: nothing is trained
    if not evaluate_only:
        model.fit_inputs(train)
    opt = None if evaluate_only else torch.optim.AdamW(model.param_groups(1e-4, 0.0))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps, seen, t0 = 0, 0, 0.0
        for b in [] if opt is None else batches(train, spec.training.batch_size, shuffle_seed=0):
            if steps == 1:
                t0, seen = time.perf_counter(), 0  # the first step warms up
            loss = model(b)["pred"].abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen, steps = seen + len(b), steps + 1
            if steps >= 6:
                break
        per_train = (time.perf_counter() - t0) / max(seen, 1)
        n = min(len(test), 512)
        t1 = time.perf_counter()
        predict(model, test.slice(0, n), spec.evaluation.batch_size, torch.device("cpu"))
        per_eval = (time.perf_counter() - t1) / max(n, 1)
    finally:
        torch.set_num_threads(old)
    vg = validation_grid(spec.regime)
    valid_points = (vg.points() + 1) if vg else 1
    epochs = 0 if evaluate_only else spec.training.epochs
    return (epochs * len(ds["train"]) * per_train + epochs * valid_points * len(ds["valid"]) * per_eval
            + spec.evaluation.points() * len(test) * per_eval)


#: how long a calibration is remembered on this machine (``<cache>/calibration.json``)
CALIBRATION_MAX_AGE_S = 7 * 24 * 3600


def calibration_key(p: PlannedTrial, threads: int, where: list[Any] | None = None) -> str:
    """What a calibration depends on: the trial's resolved config without its seed and suite, its
    data, the thread count, and ``where`` it runs (:func:`calibration_context`, computed if None)."""
    trial = {k: v for k, v in p.spec.resolved().items() if k not in ("seed", "suite", "suite_version")}
    blob = json.dumps({"trial": trial, "data": p.data_hash, "threads": threads,
                       "where": calibration_context() if where is None else where}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def calibration_context() -> list[Any]:
    """This machine (architecture, CPU model and count, torch) and this code's version."""
    return [platform.machine(), _cpu_model(), os.cpu_count(), torch.__version__, code_version()]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


class CalibrationCache:
    """Calibrated trial seconds remembered on this machine for :data:`CALIBRATION_MAX_AGE_S`, so that
    a second ``robustmsa validate`` answers without training anything; unreadable or unwritable
    files only cost a new calibration."""

    def __init__(self, path: Path | None = None, now: float | None = None) -> None:
        from .data.synthetic.cache import default_cache_dir

        self.path = path or default_cache_dir() / "calibration.json"
        self.now = time.time() if now is None else now
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = {k: v for k, v in found.items()
                            if self.now - float(v["at"]) < CALIBRATION_MAX_AGE_S and float(v["seconds"]) > 0}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            self.entries = {}
        self.changed = False

    def get(self, key: str) -> float | None:
        entry = self.entries.get(key)
        return None if entry is None else float(entry["seconds"])

    def put(self, key: str, seconds: float) -> None:
        self.entries[key] = {"seconds": seconds, "at": self.now}
        self.changed = True

    def save(self) -> None:
        from .data.synthetic.cache import atomic_write

        if self.changed:
            blob = json.dumps(self.entries, sort_keys=True).encode("utf-8")
            with contextlib.suppress(OSError):
                atomic_write(self.path, lambda f: f.write(blob))


def estimate_wall_time(suite: Suite, planned: list[PlannedTrial], recalibrate: bool = False) -> WallTime:
    """Seconds until the suite's trials are done on this machine (the report excluded). Calibrations
    are remembered on this machine (:class:`CalibrationCache`); ``recalibrate`` measures again."""
    store = _store(suite)
    done = set(store.completed_trials()) if store else set()
    todo = [p for p in planned if p.trial_id not in done]
    recorded = recorded_durations(store)
    threads = max(1, int(suite.resources.cpus_per_trial))
    cache, where = CalibrationCache(), calibration_context()
    calibrated: dict[tuple[str, str, str, str], tuple[float, bool]] = {}  # -> (seconds, remembered)
    total, counts = 0.0, {"store": 0, "calibrated": 0, "untimed": 0, "remembered": 0}
    for p in todo:
        key = duration_key(p)
        if key in recorded:
            total += statistics.median(recorded[key])
            counts["store"] += 1
        elif p.spec.is_reference:  # the oracle and probes: timed only from the store (they run beside the models)
            counts["untimed"] += 1
        else:
            if key not in calibrated:
                ckey = calibration_key(p, threads, where)
                seconds = None if recalibrate else cache.get(ckey)
                calibrated[key] = (seconds or _calibrate(p, threads), seconds is not None)
                if seconds is None:
                    cache.put(ckey, calibrated[key][0])
            seconds, remembered = calibrated[key]
            total += seconds
            counts["calibrated"] += 1
            counts["remembered"] += remembered
    cache.save()
    slots = parallel_slots(suite)
    seconds = (total / min(slots, max(len(todo), 1)) + OVERHEAD_S) if todo else 0.0
    return WallTime(seconds, len(todo), len(planned) - len(todo), slots, counts["store"], counts["calibrated"],
                    counts["untimed"], counts["remembered"])
