"""Run a suite: expand the grid, skip completed trials, run the rest (Ray or in-process), track.

Resume: a trial's identity comes from its resolved config, the data's content hash and the
corruption versions; trials with a FINISHED run under that identity are skipped, so re-running an
interrupted suite completes it without duplicates. Runs left RUNNING by a killed driver are marked
FAILED (tag ``robustmsa.orphaned``) before new work starts.
"""
from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .plan import PlannedTrial, code_version, plan_suite, trial_threads
from .reports import write_report
from .suite import Suite
from .tracking import TAG, Tracker
from .trial import TrialOutcome, run_trial

__all__ = ["RunSummary", "run_suite"]


@dataclass
class RunSummary:
    suite: str
    experiment: str
    tracking_uri: str
    parent_run_id: str | None
    total: int
    skipped: int
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    report_paths: dict[str, str] = field(default_factory=dict)


def _execute(planned: PlannedTrial, threads: int) -> TrialOutcome:
    return run_trial(planned.spec, planned.trial_id, planned.data_hash, threads=threads)


class _LocalExecutor:
    """Runs trials one at a time in this process (debugging, determinism checks)."""

    def __init__(self, threads: int):
        self.threads = threads
        self.queue: list[PlannedTrial] = []

    def submit(self, p: PlannedTrial) -> None:
        self.queue.append(p)

    def running(self) -> int:
        return 1 if self.queue else 0

    def next_result(self) -> tuple[PlannedTrial, TrialOutcome | None, str | None]:
        p = self.queue.pop(0)
        try:
            return p, _execute(p, self.threads), None
        except Exception:  # noqa: BLE001 - a failing trial is recorded, not fatal
            return p, None, traceback.format_exc()

    def close(self) -> None:
        pass


class _RayExecutor:
    """Ray tasks, one per trial, with the suite's resources; joins a cluster if ``address`` is set."""

    def __init__(self, suite: Suite, address: str | None, threads: int, console: Console):
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            if address:
                ray.init(address=address, **kwargs)
            else:
                # "local": always a new local instance, never a cluster found through RAY_ADDRESS or
                # /tmp/ray/ray_current_cluster (possibly stale); --ray-address joins one explicitly
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
        res = suite.resources
        gpus = res.gpus_per_trial
        if gpus and ray.cluster_resources().get("GPU", 0) == 0:
            console.print("[yellow]no GPU in the Ray cluster: running GPU trials on CPU[/yellow]")
            gpus = 0
        self.remote = ray.remote(num_cpus=res.cpus_per_trial, num_gpus=gpus, max_retries=0)(_execute)
        self.threads = threads
        self.pending: dict[Any, PlannedTrial] = {}

    def submit(self, p: PlannedTrial) -> None:
        self.pending[self.remote.remote(p, self.threads)] = p

    def running(self) -> int:
        return len(self.pending)

    def next_result(self) -> tuple[PlannedTrial, TrialOutcome | None, str | None]:
        done, _ = self.ray.wait(list(self.pending), num_returns=1)
        p = self.pending.pop(done[0])
        try:
            return p, self.ray.get(done[0]), None
        except Exception as e:  # noqa: BLE001
            cause = getattr(e, "cause", None)
            return p, None, "".join(traceback.format_exception(cause)) if cause else str(e)

    def close(self) -> None:
        for ref in list(self.pending):
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total} trials"),
        TextColumn("running {task.fields[running]} · failed {task.fields[failed]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, transient=False,
    )


def _log_line(console: Console, name: str, ok: bool, task: Any, error: str | None) -> None:
    done, total, elapsed = int(task.completed), int(task.total or 0), task.elapsed or 0.0
    eta = elapsed / done * (total - done) if done else float("nan")
    state = "done" if ok else f"failed ({(error or '').strip().splitlines()[-1] if error else '?'})"
    console.print(f"[{done}/{total}] {name} {state} · elapsed {elapsed:.0f} s · ETA {eta:.0f} s",
                  markup=False, highlight=False)


def run_suite(
    suite: Suite,
    *,
    ray_address: str | None = None,
    backend: str | None = None,
    console: Console | None = None,
    make_report: bool = True,
    on_trial: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Run every trial of ``suite`` that is not already completed; track it; write the report."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    planned = plan_suite(suite)  # data errors surface before anything is written to the store
    tracker = Tracker(suite.tracking.uri, suite.experiment)
    orphans = tracker.mark_orphans_failed()
    if orphans:
        console.print(f"marked {orphans} run(s) left RUNNING by an interrupted invocation as FAILED")
    done = tracker.completed_trials()
    todo = [p for p in planned if p.trial_id not in done]
    summary = RunSummary(suite.name, suite.experiment, suite.tracking.uri, None, len(planned),
                         len(planned) - len(todo))
    console.print(f"suite [bold]{suite.name}[/bold]: {len(planned)} trials, {summary.skipped} already "
                  f"completed, {len(todo)} to run")
    if todo:
        kind = backend or ("ray" if ray_address else suite.runner.backend)
        _SuiteRun(suite, tracker, summary, console, on_trial).run(todo, kind, ray_address or suite.runner.ray_address)
    summary.seconds = time.perf_counter() - t0
    if make_report:
        summary.report_paths = write_report(suite, console=console)
    return summary


class _SuiteRun:
    """One invocation's trials under its parent run: submitted, retried, tracked, counted."""

    def __init__(self, suite: Suite, tracker: Tracker, summary: RunSummary, console: Console,
                 on_trial: Callable[[str, str], None] | None):
        self.suite, self.tracker, self.summary, self.console, self.on_trial = suite, tracker, summary, console, on_trial
        self.tags = {f"{TAG}.suite": suite.name, f"{TAG}.suite_version": str(suite.version),
                     f"{TAG}.code_version": code_version()}
        self.attempts: dict[str, int] = {}

    def run(self, todo: list[PlannedTrial], kind: str, address: str | None) -> None:
        suite, summary = self.suite, self.summary
        summary.parent_run_id = self.tracker.start_parent(
            suite.name, {**self.tags, f"{TAG}.source": str(suite.source)}, suite.to_dict())
        threads = trial_threads(suite.resources)
        executor = (_RayExecutor(suite, address, threads, self.console) if kind == "ray" else _LocalExecutor(threads))
        limit = suite.runner.max_concurrent or len(todo)
        queue = sorted(todo, key=lambda p: not p.spec.is_reference)  # references first: they run beside the models
        status = "FAILED"
        try:
            with _progress(self.console) as progress:
                task = progress.add_task(suite.name, total=len(todo), running=0, failed=0)
                while queue or executor.running():
                    while queue and executor.running() < limit:
                        executor.submit(queue.pop(0))
                    progress.update(task, running=executor.running())
                    p, outcome, error = executor.next_result()
                    if not self._record(p, outcome, error, queue):
                        continue  # queued again for a retry
                    progress.advance(task)
                    if not self.console.is_terminal:  # logs and CI: one line per finished trial, not a live bar
                        _log_line(self.console, p.spec.name, outcome is not None, progress.tasks[task], error)
                    if self.on_trial:
                        self.on_trial(p.spec.name, "ok" if outcome is not None else "failed")
                    progress.update(task, running=executor.running(), failed=len(summary.failed))
            status = "FINISHED" if not summary.failed else "FAILED"
        finally:
            executor.close()
            self.tracker.finish(summary.parent_run_id, status)

    def _record(self, p: PlannedTrial, outcome: TrialOutcome | None, error: str | None,
                queue: list[PlannedTrial]) -> bool:
        """Track a finished trial, or retry a failed one (False: queued again) or record its failure."""
        tags = {**self.tags, f"{TAG}.data_hash": p.data_hash}
        track = self.suite.tracking
        if outcome is not None:
            tags[f"{TAG}.corruption_versions"] = str(outcome.info.get("corruption_versions"))
            self.tracker.log_trial(self.summary.parent_run_id, outcome, tags, track.log_predictions,
                                   track.log_checkpoint)
            self.summary.completed.append(p.spec.name)
            return True
        self.attempts[p.trial_id] = self.attempts.get(p.trial_id, 0) + 1
        last = (error or "?").strip().splitlines()[-1] if (error or "").strip() else "?"
        if self.attempts[p.trial_id] <= self.suite.runner.retries:
            self.console.print(f"trial {p.spec.name} failed (attempt {self.attempts[p.trial_id]}), retrying: {last}",
                               markup=False, highlight=False)
            queue.append(p)
            return False
        self.tracker.log_failure(self.summary.parent_run_id, p.spec.name, p.trial_id, error or "", tags)
        self.summary.failed[p.spec.name] = last
        return True
