"""Self-MM: self-supervised multi-task learning (Yu et al., AAAI 2021).

Forward pass:

1. encoders (shared layers) -> pooled ``h_m`` [B, d] per modality (zeros for an absent modality);
2. a multimodal head on ``[h_t; h_a; h_v]`` and one unimodal head per modality on ``h_m``, each
   ``Dropout - Linear - ReLU`` (its output ``f`` is the task's representation) ``- Linear - ReLU -
   Linear(-> 1)``; ``pred`` is the multimodal head's output.

Unimodal label generation (ULGM), training mode only, no gradient. Per training sample (identified
by ``batch.keys``) the model keeps, in non-persistent buffers: the multimodal label ``y_m``, the
generated unimodal labels ``y_s`` (initialised to ``y_m``), the latest representation ``f`` of each
task and how many training passes have seen the sample. At the n-th pass over a sample (n > 1):

- class centres ``C_p``, ``C_n`` of each task: the mean stored representation of the training
  samples whose (task's) label is positive, resp. negative (the centres of the representations
  stored so far, before this batch's);
- relative distance ``delta = (||f - C_n|| - ||f - C_p||) / (||f - C_p|| + eps)`` for the multimodal
  (``delta_m``) and each unimodal representation (``delta_s``);
- rule target ``y_s* = 0.5 y_m delta_s / (delta_m + eps) + 0.5 (y_m + delta_s - delta_m)``, clipped to
  [-H, H] (the mean of the paper's ratio and difference rules);
- momentum ``y_s <- (n - 1) / (n + 1) y_s + 2 / (n + 1) y_s*``.

Then the sample's representations are stored. Losses (training mode only): per modality s,
``unimodal_s = mean_i tanh(|y_s - y_m|) |yhat_s - y_s|`` over the samples where s is present, with
the labels as they were before this batch's update; the trainer adds the multimodal task loss.
In eval mode nothing is updated and no loss is returned. The label state is training state: it is
not part of the state dict (a checkpoint predicts without it).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from corruptions.keys import MODALITIES

from ..data.batch import Batch
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import modality_absent

__all__ = ["SelfMMConfig", "SelfMM", "TaskHead", "UnimodalLabels", "relative_distance", "rule_labels"]

TASKS = ("fusion", *MODALITIES)
EPS = 1e-8


@dataclass(frozen=True)
class SelfMMConfig(BaseConfig):
    """Self-MM settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.

    fusion_hidden, text_hidden, audio_hidden, vision_hidden: widths of the multimodal and unimodal
                   heads, whose first hidden layer is the representation ULGM reads (128 / 32 / 16 /
                   32: MMSA's post_fusion/text/audio/video_dim on MOSI).
    unimodal_weight: weight of each unimodal loss against the multimodal task loss (1.0, the paper).
    label_bound:   H, the generated labels are clipped to [-H, H] (0: the largest |label| of the
                   training labels seen, i.e. 3 on MOSI/MOSEI and 1 on SIMS, MMSA's values).
    exclude_zero:  a zero label belongs to neither class centre (True, MMSA's ``excludeZero``);
                   False: zero counts as positive.
    label_source:  the representations ULGM reads in corrupted training (the trainer passes the clean
                   batch): "clean" (the default) computes them, without gradient, from the clean
                   batch, so the generated labels and centres are statistics of the clean training
                   data and a unimodal head on a corrupted input learns the clean modality's label;
                   "input" reads the corrupted input's representations (one forward pass fewer; the
                   labels then drift with the corruption draws). In clean training both are the same.

    Against the paper and MMSA 2.2.1: the encoders are the shared encoders of this harness (pooled to
    ``d_model`` for every modality) instead of BERT's [CLS] vector for text and one-layer LSTMs
    (16 / 32 wide) for audio and vision (``text_encoder: hf`` gives a pretrained text encoder, not the
    default); the heads' dropout is ``dropout`` (MMSA: 0.1 on the text and audio heads on MOSI).
    The pass count replaces the epoch number of the momentum (identical when every sample is seen
    once per epoch, as the trainer does). Missing modalities (not in the paper): an absent modality's
    unimodal loss term, label update and stored representation are skipped for that sample. The task
    loss is the suite's (``training.loss``: L1, as the paper); MMSA's per-encoder learning rates
    (audio and vision 5e-3, the rest 1e-3) and BERT's 5e-5 are one training lr plus ``text_lr`` here.
    """

    fusion_hidden: int = 128
    text_hidden: int = 32
    audio_hidden: int = 16
    vision_hidden: int = 32
    unimodal_weight: float = 1.0
    label_bound: float = 0.0
    exclude_zero: bool = True
    label_source: Literal["clean", "input"] = "clean"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("fusion_hidden", "text_hidden", "audio_hidden", "vision_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        check_config(self.unimodal_weight >= 0, "unimodal_weight", "must be >= 0")
        check_config(self.label_bound >= 0, "label_bound", "must be >= 0 (0: from the training labels)")

    def hidden(self, task: str) -> int:
        """The head width of ``task`` (fusion, text, audio or vision)."""
        return getattr(self, f"{task}_hidden")


class TaskHead(nn.Module):
    """``Dropout - Linear(in, h) - ReLU`` (the representation ``f``) ``- Linear(h, h) - ReLU - Linear(h, 1)``."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.first = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU())
        self.rest = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction [B], representation [B, hidden])."""
        f = self.first(x)
        return self.rest(f).squeeze(-1), f


def relative_distance(f: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``(||f - C_n|| - ||f - C_p||) / (||f - C_p|| + eps)`` per row of ``f`` [B, h]."""
    d_p = (f - pos).norm(dim=-1)
    d_n = (f - neg).norm(dim=-1)
    return (d_n - d_p) / (d_p + EPS)


def rule_labels(y_m: torch.Tensor, delta_s: torch.Tensor, delta_m: torch.Tensor, bound: float) -> torch.Tensor:
    """The rule's unimodal label: the mean of ``y_m delta_s / delta_m`` (ratio rule) and
    ``y_m + delta_s - delta_m`` (difference rule), clipped to [-bound, bound]."""
    alpha = delta_s / (delta_m + EPS)
    return (0.5 * alpha * y_m + 0.5 * (y_m + delta_s - delta_m)).clamp(-bound, bound)


class UnimodalLabels(nn.Module):
    """ULGM's per-sample state (non-persistent buffers, rows sorted by sample key) and its update.

    ``keys`` [N] int64; ``labels`` [N, 4] (y_m, then y_t, y_a, y_v); ``passes`` [N] training passes
    seen; ``stored`` bool [N, 4] whether a representation of each task is stored; ``feat_<task>``
    [N, h_task] the latest representations.
    """

    def __init__(self, widths: Mapping[str, int], exclude_zero: bool = True, bound: float = 0.0):
        super().__init__()
        self.exclude_zero, self.bound = exclude_zero, bound
        self.register_buffer("keys", torch.zeros(0, dtype=torch.int64), persistent=False)
        self.register_buffer("labels", torch.zeros(0, len(TASKS)), persistent=False)
        self.register_buffer("passes", torch.zeros(0, dtype=torch.int64), persistent=False)
        self.register_buffer("stored", torch.zeros(0, len(TASKS), dtype=torch.bool), persistent=False)
        for task in TASKS:
            self.register_buffer(f"feat_{task}", torch.zeros(0, widths[task]), persistent=False)

    def rows(self, keys: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Row index [B] of each key; unknown keys get new rows (labels initialised to ``y_m``)."""
        keys = keys.to(self.keys.device)
        known = torch.isin(keys, self.keys)
        if not bool(known.all()):
            new_keys, first = _unique_first(keys[~known])
            new_labels = labels.detach().to(self.labels)[~known][first]
            self._append(new_keys, new_labels)
        return torch.searchsorted(self.keys, keys)

    def _append(self, keys: torch.Tensor, y_m: torch.Tensor) -> None:
        n = len(keys)
        order = torch.argsort(torch.cat([self.keys, keys]))
        self.keys = torch.cat([self.keys, keys])[order]
        self.labels = torch.cat([self.labels, y_m.unsqueeze(1).expand(n, len(TASKS))])[order]
        self.passes = torch.cat([self.passes, self.passes.new_zeros(n)])[order]
        self.stored = torch.cat([self.stored, self.stored.new_zeros(n, len(TASKS))])[order]
        for task in TASKS:
            table = getattr(self, f"feat_{task}")
            setattr(self, f"feat_{task}", torch.cat([table, table.new_zeros(n, table.shape[1])])[order])

    def label_bound(self) -> float:
        """H: the configured bound, or the largest |y_m| of the samples seen."""
        return self.bound if self.bound > 0 else float(self.labels[:, 0].abs().max().clamp(min=EPS))

    def centres(self, t: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(positive, negative) centre of task ``t``'s stored representations; None if a class is empty."""
        y, stored = self.labels[:, t], self.stored[:, t]
        pos = stored & ((y > 0) if self.exclude_zero else (y >= 0))
        neg = stored & (y < 0)
        if not (bool(pos.any()) and bool(neg.any())):
            return None
        feat = getattr(self, f"feat_{TASKS[t]}")
        return feat[pos].mean(0), feat[neg].mean(0)

    @torch.no_grad()
    def update(self, rows: torch.Tensor, feats: list[torch.Tensor], present: torch.Tensor) -> None:
        """One training pass over the samples at ``rows``: generated labels of the samples seen before
        move toward the rule's target with momentum; then their representations (``feats``, one
        [B, h] per task in :data:`TASKS` order) are stored. ``present`` [B, 3]: unimodal tasks done
        only where the modality is present."""
        n = (self.passes[rows] + 1).to(self.labels.dtype)
        fusion = self.centres(0)
        again = n > 1
        if fusion is not None and bool(again.any()):
            delta_m = relative_distance(feats[0], *fusion)
            y_m = self.labels[rows, 0]
            for t in range(1, len(TASKS)):
                centres = self.centres(t)
                ok = again & present[:, t - 1]
                if centres is None or not bool(ok.any()):
                    continue
                target = rule_labels(y_m, relative_distance(feats[t], *centres), delta_m, self.label_bound())
                moved = (n - 1) / (n + 1) * self.labels[rows, t] + 2 / (n + 1) * target
                self.labels[rows[ok], t] = moved[ok]
        done = torch.cat([present.new_ones(len(rows), 1), present], dim=1)
        for t, task in enumerate(TASKS):
            table = getattr(self, f"feat_{task}")
            table[rows[done[:, t]]] = feats[t].detach().to(table)[done[:, t]]
        self.stored[rows] |= done
        self.passes[rows] += 1


def _unique_first(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the distinct keys, the index of the first occurrence of each in ``keys``)."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(uniq),), len(keys), dtype=torch.int64, device=keys.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(keys), device=keys.device), reduce="amin")
    return uniq, first


@register_model("self_mm", SelfMMConfig)
class SelfMM(MSAModel):
    """Self-MM; see the module docstring. losses (training mode only): ``unimodal_text``,
    ``unimodal_audio``, ``unimodal_vision``. extras: ``unimodal`` [B, 3] the unimodal heads'
    predictions (text, audio, vision)."""

    extras = (Extra("unimodal"),)

    def __init__(self, config: SelfMMConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.heads = nn.ModuleDict({t: TaskHead(len(MODALITIES) * d if t == "fusion" else d, c.hidden(t), c.dropout)
                                    for t in TASKS})
        self.ulgm = UnimodalLabels({t: c.hidden(t) for t in TASKS}, c.exclude_zero, c.label_bound)

    def fit_inputs(self, train: Batch) -> None:
        """Input standardisation (base class), then one ULGM row per training sample (labels = y_m)."""
        super().fit_inputs(train)
        self.ulgm.rows(train.keys, train.labels)

    def tasks(self, batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(predictions [B, 4] in :data:`TASKS` order, representations: one [B, h] per task)."""
        enc = self.encoders(batch)
        inputs = {m: enc[m].pooled for m in MODALITIES}
        inputs["fusion"] = torch.cat([inputs[m] for m in MODALITIES], dim=-1)
        outs = [self.heads[t](inputs[t]) for t in TASKS]
        return torch.stack([o[0] for o in outs], dim=1), [o[1] for o in outs]

    def _unimodal_losses(self, preds: torch.Tensor, rows: torch.Tensor, present: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        labels = self.ulgm.labels[rows].to(preds.dtype)
        weight = torch.tanh((labels[:, 1:] - labels[:, :1]).abs()) * present.to(preds.dtype)
        per = weight * (preds[:, 1:] - labels[:, 1:]).abs()
        loss = per.sum(0) / present.to(preds.dtype).sum(0).clamp(min=1.0)
        return {f"unimodal_{m}": self.config.unimodal_weight * loss[i] for i, m in enumerate(MODALITIES)}

    def _generate(self, rows: torch.Tensor, feats: list[torch.Tensor], present: torch.Tensor,
                  clean: Batch | None) -> None:
        if clean is not None and self.config.label_source == "clean":
            if len(clean) != len(rows):
                raise ValueError(f"clean batch has {len(clean)} samples, the input batch {len(rows)}")
            with torch.no_grad():
                _, feats = self.tasks(clean)
            present = ~modality_absent(clean)
        self.ulgm.update(rows, [f.detach() for f in feats], present)


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        preds, feats = self.tasks(batch)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            present = ~modality_absent(batch)
            rows = self.ulgm.rows(batch.keys, batch.labels)
            losses = self._unimodal_losses(preds, rows, present)
            self._generate(rows, feats, present, clean)
        return {"pred": preds[:, 0], "losses": losses, "extras": {"unimodal": preds[:, 1:].detach()}}

