"""``robustmsa validate``'s wall-time estimate: calibrated without a store (which it never
creates), timed from the store's finished trials after a run, and the reuse count."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from robustmsa.cli import main
from robustmsa.estimate import estimate_wall_time, parallel_slots
from robustmsa.plan import plan_suite
from robustmsa.suite import load_suite

TINY = ["seeds=[0]", "training.epochs=1", "models=[{name: late_fusion}]", "regimes=[clean]", "runner.backend=local",
        "evaluation.references=false"]


def test_estimate_calibrates_then_reads_the_store(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "m.db"
    over = [*TINY, f"tracking.uri=sqlite:///{db}", f"report.dir={tmp_path / 'r'}"]
    suite = load_suite(repo / "suites" / "smoke.yaml", over)
    planned = plan_suite(suite)
    before = estimate_wall_time(suite, planned)
    assert not db.exists()  # estimating reads a store, never creates one
    assert (before.to_run, before.reused, before.calibrated, before.from_store) == (len(planned), 0, len(planned), 0)
    assert before.seconds > 0 and parallel_slots(suite) == 1  # the local backend runs one trial at a time
    assert main(["run", str(repo / "suites" / "smoke.yaml"), "--no-report", *over]) == 0
    after = estimate_wall_time(suite, planned)
    assert (after.to_run, after.reused) == (0, len(planned)) and after.seconds == 0
    more = load_suite(repo / "suites" / "smoke.yaml", [*over, "seeds=[1]"])
    other = estimate_wall_time(more, plan_suite(more))  # new seed: same model, regime, data, epochs
    assert (other.to_run, other.from_store, other.calibrated) == (len(planned), len(planned), 0)
    capsys.readouterr()
    assert main(["validate", str(repo / "suites" / "smoke.yaml"), *over]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "estimated wall time" in x)
    assert f"a rerun reuses {len(planned)} finished trial(s)" in line and "nothing to run" in line


def test_calibration_is_remembered_on_this_machine(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second estimate reuses the first calibration (nothing trains); ``recalibrate`` times again;
    an entry older than a week, another config or a damaged file is not used."""
    import robustmsa.estimate as est

    monkeypatch.setenv("ROBUSTMSA_CACHE", str(tmp_path / "cache"))
    suite = load_suite(repo / "suites" / "smoke.yaml", [*TINY, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"])
    planned = plan_suite(suite)
    calls: list[str] = []
    real = est._calibrate

    def counted(p: est.PlannedTrial, threads: int) -> float:
        calls.append(p.trial_id)
        return real(p, threads)

    monkeypatch.setattr(est, "_calibrate", counted)
    first = estimate_wall_time(suite, planned)
    assert (len(calls), first.remembered) == (1, 0)
    second = estimate_wall_time(suite, planned)
    assert (len(calls), second.remembered, second.seconds) == (1, 1, first.seconds)
    assert "remembered from an earlier validate" in second.text()
    assert estimate_wall_time(suite, planned, recalibrate=True).remembered == 0 and len(calls) == 2
    other = load_suite(repo / "suites" / "smoke.yaml", [*TINY, "training.epochs=2", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"])
    assert estimate_wall_time(other, plan_suite(other)).remembered == 0 and len(calls) == 3
    path = tmp_path / "cache" / "calibration.json"
    key = est.calibration_key(planned[0], 1)
    assert est.CalibrationCache(path).get(key) is not None
    assert est.CalibrationCache(path, now=time.time() + est.CALIBRATION_MAX_AGE_S + 1).get(key) is None
    path.write_text("{not json")
    assert estimate_wall_time(suite, planned).remembered == 0 and len(calls) == 4
    assert est.CalibrationCache(path).get(key) is not None  # rewritten whole
