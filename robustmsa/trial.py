"""A grid cell: one trial = (dataset, model, regime, seed[, specialist condition]).

A trial trains once and evaluates its checkpoint over the whole evaluation grid. It is a plain
function of a :class:`TrialSpec` that returns a :class:`TrialOutcome` holding flat long-form rows
(model, regime, seed, family, sweep, level, metric, value, versions), per-sample predictions, the
training curve and the best checkpoint. It never talks to the tracking store (the driver is the
single writer), so it runs the same in-process, in a Ray worker or on a remote node.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corruptions import FAMILIES

from . import __version__
from .data.batch import split_to_batch
from .data.registry import load_dataset
from .errors import DataError
from .evaluation import CorruptionContext, evaluate_grid, modalities_of
from .models import count_parameters, create_model, model_config
from .reports.figures import trial_curve_png
from .suite import DatasetSpec, EvaluationSpec, ModelSpec, RegimeSpec, Suite, TrainingSpec
from .tracking import trial_artifacts
from .training import resolve_device, train_model, validation_grid

__all__ = ["TrialSpec", "TrialOutcome", "expand_trials", "run_trial", "trial_identity", "code_version",
           "corruption_versions", "load_checkpoint"]


@dataclass(frozen=True)
class TrialSpec:
    suite: str
    suite_version: int
    dataset: DatasetSpec
    model: ModelSpec
    regime: RegimeSpec
    seed: int
    training: TrainingSpec
    evaluation: EvaluationSpec
    condition: dict[str, Any] | None = None
    kind: str = "model"  # "model": train and evaluate; "reference": the reference predictors (references.py)

    @property
    def is_reference(self) -> bool:
        return self.kind == "reference"

    @property
    def name(self) -> str:
        if self.is_reference:
            return f"references/{self.dataset.name}"
        cond = ""
        if self.condition:
            c = self.condition
            cond = f"@{c['family']}:{c.get('sweep', 'joint')}={float(c['level']):g}"
        return f"{self.model.display}/{self.regime.name}{cond}/{self.dataset.name}/seed{self.seed}"

    def families(self) -> list[str]:
        """Every corruption family the trial uses (training, validation, evaluation)."""
        names: set[str] = set()

        def add(fs: Any) -> None:
            for f in fs or []:
                if isinstance(f, str):
                    names.add(f)
                else:
                    names.add(f["name"])
                    if f["name"] == "compose":
                        add(f.get("families"))

        add(self.evaluation.families)
        if self.is_reference:
            return sorted(names)
        if self.regime.sampler:
            add(self.regime.sampler.families)
        vg = validation_grid(self.regime)
        if vg:
            add(vg.families)
        if self.condition:
            add([self.condition["family"]])
        return sorted(names)

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration (model defaults from configs/ included)."""
        if self.is_reference:
            from .references import REFERENCE_VERSION

            return {"suite": self.suite, "suite_version": self.suite_version, "kind": "reference",
                    "references": REFERENCE_VERSION, "dataset": self.dataset.model_dump(mode="json"),
                    "evaluation": self.evaluation.model_dump(mode="json")}
        return {
            "suite": self.suite,
            "suite_version": self.suite_version,
            "dataset": self.dataset.model_dump(mode="json"),
            "model": {"name": self.model.name, "label": self.model.display,
                      "config": model_config(self.model.name, **self.model.overrides)},
            "regime": self.regime.model_dump(mode="json"),
            "condition": self.condition,
            "seed": self.seed,
            "training": self.training.model_dump(mode="json"),
            "evaluation": self.evaluation.model_dump(mode="json"),
        }


def corruption_versions(names: list[str]) -> dict[str, str]:
    return {n: FAMILIES.get(n).version for n in names}


def trial_identity(spec: TrialSpec, data_hash: str) -> str:
    """Identity from the resolved config, the data's content hash and the corruption versions."""
    payload = {"config": spec.resolved(), "data": data_hash,
               "corruptions": corruption_versions(spec.families())}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def code_version() -> str:
    """Package version plus the git commit (and '+dirty') when run from a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


#: the model and regime entries of a reference trial (it trains nothing)
REFERENCE_MODEL = ModelSpec(name="references")
REFERENCE_REGIME = RegimeSpec(name="reference", kind="clean")


def expand_trials(suite: Suite) -> list[TrialSpec]:
    """datasets x models x regimes x seeds (x conditions for specialist regimes), in a stable order,
    then one reference trial per dataset (``evaluation.references``)."""
    out: list[TrialSpec] = []
    for d in suite.datasets:
        for m in suite.models:
            for r in suite.regimes:
                conditions: list[dict | None] = list(r.conditions) if r.kind == "specialist" else [None]
                for c in conditions:
                    for s in suite.seeds:
                        out.append(TrialSpec(suite.name, suite.version, d, m, r, s, suite.training,
                                             suite.evaluation, c))
    if suite.evaluation.references:
        out += [TrialSpec(suite.name, suite.version, d, REFERENCE_MODEL, REFERENCE_REGIME, 0, suite.training,
                          suite.evaluation, kind="reference") for d in suite.datasets]
    return out


@dataclass
class TrialOutcome:
    trial_id: str
    name: str
    resolved: dict[str, Any]
    rows: list[dict[str, Any]]
    history: list[dict[str, float]]
    predictions: dict[str, np.ndarray]
    checkpoint: bytes
    info: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # serialised in the worker (tracking.trial_artifacts)


MAX_EXTRA_WIDTH = 16


def _extra_columns(extras: dict[str, np.ndarray], n: int) -> dict[str, list[float]]:
    """Per-sample model outputs besides ``pred`` as prediction-table columns.

    ``quality`` [N, 3] -> ``quality_text/audio/vision`` (QA-MoE's r_m, for quality-vs-rho
    analyses); any other extra of shape [N] -> ``<name>``, [N, k] with k <= 16 -> ``<name>_<j>``
    (e.g. ``expert_weights_0..7``: expert usage). Wider or higher-rank extras are not stored.
    """
    out: dict[str, list[float]] = {}
    for name in sorted(extras):
        a = np.asarray(extras[name], dtype=np.float64)
        if a.ndim == 0 or a.shape[0] != n:
            continue
        if name == "quality" and a.shape[1:] == (3,):
            for i, m in enumerate(("text", "audio", "vision")):
                out[f"quality_{m}"] = a[:, i].tolist()
        elif a.ndim == 1:
            out[name] = a.tolist()
        elif a.ndim == 2 and a.shape[1] <= MAX_EXTRA_WIDTH:
            for j in range(a.shape[1]):
                out[f"{name}_{j}"] = a[:, j].tolist()
    return out


def _quality_rows(base: dict, extras: dict[str, np.ndarray]) -> list[dict]:
    q = extras.get("quality")
    if q is None:
        return []
    return [{**base, "metric": f"quality_{m}", "value": float(q[:, i].mean())}
            for i, m in enumerate(("text", "audio", "vision"))]


def run_trial(spec: TrialSpec, trial_id: str, data_hash: str | None = None, threads: int | None = None) -> TrialOutcome:
    """Train once, evaluate the whole grid, return rows + predictions + checkpoint (no tracking I/O).
    A reference trial evaluates the reference predictors instead (:func:`run_references`)."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if spec.is_reference:
        return run_references(spec, trial_id, data_hash)
    t0 = time.perf_counter()
    dataset, h, ctx = _load_checked(spec, data_hash)
    device = resolve_device(spec.training.device)
    model = create_model(spec.model.name, dims=dataset.dims, lengths=dataset.lengths, seed=spec.seed,
                         **spec.model.overrides)
    trained = train_model(model, dataset, spec.regime, spec.training, seed=spec.seed, device=device,
                          condition=spec.condition, ctx=ctx)
    te = time.perf_counter()
    ev = spec.evaluation
    data = split_to_batch(dataset[ev.split])
    results = evaluate_grid(model, data, ctx, ev.families, ev.levels, ev.sweeps, seed=ev.seed,
                            metric_family=dataset.metric_family, batch_size=ev.batch_size, device=device,
                            split=ev.split, qmc_points=ev.qmc_points)
    eval_seconds = time.perf_counter() - te
    versions = corruption_versions(spec.families())
    base = _row_base(spec, trial_id, h)
    rows, preds = _rows_and_predictions([(spec.model.display, r) for r in results], base, versions,
                                        np.asarray(dataset[ev.split].ids).astype(str), data.labels.numpy())
    buf = io.BytesIO()
    torch.save({"state_dict": trained.best_state, "model": spec.model.name,
                "config": model_config(spec.model.name, **spec.model.overrides),
                "dims": dataset.dims, "lengths": dataset.lengths, "trial_id": trial_id}, buf)
    info = {
        "best_epoch": trained.best_epoch, "best_valid_score": trained.best_score,
        "epochs_run": trained.epochs_run, "train_seconds": trained.train_seconds,
        "eval_seconds": eval_seconds, "total_seconds": time.perf_counter() - t0,
        "grid_points": len(results), "n_params": count_parameters(model), "device": str(device),
        "torch_threads": torch.get_num_threads(), "host": platform.node(), "data_hash": h,
        "corruption_versions": versions, "ceiling": dataset.info.get("ceiling"),
        "metric_family": dataset.metric_family,
    }
    outcome = TrialOutcome(trial_id, spec.name, spec.resolved(), rows, trained.history, preds,
                           buf.getvalue(), info)
    outcome.artifacts = trial_artifacts(outcome, trial_curve_png)
    return outcome


def _load_checked(spec: TrialSpec, data_hash: str | None) -> tuple[Any, str, CorruptionContext]:
    """The trial's dataset (checked against the driver's hash) and a corruption context on its training split."""
    dataset = load_dataset(spec.dataset.name, spec.dataset.params)
    h = dataset.content_hash()
    if data_hash is not None and h != data_hash:
        raise DataError(f"dataset {spec.dataset.name!r} on this worker has hash {h}, the driver saw {data_hash}",
                        hint="every node must see the same data file")
    ctx = CorruptionContext(modalities_of(split_to_batch(dataset["train"])), raw=getattr(dataset, "raw", None),
                            dataset=spec.dataset.name)
    return dataset, h, ctx


def _row_base(spec: TrialSpec, trial_id: str, data_hash: str) -> dict[str, Any]:
    return {
        "trial_id": trial_id, "suite": spec.suite, "suite_version": spec.suite_version,
        "dataset": spec.dataset.name, "data_hash": data_hash, "model": spec.model.display,
        "model_name": spec.model.name, "regime": spec.regime.name,
        "regime_kind": "reference" if spec.is_reference else spec.regime.kind,
        "condition": json.dumps(spec.condition, sort_keys=True) if spec.condition else "",
        "seed": spec.seed, "split": spec.evaluation.split,
    }


def _rows_and_predictions(results: list[tuple[str, Any]], base: dict[str, Any], versions: dict[str, str],
                          ids: np.ndarray, labels: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Long-form rows and per-sample predictions of ``(model label, PointResult)`` pairs."""
    rows: list[dict[str, Any]] = []
    preds: dict[str, list] = {"grid": [], "family": [], "sweep": [], "level_index": [], "level": [],
                              "sample_id": [], "label": [], "pred": []}
    several = len({name for name, _ in results}) > 1
    if several:
        preds["model"] = []
    for name, r in results:
        g = r.grid
        point_base = {**base, "model": name, "family": g.family, "sweep": g.sweep, "level_index": g.index,
                      "level": g.level, "rho_text": g.point.text, "rho_audio": g.point.audio,
                      "rho_vision": g.point.vision, "corruption_version": versions.get(g.family, "")}
        rows += [{**point_base, "metric": k, "value": float(v)} for k, v in r.metrics.items()]
        rows += _quality_rows(point_base, r.extras)
        n = len(r.pred)
        preds["grid"] += [f"{g.family}/{g.sweep}/{g.index}"] * n
        preds["family"] += [g.family] * n
        preds["sweep"] += [g.sweep] * n
        preds["level_index"] += [g.index] * n
        preds["level"] += [g.level] * n
        preds["sample_id"] += ids.tolist()
        preds["label"] += labels.tolist()
        preds["pred"] += r.pred.tolist()
        if several:
            preds["model"] += [name] * n
        for col, values in _extra_columns(r.extras, n).items():
            preds.setdefault(col, []).extend(values)
    return rows, {k: np.asarray(v) for k, v in preds.items() if len(v) == len(preds["pred"])}


def run_references(spec: TrialSpec, trial_id: str, data_hash: str | None = None) -> TrialOutcome:
    """The reference trial of ``spec``: the oracle and the linear probes over the evaluation grid."""
    from .references import reference_results

    t0 = time.perf_counter()
    dataset, h, ctx = _load_checked(spec, data_hash)
    results, facts = reference_results(dataset, ctx, spec.evaluation)
    versions = corruption_versions(spec.families())
    ev = spec.evaluation
    rows, preds = _rows_and_predictions(results, _row_base(spec, trial_id, h), versions,
                                        np.asarray(dataset[ev.split].ids).astype(str),
                                        np.asarray(dataset[ev.split].labels, dtype=np.float32))
    info = {"total_seconds": time.perf_counter() - t0, "eval_seconds": time.perf_counter() - t0,
            "grid_points": len(results), "host": platform.node(), "data_hash": h, "corruption_versions": versions,
            "ceiling": dataset.info.get("ceiling"), "metric_family": dataset.metric_family, **facts}
    outcome = TrialOutcome(trial_id, spec.name, spec.resolved(), rows, [], preds, b"", info)
    outcome.artifacts = trial_artifacts(outcome, trial_curve_png)
    return outcome


def load_checkpoint(source: str | os.PathLike | bytes, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the best model of a trial from its checkpoint (``checkpoint/model.pt`` in MLflow).

    ``source`` is a path or the raw bytes. The file holds plain tensors and config values and is
    read with ``weights_only=True``: no pickled code runs. The model is returned in eval mode.
    """
    blob = source if isinstance(source, bytes) else Path(source).read_bytes()
    ck = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    model = create_model(ck["model"], dims=ck["dims"], lengths=ck["lengths"], seed=0, **ck["config"])
    model.load_state_dict(ck["state_dict"])
    return model.to(device).eval()
