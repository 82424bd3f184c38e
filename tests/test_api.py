"""The Python API: robustmsa.run and robustmsa.load_results on a tiny suite (real MLflow on SQLite,
in-process trials), the override spellings, and a lazy ``import robustmsa``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import robustmsa
from robustmsa.api import resolve_overrides
from robustmsa.errors import RobustMSAError, SuiteError
from robustmsa.suite import load_suite


def test_override_spellings_agree() -> None:
    want = {"training": {"epochs": 1, "lr": 0.01}, "seeds": [0]}
    assert resolve_overrides(["training.epochs=1", "training.lr=0.01", "seeds=[0]"]) == want
    assert resolve_overrides({"training.epochs": 1, "training": {"lr": 0.01}, "seeds": [0]}) == want
    assert resolve_overrides(training__epochs=1, training__lr=0.01, seeds=[0]) == want
    assert resolve_overrides(["training.epochs=3", "seeds=[0]"], training__epochs=1, training__lr=0.01) == want
    assert resolve_overrides() == {}


def test_import_is_lazy() -> None:
    code = ("import sys, robustmsa; heavy = [m for m in ('torch', 'mlflow', 'ray', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(robustmsa.run) and 'robustmsa.api' in sys.modules; "
            "assert {'run', 'load_results', 'Results'} <= set(dir(robustmsa))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        robustmsa.nope  # noqa: B018


def test_run_then_load_results(repo: Path, tmp_path: Path) -> None:
    suite = repo / "suites" / "smoke.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ov = {"tracking.uri": uri, "report.dir": str(tmp_path / "reports")}
    res = robustmsa.run(suite, ov, backend="local", quiet=True, models=[{"name": "late_fusion"}],
                        regimes=["clean"], training__epochs=1)
    assert isinstance(res, robustmsa.Results)
    assert res.suite == "smoke" and res.experiment == "smoke" and res.tracking_uri == uri
    assert res.summary is not None and len(res.summary.completed) == 2 and not res.summary.failed  # + references
    assert res.run_id and res.experiment_id
    rows = res.rows
    assert isinstance(rows, pd.DataFrame) and set(rows["model"]) == {"late_fusion"} and set(rows["regime"]) == {"clean"}
    assert {"family", "sweep", "level", "metric", "value", "trial_id"} <= set(rows.columns)
    assert set(res.trial_runs) == set(rows["trial_id"]) and all(res.trial_runs.values())
    assert Path(res.report_paths["table"]).is_file()
    assert "rows of 1 trials" in repr(res)

    again = robustmsa.load_results(suite, overrides=ov, models=[{"name": "late_fusion"}], regimes=["clean"],
                                   training__epochs=1)
    pd.testing.assert_frame_equal(again.rows, rows)
    assert again.trial_runs == res.trial_runs and again.run_id is None
    by_uri = robustmsa.load_results(uri, "smoke")
    pd.testing.assert_frame_equal(by_uri.rows, rows)
    pd.testing.assert_frame_equal(robustmsa.load_results(str(tmp_path / "mlflow.db"), "smoke").rows, rows)

    nothing_yet = robustmsa.load_results(load_suite(suite, [f"{k}={v}" for k, v in ov.items()]), experiment="elsewhere")
    assert nothing_yet.rows.empty and nothing_yet.experiment == "elsewhere"
    with pytest.raises(RobustMSAError, match="no experiment 'elsewhere'"):
        robustmsa.load_results(uri, "elsewhere")
    with pytest.raises(RobustMSAError, match="which experiment"):
        robustmsa.load_results(uri)


def test_bad_input_is_named(repo: Path) -> None:
    with pytest.raises(SuiteError, match="training.epochz"):
        robustmsa.run(repo / "suites" / "smoke.yaml", training__epochz=1)
    with pytest.raises(ValueError, match="pass its path"):
        robustmsa.run(load_suite(repo / "suites" / "smoke.yaml"), seeds=[1])
