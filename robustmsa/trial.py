"""A grid cell: one trial = (dataset, model, regime, seed[, specialist condition]).

A trial trains once and evaluates its checkpoint over the whole evaluation grid. It is a plain
function of a :class:`TrialSpec` that returns a :class:`TrialOutcome` holding flat long-form rows
(model, regime, seed, family, sweep, level, metric, value, versions), per-sample predictions, the
training curve and the best checkpoint. It never talks to the tracking store (the driver is the
single writer), so it runs the same in-process, in a Ray worker or on a remote node.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corruptions import FAMILIES, GridPoint
from corruptions.keys import MODALITIES

from .data.batch import split_to_batch
from .datasets import load_dataset
from .errors import DataError
from .evaluation import CorruptionContext, GridRun, evaluate_grid
from .models import count_parameters, create_model, model_config
from .plan import TrialSpec, corruption_versions
from .reports.figures import trial_curve_png
from .suite import FamilyRef
from .tracking import trial_artifacts
from .training import resolve_device, train_model

__all__ = ["TrialOutcome", "run_trial", "run_evaluation", "load_checkpoint", "physical_parameters"]


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


def _extra_columns(extras: dict[str, np.ndarray], n: int) -> dict[str, list[float]]:
    """Per-sample model outputs besides ``pred`` as prediction-table columns, laid out as the models
    declare them (:mod:`robustmsa.models.extras`; e.g. QA-MoE's ``quality`` -> ``quality_text``..;
    an undeclared [N, k] extra with k <= MAX_EXTRA_WIDTH -> ``<name>_<j>``)."""
    from .models import extra_columns

    return extra_columns(extras, n)


def _quality_rows(base: dict, extras: dict[str, np.ndarray]) -> list[dict]:
    """Metric rows of the extras a model declares as summarised (e.g. QA-MoE's mean quality per modality)."""
    from .models import extra_summaries

    return [{**base, "metric": metric, "value": value} for metric, value in extra_summaries(extras)]


def run_trial(spec: TrialSpec, trial_id: str, data_hash: str | None = None, threads: int | None = None,
              on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrialOutcome:
    """Train once, evaluate the whole grid, return rows + predictions + checkpoint (no tracking I/O;
    ``on_epoch`` gets each training epoch's row as it ends, e.g. to forward it to the driver).
    A reference trial evaluates the reference predictors instead (:func:`run_references`)."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    if spec.is_reference:
        return run_references(spec, trial_id, data_hash)
    if spec.is_evaluate:
        return run_evaluation(spec, trial_id, data_hash)
    t0 = time.perf_counter()
    dataset, h, ctx = _load_checked(spec, data_hash)
    device = resolve_device(spec.training.device)
    model = create_model(spec.model.name, dims=dataset.dims, lengths=dataset.lengths, seed=spec.seed,
                         classes=dataset.num_classes, **spec.model.overrides)
    trained = train_model(model, dataset, spec.training_run(), device=device, ctx=ctx, on_epoch=on_epoch)
    te = time.perf_counter()
    ev = spec.evaluation
    data = split_to_batch(dataset[ev.split])
    results = evaluate_grid(model, data, ctx, GridRun.of(ev, dataset.metric_family, device, dataset.num_classes))
    eval_seconds = time.perf_counter() - te
    versions = corruption_versions(spec.families())
    base = _row_base(spec, trial_id, h)
    rows, preds = _rows_and_predictions([(spec.model.display, r) for r in results], base, versions,
                                        np.asarray(dataset[ev.split].ids).astype(str), data.labels.numpy(),
                                        physical_parameters(ev.families))
    buf = io.BytesIO()
    checkpoint = {"state_dict": trained.best_state, "model": spec.model.name,
                  "config": model_config(spec.model.name, **spec.model.overrides),
                  "dims": dataset.dims, "lengths": dataset.lengths, "trial_id": trial_id}
    if dataset.num_classes:
        checkpoint["classes"] = dataset.num_classes
    torch.save(checkpoint, buf)
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
    ctx = CorruptionContext(split_to_batch(dataset["train"]).modalities(), raw=getattr(dataset, "raw", None),
                            dataset=spec.dataset.name)
    return dataset, h, ctx


def _row_base(spec: TrialSpec, trial_id: str, data_hash: str) -> dict[str, Any]:
    return {
        "trial_id": trial_id, "suite": spec.suite, "suite_version": spec.suite_version,
        "dataset": spec.dataset.display, "data_hash": data_hash, "model": spec.model.display,
        "model_name": spec.model.name, "regime": spec.regime.name,
        "regime_kind": "reference" if spec.is_reference else spec.regime.kind,
        "condition": json.dumps(spec.condition.spec(), sort_keys=True) if spec.condition else "",
        "seed": spec.seed, "split": spec.evaluation.split,
    }


def physical_parameters(families: list[FamilyRef]) -> Callable[[GridPoint], dict[str, Any]]:
    """The physical parameter of a grid point, per modality, as row columns: ``param_name``,
    ``param_unit`` and ``param_text/audio/vision`` (the family's parameter at that modality's rho:
    e.g. SNR in dB, drop rate, blur width; the clean value where rho = 1). The evaluation's own
    family instances (their parameters included) map rho; the clean point has none (NaN)."""
    instances = {f.name: FAMILIES.get(f.name)(**f.params) for f in families}

    def columns(g: GridPoint) -> dict[str, Any]:
        fam = instances.get(g.family)
        if fam is None:
            return {"param_name": "", "param_unit": "", **{f"param_{m}": math.nan for m in MODALITIES}}
        return {"param_name": str(fam.parameter_name), "param_unit": str(fam.parameter_unit),
                **{f"param_{m}": float(fam.parameter(g.point.of(m))) for m in MODALITIES}}

    return columns


def _rows_and_predictions(results: list[tuple[str, Any]], base: dict[str, Any], versions: dict[str, str],
                          ids: np.ndarray, labels: np.ndarray, physical: Callable[[GridPoint], dict[str, Any]]
                          ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
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
                      "rho_vision": g.point.vision, **physical(g), "corruption_version": versions.get(g.family, "")}
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
                                        np.asarray(dataset[ev.split].labels, dtype=np.float32),
                                        physical_parameters(ev.families))
    info = {"total_seconds": time.perf_counter() - t0, "eval_seconds": time.perf_counter() - t0,
            "grid_points": len(results), "host": platform.node(), "data_hash": h, "corruption_versions": versions,
            "ceiling": dataset.info.get("ceiling"), "metric_family": dataset.metric_family, **facts}
    outcome = TrialOutcome(trial_id, spec.name, spec.resolved(), rows, [], preds, b"", info)
    outcome.artifacts = trial_artifacts(outcome, trial_curve_png)
    return outcome


#: what an evaluate-only trial says about model selection (its ``info["selection"]``)
NO_SELECTION = "none: evaluate-only trial, the model as given (no training, no validation selection)"


def run_evaluation(spec: TrialSpec, trial_id: str, data_hash: str | None = None) -> TrialOutcome:
    """An ``evaluate`` trial: the model comes with its weights (a checkpoint, your own model); it is
    evaluated over the whole grid as given. No training, so no curve, no validation selection and no
    checkpoint of its own; its rows carry ``regime_kind`` "evaluate", its info the weights' sha256."""
    t0 = time.perf_counter()
    dataset, h, ctx = _load_checked(spec, data_hash)
    device = resolve_device(spec.training.device)
    model = create_model(spec.model.name, dims=dataset.dims, lengths=dataset.lengths, seed=spec.seed,
                         **spec.model.overrides).to(device).eval()
    ev = spec.evaluation
    data = split_to_batch(dataset[ev.split])
    results = evaluate_grid(model, data, ctx, GridRun.of(ev, dataset.metric_family, device))
    versions = corruption_versions(spec.families())
    rows, preds = _rows_and_predictions([(spec.model.display, r) for r in results], _row_base(spec, trial_id, h),
                                        versions, np.asarray(dataset[ev.split].ids).astype(str), data.labels.numpy(),
                                        physical_parameters(ev.families))
    seconds = time.perf_counter() - t0
    info = {"selection": NO_SELECTION, "weights_sha256": spec.model_hash, "epochs_run": 0,
            "eval_seconds": seconds, "total_seconds": seconds, "grid_points": len(results),
            "n_params": count_parameters(model), "device": str(device), "torch_threads": torch.get_num_threads(),
            "host": platform.node(), "data_hash": h, "corruption_versions": versions,
            "ceiling": dataset.info.get("ceiling"), "metric_family": dataset.metric_family}
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
    model = create_model(ck["model"], dims=ck["dims"], lengths=ck["lengths"], seed=0, classes=ck.get("classes", 0),
                         **ck["config"])
    model.load_state_dict(ck["state_dict"])
    return model.to(device).eval()
