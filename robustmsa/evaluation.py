"""Evaluate one checkpoint over a whole reliability grid without retraining.

Per corruption family the random state is sampled once for the evaluation split
(:meth:`corruptions.Corrupter.prepare`); every grid point then costs one vectorised application
and one batched forward pass.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from corruptions import GridPoint, ModalityBatch, Prepared, ReliabilityPoint
from corruptions.grids import qmc_grid, standard_grid, supported_sweeps
from corruptions.keys import MODALITIES

from .corruption_context import CorruptionContext
from .data.batch import Batch
from .errors import NonFiniteError
from .metrics import compute_metrics
from .models.layers import encoding_cache

__all__ = ["PointResult", "predict", "evaluate_grid", "grid_results", "PointPredictor", "modalities_of", "build_grid", "with_modalities",
           "CorruptionContext"]


@dataclass
class PointResult:
    """Metrics (and per-sample predictions) of one grid point."""

    grid: GridPoint
    metrics: dict[str, float]
    pred: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def modalities_of(batch: Batch) -> dict[str, ModalityBatch]:
    return {m: batch.modality(m) for m in MODALITIES}


def with_modalities(batch: Batch, data: Mapping[str, ModalityBatch]) -> Batch:
    for m, mb in data.items():
        batch = batch.with_modality(m, mb)
    return batch


@torch.no_grad()
def predict(model: torch.nn.Module, batch: Batch, batch_size: int, device: torch.device) -> tuple[np.ndarray, dict]:
    """Predictions [N] (and concatenated extras) in eval mode, in chunks of ``batch_size``."""
    model.eval()
    preds: list[torch.Tensor] = []
    extras: dict[str, list[torch.Tensor]] = {}
    n = len(batch)
    for start in range(0, n, batch_size):
        chunk = batch.slice(start, min(n, start + batch_size)).to(device)
        out = model(chunk)
        preds.append(out["pred"].float().cpu())
        for k, v in (out.get("extras") or {}).items():
            extras.setdefault(k, []).append(v.float().cpu())
    pred = torch.cat(preds).numpy()
    bad = int((~np.isfinite(pred)).sum())
    if bad:
        raise NonFiniteError(f"the model produced {bad} non-finite predictions out of {n}")
    return pred, {k: torch.cat(v).numpy() for k, v in extras.items()}


def _family_name(f: str | dict[str, Any]) -> str:
    return f if isinstance(f, str) else str(f["name"])


def build_grid(families: Iterable[str | dict], levels: list[float], sweeps: Iterable[str], *,
               qmc_points: int = 16, qmc_seed: int = 0) -> list[GridPoint]:
    """The evaluation grid: for each family, each sweep it supports at each level.

    A sweep is a modality (the others clean), ``joint`` (all three at the same level) or a product
    of modalities joined by ``+`` (e.g. ``audio+vision``: every combination of the levels, level =
    mean rho; see :func:`corruptions.spectrum.product_grid`). Index 0 of every sweep but ``qmc`` is clean.
    ``qmc`` is ``qmc_points`` scrambled Sobol' points over the three modalities, seeded by
    ``qmc_seed`` (:func:`corruptions.spectrum.qmc_grid`).
    """
    sweeps = list(sweeps)
    out: list[GridPoint] = []
    for f in families:
        for s in supported_sweeps(_family_name(f), sweeps):
            if s == "qmc":
                out += qmc_grid(_family_name(f), qmc_points, qmc_seed)
            else:
                out += standard_grid([_family_name(f)], levels, [s])
    return out


def evaluate_grid(
    model: torch.nn.Module,
    data: Batch,
    ctx: CorruptionContext,
    families: Iterable[str | dict],
    levels: list[float],
    sweeps: Iterable[str],
    *,
    seed: int,
    metric_family: str,
    batch_size: int,
    device: torch.device,
    split: str = "test",
    with_clean: bool = True,
    qmc_points: int = 16,
    reuse_encodings: bool = True,
) -> list[PointResult]:
    """Evaluate ``model`` on ``data`` (split ``split``) at every grid point.

    The clean point is computed once and shared; ``ctx`` holds the corrupters fitted on the
    training split and caches the sampled states. With ``reuse_encodings`` the encoders of the
    shared layers skip modalities a grid point leaves clean (:class:`~robustmsa.models.layers.EncodingCache`;
    the numbers are bit-identical, tested).
    """
    scope = encoding_cache(data) if reuse_encodings else contextlib.nullcontext()
    with scope:
        return grid_results(lambda batch, prepared, point: predict(model, batch, batch_size, device), data, ctx,
                            families, levels, sweeps, seed=seed, metric_family=metric_family, split=split,
                            with_clean=with_clean, qmc_points=qmc_points)


#: ``(corrupted batch, its Prepared state (None at the clean point), the point) -> (pred, extras)``
PointPredictor = Callable[[Batch, "Prepared | None", ReliabilityPoint], tuple[np.ndarray, dict]]


def grid_results(
    predictor: PointPredictor,
    data: Batch,
    ctx: CorruptionContext,
    families: Iterable[str | dict],
    levels: list[float],
    sweeps: Iterable[str],
    *,
    seed: int,
    metric_family: str,
    split: str = "test",
    with_clean: bool = True,
    qmc_points: int = 16,
) -> list[PointResult]:
    """Metrics of ``predictor`` at every point of the grid (the loop behind :func:`evaluate_grid`,
    also used by reference predictors that need the corruption's state, e.g. the oracle)."""
    labels = data.labels.numpy()
    results: list[PointResult] = []
    clean_cache: tuple[np.ndarray, dict] | None = None
    families = list(families)
    grid = build_grid(families, levels, sweeps, qmc_points=qmc_points, qmc_seed=seed)
    by_family: dict[str, list[GridPoint]] = {}
    for g in grid:
        by_family.setdefault(g.family, []).append(g)
    for f in families:
        name = _family_name(f)
        prepared = ctx.prepared(f, seed, data, split)
        for g in by_family.get(name, []):
            if g.point.is_clean:
                if clean_cache is None:
                    clean_cache = predictor(data, None, g.point)
                pred, extras = clean_cache
            else:
                pred, extras = predictor(with_modalities(data, prepared.at(g.point)), prepared, g.point)
            results.append(PointResult(g, compute_metrics(pred, labels, metric_family), pred, extras))
    if with_clean and clean_cache is None:
        clean_g = GridPoint(family="clean", sweep="clean", index=0, level=1.0, point=ReliabilityPoint())
        pred, extras = predictor(data, None, clean_g.point)
        results.append(PointResult(clean_g, compute_metrics(pred, labels, metric_family), pred, extras))
    return results
