"""The MLflow adapter: what the driver writes is what the reports read back, through one module."""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from robustmsa.reports.figures import trial_curve_png
from robustmsa.tracking import TAG, Tracker, TrialRun, trial_artifacts


def _outcome(trial_id: str = "t1") -> SimpleNamespace:
    rows = [{"model": "late_fusion", "regime_kind": "spectrum", "family": fam, "sweep": "joint", "level": lv,
             "level_index": i, "metric": "mae", "value": 1.0 + (1.0 - lv) + (fam == "noise")}
            for fam in ("missing", "noise") for i, lv in enumerate((1.0, 0.5, 0.0))]
    out = SimpleNamespace(trial_id=trial_id, name=f"late_fusion/{trial_id}", resolved={"model": {"name": "lf"}},
                          rows=rows, history=[{"epoch": 0, "loss": 0.5}], checkpoint=b"",
                          predictions={"sample_id": ["a", "b"], "pred": [0.1, 0.2]},
                          info={"train_seconds": 1.5})
    out.artifacts = trial_artifacts(out, trial_curve_png)
    return out


def test_written_trials_read_back_as_plain_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer = Tracker(uri, "exp")
    parent = writer.start_parent("suite", {f"{TAG}.suite": "suite"}, {"a": 1})
    rid = writer.log_trial(parent, _outcome(), {f"{TAG}.suite": "suite", f"{TAG}.data_hash": "h"})
    writer.log_failure(parent, "failed", "t2", "boom", {f"{TAG}.suite": "suite"})
    writer.finish(parent)

    reader = Tracker.existing(uri, "exp")
    assert reader is not None
    runs = reader.finished_trial_runs()
    assert [r.trial_id for r in runs] == ["t1"] and isinstance(runs[0], TrialRun)  # the failed trial is not read
    assert runs[0].run_id == rid and runs[0].tag("data_hash") == "h" and runs[0].tag("absent", "x") == "x"
    assert runs[0].metrics["info/train_seconds"] == 1.5 and runs[0].params["model.name"] == "lf"
    assert reader.finished_trial_runs("suite") == runs and reader.finished_trial_runs("other") == []
    assert reader.completed_trials() == {"t1": rid}
    assert {"rows.csv", "history.csv", "trial.json", "curves.png", "predictions.csv.gz"} <= reader.artifact_names(rid)
    rows = pd.read_csv(reader.download(rid, "rows.csv", str(tmp_path)))
    assert len(rows) == 6 and set(rows["family"]) == {"missing", "noise"}
    png = reader.download(rid, "curves.png", str(tmp_path)).read_bytes()
    assert png.startswith(b"\x89PNG") and png == _outcome().artifacts["curves.png"]  # same rows, same bytes


def test_reading_creates_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert Tracker.existing(uri, "exp") is None and not (tmp_path / "mlflow.db").exists()  # not even the file
    Tracker(uri, "exp")
    assert Tracker.existing(uri, "missing") is None
    assert Tracker.existing(uri, "missing") is None  # still absent: the first look did not create it
    assert Tracker(uri, "exp").experiment_id == Tracker.existing(uri, "exp").experiment_id


def test_a_trial_without_serialised_artifacts_is_refused_before_any_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "exp")
    outcome = _outcome()
    outcome.artifacts = {}
    with pytest.raises(ValueError, match="trial_artifacts"):
        tracker.log_trial(tracker.start_parent("s", {}, {}), outcome, {})
    assert tracker.finished_trial_runs() == [] and tracker.mark_orphans_failed() == 1  # only the parent


def test_only_the_tracking_module_imports_mlflow(repo: Path) -> None:
    offenders = []
    for path in sorted((repo / "robustmsa").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                offenders.append(str(path.relative_to(repo)))
    assert sorted(set(offenders)) == ["robustmsa/tracking.py"]


def test_params_hold_no_none_strings_and_nested_values_as_json() -> None:
    from robustmsa.tracking import flatten

    flat = flatten({"condition": None, "model": {"name": "lf", "dropout": 0.1, "norm": True, "extra": None},
                    "sampler": {"families": ["noise", {"name": "drop", "p": 0.5}]}, "empty": {}})
    assert flat == {"model.name": "lf", "model.dropout": "0.1", "model.norm": "true",
                    "sampler.families": '["noise", {"name": "drop", "p": 0.5}]'}


def test_a_trial_run_lives_from_its_start_to_its_end(tmp_path: Path) -> None:
    """start_trial creates the run RUNNING at the trial's own start time, with its name, description,
    tags and dataset input; epochs arrive while it runs; end_trial ends it at the trial's end time."""
    from robustmsa.tracking import NOTE, DatasetRef, TrialEnding, TrialRunSpec, headline

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "exp")
    assert tracker.client.get_experiment(tracker.experiment_id).tags["mlflow.experimentKind"] == \
        "custom_model_development"  # MLflow 3's UI opens it on its runs table ("Model training")
    parent = tracker.start_parent("s", {}, {}, run_name="s · 1 model", description="what s is")
    spec = TrialRunSpec("late_fusion · clean · seed 0", "t1", {"model": "late_fusion", f"{TAG}.suite": "s"},
                        {"seed": 0, "condition": None}, "late fusion, running",
                        DatasetRef("synthetic", "abc123", {"loader": "synthetic"}))
    rid = tracker.start_trial(parent, spec, start_ms=1_700_000_000_000)
    run = tracker.client.get_run(rid)
    assert run.info.status == "RUNNING" and run.info.start_time == 1_700_000_000_000
    assert run.info.run_name == "late_fusion · clean · seed 0" and run.data.tags[NOTE] == "late fusion, running"
    assert run.data.params == {"seed": "0"} and run.data.tags["model"] == "late_fusion"
    ds = run.inputs.dataset_inputs[0].dataset
    assert (ds.name, ds.digest) == ("synthetic", "abc123")
    tracker.log_epoch(rid, {"epoch": 0, "train_loss": 0.5, "valid_mae": 1.0}, time_ms=1_700_000_001_000)
    assert [m.timestamp for m in tracker.client.get_metric_history(rid, "train/train_loss")] == [1_700_000_001_000]

    outcome = _outcome()
    outcome.history = [{"epoch": 0, "train_loss": 0.5}, {"epoch": 1, "train_loss": 0.25}]
    tracker.end_trial(rid, outcome, TrialEnding(end_ms=1_700_000_009_000, epochs_logged=1))
    run = tracker.client.get_run(rid)
    assert run.info.status == "FINISHED" and run.info.end_time == 1_700_000_009_000
    assert [m.step for m in tracker.client.get_metric_history(rid, "train/train_loss")] == [0, 1]  # not twice
    assert run.data.metrics["curve/noise/joint/mae"] == 2.0  # the latest (highest step) is rho = 1: clean
    assert sorted(m.step for m in tracker.client.get_metric_history(rid, "curve/noise/joint/mae")) == [0, 500, 1000]
    assert headline(outcome) == "clean MAE 1 · AUDC MAE missing/joint 1.5, noise/joint 2.5"  # the first sweep's clean point
    assert headline(outcome) in run.data.tags[NOTE]


def test_a_failed_trial_run_keeps_its_error_in_the_description(tmp_path: Path) -> None:
    from robustmsa.tracking import NOTE, TrialRunSpec

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp")
    rid = tracker.start_trial(tracker.start_parent("s", {}, {}), TrialRunSpec("x", "t1", {}, {}, "x, running"))
    tracker.fail_trial(rid, "Traceback ...\nValueError: boom", note="x")
    run = tracker.client.get_run(rid)
    assert run.info.status == "FAILED" and "boom" in run.data.tags[f"{TAG}.error"]
    assert run.data.tags[NOTE] == "x\n\n**failed**: `ValueError: boom`"
    assert tracker.completed_trials() == {}
