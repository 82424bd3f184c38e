"""The core runs without the services: with Ray, MLflow, matplotlib, the raw-media augmenters and
transformers made unimportable, the corruption engine, the data layer, the models, training and
evaluation still import and run a real (small) pipeline; ``robustmsa.evaluate`` runs in-process
without Ray. Each check runs in a fresh interpreter whose first act is to install an import
blocker: every finder of ``sys.meta_path`` is wrapped so that it does not see the blocked top-level
packages, which then look not installed (``importlib.util.find_spec`` gives None, an import fails)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SERVICES = ("ray", "mlflow", "matplotlib", "audiomentations", "albumentations", "transformers")

BLOCKER = '''
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))

class _Hiding(importlib.abc.MetaPathFinder):
    """A finder of sys.meta_path that does not see the blocked packages (as if not installed)."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, name):  # invalidate_caches, find_distributions, ...
        return getattr(self.inner, name)

sys.meta_path[:] = [_Hiding(f) for f in sys.meta_path]

def loaded_blocked():
    return sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
'''

IMPORTS = '''
import corruptions, corruptions.raw
import robustmsa, robustmsa.data.batch, robustmsa.data.synthetic, robustmsa.data.mmsa, robustmsa.data.oracle
import robustmsa.datasets, robustmsa.models, robustmsa.suite, robustmsa.plan
import robustmsa.corruption_context, robustmsa.evaluation, robustmsa.training, robustmsa.references
print(json.dumps({"blocked_loaded": loaded_blocked(), "models": robustmsa.models.MODELS.names()}))
'''

#: the steps of a trial (robustmsa.trial.run_trial) through the public functions, tracking left out
PIPELINE = '''
from robustmsa.data.batch import split_to_batch
from robustmsa.datasets import load_dataset
from robustmsa.evaluation import CorruptionContext, GridRun, evaluate_grid
from robustmsa.models import create_model
from robustmsa.plan import expand_trials
from robustmsa.suite import load_suite
from robustmsa.training import resolve_device, train_model

suite = load_suite(sys.argv[2], ["training.epochs=1"])
spec = next(s for s in expand_trials(suite) if s.model.name == "qa_moe" and s.regime.kind == "spectrum")
data = load_dataset(spec.dataset.name, spec.dataset.params)
ctx = CorruptionContext(split_to_batch(data["train"]).modalities(), dataset=spec.dataset.name)
model = create_model("qa_moe", dims=data.dims, lengths=data.lengths, seed=spec.seed)
device = resolve_device("cpu")
trained = train_model(model, data, spec.training_run(), device=device, ctx=ctx)
points = evaluate_grid(model, split_to_batch(data["test"]), ctx, GridRun.of(spec.evaluation, data.metric_family, device))
print(json.dumps({"blocked_loaded": loaded_blocked(), "epochs": trained.epochs_run, "points": len(points), "planned": spec.evaluation.points(),
                  "mae": [p.metrics["mae"] for p in points]}))
'''

EVALUATE = '''
import os
import robustmsa
from robustmsa.datasets import load_dataset
from robustmsa.models import create_model

data = load_dataset("synthetic_trimodal", {"seed": 0, "n_train": 64, "n_valid": 16, "n_test": 32, "text_dim": 16})
model = create_model("late_fusion", dims=data.dims, lengths=data.lengths, seed=0)
res = robustmsa.evaluate(model, data, spectrum=sys.argv[2], quiet=True, evaluation__references=False,
                         tracking__uri="sqlite:///" + os.path.join(sys.argv[3], "mlflow.db"))
assert {"mlflow.db", "mlruns"} <= set(os.listdir(sys.argv[3])), os.listdir(sys.argv[3])  # the store and its artifacts
print(json.dumps({"blocked_loaded": loaded_blocked(), "failed": res.summary.failed, "rows": len(res.rows),
                  "metrics": sorted(set(res.rows["metric"]))}))
'''


def _run_blocked(blocked: tuple[str, ...], body: str, *args: str, cwd: Path = REPO) -> dict:
    """Run ``body`` in a fresh interpreter with ``blocked`` unimportable; its last stdout line, as JSON."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", BLOCKER + body, json.dumps(blocked), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_core_modules_import_without_services() -> None:
    out = _run_blocked(SERVICES, IMPORTS)
    assert out["blocked_loaded"] == []
    assert {"qa_moe", "late_fusion", "external"} <= set(out["models"])


def test_blocker_blocks() -> None:
    """The blocker is real: a blocked package fails to import, whoever asks for it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = BLOCKER + "import importlib.util; assert importlib.util.find_spec('mlflow') is None; import mlflow.tracking"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(["mlflow"])],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "ModuleNotFoundError: No module named 'mlflow'" in proc.stderr


@pytest.mark.slow
def test_pipeline_runs_without_services() -> None:
    """Synthetic data, QA-MoE trained one epoch under the spectrum regime, the smoke grid evaluated."""
    out = _run_blocked(SERVICES, PIPELINE, str(REPO / "suites" / "smoke.yaml"))
    assert out["blocked_loaded"] == []
    assert out["epochs"] == 1
    assert out["points"] == out["planned"] > 1
    assert all(0 < v < 6 for v in out["mae"])  # finite, on the [-3, 3] scale


@pytest.mark.slow
def test_evaluate_runs_in_process_without_ray(tmp_path: Path) -> None:
    """``robustmsa.evaluate`` defaults to the in-process backend: no Ray (tracking still writes MLflow)."""
    blocked = tuple(m for m in SERVICES if m not in ("mlflow", "matplotlib"))
    out = _run_blocked(blocked, EVALUATE, str(REPO / "suites" / "smoke.yaml"), str(tmp_path), cwd=tmp_path)
    assert out["blocked_loaded"] == []
    assert out["failed"] == {}
    assert out["rows"] > 0 and "mae" in out["metrics"]


GPU_CHECK = '''
import runpy
sys.argv = [sys.argv[2], "--device", "cpu", "--small", "--epochs", "1", "--threads", "1"]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu_without_services() -> None:
    """bench/gpu_check.py on the CPU (tiny data and BERT), with everything but transformers blocked."""
    blocked = tuple(m for m in SERVICES if m != "transformers")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", BLOCKER + GPU_CHECK, json.dumps(blocked),
                           str(REPO / "bench" / "gpu_check.py")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
            if line.startswith(("qa_moe ", "late_fusion+bert-tiny "))}
    assert set(rows) == {"qa_moe", "late_fusion+bert-tiny"}, proc.stdout
    for values in rows.values():
        assert all(float(v.replace(",", "")) > 0 for v in values[:3]) and values[3:] == ["n/a", "(cpu)"]
    assert "grid 72 points" in proc.stdout
    assert "the comparison needs --device cuda" in proc.stdout
    assert "services imported: none" in proc.stdout


def test_gpu_check_difference_of_metrics() -> None:
    import runpy

    diff = runpy.run_path(str(REPO / "bench" / "gpu_check.py"))["max_abs_difference"]
    nan = float("nan")
    a = {("clean", "mae"): 0.5, ("clean", "corr"): nan, ("noise/joint/1", "mae"): 0.75}
    assert diff(a, a) == 0.0
    assert diff(a, {**a, ("noise/joint/1", "mae"): 0.5}) == 0.25
    assert diff(a, {**a, ("clean", "mae"): nan}) == float("inf")
    with pytest.raises(ValueError, match="different grid points"):
        diff(a, {("clean", "mae"): 0.5})
