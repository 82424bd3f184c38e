"""``robustmsa validate``'s wall-time estimate: calibrated without a store (which it never
creates), timed from the store's finished trials after a run, and the reuse count."""
from __future__ import annotations

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
