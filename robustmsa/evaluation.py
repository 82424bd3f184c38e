"""Evaluate one checkpoint over a whole reliability grid without retraining.

Per corruption family the random state is sampled once for the evaluation split
(:meth:`corruptions.Corrupter.prepare`); every grid point then costs one vectorised application
and one batched forward pass.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from corruptions import CorruptionSource, GridPoint, ReliabilityPoint
from corruptions.grids import qmc_grid, standard_grid, supported_sweeps

from .corruption_context import CorruptionContext
from .data.batch import Batch
from .errors import NonFiniteError
from .metrics import compute_metrics
from .models.layers import encoding_cache
from .suite import EvaluationSpec, GridSpec

__all__ = ["PointResult", "GridRun", "predict", "evaluate_grid", "grid_results", "PointPredictor", "build_grid",
           "CorruptionContext"]


@dataclass
class PointResult:
    """Metrics (and per-sample predictions) of one grid point."""

    grid: GridPoint
    metrics: dict[str, float]
    pred: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def predict(model: torch.nn.Module, batch: Batch, batch_size: int, device: torch.device) -> tuple[np.ndarray, dict]:
    """Predictions [N] (and concatenated extras) in eval mode, in chunks of ``batch_size``.

    A classification model's ``pred`` is logits [N, C]: the prediction is their argmax, the class
    index (ties: the lowest index), as float32."""
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
    if pred.ndim == 2:
        pred = pred.argmax(axis=1).astype(np.float32)
    return pred, {k: torch.cat(v).numpy() for k, v in extras.items()}


def build_grid(grid: GridSpec, qmc_seed: int = 0) -> list[GridPoint]:
    """The evaluation grid: for each family, each sweep it supports at each level.

    A sweep is a modality (the others clean), ``joint`` (all three at the same level) or a product
    of modalities joined by ``+`` (e.g. ``audio+vision``: every combination of the levels, level =
    mean rho; see :func:`corruptions.grids.product_grid`). Index 0 of every sweep but ``qmc`` is clean.
    ``qmc`` is ``grid.qmc_points`` scrambled Sobol' points over the three modalities, seeded by
    ``qmc_seed`` (:func:`corruptions.grids.qmc_grid`).
    """
    out: list[GridPoint] = []
    for f in grid.families:
        for s in supported_sweeps(f.name, grid.sweeps):
            if s == "qmc":
                out += qmc_grid(f.name, grid.qmc_points, qmc_seed)
            else:
                out += standard_grid([f.name], grid.levels, [s])
    return out


@dataclass(frozen=True)
class GridRun:
    """How a checkpoint is evaluated over a grid: the grid, the key of its corruption draws (also
    the qmc points' seed), the metric family, the split's name (one sampled state per split), the
    batching and device, and the number of classes of a classification dataset (its per-class
    metrics; 0 for regression). ``with_clean`` adds the clean point when no sweep has it; ``reuse_encodings``
    lets shared encoders skip modalities a point leaves clean (bit-identical, tested)."""

    grid: GridSpec
    seed: int
    metric_family: str
    split: str = "test"
    batch_size: int = 512
    device: torch.device = torch.device("cpu")
    with_clean: bool = True
    reuse_encodings: bool = True
    num_classes: int = 0

    @classmethod
    def of(cls, ev: EvaluationSpec, metric_family: str, device: torch.device | None = None,
           num_classes: int = 0) -> GridRun:
        """The run of a suite's evaluation section."""
        return cls(ev, ev.seed, metric_family, split=ev.split, batch_size=ev.batch_size,
                   device=device or torch.device("cpu"), num_classes=num_classes)

    def metrics(self, pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """The metrics of one grid point (the run's metric family)."""
        return compute_metrics(pred, labels, self.metric_family, self.num_classes)


def evaluate_grid(model: torch.nn.Module, data: Batch, ctx: CorruptionContext, run: GridRun) -> list[PointResult]:
    """Evaluate ``model`` on ``data`` at every point of ``run``'s grid.

    The clean point is computed once and shared; ``ctx`` holds the corrupters fitted on the
    training split and caches the sampled states (:class:`~robustmsa.models.layers.EncodingCache`
    with ``run.reuse_encodings``).
    """
    scope = encoding_cache(data) if run.reuse_encodings else contextlib.nullcontext()
    with scope:
        return grid_results(lambda batch, prepared, point: predict(model, batch, run.batch_size, run.device),
                            data, ctx, run)


#: ``(corrupted batch, its corruption source (None at the clean point), the point) -> (pred, extras)``
PointPredictor = Callable[[Batch, "CorruptionSource | None", ReliabilityPoint], tuple[np.ndarray, dict]]


def grid_results(predictor: PointPredictor, data: Batch, ctx: CorruptionContext, run: GridRun) -> list[PointResult]:
    """Metrics of ``predictor`` at every grid point of ``run`` (the loop behind :func:`evaluate_grid`,
    also used by reference predictors that need the corruption's state, e.g. the oracle)."""
    labels = data.labels.numpy()
    results: list[PointResult] = []
    clean_cache: tuple[np.ndarray, dict] | None = None
    by_family: dict[str, list[GridPoint]] = {}
    for g in build_grid(run.grid, qmc_seed=run.seed):
        by_family.setdefault(g.family, []).append(g)
    for f in run.grid.families:
        prepared = ctx.prepared(f, run.seed, data, run.split)
        for g in by_family.get(f.name, []):
            if g.point.is_clean:
                if clean_cache is None:
                    clean_cache = predictor(data, None, g.point)
                pred, extras = clean_cache
            else:
                pred, extras = predictor(data.with_modalities(prepared.at(g.point)), prepared, g.point)
            results.append(PointResult(g, run.metrics(pred, labels), pred, extras))
    if run.with_clean and clean_cache is None:
        clean_g = GridPoint(family="clean", sweep="clean", index=0, level=1.0, point=ReliabilityPoint())
        pred, extras = predictor(data, None, clean_g.point)
        results.append(PointResult(clean_g, run.metrics(pred, labels), pred, extras))
    return results
