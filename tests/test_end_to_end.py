"""One real end-to-end run of a tiny suite: local Ray, MLflow on SQLite, report. No mocks.

Also checks resume: running the same suite again reuses every completed trial and creates no
duplicate runs, and a run left RUNNING by a killed driver is marked FAILED.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustmsa.cli import main
from robustmsa.data.batch import split_to_batch
from robustmsa.datasets import load_dataset
from robustmsa.evaluation import predict
from robustmsa.suite import load_suite
from robustmsa.trial import load_checkpoint

from helpers import mlflow_client as _client


def test_smoke_suite_end_to_end(repo: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    argv = ["run", str(repo / "suites" / "smoke.yaml"), f"tracking.uri={uri}", f"report.dir={workdir / 'reports'}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "5 trials run" in out and "results.md" in out and "mlflow ui --backend-store-uri" in out

    client = _client(uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    every = [r for r in runs if r.data.tags.get("robustmsa.kind") == "trial"]
    trials = [r for r in every if r.data.params.get("kind") != "reference"]
    parents = [r for r in runs if r.data.tags.get("robustmsa.kind") == "invocation"]
    assert len(trials) == 4 and len(every) == 5 and len(parents) == 1
    reference = next(r for r in every if r.data.params.get("kind") == "reference")
    probe = client.get_metric_history(reference.info.run_id, "linear_probe/curve/noise/joint/mae")
    assert sorted(m.step for m in probe) == [0, 500, 1000]  # step = round(1000 rho)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
    # degradation curves come from the metric history, step = round(1000 rho): left to right from absent to clean
    hist = client.get_metric_history(trials[0].info.run_id, "curve/noise/joint/mae")
    assert sorted(m.step for m in hist) == [0, 500, 1000]
    assert len({m.value for m in hist}) > 1  # noise hurts: the curve is not flat
    arts = {a.path for a in client.list_artifacts(trials[0].info.run_id)}
    assert {"rows.csv", "predictions.csv.gz", "history.csv", "curves.png", "trial.json", "checkpoint"} <= arts
    assert "model.name" in trials[0].data.params and "seed" in trials[0].data.params

    # the best checkpoint reloads and reproduces the logged clean predictions exactly
    qa = next(r for r in trials if r.data.params["model.name"] == "qa_moe" and r.data.params["regime.kind"] == "spectrum")
    ck = Path(client.download_artifacts(qa.info.run_id, "checkpoint/model.pt", str(workdir)))
    model = load_checkpoint(ck)
    suite = load_suite(repo / "suites" / "smoke.yaml")
    test = split_to_batch(load_dataset(suite.datasets[0].name, suite.datasets[0].params)["test"])
    pred, _ = predict(model, test, 512, torch.device("cpu"))
    logged = pd.read_csv(client.download_artifacts(qa.info.run_id, "predictions.csv.gz", str(workdir)))
    clean = logged[(logged.family == "noise") & (logged.sweep == "joint") & (logged.level_index == 0)]
    assert len(clean) == len(test) and np.array_equal(clean["pred"].to_numpy(np.float32), pred)

    report = workdir / "reports" / "smoke" / "results.md"
    text = report.read_text()
    assert "qa_moe (spectrum)" in text and "late_fusion (clean)" in text and "MAE ↓" in text
    assert (workdir / "reports" / "smoke" / "curves_noise.png").stat().st_size > 1000

    # resume: everything is reused, no new runs
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 trials run, 5 reused" in out
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


def test_failing_trial_is_retried_recorded_and_rerun(repo: Path, workdir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A trial whose loss diverges fails with a readable reason, is retried, recorded FAILED, and
    is run again (not skipped) by the next invocation; the other trials are unaffected."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    argv = ["run", str(repo / "suites" / "smoke.yaml"), "--backend", "local", f"tracking.uri={uri}",
            f"report.dir={workdir / 'reports'}", "models=[{name: late_fusion}]", "regimes=[clean]",
            "training.lr=1e30", "training.grad_clip=null", "runner.retries=1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "retrying" in captured.err
    assert "FAILED" in captured.out and "non-finite training loss" in captured.out
    client = _client(uri)
    exp = client.get_experiment_by_name("smoke")
    failed = [r for r in client.search_runs([exp.experiment_id])
              if r.data.tags.get("robustmsa.kind") == "trial" and r.data.params.get("kind") != "reference"]
    # each attempt is its own run, created when it started and ended FAILED with its error
    assert len(failed) == 2 and all(r.info.status == "FAILED" for r in failed)
    assert sorted(r.data.tags["robustmsa.attempt"] for r in failed) == ["1", "2"]
    assert all("NonFiniteError" in r.data.tags["robustmsa.error"] for r in failed)
    assert all("non-finite training loss" in r.data.tags["mlflow.note.content"] for r in failed)
    assert main(argv) == 1  # not skipped: failed trials run again
    assert "1 reused, 1 failed" in capsys.readouterr().out  # the references are reused, the failed trial runs again


@pytest.mark.slow
def test_kill_9_of_the_driver_then_resume_gives_the_same_results(repo: Path, workdir: Path) -> None:
    """kill -9 of the driver mid-run, while a trial's run is RUNNING with its first epochs logged,
    then the same command again: same results as an uninterrupted run, each trial FINISHED exactly
    once, the killed trial's run marked FAILED (orphaned) and the trial run again."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    import pandas as pd

    suite = str(repo / "suites" / "smoke.yaml")

    def argv(name: str) -> list[str]:
        return ["run", suite, "--backend", "local", f"tracking.uri=sqlite:///{workdir / name}.db",
                f"report.dir={workdir / name}"]

    assert main(argv("reference")) == 0
    db = workdir / "killed.db"
    proc = subprocess.Popen([sys.executable, "-m", "robustmsa.cli", *argv("killed")], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    trials = ("select r.run_uuid from runs r join tags t on r.run_uuid = t.run_uuid where t.key = 'robustmsa.kind' "
              "and t.value = 'trial' and r.status = ")
    deadline = time.time() + 300
    finished, training = 0, []
    while not (finished and training) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db) as c:
                    finished = len(c.execute(trials + "'FINISHED'").fetchall())
                    training = [r[0] for r in c.execute(  # a RUNNING trial with an epoch logged live
                        f"{trials}'RUNNING' and exists (select 1 from metrics m where m.run_uuid = r.run_uuid "
                        "and m.key like 'train/%')").fetchall()]
            except sqlite3.Error:
                pass
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= finished < 5 and len(training) == 1

    assert main(argv("killed")) == 0
    ref = pd.read_csv(workdir / "reference" / "smoke" / "rows.csv")
    got = pd.read_csv(workdir / "killed" / "smoke" / "rows.csv")
    pd.testing.assert_frame_equal(ref, got)
    client = _client(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    trials = [r for r in runs if r.data.tags.get("robustmsa.kind") == "trial" and r.info.status == "FINISHED"]
    ids = [r.data.tags["robustmsa.trial_id"] for r in trials]
    assert len(ids) == len(set(ids)) == 5  # no duplicates, nothing lost (4 models + the references)
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)  # no orphan left RUNNING
    killed = client.get_run(training[0])  # the trial killed while it trained: orphaned, then run again
    assert killed.info.status == "FAILED" and killed.data.tags["robustmsa.orphaned"] == "true"
    assert killed.data.tags["robustmsa.trial_id"] in ids


def test_local_run_ignores_a_stale_or_foreign_cluster_address(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --ray-address a run starts its own Ray instance: RAY_ADDRESS (here a dead address, as
    a stale /tmp/ray/ray_current_cluster would give) must not hijack it."""
    import ray
    from rich.console import Console

    from robustmsa.runner import _RayExecutor
    from robustmsa.suite import load_suite

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    ex = _RayExecutor(load_suite(repo / "suites" / "smoke.yaml"), None, 1, Console(quiet=True))
    try:
        assert ray.is_initialized() and ray.cluster_resources().get("CPU", 0) >= 1
    finally:
        ex.close()
    assert not ray.is_initialized()
