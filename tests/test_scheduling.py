"""How the runner schedules trials: longest first by the plan's cost (or the store's durations), on
a pool of long-lived Ray workers that each import once, run trials one after another, and are
replaced when they die. Real Ray, no mocks."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from rich.console import Console

from robustmsa.errors import ClusterError
from robustmsa.estimate import duration_key
from robustmsa.plan import REFERENCE_PASSES, plan_suite, trial_cost
from robustmsa.runner import REUSE_WORKERS_ENV, _RayExecutor, longest_first, reuse_workers
from robustmsa.suite import load_suite

TINY = ["seeds=[0, 1]", "models=[{name: late_fusion}]", "regimes=[clean]", "training.epochs=1",
        "evaluation.references=false"]


def test_costs_rank_the_reference_then_spectrum_then_clean_trials(repo: Path) -> None:
    planned = plan_suite(load_suite(repo / "suites" / "smoke.yaml"))
    by_name = {p.spec.name: p for p in planned}
    ref = by_name["references/synthetic_trimodal"]
    spectrum = by_name["qa_moe/spectrum/synthetic_trimodal/seed0"]
    clean = by_name["qa_moe/clean/synthetic_trimodal/seed0"]
    assert ref.cost > spectrum.cost > clean.cost > 0
    # smoke: 96 train, 32 valid, 48 test; 2 epochs; 12 grid points; spectrum validation: 6 points
    assert clean.cost == 2 * (2 * 96 + 1 * 32) + 12 * 48
    assert spectrum.cost == 2 * (3 * 96 + 6 * 32) + 12 * 48
    assert ref.cost == trial_cost(ref.spec, (96, 32, 48)) == REFERENCE_PASSES * 12 * 48


def test_longest_first_by_cost_then_by_the_stores_durations(repo: Path) -> None:
    planned = plan_suite(load_suite(repo / "suites" / "smoke.yaml"))
    order = [p.spec.name for p in longest_first(planned, {})]
    assert order == ["references/synthetic_trimodal", "late_fusion/spectrum/synthetic_trimodal/seed0",
                     "qa_moe/spectrum/synthetic_trimodal/seed0", "late_fusion/clean/synthetic_trimodal/seed0",
                     "qa_moe/clean/synthetic_trimodal/seed0"]  # equal costs keep the plan's order
    by_name = {p.spec.name: p for p in planned}
    lf_clean, qa_spec = by_name["late_fusion/clean/synthetic_trimodal/seed0"], by_name["qa_moe/spectrum/synthetic_trimodal/seed0"]
    # the store knows two kinds: late fusion clean took 100 s (median), QA-MoE spectrum 1 s; the
    # others are their costs times the median seconds per pass of those two (100/1024 and 1/1536)
    recorded = {duration_key(lf_clean): [90.0, 100.0, 110.0], duration_key(qa_spec): [1.0]}
    rate = (100 / 1024 + 1 / 1536) / 2
    assert 2304 * rate > 100 > 1536 * rate > 1024 * rate > 1
    order = [p.spec.name for p in longest_first(planned, recorded)]
    assert order == ["references/synthetic_trimodal", "late_fusion/clean/synthetic_trimodal/seed0",
                     "late_fusion/spectrum/synthetic_trimodal/seed0", "qa_moe/clean/synthetic_trimodal/seed0",
                     "qa_moe/spectrum/synthetic_trimodal/seed0"]


def test_the_switch_to_the_earlier_scheduling_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REUSE_WORKERS_ENV, raising=False)
    assert reuse_workers()
    monkeypatch.setenv(REUSE_WORKERS_ENV, "0")
    assert not reuse_workers()
    monkeypatch.setenv(REUSE_WORKERS_ENV, "maybe")
    with pytest.raises(ClusterError, match=f"{REUSE_WORKERS_ENV}='maybe'.*allowed: 1, 0"):
        reuse_workers()


def _results(ex: _RayExecutor, n: int) -> list:
    return [ex.next_result() for _ in range(n)]


def test_workers_are_reused_and_a_dead_worker_is_replaced(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REUSE_WORKERS_ENV, raising=False)
    planned = plan_suite(load_suite(repo / "suites" / "smoke.yaml", TINY))
    ex = _RayExecutor(load_suite(repo / "suites" / "smoke.yaml", TINY), None, 1, Console(quiet=True))
    try:
        ex.submit(planned[0])
        (p, outcome, error), = _results(ex, 1)
        assert error is None and outcome.trial_id == planned[0].trial_id
        pid = ex.ray.get(ex.workers[0].actor.__ray_call__.remote(lambda self: os.getpid()))
        ex.submit(planned[1])  # the idle worker takes it: no second process
        (p, outcome, error), = _results(ex, 1)
        assert error is None and len(ex.workers) == 1
        assert ex.ray.get(ex.workers[0].actor.__ray_call__.remote(lambda self: os.getpid())) == pid

        os.kill(pid, signal.SIGKILL)  # the worker dies (as by the OOM killer) while idle
        ex.submit(planned[0])
        (p, outcome, error), = _results(ex, 1)
        assert outcome is None and error and len(ex.workers) == 0  # the trial fails, to be retried
        ex.submit(planned[0])  # the retry gets a fresh worker
        (p, outcome, error), = _results(ex, 1)
        assert error is None and outcome.trial_id == planned[0].trial_id and len(ex.workers) == 1
    finally:
        ex.close()
    assert len(ex.timings["worker_start_s"]) == 2 and all(s > 0 for s in ex.timings["worker_start_s"])
    assert ex.timings["ray_start_s"] > 0 and not ex.ray.is_initialized()
