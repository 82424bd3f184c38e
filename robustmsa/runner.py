"""Run a suite: expand the grid, skip completed trials, run the rest (Ray or in-process), track.

Resume: a trial's identity comes from its resolved config, the data's content hash and the
corruption versions; trials with a FINISHED run under that identity are skipped, so re-running an
interrupted suite completes it without duplicates. Runs left RUNNING by a killed driver are marked
FAILED (tag ``robustmsa.orphaned``) before new work starts.

One invocation per suite and store: the driver holds the suite's lease (``Tracker.acquire_lease``)
while it runs; a second one refuses, naming the owner, or waits (``wait=True``). Everything that can
be checked is checked before the store is touched or a trial submitted, each failure one
:class:`~robustmsa.errors.RobustMSAError`: the tracking store (``probe_store``), the Ray address (a
TCP probe), the plan, the trial resources against the cluster's nodes. The parent run ends in
every path (FAILED unless every trial finished). A local Ray instance never outlives its driver: a
watchdog process kills every process that inherited the driver's token once the driver is gone
(``docs/reliability.md``).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .errors import ClusterError, SuiteBusyError
from .estimate import duration_key, recorded_durations, slots_of
from .plan import PlannedTrial, code_version, corruption_versions, plan_suite, trial_threads
from .progress import Board, board_progress, log_line, phase
from .reports import write_report
from .suite import ResourcesSpec, Suite
from .tracking import (
    NOTE,
    TAG,
    DatasetRef,
    Lease,
    LeaseOwner,
    Tracker,
    TrialEnding,
    TrialRunSpec,
    lease_stale_s,
    probe_store,
    trial_note,
)
from .trial import TrialOutcome, run_trial

__all__ = ["RunSummary", "run_suite", "longest_first", "reuse_workers", "REUSE_WORKERS_ENV"]


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
    #: where the time went: ``workers`` (trials at once), and in seconds ``plan_s``, ``ray_start_s``,
    #: ``worker_start_s`` (one per worker: its process and imports), ``trials_wall_s`` (first
    #: submission to last result), ``tracking_s`` (the driver writing to the store while trials
    #: run), ``report_s``; ``trials``: per finished trial its name and the worker's ``start_ms``,
    #: ``end_ms``, ``train_s``, ``eval_s``
    timings: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[str, dict[str, Any]], None]  # (event kind, payload): what a trial tells the driver as it runs
OnEvent = Callable[[str, str, dict[str, Any]], None]  # (trial id, kind, payload): the driver's side


def _now_ms() -> int:
    return int(time.time() * 1000)


def _execute(planned: PlannedTrial, threads: int, emit: Emit | None = None) -> TrialOutcome:
    """Run one trial where it is scheduled. ``emit`` reports its start (``"start"``, ``time_ms``)
    and each training epoch (``"epoch"``, ``row`` and ``time_ms``) to the driver, which writes them;
    the outcome carries the trial's own start and end (``info["start_ms"]``, ``info["end_ms"]``)."""
    send = emit or (lambda kind, payload: None)
    start = _now_ms()
    send("start", {"time_ms": start})
    outcome = run_trial(planned.spec, planned.trial_id, planned.data_hash, threads=threads,
                        on_epoch=lambda row: send("epoch", {"row": dict(row), "time_ms": _now_ms()}))
    outcome.info.update(start_ms=start, end_ms=_now_ms())
    return outcome


#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: ``0``: workers leave glibc's malloc as it is (earlier versions; ``bench/bench_main_job.py``'s mode
#: ``pool-freeing``); the numbers are the same either way
KEEP_FREED_MEMORY_ENV = "ROBUSTMSA_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Ask glibc's malloc of this (worker) process to keep freed memory for reuse: blocks above its
    mmap threshold (at most 32 MiB by default: a split's corrupted copy, a 512-sample evaluation batch of
    768-d text, 78 MB) then come from the heap and stay there when freed, instead of being mapped
    fresh each time and faulted in page by page, zeroed by the kernel (a 105 MB copy: 5.8x faster,
    a QA-MoE prediction of the test split 1.4x). Only where memory comes from changes, never a
    number; the process keeps its peak memory. False where the C library is not glibc, or with
    ``ROBUSTMSA_KEEP_FREED_MEMORY=0``."""
    import ctypes

    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip() == "0":
        return False

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _execute_on_ray(planned: PlannedTrial, threads: int, events: Any) -> TrialOutcome:
    """:func:`_execute` in a Ray worker (its process keeps freed memory: :func:`keep_freed_memory`):
    its events go to the driver's ``ray.util.queue.Queue`` (best effort: a lost event only delays
    what the store shows, the outcome carries everything)."""
    keep_freed_memory()

    def emit(kind: str, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            events.put_nowait((planned.trial_id, kind, payload))

    return _execute(planned, threads, emit)


class _LocalExecutor:
    """Runs trials one at a time in this process (debugging, determinism checks); their events reach
    the driver through a plain callback. A failure of the driver's handler (the store) is fatal."""

    slots = 1

    def __init__(self, threads: int):
        self.threads = threads
        self.queue: list[PlannedTrial] = []

    def submit(self, p: PlannedTrial) -> None:
        self.queue.append(p)

    def running(self) -> int:
        return 1 if self.queue else 0

    def next_result(self, on_event: OnEvent | None = None) -> tuple[PlannedTrial, TrialOutcome | None, str | None]:
        p = self.queue.pop(0)
        fatal: list[BaseException] = []

        def emit(kind: str, payload: dict[str, Any]) -> None:
            try:
                if on_event is not None:
                    on_event(p.trial_id, kind, payload)
            except BaseException as e:
                fatal.append(e)
                raise

        try:
            return p, _execute(p, self.threads, emit), None
        except Exception:  # noqa: BLE001 - a failing trial is recorded, not fatal
            if fatal:
                raise fatal[0] from None
            return p, None, traceback.format_exc()

    def close(self) -> None:
        pass


OWNER_ENV = "ROBUSTMSA_RAY_OWNER"  # the token every process of a local Ray instance inherits from its driver
PROBE_TIMEOUT_S = 3.0

# Run as `python -c`, in its own session: blocks until the driver closes the pipe or dies, then
# SIGKILLs every process whose environment holds the token (the local Ray instance's GCS, raylet,
# agents and workers), until none is left.
_REAPER = r"""
import os, signal, sys, time
sys.stdin.buffer.read()
mark = ("\0%s=%s\0" % (sys.argv[1], sys.argv[2])).encode()
deadline = time.time() + 30
while time.time() < deadline:
    found = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                if mark not in b"\0" + f.read():
                    continue
            os.kill(int(d), signal.SIGKILL)
            found += 1
        except OSError:
            pass
    if not found:
        break
    time.sleep(0.2)
"""


class _Reaper:
    """Makes the processes of a local Ray instance die with its driver, however the driver ends
    (Ray's own fate sharing leaves agents behind when the driver is killed while Ray starts).
    Processes started while the token is in the environment inherit it; the reaper kills them
    when the driver's end of its stdin closes."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
        self.proc = None
        if Path("/proc/self/environ").exists():
            self.proc = subprocess.Popen([sys.executable, "-c", _REAPER, OWNER_ENV, self.token], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)

    @contextlib.contextmanager
    def marking(self) -> Any:
        """Processes started inside this block carry the token."""
        os.environ[OWNER_ENV] = self.token
        try:
            yield
        finally:
            os.environ.pop(OWNER_ENV, None)

    def close(self) -> None:
        """Kill what is left of the instance (after ``ray.shutdown``) and wait for the reaper."""
        if self.proc is not None:
            self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=40)


def probe_ray_address(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when ``address`` is not HOST:PORT or nothing listens there (``auto`` is not probed)."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"the Ray address {address!r} is not HOST:PORT",
                           hint="e.g. --ray-address 127.0.0.1:6379 (the address `ray start --head` prints)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"the Ray cluster at {address} is not reachable: {e.strerror or e}",
                           hint="start it (ray start --head) or fix --ray-address / runner.ray_address") from e


def _check_resources(res: ResourcesSpec, nodes: list[dict[str, float]], console: Console) -> float:
    """The GPUs a trial asks for, after checking some node can run a trial (else a task would wait
    forever); no GPU in the whole cluster: 0 (GPU trials run on CPU, with a warning)."""
    cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if res.cpus_per_trial > cpus:
        raise ClusterError(f"resources.cpus_per_trial={res.cpus_per_trial:g} but the largest Ray node has "
                           f"{cpus:g} CPU(s): no trial could start",
                           hint=f"set resources.cpus_per_trial={cpus:g} or less, or join a larger cluster")
    gpus = res.gpus_per_trial
    most = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if gpus and most == 0:
        console.print("[yellow]no GPU in the Ray cluster: running GPU trials on CPU[/yellow]")
        return 0.0
    if gpus > most:
        raise ClusterError(f"resources.gpus_per_trial={gpus:g} but the largest Ray node has {most:g} GPU(s): "
                           "no trial could start", hint=f"set resources.gpus_per_trial={most:g} or less")
    return gpus


#: ``0``: the scheduling of earlier versions, kept to measure against (``bench/bench_main_job.py``):
#: one Ray task per trial instead of the pool of long-lived workers, trials in submission order
#: (references first) instead of longest first. The numbers are the same either way.
REUSE_WORKERS_ENV = "ROBUSTMSA_REUSE_WORKERS"


def reuse_workers() -> bool:
    """Whether trials run on long-lived workers, longest first (the default), per :data:`REUSE_WORKERS_ENV`."""
    value = os.environ.get(REUSE_WORKERS_ENV, "1").strip().lower()
    if value not in ("0", "1", "false", "true", "no", "yes"):
        raise ClusterError(f"{REUSE_WORKERS_ENV}={value!r} is not a switch; allowed: 1, 0, true, false, yes, no")
    return value in ("1", "true", "yes")


class _TrialWorker:
    """A long-lived Ray worker (an actor): its process imports the trial code once (when Ray loads
    this class), then runs the trials it is given one after another. ``ready`` answers once it can
    take a trial, with its wall clock (``time.time()``)."""

    def ready(self) -> float:
        import torch

        # the optimiser's lazy imports (torch._dynamo, seconds), paid here once rather than in a trial;
        # no random draw, so the trials' numbers are unchanged
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        return time.time()

    def run(self, planned: PlannedTrial, threads: int, events: Any) -> TrialOutcome:
        return _execute_on_ray(planned, threads, events)


@dataclass
class _Slot:
    """One worker of the pool: its actor, when it was asked to start, when it answered ready."""

    actor: Any
    created: float
    ready_ref: Any
    busy: bool = False


class _RayExecutor:
    """Trials on Ray with the suite's resources; joins a cluster if ``address`` is set.

    By default a pool of long-lived workers, one per slot, created as trials are submitted: each
    imports torch and the zoo once and runs trials sequentially; a worker that dies is replaced.
    With ``ROBUSTMSA_REUSE_WORKERS=0``, one Ray task per trial instead. ``timings`` holds the
    seconds of Ray's start and of each worker's start (process and imports)."""

    def __init__(self, suite: Suite, address: str | None, threads: int, console: Console):
        import ray

        self.reuse = reuse_workers()
        self.ray, self.reaper, self.pending, self.events = ray, None, {}, None
        self.workers: list[_Slot] = []
        self.started = not ray.is_initialized()
        self.timings: dict[str, Any] = {"ray_start_s": 0.0, "worker_start_s": []}
        try:
            t0 = time.perf_counter()
            if self.started:
                self._init(address, suite.resources, console)
            self.timings["ray_start_s"] = time.perf_counter() - t0
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            gpus = _check_resources(suite.resources, nodes, console)
            # trials that run at once: the submission limit
            self.slots = slots_of([n.get("CPU", 0.0) for n in nodes], suite.resources.cpus_per_trial)
        except BaseException:
            self.close()
            raise
        options = dict(num_cpus=suite.resources.cpus_per_trial, num_gpus=gpus)
        self.remote = ray.remote(max_retries=0, **options)(_execute_on_ray)
        self.worker_class = ray.remote(max_restarts=0, max_task_retries=0, **options)(_TrialWorker)
        self.threads = threads

    def _init(self, address: str | None, res: ResourcesSpec, console: Console) -> None:
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if address:
            try:
                self.ray.init(address=address, **kwargs)
            except Exception as e:  # noqa: BLE001 - reachable, but not a Ray cluster we may join
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                raise ClusterError(f"cannot join the Ray cluster at {address}: {first}",
                                   hint="check --ray-address and the cluster's token (ray get-auth-token)") from e
            return
        cpus = os.cpu_count() or 1
        _check_resources(res.model_copy(update={"gpus_per_trial": 0.0}), [{"CPU": float(cpus)}], console)
        self.reaper = _Reaper()
        with self.reaper.marking():
            # "local": always a new local instance, never a cluster found through RAY_ADDRESS or
            # /tmp/ray/ray_current_cluster (possibly stale); --ray-address joins one explicitly
            self.ray.init(address="local", num_cpus=cpus, **kwargs)

    EVENT_POLL_S = 0.5

    def submit(self, p: PlannedTrial) -> None:
        if self.events is None:  # the workers' events: a queue actor the driver drains while it waits
            from ray.util.queue import Queue

            self.events = Queue(actor_options={"num_cpus": 0})
        if not self.reuse:
            self.pending[self.remote.remote(p, self.threads, self.events)] = (p, None)
            return
        slot = next((w for w in self.workers if not w.busy), None) or self._new_worker()
        slot.busy = True
        self.pending[slot.actor.run.remote(p, self.threads, self.events)] = (p, slot)

    def _new_worker(self) -> _Slot:
        """A worker for a free slot; its first call (``ready``) runs before any trial it is given."""
        actor = self.worker_class.remote()
        slot = _Slot(actor, time.time(), actor.ready.remote())
        self.workers.append(slot)
        return slot

    def running(self) -> int:
        return len(self.pending)

    def _drain(self, on_event: OnEvent | None) -> None:
        n = self.events.size() if self.events is not None else 0
        for trial_id, kind, payload in self.events.get_nowait_batch(n) if n else []:
            if on_event is not None:
                on_event(trial_id, kind, payload)

    def next_result(self, on_event: OnEvent | None = None) -> tuple[PlannedTrial, TrialOutcome | None, str | None]:
        """The next trial to return, forwarding the workers' events meanwhile; a trial's own events
        are all forwarded before its result (a worker's ``put`` returns once the queue holds it)."""
        done: list = []
        while not done:
            done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=self.EVENT_POLL_S)
            self._drain(on_event)
        p, slot = self.pending.pop(done[0])
        try:
            outcome = self.ray.get(done[0])
        except self.ray.exceptions.RayActorError as e:  # the worker died: the next trial gets a new one
            self._retire(slot)
            return p, None, str(e)
        except Exception as e:  # noqa: BLE001
            cause = getattr(e, "cause", None)
            return p, None, "".join(traceback.format_exception(cause)) if cause else str(e)
        finally:
            if slot is not None:
                slot.busy = False
        return p, outcome, None

    def _retire(self, slot: _Slot | None) -> None:
        if slot is not None and slot in self.workers:
            self.workers.remove(slot)
            self._note_start(slot)
            with contextlib.suppress(Exception):
                self.ray.kill(slot.actor)

    def _note_start(self, slot: _Slot) -> None:
        """Record the seconds from a worker's creation until it was ready (if it got there)."""
        with contextlib.suppress(Exception):
            ready, _ = self.ray.wait([slot.ready_ref], timeout=0)
            if ready:
                self.timings["worker_start_s"].append(self.ray.get(ready[0]) - slot.created)

    def close(self) -> None:
        """Stop every trial in flight (their workers are killed) and Ray, if this executor started it."""
        for ref, (_, slot) in list(self.pending.items()):
            if slot is None:
                self.ray.cancel(ref, force=True)
        for slot in list(self.workers):
            self._retire(slot)
        if self.events is not None:
            with contextlib.suppress(Exception):
                self.events.shutdown()
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        if self.reaper is not None:
            self.reaper.close()


def run_suite(
    suite: Suite,
    *,
    ray_address: str | None = None,
    backend: str | None = None,
    console: Console | None = None,
    make_report: bool = True,
    on_trial: Callable[[str, str], None] | None = None,
    wait: bool = False,
) -> RunSummary:
    """Run every trial of ``suite`` that is not already completed; track it; write the report.

    Refuses (:class:`SuiteBusyError`) while another live invocation holds the suite's lease in the
    store, or with ``wait`` waits for it, then reuses its trials."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    kind = backend or ("ray" if ray_address else suite.runner.backend)
    address = ray_address or suite.runner.ray_address
    probe_store(suite.tracking.uri)  # fail fast, before anything is touched
    reuse_workers()  # a bad ROBUSTMSA_REUSE_WORKERS too
    if kind == "ray" and address:
        probe_ray_address(address)
    planned = plan_suite(suite)  # a bad input fails here, before the store is touched
    inv = _Invocation(suite, console, wait, kind, address)
    summary = RunSummary(suite.name, suite.experiment, suite.tracking.uri, None, len(planned), 0)
    summary.timings["plan_s"] = time.perf_counter() - t0
    with _sigterm_as_exit():
        try:
            inv.await_free()
            if _todo(planned, Tracker.existing(suite.tracking.uri, suite.experiment)):
                inv.start_executor()  # Ray and the resource check, still before the store is touched
            inv.run(planned, summary, on_trial)
        finally:
            inv.close()
            summary.timings.update(getattr(inv.executor, "timings", {}))
    summary.seconds = time.perf_counter() - t0
    if make_report:
        t1 = time.perf_counter()
        with phase(console, "report: tables and figures"):
            summary.report_paths = write_report(suite, console=console, planned=planned)
        summary.timings["report_s"] = time.perf_counter() - t1
    return summary


def _todo(planned: list[PlannedTrial], tracker: Tracker | None) -> list[PlannedTrial]:
    done = tracker.completed_trials() if tracker else {}
    return [p for p in planned if p.trial_id not in done]


@contextlib.contextmanager
def _sigterm_as_exit() -> Any:
    """SIGTERM (in the main thread) raises SystemExit, so the parent run and the lease are ended."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


class _Invocation:
    """One ``run_suite`` call: the suite's lease, the executor, the parent run, in that order."""

    POLL_S = 2.0

    def __init__(self, suite: Suite, console: Console, wait: bool, kind: str, address: str | None):
        self.suite, self.console, self.wait, self.kind, self.address = suite, console, wait, kind, address
        self.executor: _RayExecutor | _LocalExecutor | None = None

    def _busy(self, owner: LeaseOwner) -> SuiteBusyError:
        s = self.suite
        return SuiteBusyError(
            f"suite '{s.name}' is already running in {s.tracking.uri} (experiment '{s.experiment}'): "
            f"{owner.describe()}",
            hint=f"wait for it with `robustmsa run --wait`, or stop that process (a lease whose heartbeat "
                 f"is over {lease_stale_s():.0f} s old is taken over)")

    def await_free(self, tracker: Tracker | None = None) -> None:
        """Return once no live invocation holds the suite's lease; without ``wait``, refuse instead."""
        s, announced = self.suite, False
        tracker = tracker or Tracker.existing(s.tracking.uri, s.experiment)
        while tracker is not None and (owner := tracker.lease_holder(s.name)) is not None:
            if not self.wait:
                raise self._busy(owner)
            if not announced:
                self.console.print(f"waiting for the running invocation of suite '{s.name}' ({owner.describe()})",
                                   markup=False, highlight=False)
                announced = True
            time.sleep(self.POLL_S)

    def start_executor(self) -> None:
        threads = trial_threads(self.suite.resources)
        self.executor = (_RayExecutor(self.suite, self.address, threads, self.console) if self.kind == "ray"
                         else _LocalExecutor(threads))

    def _acquire(self, tracker: Tracker) -> Lease:
        while True:
            got = tracker.acquire_lease(self.suite.name)
            if isinstance(got, Lease):
                return got
            if not self.wait:
                raise self._busy(got)
            self.await_free(tracker)

    def run(self, planned: list[PlannedTrial], summary: RunSummary, on_trial: Callable[[str, str], None] | None) -> None:
        s, console = self.suite, self.console
        tracker = Tracker(s.tracking.uri, s.experiment)
        lease = self._acquire(tracker)
        try:
            orphans = tracker.mark_orphans_failed(lease)
            if orphans:
                console.print(f"marked {orphans} run(s) left RUNNING by an interrupted invocation as FAILED")
            todo = _todo(planned, tracker)  # again: an invocation waited for may have completed trials
            summary.skipped = len(planned) - len(todo)
            console.print(f"suite [bold]{s.name}[/bold]: {len(planned)} trials, {summary.skipped} already "
                          f"completed, {len(todo)} to run")
            if todo:
                if self.executor is None:
                    self.start_executor()
                _SuiteRun(s, tracker, summary, console, on_trial, lease).run(todo, self.executor)
        finally:
            lease.release()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()


def longest_first(todo: list[PlannedTrial], recorded: dict[tuple[str, str, str, str], list[float]]
                  ) -> list[PlannedTrial]:
    """The order to submit trials in: longest expected first, ties in plan order, so that no slot
    idles at the end while one long trial runs. A trial's expected seconds: the store's median for
    its kind (:func:`~robustmsa.estimate.duration_key`), else its planned cost (sample passes,
    ``PlannedTrial.cost``) times the median seconds per pass of the trials that have both; with no
    record at all the costs alone give the order."""
    known = {p.trial_id: statistics.median(recorded[k]) for p in todo if recorded.get(k := duration_key(p))}
    rates = [known[p.trial_id] / p.cost for p in todo if p.trial_id in known and p.cost > 0]
    rate = statistics.median(rates) if rates else 1.0
    return sorted(todo, key=lambda p: -known.get(p.trial_id, p.cost * rate))


def _top_up(queue: list[PlannedTrial], executor: _RayExecutor | _LocalExecutor, board: Board, limit: int) -> None:
    """Submit queued trials until ``limit`` run at once."""
    while queue and executor.running() < limit:
        board.started(queue[0])
        executor.submit(queue.pop(0))


class _SuiteRun:
    """One invocation's trials under its parent run: submitted, retried, tracked, counted.

    A trial's child run is created when the trial starts (its ``start`` event, with the worker's
    clock), receives each training epoch as it ends, and is ended FINISHED or FAILED at the trial's
    own end time. Workers only send events; this driver writes them (the single writer)."""

    def __init__(self, suite: Suite, tracker: Tracker, summary: RunSummary, console: Console,
                 on_trial: Callable[[str, str], None] | None, lease: Lease):
        self.suite, self.tracker, self.summary, self.console, self.on_trial = suite, tracker, summary, console, on_trial
        self.tags = {f"{TAG}.suite": suite.name, f"{TAG}.suite_version": str(suite.version),
                     f"{TAG}.code_version": code_version(), f"{TAG}.lease": lease.run_id}
        self.attempts: dict[str, int] = {}
        self.planned: dict[str, PlannedTrial] = {}
        self.live: dict[str, _LiveRun] = {}  # trial id -> the run of its running attempt

    def run(self, todo: list[PlannedTrial], executor: _RayExecutor | _LocalExecutor) -> None:
        suite, summary = self.suite, self.summary
        self.planned = {p.trial_id: p for p in todo}
        summary.parent_run_id = self.tracker.start_parent(
            suite.name, {**self.tags, f"{TAG}.source": str(suite.source)}, suite.to_dict(),
            run_name=parent_run_name(suite), description=parent_description(suite, todo, summary.skipped))
        status = "FAILED"
        try:
            self._loop(todo, executor)
            status = "FINISHED" if not summary.failed else "FAILED"
        finally:
            for live in self.live.values():  # an interruption: the runs of trials in flight end with it
                with contextlib.suppress(Exception):
                    self.tracker.fail_trial(live.run_id, "interrupted: the driver stopped before the trial returned",
                                            note=live.intro)
            try:
                self.tracker.finish(summary.parent_run_id, status)
            except Exception as e:  # noqa: BLE001 - never mask the error in flight; the lease's end marks it
                self.console.print(f"could not end the parent run: {e}", markup=False, highlight=False)

    def _loop(self, todo: list[PlannedTrial], executor: _RayExecutor | _LocalExecutor) -> None:
        # at most as many trials submitted as run at once: "running" on the console is true, and the
        # queue stays here (references first: they run beside the models)
        limit = min(self.suite.runner.max_concurrent or len(todo), executor.slots)
        recorded = recorded_durations(self.tracker)
        queue = longest_first(todo, recorded) if reuse_workers() else sorted(todo, key=lambda p: not p.spec.is_reference)
        board = Board(todo, limit, recorded)
        self.summary.timings["workers"] = limit
        t0 = time.perf_counter()
        with board_progress(self.console, board) as progress:
            task = progress.add_task(self.suite.name, total=len(todo))
            _top_up(queue, executor, board, limit)
            while queue or executor.running():
                p, outcome, error = executor.next_result(self._on_event)
                with self._tracking():
                    retry = not self._record(p, outcome, error, queue)
                if retry:
                    board.requeued(p)
                else:
                    board.finished(p, outcome is not None)
                _top_up(queue, executor, board, limit)  # the freed slot first, then the console
                if retry:
                    continue
                progress.advance(task)
                if not self.console.is_terminal:  # logs and CI: one line per finished trial, not a live bar
                    log_line(self.console, board, p.spec.name, outcome is not None, error, time.perf_counter() - t0)
                if self.on_trial:
                    self.on_trial(p.spec.name, "ok" if outcome is not None else "failed")
        self.summary.timings["trials_wall_s"] = time.perf_counter() - t0

    @contextlib.contextmanager
    def _tracking(self) -> Any:
        """Count the time of the block as the driver's tracking time (``timings["tracking_s"]``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            t = self.summary.timings
            t["tracking_s"] = t.get("tracking_s", 0.0) + time.perf_counter() - t0

    # ------------------------------------------------------------------ the runs of trials
    def _on_event(self, trial_id: str, kind: str, payload: dict[str, Any]) -> None:
        """A worker's event, written by the driver: a trial started (its run is created RUNNING at
        the worker's start time) or finished an epoch (its training metrics, at the worker's time)."""
        p = self.planned.get(trial_id)
        if p is None:
            return
        with self._tracking():
            self._write_event(p, kind, payload)

    def _write_event(self, p: PlannedTrial, kind: str, payload: dict[str, Any]) -> None:
        trial_id = p.trial_id
        if kind == "start":
            self._start_run(p, payload.get("time_ms"))
        elif kind == "epoch":
            live = self.live.get(trial_id) or self._start_run(p, None)
            self.tracker.log_epoch(live.run_id, payload["row"], payload.get("time_ms"))
            live.epochs += 1

    def _start_run(self, p: PlannedTrial, start_ms: int | None) -> _LiveRun:
        attempt = self.attempts.get(p.trial_id, 0) + 1
        spec = trial_run_spec(p, {**self.tags, f"{TAG}.attempt": str(attempt)}, len(self.suite.datasets) > 1)
        live = _LiveRun(self.tracker.start_trial(self.summary.parent_run_id, spec, start_ms), spec.description)
        self.live[p.trial_id] = live
        return live

    def _record(self, p: PlannedTrial, outcome: TrialOutcome | None, error: str | None,
                queue: list[PlannedTrial]) -> bool:
        """Track a finished trial, or retry a failed one (False: queued again) or record its failure."""
        track = self.suite.tracking
        live = self.live.pop(p.trial_id, None)
        if outcome is not None:
            live = live or self._start_run(p, outcome.info.get("start_ms"))  # its start event was lost
            self.live.pop(p.trial_id, None)
            note = trial_note(outcome, self.suite.report.main_metric, intro=live.intro.replace(RUNNING_NOTE, ""))
            self.tracker.end_trial(live.run_id, outcome, TrialEnding(
                track.log_predictions, track.log_checkpoint, outcome.info.get("end_ms"), live.epochs,
                self.suite.report.main_metric, note))
            self.summary.completed.append(p.spec.name)
            info = outcome.info
            self.summary.timings.setdefault("trials", []).append(
                {"name": p.spec.name, "start_ms": info.get("start_ms"), "end_ms": info.get("end_ms"),
                 "train_s": info.get("train_seconds", 0.0), "eval_s": info.get("eval_seconds", 0.0)})
            return True
        self.attempts[p.trial_id] = self.attempts.get(p.trial_id, 0) + 1
        last = (error or "?").strip().splitlines()[-1] if (error or "").strip() else "?"
        if live is not None:
            self.tracker.fail_trial(live.run_id, error or "", note=live.intro.replace(RUNNING_NOTE, ""))
        if self.attempts[p.trial_id] <= self.suite.runner.retries:
            self.console.print(f"trial {p.spec.name} failed (attempt {self.attempts[p.trial_id]}), retrying: {last}",
                               markup=False, highlight=False)
            queue.append(p)
            return False
        if live is None:  # it failed before it started (e.g. its worker died)
            spec = trial_run_spec(p, self.tags, len(self.suite.datasets) > 1)
            self.tracker.log_failure(self.summary.parent_run_id, spec.name, p.trial_id, error or "",
                                     {**spec.tags, NOTE: spec.description.replace(RUNNING_NOTE, "")})
        self.summary.failed[p.spec.name] = last
        return True


@dataclass
class _LiveRun:
    """The run of a trial in flight: its id, its description so far, the epochs logged live."""

    run_id: str
    intro: str
    epochs: int = 0


RUNNING_NOTE = "\n\n**running**"


def trial_run_name(spec: Any, several_datasets: bool) -> str:
    """A trial's run name in MLflow, short and complete: ``qa_moe · spectrum · seed 0``, with a
    specialist's condition, and the dataset when the suite has several (``references · <dataset>``)."""
    if spec.is_reference:
        return f"references · {spec.dataset.display}"
    parts = [spec.model.display, spec.regime.name, *([spec.condition.label] if spec.condition else []),
             *([spec.dataset.display] if several_datasets else []), f"seed {spec.seed}"]
    return " · ".join(parts)


def trial_run_spec(p: PlannedTrial, tags: dict[str, str], several_datasets: bool) -> TrialRunSpec:
    """What a trial's run holds from its start: name, tags to group by in the UI (``model``,
    ``regime``, ``seed``, ``dataset``, ``condition``), the resolved config, a description, the dataset."""
    spec = p.spec
    shown = {"model": spec.model.display, "regime": spec.regime.name, "seed": str(spec.seed),
             "dataset": spec.dataset.display, **({"condition": spec.condition.label} if spec.condition else {})}
    ev = spec.evaluation
    what = ("the oracle and the linear probes" if spec.is_reference else
            f"`{spec.model.name}` trained with the `{spec.regime.name}` regime ({spec.regime.kind}"
            + (f", at {spec.condition.label}" if spec.condition else "") + f"), seed {spec.seed}")
    intro = (f"{what}, on `{spec.dataset.display}` (data hash `{p.data_hash[:12]}`); evaluated on "
             f"{ev.split}: {', '.join(f.name for f in ev.families)} × {', '.join(ev.sweeps)} × levels "
             f"{', '.join(f'{v:g}' for v in ev.levels)}. Suite `{spec.suite}`, trial `{p.trial_id[:12]}`.  \n"
             "Curves: metrics `curve/<family>/<sweep>/<metric>` at step = round(1000·ρ) (0 absent … 1000 clean)."
             + RUNNING_NOTE)
    source = {"loader": spec.dataset.name, "params": json.dumps(spec.dataset.params, sort_keys=True, default=str)}
    versions = json.dumps(corruption_versions(spec.families()), sort_keys=True)
    return TrialRunSpec(trial_run_name(spec, several_datasets), p.trial_id,
                        {**tags, f"{TAG}.data_hash": p.data_hash, f"{TAG}.corruption_versions": versions, **shown},
                        spec.resolved(), intro, DatasetRef(spec.dataset.display, p.data_hash, source))


def parent_run_name(suite: Suite) -> str:
    """``<suite> · 2 models × 2 regimes × 3 seeds · 06-12 10:31`` (× datasets when several)."""
    def n(items: list, what: str) -> str:
        return f"{len(items)} {what}{'s' if len(items) != 1 else ''}"

    grid = [n(suite.models, "model"), n(suite.regimes, "regime"), n(suite.seeds, "seed")]
    grid += [n(suite.datasets, "dataset")] if len(suite.datasets) > 1 else []
    return f"{suite.name} · {' × '.join(grid)} · {time.strftime('%m-%d %H:%M')}"


def parent_description(suite: Suite, todo: list[PlannedTrial], skipped: int) -> str:
    """What the suite is, for the parent run's description."""
    ev = suite.evaluation
    lines = [f"**Suite `{suite.name}`** (version {suite.version}, `{suite.source}`)",
             suite.description.strip(),
             f"Datasets: {', '.join(d.display for d in suite.datasets)}. Models: "
             f"{', '.join(m.display for m in suite.models)}. Regimes: {', '.join(r.name for r in suite.regimes)}. "
             f"Seeds: {', '.join(str(x) for x in suite.seeds)}. Training: {suite.training.epochs} epochs.",
             f"Evaluation on {ev.split}: {', '.join(f.name for f in ev.families)} × {', '.join(ev.sweeps)} × "
             f"levels {', '.join(f'{v:g}' for v in ev.levels)}.",
             f"This invocation: {len(todo)} trials to run, {skipped} reused from earlier runs. Each trial is a "
             "child run; curves are metrics `curve/<family>/<sweep>/<metric>` at step = round(1000·ρ)."]
    return "\n\n".join(x for x in lines if x)
