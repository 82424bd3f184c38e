"""Reference predictors, evaluated on exactly the grid the models see: what is achievable, what is trivial.

One *reference trial* per dataset and evaluation spectrum of a suite (kind ``reference`` in the
plan; tracked like any trial, regime ``reference``) evaluates:

- ``oracle``: for the synthetic presets of the cue design, the best possible prediction from what
  each corrupted observation still contains (:mod:`robustmsa.data.oracle`), at every grid point.
  Reports draw it dashed beside every curve and measure each model's gap to it.
- ``linear probe``: ridge regression on the masked-mean-pooled features of all three modalities
  (each feature standardised with training statistics; the ridge penalty chosen on the
  validation split from a fixed grid), trained on clean data and evaluated over the grid like a
  model: the level any model should beat.
- ``linear probe (a+b)``: the same on two modalities only, at the clean point: what is left when
  the third is gone. A model that falls back on the modalities left is no worse than it at any
  point of that modality's sweep (the ``fallback`` table).

Everything here is deterministic (closed-form ridge, no random draws).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from corruptions.keys import MODALITIES

from .data.batch import Batch, split_to_batch
from .data.dataset import MSADataset
from .evaluation import CorruptionContext, GridRun, PointResult, grid_results, predict
from .plan import REFERENCE_VERSION
from .suite import FamilyRef, GridSpec

__all__ = ["REFERENCE_VERSION", "LinearProbe", "reference_results", "probe_label", "ORACLE", "PROBE"]

ORACLE = "oracle"
PROBE = "linear probe"
_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))


def probe_label(modalities: tuple[str, ...]) -> str:
    """The name of the linear probe on ``modalities`` (all three: ``linear probe``)."""
    return PROBE if tuple(modalities) == MODALITIES else f"{PROBE} ({'+'.join(modalities)})"


def _pooled(batch: Batch, modalities: tuple[str, ...]) -> torch.Tensor:
    """float64 [N, sum of dims]: per modality the mean over valid frames of present samples (0 if absent)."""
    out = []
    for m in modalities:
        i = MODALITIES.index(m)
        mask = (getattr(batch, f"{m}_mask") & ~batch.missing[:, i : i + 1].to(batch.device)).to(torch.float64)
        x = getattr(batch, m).to(torch.float64)
        out.append((x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0))
    return torch.cat(out, dim=1)


class LinearProbe(nn.Module):
    """Ridge regression on pooled features of ``modalities`` (see the module docstring).

    An ``nn.Module`` with the models' call convention (``forward(batch) -> {"pred": ...}``), so the
    evaluation grid treats it exactly like a model. Build with :meth:`fit`.
    """

    def __init__(self, modalities: tuple[str, ...], mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                 bias: float, alpha: float):
        super().__init__()
        self.modalities = tuple(modalities)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("weight", weight)
        self.bias = float(bias)
        self.alpha = float(alpha)

    @classmethod
    def fit(cls, train: Batch, valid: Batch, modalities: tuple[str, ...] = MODALITIES,
            alphas: tuple[float, ...] = _ALPHAS) -> LinearProbe:
        """Fit on clean ``train``; the penalty with the lowest validation MAE (ties: the larger)."""
        x = _pooled(train, modalities)
        mean, std = x.mean(0), x.std(0, correction=0)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        z = (x - mean) / std
        y = train.labels.to(torch.float64)
        gram, rhs = z.T @ z, z.T @ (y - y.mean())
        zv = (_pooled(valid, modalities) - mean) / std
        best = None
        for a in sorted(alphas, reverse=True):
            w = torch.linalg.solve(gram + a * torch.eye(gram.shape[0], dtype=torch.float64), rhs)
            mae = float((zv @ w + y.mean() - valid.labels.to(torch.float64)).abs().mean())
            if best is None or mae < best[0] - 1e-12:
                best = (mae, a, w)
        assert best is not None
        return cls(modalities, mean, std, best[2], float(y.mean()), best[1])

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        z = (_pooled(batch, self.modalities) - self.mean) / self.std
        return {"pred": (z @ self.weight + self.bias).to(torch.float32), "losses": {}}


def _rows_of(results: list[PointResult], name: str) -> list[tuple[str, PointResult]]:
    return [(name, r) for r in results]


def reference_results(dataset: MSADataset, ctx: CorruptionContext, evaluation: Any
                      ) -> tuple[list[tuple[str, PointResult]], dict[str, Any]]:
    """(reference name, point result) over the evaluation grid, and facts for the trial's info."""
    ev = evaluation
    train, valid = split_to_batch(dataset["train"]), split_to_batch(dataset["valid"])
    data = split_to_batch(dataset[ev.split])
    run = GridRun.of(ev, dataset.metric_family)
    clean_only = replace(run, grid=GridSpec(families=[], levels=[1.0], sweeps=[]))
    cpu = run.device
    out: list[tuple[str, PointResult]] = []
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    probe = LinearProbe.fit(train, valid)
    out += _rows_of(grid_results(lambda b, p, pt: predict(probe, b, ev.batch_size, cpu), data, ctx, run), PROBE)
    info["probe_alpha"] = {PROBE: probe.alpha}
    for pair in itertools.combinations(MODALITIES, 2):
        sub = LinearProbe.fit(train, valid, pair)
        info["probe_alpha"][probe_label(pair)] = sub.alpha
        out += _rows_of(grid_results(lambda b, p, pt, sub=sub: predict(sub, b, ev.batch_size, cpu), data, ctx,
                                     clean_only), probe_label(pair))
    info["probe_seconds"] = time.perf_counter() - t0
    from .data.oracle import CueOracle, has_oracle

    if has_oracle(dataset):
        t1 = time.perf_counter()
        oracle = CueOracle(dataset)

        def oracle_point(batch: Batch, prepared: Any, point: Any) -> tuple[np.ndarray, dict]:
            if prepared is None:
                p = oracle.predict(data, batch, ev.split, {}, {}, {})
            else:
                p = oracle.predict(data, batch, ev.split, prepared.families, prepared.states, point.as_dict())
            return p.pred.astype(np.float64), {"posterior_mean": p.mean}

        supported = [f for f in ev.families if _oracle_supports(f)]
        grid = ev.model_copy(update={"families": supported})
        out += _rows_of(grid_results(oracle_point, data, ctx, replace(run, grid=grid)), ORACLE)
        info["oracle_seconds"] = time.perf_counter() - t1
        info["oracle_families"] = [f.name for f in supported]
    return out, info


def _oracle_supports(family: FamilyRef) -> bool:
    """The oracle knows the family's effect on the frames (compose: every member's)."""
    from .data.oracle import TIME_EFFECTS

    return all(m.name in TIME_EFFECTS for m in family.members())
