"""What the console shows while a suite runs: trials queued, running (by name), done and failed,
and an ETA from measured trial durations.

A :class:`Board` follows one invocation's trials. The runner submits at most as many trials as
the machine has slots, so "running" means running, not waiting for a core. The ETA schedules the
remaining trials on those slots (earliest free slot first) with each trial's expected duration:
the median of finished trials of the same model, regime kind, dataset and epochs in the store (a
rerun knows its durations before its first trial ends), else the mean of this invocation's
finished trials of that kind, else of all its finished trials; until one is known it reads
"measuring". In a terminal the line refreshes on its own (the countdown moves while a trial
runs); in a log, every finished trial prints one line with the same facts.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from .estimate import duration_key, duration_text
from .plan import PlannedTrial

__all__ = ["Board", "board_progress", "log_line", "phase", "duration_text"]

Key = tuple[str, str, str, str]


@dataclass
class Board:
    """The state of one invocation's trials, and the ETA from their durations."""

    todo: list[PlannedTrial]
    slots: int
    recorded: dict[Key, list[float]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.queued: dict[str, PlannedTrial] = {p.trial_id: p for p in self.todo}
        self.running: dict[str, tuple[PlannedTrial, float]] = {}
        self.done: list[str] = []
        self.failed: list[str] = []
        self.measured: dict[Key, list[float]] = {}

    def started(self, p: PlannedTrial) -> None:
        self.queued.pop(p.trial_id, None)
        self.running[p.trial_id] = (p, self.clock())

    def _stopped(self, p: PlannedTrial) -> None:
        """``p`` no longer runs: its duration joins the measurements of its kind."""
        _, t0 = self.running.pop(p.trial_id, (p, self.clock()))
        self.measured.setdefault(duration_key(p), []).append(self.clock() - t0)

    def finished(self, p: PlannedTrial, ok: bool) -> None:
        self._stopped(p)
        (self.done if ok else self.failed).append(p.spec.name)

    def requeued(self, p: PlannedTrial) -> None:
        """A failed attempt that will be retried: back in the queue."""
        self._stopped(p)
        self.queued[p.trial_id] = p

    def expected(self, p: PlannedTrial) -> float | None:
        """Expected seconds of ``p`` (the store's median, else this run's mean of its kind, else of all)."""
        k = duration_key(p)
        if self.recorded.get(k):
            return statistics.median(self.recorded[k])
        if self.measured.get(k):
            return statistics.fmean(self.measured[k])
        every = [d for ds in self.measured.values() for d in ds]
        return statistics.fmean(every) if every else None

    def eta(self) -> float | None:
        """Seconds until every queued and running trial is done (None: no duration known yet)."""
        now = self.clock()
        free: list[float] = []
        for p, t0 in self.running.values():
            e = self.expected(p)
            if e is None:
                return None
            free.append(max(e - (now - t0), 0.0))
        free += [0.0] * max(self.slots - len(free), 0)
        for p in self.queued.values():
            e = self.expected(p)
            if e is None:
                return None
            i = min(range(len(free)), key=free.__getitem__)
            free[i] += e
        return max(free, default=0.0)

    def status(self, width: int = 2) -> str:
        """``running 2 (a, b) · queued 8 · failed 0 · ETA 2:10``."""
        names = [p.spec.name for p, _ in self.running.values()]
        shown = ", ".join(names[:width]) + (f", +{len(names) - width}" if len(names) > width else "")
        eta = self.eta()
        eta_text = "measuring" if eta is None else duration_text(eta)
        return (f"running {len(names)}" + (f" ({shown})" if names else "") + f" · queued {len(self.queued)}"
                f" · failed {len(self.failed)} · ETA {eta_text}")


class _BoardColumn(ProgressColumn):
    """The board's status, recomputed at every refresh (so the ETA counts down during a trial)."""

    def __init__(self, board: Board):
        super().__init__()
        self.board = board

    def render(self, task: Task) -> Text:
        return Text(self.board.status())


def board_progress(console: Console, board: Board) -> Progress:
    """The live line of a terminal: bar, done/total, the board's status, elapsed time."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} trials"),
                    _BoardColumn(board), TimeElapsedColumn(), console=console, transient=False, refresh_per_second=2)


def log_line(console: Console, board: Board, name: str, ok: bool, error: str | None, elapsed: float) -> None:
    """One line per finished trial, for logs and CI (no live bar there)."""
    n = len(board.done) + len(board.failed)
    state = "done" if ok else f"failed ({(error or '?').strip().splitlines()[-1] if (error or '').strip() else '?'})"
    console.print(f"[{n}/{len(board.todo)}] {name} {state} · {board.status()} · elapsed {duration_text(elapsed)}",
                  markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def phase(console: Console, what: str) -> Iterator[None]:
    """A phase after the trials (the report) on its own line: a spinner in a terminal, start and end
    lines in a log."""
    t0 = time.perf_counter()
    if console.is_terminal:
        with console.status(f"{what} ..."):
            yield
    else:
        console.print(f"{what} ...", markup=False, highlight=False)
        yield
    console.print(f"{what}: done in {duration_text(time.perf_counter() - t0)}", markup=False, highlight=False)
