"""The trainer shared by every model and regime.

Regimes (``RegimeSpec.kind``):
- ``clean``: clean training data only;
- ``spectrum`` ("one checkpoint for all"): each batch is corrupted by the corruption engine's
  training sampler, per sample and modality, keyed by (seed, sample id, modality, epoch);
- ``specialist``: every batch corrupted at one fixed condition (family, sweep, level).

Model and epoch selection use the VALIDATION split only, at the validation spectrum of the regime
(the mean validation MAE over its grid points, clean included; on a classification dataset the
mean of 1 - weighted F1); early stopping on it; the best state is kept. The task loss of a
classification model (``num_classes`` > 0) is cross-entropy on its logits, whatever ``training.loss`` says. The test split is never seen here. A non-finite loss stops training with an error.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from corruptions import TrainingSampler
from corruptions.keys import MODALITIES

from ..data.batch import Batch, batches, split_to_batch
from ..data.dataset import MSADataset
from ..errors import NonFiniteError
from ..evaluation import CorruptionContext, GridRun, evaluate_grid, predict
from ..plan import TrainingRun, validation_grid
from ..suite import GridSpec, TrainingSpec

__all__ = ["TrainResult", "TrainerOptions", "TrainingRun", "RegimeCorruption", "train_model", "train_epoch", "optimizer",
           "resolve_device"]


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


def _loss_fn(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return torch.nn.functional.l1_loss if kind == "l1" else torch.nn.functional.mse_loss


def _class_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits [B, C] against class indices (float labels of a classification batch)."""
    return torch.nn.functional.cross_entropy(logits, labels.long())


def _task_loss(kind: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task loss: cross-entropy for a classification model, else ``training.loss`` (l1 or mse)."""
    return _class_loss if num_classes else _loss_fn(kind)


def _validation_error(metrics: dict[str, float]) -> float:
    """The selection score of one validation point (lower is better): MAE, or 1 - weighted F1."""
    return 1.0 - metrics["weighted_f1"] if "weighted_f1" in metrics else metrics["mae"]


def _classification_summary(res: list, clean: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The validation score and epoch row of a classification model over the validation grid."""
    score = float(np.mean([_validation_error(r.metrics) for r in res]))
    return score, {"valid_error": score, "valid_clean_weighted_f1": clean["weighted_f1"],
                   "valid_clean_accuracy": clean["accuracy"]}


class RegimeCorruption:
    """The regime's corruption of training batches: ``(batch, epoch) -> (corrupted, clean or None)``.

    ``spectrum``: the training sampler (per sample and modality, keyed by seed, id, modality and
    epoch); ``specialist``: the condition's family at its point; ``clean``: the batch as it is.
    The corrupted batch carries the rho applied (``Batch.reliability``, a training target only).
    """

    def __init__(self, run: TrainingRun, ctx: CorruptionContext):
        self.kind = run.regime.kind
        if self.kind == "spectrum":
            s = run.regime.sampler
            self.sampler = TrainingSampler(
                [f.spec() for f in s.families], weights=s.weights, p_clean_sample=s.p_clean_sample,
                p_clean_modality=s.p_clean_modality, rho_low=s.rho_low, rho_high=s.rho_high, seed=run.seed,
            )
            self.sampler.fit(ctx.train)
        elif self.kind == "specialist":
            if run.condition is None:
                raise ValueError("a specialist regime trains at a condition: TrainingRun.condition is None")
            self.point = run.condition.point()
            self.corrupter = ctx.corrupter(run.condition.family, run.seed)

    def __call__(self, batch: Batch, epoch: int) -> tuple[Batch, Batch | None]:
        if self.kind == "clean":
            return batch, None
        mods = batch.modalities()
        if self.kind == "spectrum":
            out = self.sampler.apply(mods, batch.keys, stream=epoch)
            data, rho = out.data, torch.stack([out.rho[m].float() for m in MODALITIES], dim=1)
        else:
            data = self.corrupter.prepare(mods, batch.keys, stream=epoch).at(self.point)
            rho = torch.tensor([[self.point.of(m) for m in MODALITIES]], device=batch.labels.device)
            rho = rho.expand(len(batch), 3)
        corrupted = replace(batch.with_modalities(data), reliability=rho)
        return corrupted, batch


class _Validator:
    """The validation score of an epoch (lower is better): the mean MAE over the regime's validation
    grid (clean included), or the MAE at a specialist's condition; 1 - weighted F1 instead of the
    MAE on a classification dataset."""

    def __init__(self, dataset: MSADataset, run: TrainingRun, ctx: CorruptionContext, device: torch.device):
        self.valid = split_to_batch(dataset["valid"])
        self.run, self.ctx = run, ctx
        grid = validation_grid(run.regime) or GridSpec(families=[], levels=[1.0], sweeps=[])
        self.grid = GridRun(grid, run.valid_seed, dataset.metric_family, split="valid", batch_size=512, device=device,
                            num_classes=dataset.num_classes)

    def __call__(self, model: torch.nn.Module) -> tuple[float, dict[str, float]]:
        cond = self.run.condition
        if cond is not None:
            prepared = self.ctx.prepared(cond.family, self.run.valid_seed, self.valid, "valid")
            pred, _ = predict(model, self.valid.with_modalities(prepared.at(cond.point())), 512, self.grid.device)
            m = self.grid.metrics(pred, self.valid.labels.numpy())
            if self.grid.num_classes:
                return _validation_error(m), {"valid_error": _validation_error(m), "valid_accuracy": m["accuracy"]}
            return m["mae"], {"valid_mae": m["mae"], "valid_corr": m["corr"]}
        res = evaluate_grid(model, self.valid, self.ctx, self.grid)
        clean = next(r for r in res if r.grid.point.is_clean)
        if self.grid.num_classes:
            return _classification_summary(res, clean.metrics)
        score = float(np.mean([r.metrics["mae"] for r in res]))
        return score, {"valid_mae": score, "valid_clean_mae": clean.metrics["mae"],
                       "valid_clean_corr": clean.metrics["corr"]}


def optimizer(model: torch.nn.Module, training: TrainingSpec) -> torch.optim.Optimizer:
    """The trainer's optimiser: AdamW over the model's parameter groups (:meth:`MSAModel.param_groups`)."""
    return torch.optim.AdamW(model.param_groups(training.lr, training.weight_decay), foreach=True)


def train_epoch(model: torch.nn.Module, train: Batch, corrupt: RegimeCorruption, opt: torch.optim.Optimizer,
                run: TrainingRun, epoch: int, device: torch.device,
                on_step: Callable[[], None] | None = None) -> float:
    """One pass over the training split; the mean task loss. A non-finite loss stops training.

    Mini-batches come from :func:`~robustmsa.data.batch.batches` (shuffle keyed by ``seed * 100003 +
    epoch``; one gather per batch, so no second copy of the whole split is held: gathering the split
    once per epoch measured no faster, bench/bench_flops.py). Nothing in the loop waits for the
    device: the task losses stay tensors until the end of the epoch, where a non-finite one raises
    (naming its step); the weights of such an epoch are never used (the trial fails).
    ``on_step`` runs after every optimiser step (a per-step lr schedule, weight averaging).
    """
    training = run.training
    loss_fn = _task_loss(training.loss, getattr(model, "num_classes", 0))
    model.train()
    tasks: list[torch.Tensor] = []
    sizes: list[int] = []
    finite = torch.ones((), dtype=torch.bool, device=device)
    for b in batches(train, training.batch_size, shuffle_seed=run.seed * 100003 + epoch):
        xb, clean = corrupt(b, epoch)
        xb = xb.to(device)
        out = model(xb, clean=None if clean is None else clean.to(device))
        task = loss_fn(out["pred"], xb.labels)
        loss = task + sum(out.get("losses", {}).values(), torch.zeros((), device=device))
        finite = finite & torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if training.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip, foreach=True)
        opt.step()
        if on_step is not None:
            on_step()
        tasks.append(task.detach())
        sizes.append(len(xb))
    return _epoch_loss(tasks, sizes, bool(finite), epoch)


def _epoch_loss(tasks: list[torch.Tensor], sizes: list[int], finite: bool, epoch: int) -> float:
    """The sample-weighted mean task loss of an epoch (summed in float64, step by step); an error
    naming the first step whose loss was not finite."""
    values = torch.stack(tasks).tolist() if tasks else []
    if not finite:
        step = next((i for i, v in enumerate(values) if not np.isfinite(v)), None)
        where = f"step {step}, task {values[step]:.4g}" if step is not None else "an auxiliary loss"
        raise NonFiniteError(
            f"non-finite training loss at epoch {epoch} ({where}); inputs or learning rate are the usual causes",
            hint="check the data for NaN/inf and lower training.lr")
    total = 0.0
    for v, n in zip(values, sizes, strict=True):
        total += v * n
    return total / max(sum(sizes), 1)


@dataclass(frozen=True)
class TrainerOptions:
    """Optional training techniques; every one is off by default, and then the trainer runs exactly
    as without options (same draws, same weights). ``average``, ``ema_decay``, ``swa_start`` and
    ``schedule`` are also the suite's ``training:`` keys (:meth:`of`); ``input_prox`` is offered to
    callers of :func:`train_model` only (it trained unstably, ``bench/gap_experiments.py``).

    average:     "none"; "ema": an exponential moving average of the parameters, updated after every
                 optimiser step with decay ``min(ema_decay, n / (1 + n))`` (n: steps before this one:
                 the plain mean of the steps so far until it would forget more slowly than the EMA);
                 "swa": the equal-weight average of the parameters at the end of every epoch from
                 ``swa_start`` on. The averaged weights are what is validated (each epoch) and kept
                 as the best state; the optimiser keeps training the raw weights.
    ema_decay:   decay of "ema" (0.99: about 100 steps, 5 epochs of the main suite's 20 steps).
    swa_start:   first epoch (0-based) that enters the "swa" average (before it the raw weights
                 are validated).
    input_prox:  after every optimiser step, the proximal step of a group lasso on the input
                 projections (:func:`~robustmsa.models.layers.shrink_input_groups`) with threshold
                 ``input_prox`` times the current lr: an input dimension whose projection weights
                 stay small is set exactly to zero (feature selection; 0.0: off). Adam moves every
                 weight by about lr per step, so a penalty in the loss leaves uninformative weights
                 at that scale instead of zero.
    schedule:    "plateau" (the default: halve the lr when the validation score stalls for
                 ``max(1, patience // 2)`` epochs) or "cosine" (the lr follows a cosine from the
                 training lr to 0 over ``training.epochs`` epochs, stepped per optimiser step).
    """

    average: Literal["none", "ema", "swa"] = "none"
    ema_decay: float = 0.99
    swa_start: int = 0
    input_prox: float = 0.0
    schedule: Literal["plateau", "cosine"] = "plateau"

    @classmethod
    def of(cls, training: TrainingSpec) -> TrainerOptions:
        """The options a suite's ``training:`` block asks for."""
        return cls(average=training.average, ema_decay=training.ema_decay, swa_start=training.swa_start,
                   schedule=training.schedule)

    def __post_init__(self) -> None:
        if self.average not in ("none", "ema", "swa"):
            raise ValueError(f"TrainerOptions.average must be one of none, ema, swa; got {self.average!r}")
        if self.schedule not in ("plateau", "cosine"):
            raise ValueError(f"TrainerOptions.schedule must be one of plateau, cosine; got {self.schedule!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainerOptions.ema_decay must be in (0, 1); got {self.ema_decay!r}")
        if self.swa_start < 0:
            raise ValueError(f"TrainerOptions.swa_start must be >= 0; got {self.swa_start!r}")
        if self.input_prox < 0:
            raise ValueError(f"TrainerOptions.input_prox must be >= 0; got {self.input_prox!r}")


class _Averager:
    """The averaged copy of a model's parameters as :class:`TrainerOptions` asks (None: no averaging).

    ``step()`` after every optimiser step, ``epoch_end(epoch)`` after every epoch (it returns
    ``scored()``); ``scored()`` is the module to validate and keep: the averaged copy once it holds
    an average, else the model.
    Buffers (input statistics) are copied from the model, never averaged.
    """

    def __init__(self, model: torch.nn.Module, options: TrainerOptions):
        self.model, self.options = model, options
        self.copy = copy.deepcopy(model)
        self.copy.requires_grad_(False)
        self.count = 0
        self.averaged = list(self.copy.parameters())
        self.current = [p.detach() for p in model.parameters()]  # a deep copy: the same parameters, in order

    @torch.no_grad()
    def step(self) -> None:
        if self.options.average != "ema":
            return
        decay = min(self.options.ema_decay, self.count / (1 + self.count))
        torch._foreach_lerp_(self.averaged, self.current, 1.0 - decay)  # one batched update, as foreach AdamW
        self.count += 1

    @torch.no_grad()
    def epoch_end(self, epoch: int) -> torch.nn.Module:
        """Update the "swa" average with the end of ``epoch``; the module to validate (:meth:`scored`)."""
        if self.options.average == "swa" and epoch >= self.options.swa_start:
            self.count += 1
            torch._foreach_lerp_(self.averaged, self.current, 1.0 / self.count)
        for a, b in zip(self.copy.buffers(), self.model.buffers(), strict=True):
            a.copy_(b)
        return self.scored()

    def scored(self) -> torch.nn.Module:
        return self.copy if self.count else self.model


def _schedule(opt: torch.optim.Optimizer, training: TrainingSpec, options: TrainerOptions,
              steps_per_epoch: int) -> tuple[Any, Any]:
    """(per-step scheduler or None, per-epoch scheduler or None) of ``options.schedule``."""
    if options.schedule == "cosine":
        total = max(1, training.epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + np.cos(np.pi * min(i, total) / total))), None
    return None, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, training.patience // 2))


def train_model(
    model: torch.nn.Module,
    dataset: MSADataset,
    run: TrainingRun,
    *,
    device: torch.device,
    ctx: CorruptionContext | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    options: TrainerOptions | None = None,
) -> TrainResult:
    """Train ``model`` as ``run`` says; select the epoch on the validation split; keep the best state.

    ``ctx`` (corrupters fitted on the training split) may be shared with the evaluation; ``options``
    switches on optional techniques (:class:`TrainerOptions`; None: none).
    """
    t0 = time.perf_counter()
    options = options or TrainerOptions.of(run.training)
    train = split_to_batch(dataset["train"])
    ctx = ctx or CorruptionContext(train.modalities())
    corrupt = RegimeCorruption(run, ctx)
    validate = _Validator(dataset, run, ctx, device)
    model.fit_inputs(train)
    model.fit_outputs(dataset.label_range)
    model.to(device)
    training = run.training
    opt = optimizer(model, training)
    step_sched, epoch_sched = _schedule(opt, training, options, -(-len(train) // training.batch_size))
    averager = _Averager(model, options) if options.average != "none" else None
    on_step = _step_hook(step_sched, averager, _prox(model, opt, options))
    best: TrainResult | None = None
    history: list[dict[str, float]] = []
    bad_epochs = 0
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(run.seed)
        for epoch in range(training.epochs):
            te = time.perf_counter()
            train_loss = train_epoch(model, train, corrupt, opt, run, epoch, device, on_step)
            scored = model if averager is None else averager.epoch_end(epoch)
            score, vmetrics = validate(scored)
            if epoch_sched is not None:
                epoch_sched.step(score)
            row = {"epoch": epoch, "train_loss": train_loss, **vmetrics,
                   "lr": opt.param_groups[0]["lr"], "epoch_seconds": time.perf_counter() - te}
            history.append(row)
            if on_epoch:
                on_epoch(row)
            if best is None or score < best.best_score - 1e-6:
                best = TrainResult(copy.deepcopy({k: v.detach().cpu() for k, v in scored.state_dict().items()}),
                                   epoch, score)
                bad_epochs = 0
            else:
                bad_epochs += 1
                if bad_epochs >= training.patience:
                    break
    assert best is not None
    model.load_state_dict(best.best_state)
    best.history, best.epochs_run, best.train_seconds = history, len(history), time.perf_counter() - t0
    return best


def _prox(model: torch.nn.Module, opt: torch.optim.Optimizer, options: TrainerOptions) -> Callable[[], None] | None:
    """The proximal step of ``options.input_prox`` (None: off)."""
    if options.input_prox <= 0:
        return None
    from ..models.layers import shrink_input_groups

    return lambda: shrink_input_groups(model, options.input_prox * opt.param_groups[0]["lr"])


def _step_hook(step_sched: Any, averager: _Averager | None, prox: Callable[[], None] | None = None
               ) -> Callable[[], None] | None:
    """What runs after every optimiser step (the proximal step, a per-step lr schedule, the EMA
    update, in that order); None: nothing."""
    if step_sched is None and averager is None and prox is None:
        return None

    def hook() -> None:
        if prox is not None:
            prox()
        if step_sched is not None:
            step_sched.step()
        if averager is not None:
            averager.step()

    return hook
