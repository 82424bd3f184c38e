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
