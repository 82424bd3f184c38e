"""Bring your own model: the ``evaluate`` regime, ``robustmsa eval``, ``robustmsa.evaluate`` and the
model protocol (docs/byo_model.md), against a real MLflow store, in-process (and once through Ray)."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

import robustmsa
from robustmsa.cli import main
from robustmsa.datasets import load_dataset

TINY = {"seed": 0, "n_train": 96, "n_valid": 32, "n_test": 48, "text_dim": 32}
DATA = "synthetic_trimodal:{seed: 0, n_train: 96, n_valid: 32, n_test: 48, text_dim: 32}"
OTHER = "synthetic_trimodal:{seed: 1, n_train: 96, n_valid: 32, n_test: 40, text_dim: 32}"  # same dims, other data

USER_CODE = '''
import torch
from torch import nn


def pool(x, m):
    m = m.float().unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


class Linear(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.fc = nn.Linear(dims["text"] + dims["audio"] + dims["vision"], 1)

    def forward(self, batch):
        z = torch.cat([pool(batch.text, batch.text_mask), pool(batch.audio, batch.audio_mask),
                       pool(batch.vision, batch.vision_mask)], -1)
        return {"pred": self.fc(z)[:, 0], "extras": {"quality": (~batch.missing).float()}}


def build(dims):
    torch.manual_seed(0)
    return Linear(dims)


def constant(batch):
    return torch.zeros(len(batch))


def two_args(batch, other):
    return torch.zeros(len(batch))


def nan(batch):
    return torch.full((len(batch),), float("nan"))


def wide(batch):
    return torch.zeros(len(batch), 3)


def broken():
    raise ValueError("no model today")
'''


@pytest.fixture()
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's package on the path (and PYTHONPATH, for Ray workers), the working directory a temp dir."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "byo_user_models.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv("PYTHONPATH", f"{code}:{Path(__file__).resolve().parents[1]}")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("byo_user_models", None)


def _uri() -> str:  # absolute: MLflow caches its stores by URI, a relative one would outlive the chdir
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _eval(*args: str) -> int:
    return main(["eval", *args, "--spectrum", "smoke", "--backend", "local", "--no-report",
                 "evaluation.references=false", f"tracking.uri={_uri()}"])


def _rows() -> pd.DataFrame:
    return robustmsa.load_results(_uri(), "eval_smoke").rows


def test_external_model_is_evaluated_tracked_and_reused(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _eval("byo_user_models:build", "--data", DATA) == 0
    rows = _rows()
    assert set(rows["regime_kind"]) == {"evaluate"} and set(rows["model"]) == {"build"}
    assert {"missing", "noise"} <= set(rows["family"]) and "quality_text" in set(rows["metric"])
    client = mlflow.MlflowClient(_uri())
    run = client.get_run(robustmsa.load_results(_uri(), "eval_smoke").trial_runs[rows["trial_id"].iloc[0]])
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"rows.csv", "predictions.csv.gz", "trial.json", "curves.png"} <= arts
    assert any(k.startswith("curve/noise/") for k in run.data.metrics)
    assert len(run.data.params["model.weights_sha256"]) == 64 and "training.epochs" not in run.data.params
    capsys.readouterr()
    assert _eval("byo_user_models:build", "--data", DATA) == 0  # the same weights: reused
    assert "0 trials run, 1 reused" in capsys.readouterr().out
    torch.save(torch.nn.Linear(32 + 5 + 20, 1).state_dict(), user / "w.pt")
    sd = {f"fc.{k}": v for k, v in torch.load(user / "w.pt").items()}
    torch.save(sd, user / "w.pt")
    assert _eval("byo_user_models:build@w.pt", "--data", DATA) == 0  # other weights: another trial
    assert "1 trials run, 0 reused" in capsys.readouterr().out


def test_zoo_checkpoint_of_a_past_run_on_other_data(user: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = robustmsa.run(repo / "suites" / "smoke.yaml", models=[{"name": "late_fusion"}], regimes=["clean"],
                        training__epochs=1, evaluation__references=False, backend="local", report=False, quiet=True,
                        tracking__uri=_uri())
    run_id = next(iter(res.trial_runs.values()))
    clean_mae = res.rows.query("family == 'clean' or level_index == 0").query("metric == 'mae'")["value"].iloc[0]
    assert _eval(f"run:{run_id}", "--data", DATA) == 0  # the same data and spectrum: the same numbers
    rows = _rows()
    assert rows.query("metric == 'mae' and level_index == 0")["value"].iloc[0] == pytest.approx(clean_mae, abs=1e-6)
    assert set(rows["model"]) == {f"late_fusion@{run_id[:8]}"}
    path = next((Path(robustmsa.api._checkpoint_cache()) / run_id).rglob("model.pt"))
    assert _eval(str(path), "--data", OTHER, "evaluation.families=[drop]") == 0  # other data and spectrum
    assert set(_rows().query("dataset == 'synthetic_trimodal'")["family"]) >= {"drop"}
    capsys.readouterr()
    assert _eval(str(path), "--data", DATA.replace("text_dim: 32", "text_dim: 16")) == 2  # other feature dims
    assert "was trained on feature dims {'text': 32, 'audio': 5, 'vision': 20}, the data has {'text': 16" in \
        capsys.readouterr().err
    assert main(["eval", "run:0123456789abcdef", "--data", DATA, "--spectrum", "smoke", f"tracking.uri={_uri()}"]) == 2
    assert "error: run:0123456789abcdef: no such MLflow run" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "message"), [
    ("nomodule_xyz:build", r"error: model 'external' \(entry 'nomodule_xyz:build'\): module 'nomodule_xyz' does not "
                           r"import \(ModuleNotFoundError"),
    ("byo_user_models:nothere", r"module 'byo_user_models' has no attribute 'nothere'"),
    ("byo_user_models:two_args", r"the model takes \(batch, other\); expected one argument, the batch"),
    ("byo_user_models:nan", r"error: model 'nan': returned 8 non-finite scores \(NaN or inf\) out of 8"),
    ("byo_user_models:wide", r"returned scores of shape \[8, 3\] for a batch of 8; expected a tensor \[8\]"),
    ("byo_user_models:broken", r"the factory, called with no arguments, raised ValueError: no model today"),
    ("byo_user_models:build@bad.pt", r"checkpoint .*bad.pt does not fit the model: size mismatch for fc.weight"),
])
def test_bad_models_are_one_line_and_write_nothing(user: Path, capsys: pytest.CaptureFixture[str], spec: str,
                                                   message: str) -> None:
    torch.save({"fc.weight": torch.zeros(1, 7), "fc.bias": torch.zeros(1)}, user / "bad.pt")
    assert _eval(spec, "--data", DATA) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and len(err) <= 2, err
    import re

    assert re.search(message, err[0]), err[0]
    assert not (user / "mlflow.db").exists()  # refused before the store is touched


def test_python_api_in_process_and_with_ray(user: Path, repo: Path) -> None:
    import byo_user_models

    ds = load_dataset("synthetic_trimodal", TINY)
    model = byo_user_models.build(ds.dims)
    a = robustmsa.evaluate(model, ds, spectrum=repo / "suites" / "smoke.yaml", seed=7, quiet=True,
                           evaluation__references=False, tracking__uri=_uri())
    assert set(a.rows["model"]) == {"Linear"} and (a.rows["regime_kind"] == "evaluate").all()
    b = robustmsa.evaluate(byo_user_models.constant, "synthetic_trimodal:" + DATA.split(":", 1)[1], spectrum="smoke",
                           seed=7, quiet=True, evaluation__references=False, tracking__uri=_uri())
    assert (b.rows.query("metric == 'mae'")["value"] > 0).all()
    with pytest.raises(robustmsa.api.RobustMSAError, match="in-memory"):
        robustmsa.evaluate(model, ds, spectrum="smoke", backend="ray")
    c = robustmsa.evaluate("byo_user_models:build", DATA, spectrum="smoke", seed=7, backend="ray", quiet=True,
                           evaluation__references=False, resources__cpus_per_trial=1, tracking__uri=_uri())
    merged = a.rows.merge(c.rows, on=["family", "sweep", "level_index", "metric"])
    assert len(merged) == len(a.rows) and (merged["value_x"] - merged["value_y"]).abs().max() < 1e-6


def test_evaluate_regime_needs_a_model_with_weights(tmp_path: Path) -> None:
    from robustmsa.errors import SuiteError
    from robustmsa.suite import load_suite

    p = tmp_path / "s.yaml"
    p.write_text("name: s\nmodels: [{name: late_fusion}]\nregimes: [evaluate]\n")
    with pytest.raises(SuiteError, match=r"models.0' \(model 'late_fusion'\): regime 'evaluate' \(kind evaluate\)"):
        load_suite(p)
    p.write_text("name: s\nmodels: [{name: external, params: {entry: nocolon}}]\nregimes: [evaluate]\n")
    with pytest.raises(SuiteError, match=r"models.0.overrides.entry.*must be 'module:attribute'"):
        load_suite(p)


PLUGIN_SCRIPT = '''
import sys
from pathlib import Path
import robustmsa
from robustmsa.cli import main

uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
assert main(["ls", "models"]) == 0
res = robustmsa.run(sys.argv[1], models=[{"name": "example_concat", "overrides": {"hidden": 8}}], regimes=["clean"],
                    training__epochs=1, evaluation__references=False, report=False, quiet=True, tracking__uri=uri)
assert not res.summary.failed, res.summary.failed
run_id = next(iter(res.trial_runs.values()))
assert main(["eval", f"run:{run_id}", "--data", sys.argv[2], "--spectrum", "smoke", "--no-report",
             "evaluation.references=false", f"tracking.uri={uri}"]) == 0
rows = robustmsa.load_results(uri, "eval_smoke").rows
print("EVAL", sorted(set(rows["model"])), sorted(set(rows["regime_kind"])))
'''


def test_plugin_package_adds_a_model_that_trains_and_evaluates(tmp_path: Path, repo: Path) -> None:
    """The example plugin, pip-installed into a folder of its own, is found through its entry point."""
    import shutil
    import subprocess

    target, source = tmp_path / "site", tmp_path / "plugin"  # built from a copy: no build/ in the checkout
    shutil.copytree(repo / "examples" / "robustmsa_example_plugin", source)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**__import__("os").environ, "PYTHONPATH": f"{target}:{repo}"}  # Ray's workers inherit it too
    out = subprocess.run([sys.executable, "-c", PLUGIN_SCRIPT, str(repo / "suites" / "smoke.yaml"), DATA],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "example_concat" in out.stdout.split("EVAL")[0].split()
    assert "EVAL ['example_concat@" in out.stdout and "['evaluate']" in out.stdout
