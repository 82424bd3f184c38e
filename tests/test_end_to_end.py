"""One real end-to-end run of a tiny suite: local Ray, MLflow on SQLite, report. No mocks.

Also checks resume: running the same suite again reuses every completed trial and creates no
duplicate runs, and a run left RUNNING by a killed driver is marked FAILED.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from robustmsa.cli import main


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_smoke_suite_end_to_end(repo: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    argv = ["run", str(repo / "suites" / "smoke.yaml"), f"tracking.uri={uri}", f"report.dir={workdir / 'reports'}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 trials run" in out and "results.md" in out and "mlflow ui --backend-store-uri" in out

    client = _client(uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("robustmsa.kind") == "trial"]
    parents = [r for r in runs if r.data.tags.get("robustmsa.kind") == "invocation"]
    assert len(trials) == 4 and len(parents) == 1
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
    # degradation curves come from the metric history, one step per level
    hist = client.get_metric_history(trials[0].info.run_id, "curve/noise/joint/mae")
    assert sorted(m.step for m in hist) == [0, 1, 2]
    assert hist[0].value != hist[-1].value or len({m.value for m in hist}) >= 1
    arts = {a.path for a in client.list_artifacts(trials[0].info.run_id)}
    assert {"rows.csv", "predictions.csv.gz", "history.csv", "curves.png", "trial.json", "checkpoint"} <= arts
    assert "model.config.n_experts" in trials[0].data.params or "model.name" in trials[0].data.params

    report = workdir / "reports" / "smoke" / "results.md"
    text = report.read_text()
    assert "qa_moe (spectrum)" in text and "late_fusion (clean)" in text and "MAE ↓" in text
    assert (workdir / "reports" / "smoke" / "curves_noise.png").stat().st_size > 1000

    # resume: everything is reused, no new runs
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 trials run, 4 reused" in out
    assert len(client.search_runs([exp.experiment_id])) == len(runs)
    assert report.read_text() == text  # same runs -> byte-identical table


def test_orphaned_runs_are_marked_failed(repo: Path, workdir: Path) -> None:
    from robustmsa.suite import load_suite
    from robustmsa.tracking import Tracker

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    suite = load_suite(repo / "suites" / "smoke.yaml", [f"tracking.uri={uri}"])
    tracker = Tracker(uri, suite.experiment)
    orphan = tracker.client.create_run(tracker.experiment_id, tags={"robustmsa.kind": "trial",
                                                                    "robustmsa.trial_id": "x"})
    assert tracker.mark_orphans_failed() == 1
    run = tracker.client.get_run(orphan.info.run_id)
    assert run.info.status == "FAILED" and run.data.tags["robustmsa.orphaned"] == "true"
    assert tracker.completed_trials() == {}


@pytest.mark.slow
def test_same_metrics_in_process_and_on_ray(repo: Path, workdir: Path) -> None:
    """Determinism: a trial gives the same numbers run in-process or in a Ray worker."""
    import pandas as pd

    frames = {}
    for backend in ("local", "ray"):
        uri = f"sqlite:///{workdir / f'{backend}.db'}"
        argv = ["run", str(repo / "suites" / "smoke.yaml"), "--backend", backend, f"tracking.uri={uri}",
                f"report.dir={workdir / backend}", "models=[{name: qa_moe}]", "regimes=[spectrum]"]
        assert main(argv) == 0
        frames[backend] = pd.read_csv(workdir / backend / "smoke" / "rows.csv")
    a, b = frames["local"], frames["ray"]
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b)
