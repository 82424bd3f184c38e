"""The console's account of a run: queued / running / done / failed and an ETA from durations."""
from __future__ import annotations

from pathlib import Path

import pytest

from robustmsa.plan import plan_suite
from robustmsa.progress import Board, duration_text
from robustmsa.suite import load_suite


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def planned(repo: Path):
    suite = load_suite(repo / "suites" / "smoke.yaml", ["seeds=[0, 1, 2]", "evaluation.references=false",
                                                         "models=[{name: late_fusion}, {name: qa_moe}]",
                                                         "regimes=[clean]"])
    return plan_suite(suite)


def test_counts_names_and_the_eta_from_measured_durations(planned) -> None:
    clock = Clock()
    board = Board(planned, slots=2, clock=clock)
    assert len(planned) == 6 and board.eta() is None and "ETA measuring" in board.status()
    a, b, *rest = planned
    board.started(a)
    board.started(b)
    status = board.status()
    assert status.startswith(f"running 2 ({a.spec.name}, {b.spec.name})") and "queued 4" in status
    clock.t = 10.0
    board.finished(a, ok=True)  # late_fusion seed 0: 10 s
    board.started(rest[0])
    clock.t = 16.0
    board.finished(b, ok=False)  # late_fusion seed 1: 16 s, failed
    assert "failed 1" in board.status() and "queued 3" in board.status()
    # late_fusion trials expect the mean of their kind (13 s); running: rest[0] started at 10 -> 7 s left
    assert board.expected(rest[0]) == pytest.approx(13.0)
    # qa_moe (another kind) expects the mean of all measured trials (13 s) until one of its own ends
    assert board.expected(rest[-1]) == pytest.approx(13.0)
    # two slots: [7 (running)] + [0]; queued 13, 13, 13 -> slot A 7+13 = 20, slot B 13+13 = 26 -> 26
    assert board.eta() == pytest.approx(26.0)
    clock.t = 30.0  # overdue: a running trial contributes nothing more
    assert board.eta() == pytest.approx(26.0)


def test_a_rerun_knows_its_durations_from_the_store(planned) -> None:
    from robustmsa.estimate import duration_key

    recorded = {duration_key(p): [20.0, 30.0, 40.0] for p in planned}
    board = Board(planned, slots=3, recorded=recorded, clock=Clock())
    assert board.expected(planned[0]) == 30.0 and board.eta() == pytest.approx(60.0)  # 6 trials of 30 s on 3 slots


def test_a_retried_trial_goes_back_to_the_queue(planned) -> None:
    board = Board(planned[:1], slots=1, clock=Clock())
    board.started(planned[0])
    board.requeued(planned[0])
    assert "running 0 · queued 1 · failed 0" in board.status()


def test_durations_read_like_a_clock() -> None:
    assert [duration_text(x) for x in (4.4, 65, 3725)] == ["4 s", "1:05", "1:02:05"]
