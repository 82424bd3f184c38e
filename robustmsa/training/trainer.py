"""The trainer shared by every model and regime.

Regimes (``RegimeSpec.kind``):
- ``clean``: clean training data only;
- ``spectrum`` ("one checkpoint for all"): each batch is corrupted by the corruption engine's
  training sampler, per sample and modality, keyed by (seed, sample id, modality, epoch);
- ``specialist``: every batch corrupted at one fixed condition (family, sweep, level).

Model and epoch selection use the VALIDATION split only, at the validation spectrum of the regime
(the mean validation MAE over its grid points, clean included); early stopping on it; the best
state is kept. The test split is never seen here. A non-finite loss stops training with an error.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from corruptions import ReliabilityPoint, TrainingSampler
from corruptions.keys import MODALITIES

from ..data.batch import Batch, batches, split_to_batch
from ..data.dataset import MSADataset
from ..errors import NonFiniteError
from ..evaluation import CorruptionContext, evaluate_grid, modalities_of, predict, with_modalities
from ..metrics import compute_metrics
from ..suite import GridSpec, RegimeSpec, TrainingSpec

__all__ = ["TrainResult", "train_model", "resolve_device", "validation_grid", "condition_point"]


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    epochs_run: int = 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from ..errors import RobustMSAError

        raise RobustMSAError("training.device is 'cuda' but no GPU is visible", hint="use device: auto")
    return torch.device(name)


def condition_point(cond: dict[str, Any]) -> tuple[str, ReliabilityPoint]:
    """A specialist condition {family, sweep, level} -> (family name, point)."""
    family, sweep, level = cond["family"], cond.get("sweep", "joint"), float(cond["level"])
    point = ReliabilityPoint.joint(level) if sweep == "joint" else ReliabilityPoint.only(sweep, level)
    return family, point


def validation_grid(regime: RegimeSpec) -> GridSpec | None:
    """The regime's validation spectrum (None: clean only)."""
    if regime.validation is not None:
        return regime.validation
    if regime.kind == "spectrum" and regime.sampler is not None:
        names = sorted({f if isinstance(f, str) else f["name"] for f in regime.sampler.families})
        return GridSpec(families=names, levels=[1.0, 0.5], sweeps=["joint"])
    if regime.kind == "specialist":
        return None  # set per condition by the caller via ``condition``
    return None


def _loss_fn(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return torch.nn.functional.l1_loss if kind == "l1" else torch.nn.functional.mse_loss


class _Corruptor:
    """Corrupts training batches according to the regime; returns (batch, clean or None)."""

    def __init__(self, regime: RegimeSpec, seed: int, ctx: CorruptionContext, condition: dict[str, Any] | None):
        self.kind = regime.kind
        mods = ctx.train
        if self.kind == "spectrum":
            s = regime.sampler
            self.sampler = TrainingSampler(
                s.families, weights=s.weights, p_clean_sample=s.p_clean_sample,
                p_clean_modality=s.p_clean_modality, rho_low=s.rho_low, rho_high=s.rho_high, seed=seed,
            )
            self.sampler.fit(mods)
        elif self.kind == "specialist":
            assert condition is not None
            family, self.point = condition_point(condition)
            self.corrupter = ctx.corrupter(family, seed)

    def __call__(self, batch: Batch, epoch: int) -> tuple[Batch, Batch | None]:
        if self.kind == "clean":
            return batch, None
        mods = modalities_of(batch)
        if self.kind == "spectrum":
            out = self.sampler.apply(mods, batch.keys, stream=epoch)
            data, rho = out.data, torch.stack([out.rho[m].float() for m in MODALITIES], dim=1)
        else:
            data = self.corrupter.prepare(mods, batch.keys, stream=epoch).at(self.point)
            rho = torch.tensor([[self.point.of(m) for m in MODALITIES]], device=batch.labels.device)
            rho = rho.expand(len(batch), 3)
        corrupted = replace(with_modalities(batch, data), reliability=rho)
        return corrupted, batch


def _valid_score(model, dataset: MSADataset, valid: Batch, ctx: CorruptionContext, grid: GridSpec | None,
                 condition: dict | None, seed: int, device) -> tuple[float, dict[str, float]]:
    if condition is not None:
        family, point = condition_point(condition)
        prepared = ctx.prepared(family, seed, valid, "valid")
        pred, _ = predict(model, with_modalities(valid, prepared.at(point)), 512, device)
        m = compute_metrics(pred, valid.labels.numpy(), dataset.metric_family)
        return m["mae"], {"valid_mae": m["mae"], "valid_corr": m["corr"]}
    if grid is None:
        res = evaluate_grid(model, valid, ctx, [], [1.0], [], seed=seed, split="valid",
                            metric_family=dataset.metric_family, batch_size=512, device=device)
    else:
        res = evaluate_grid(model, valid, ctx, grid.families, grid.levels, grid.sweeps, seed=seed, split="valid",
                            metric_family=dataset.metric_family, batch_size=512, device=device)
    clean = next(r for r in res if r.grid.point.is_clean)
    score = float(np.mean([r.metrics["mae"] for r in res]))
    return score, {"valid_mae": score, "valid_clean_mae": clean.metrics["mae"],
                   "valid_clean_corr": clean.metrics["corr"]}


def train_model(
    model: torch.nn.Module,
    dataset: MSADataset,
    regime: RegimeSpec,
    training: TrainingSpec,
    *,
    seed: int,
    device: torch.device,
    condition: dict[str, Any] | None = None,
    ctx: CorruptionContext | None = None,
    valid_seed: int = 4321,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` under ``regime``; select the epoch on the validation split; keep the best state.

    ``ctx`` (corrupters fitted on the training split) may be shared with the evaluation.
    """
    t0 = time.perf_counter()
    train = split_to_batch(dataset["train"])
    valid = split_to_batch(dataset["valid"])
    ctx = ctx or CorruptionContext(modalities_of(train))
    corrupt = _Corruptor(regime, seed, ctx, condition)
    grid = validation_grid(regime)
    model.fit_inputs(train)
    model.to(device)
    opt = torch.optim.AdamW(model.param_groups(training.lr, training.weight_decay))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, training.patience // 2))
    loss_fn = _loss_fn(training.loss)
    best: TrainResult | None = None
    history: list[dict[str, float]] = []
    bad_epochs = 0
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for epoch in range(training.epochs):
            te = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for b in batches(train, training.batch_size, shuffle_seed=seed * 100003 + epoch):
                xb, clean = corrupt(b, epoch)
                xb = xb.to(device)
                out = model(xb, clean=None if clean is None else clean.to(device))
                task = loss_fn(out["pred"], xb.labels)
                loss = task + sum(out.get("losses", {}).values(), torch.zeros((), device=device))
                if not torch.isfinite(loss):
                    raise NonFiniteError(
                        f"non-finite training loss at epoch {epoch} (task {task.item():.4g}); "
                        "inputs or learning rate are the usual causes",
                        hint="check the data for NaN/inf and lower training.lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if training.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
                opt.step()
                total += float(task.detach()) * len(xb)
                count += len(xb)
            score, vmetrics = _valid_score(model, dataset, valid, ctx, grid, condition, valid_seed, device)
            sched.step(score)
            row = {"epoch": epoch, "train_loss": total / max(count, 1), **vmetrics,
                   "lr": opt.param_groups[0]["lr"], "epoch_seconds": time.perf_counter() - te}
            history.append(row)
            if on_epoch:
                on_epoch(row)
            if best is None or score < best.best_score - 1e-6:
                best = TrainResult(copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}),
                                   epoch, score)
                bad_epochs = 0
            else:
                bad_epochs += 1
                if bad_epochs >= training.patience:
                    break
    assert best is not None
    model.load_state_dict(best.best_state)
    best.history = history
    best.epochs_run = len(history)
    best.train_seconds = time.perf_counter() - t0
    return best
