"""EMOE: modality-specific enhanced dynamic emotion experts (Fang et al., CVPR 2025), for regression.

Forward pass (from the authors' code as summarised in MODELS.md; every open point is a config field):

1. encoders (shared layers) -> pooled ``h_m`` [B, d] per modality m in (text, audio, vision);
2. unimodal experts: ``u_m = h_m + MLP_m(h_m)``, ``pred_m = Linear(u_m)``;
3. router on ``r`` = the concatenated masked means of the raw input features (``router_input="raw"``,
   like the authors' router on the raw inputs; with a Hugging Face text encoder the text part is
   the pooled encoded text) or of the encoded ones (``"encoded"``):
   ``Linear(D -> D/8) -> L2 norm -> ReLU -> Linear(D/8 -> 3)``, weights
   ``w = softmax(logits / temperature)`` over the *present* modalities (an absent modality gets
   weight 0; a sample with none present gets w = 0);
4. fusion ``f = sum_m w_m h_m`` (``fusion="sum"``) or ``3 [w_t h_t; w_a h_a; w_v h_v]`` (``"concat"``);
   ``c = f + MLP_c(f)``; ``pred = Linear(c)``.

Loss of the paper: ``L1(pred) + mean_m L1(pred_m) + 0.1 (L_ent + 0.1 L_sim) + 0.1 L_dist`` with

- ``L_ent = mean_b 3 sum_m w_m log w_m`` (negative entropy: pushes the weights towards uniform);
- ``L_sim = MSE(w, w*)``, target ``w*_m = (1 / (e_m + 0.1)) / sum_n 1 / (e_n + 0.1)`` over present
  modalities, ``e_m = (pred_m - y)^2`` the unimodal squared error, detached;
- ``L_dist = mean_b mean_j (softmax(c)_j - softmax(sum_m w_m u_m)_j)^2`` with the weighted
  unimodal representation as a detached teacher (requires ``fusion="sum"``; zero for "concat").

The trainer adds its own task loss on ``pred`` (``training.loss``; L1 by default), which is the
paper's ``L1(pred)``; ``losses`` holds only the auxiliary terms, already weighted:
``unimodal = unimodal_weight * mean L1(pred_m)`` (mean over present (sample, modality) pairs),
``router = router_weight * (L_ent + target_weight * L_sim)``, ``distill = distill_weight * L_dist``.
With the defaults and ``training.loss: l1`` the total equals the paper's loss. Labels are used only
for L1(pred_m) and w*, in training mode; in eval mode ``losses`` is empty.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from corruptions.keys import MODALITIES

from ..data.batch import Batch
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import MLPHead, masked_mean, masked_softmax, modality_absent

__all__ = ["EMOEConfig", "EMOE", "EMOERouter", "target_weights", "entropy_balance", "distill_loss"]


@dataclass(frozen=True)
class EMOEConfig(BaseConfig):
    """EMOE settings; shared encoder settings in ``BaseConfig`` (d 256 and 8 heads: the authors' values).

    d_model, num_heads: 256 and 8 (the paper's width and heads).
    router_input:    "raw" (masked means of the raw input features, like the authors' router on the
                     raw inputs) or "encoded" (pooled encoder outputs).
    router_ratio:    hidden width of the router = max(1, D // router_ratio) (8).
    temperature:     softmax temperature of the router (0.1).
    fusion:          "sum" (weighted sum of the modality features) or "concat" (weighted concatenation
                     times 3); the authors' code has both.
    head_hidden:     hidden width of the residual MLPs of the unimodal and fused branches (256 = d).
    unimodal_weight: weight of the mean unimodal L1 (1).
    router_weight:   weight of the router terms ``L_ent + target_weight L_sim`` (0.1).
    target_weight:   weight of L_sim inside the router terms (0.1).
    distill_weight:  weight of the distillation loss (0.1).
    error_offset:    the 0.1 in ``1 / (e_m + 0.1)`` of the target weights.
    """

    d_model: int = 256
    num_heads: int = 8
    router_input: Literal["raw", "encoded"] = "raw"
    router_ratio: int = 8
    temperature: float = 0.1
    fusion: Literal["sum", "concat"] = "sum"
    head_hidden: int = 256
    unimodal_weight: float = 1.0
    router_weight: float = 0.1
    target_weight: float = 0.1
    distill_weight: float = 0.1
    error_offset: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.router_ratio >= 1, "router_ratio", "must be >= 1")
        check_config(self.temperature > 0, "temperature", "must be > 0")
        check_config(self.head_hidden >= 1, "head_hidden", "must be >= 1")
        for key in ("unimodal_weight", "router_weight", "target_weight", "distill_weight"):
            check_config(getattr(self, key) >= 0, key, "must be >= 0")
        check_config(self.error_offset > 0, "error_offset", "must be > 0")


class EMOERouter(nn.Module):
    """``Linear(D -> H) -> L2 norm -> ReLU -> Linear(H -> 3)``; ``forward(x, present) -> w`` [B, 3].

    ``w = softmax(logits / temperature)`` over the present modalities (0 for absent ones).
    """

    def __init__(self, in_dim: int, hidden: int, temperature: float):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, len(MODALITIES))
        self.temperature = temperature

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(F.normalize(self.fc1(x), dim=-1)))

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return masked_softmax(self.logits(x) / self.temperature, present)


def target_weights(errors: torch.Tensor, present: torch.Tensor, offset: float = 0.1) -> torch.Tensor:
    """``w*_m proportional to 1 / (e_m + offset)`` over present modalities; rows sum to 1 (0 if none)."""
    inv = present.to(errors.dtype) / (errors + offset)
    return inv / inv.sum(-1, keepdim=True).clamp(min=1e-12)


def entropy_balance(w: torch.Tensor) -> torch.Tensor:
    """``mean_b N sum_m w_m log max(w_m, 1e-9)`` (the authors' negative entropy, N = number of modalities).

    The clamp keeps the gradient finite where a weight is exactly 0 (absent modality).
    """
    return (w.shape[-1] * (w * torch.log(w.clamp(min=1e-9))).sum(-1)).mean()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``mean (softmax(student) - softmax(teacher))^2`` over features and samples; teacher detached."""
    return (student.softmax(-1) - teacher.detach().softmax(-1)).pow(2).mean()


class _ResidualHead(nn.Module):
    """``u = x + MLP(x)``, ``y = Linear(u)``; returns (y [B], u)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.mlp = MLPHead(dim, hidden, dim, dropout)
        self.out = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = x + self.mlp(x)
        return self.out(u).squeeze(-1), u


@register_model("emoe", EMOEConfig)
class EMOE(MSAModel):
    """EMOE; see the module docstring.

    losses (training mode only): ``unimodal``, ``router``, ``distill`` (weighted; weight 0 drops one).
    extras: ``modality_weights`` [B, 3] = w, ``unimodal`` [B, 3] = pred_m, ``present`` [B, 3].
    """

    extras = (Extra("modality_weights"), Extra("unimodal"), Extra("present"))

    def __init__(self, config: EMOEConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.unimodal = nn.ModuleDict({m: _ResidualHead(d, c.head_hidden, c.dropout) for m in MODALITIES})
        if c.router_input == "raw":
            router_in = (dims["text"] if c.text_encoder == "features" else d) + dims["audio"] + dims["vision"]
        else:
            router_in = len(MODALITIES) * d
        self.router = EMOERouter(router_in, max(1, router_in // c.router_ratio), c.temperature)
        fused = d if c.fusion == "sum" else len(MODALITIES) * d
        self.fused = _ResidualHead(fused, c.head_hidden if c.fusion == "sum" else 3 * c.head_hidden, c.dropout)

    def _router_input(self, batch: Batch, pooled: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if self.config.router_input == "encoded":
            return pooled.flatten(1)
        parts = []
        for i, m in enumerate(MODALITIES):
            if m == "text" and self.config.text_encoder != "features":
                parts.append(pooled[:, i])  # token ids have no raw features: the encoded text instead
                continue
            mask = getattr(batch, f"{m}_mask") & present[:, i : i + 1]
            parts.append(masked_mean(getattr(batch, m), mask))
        return torch.cat(parts, dim=1)


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        enc = self.encoders(batch)
        pooled = torch.stack([enc[m].pooled for m in MODALITIES], dim=1)  # [B, 3, d]
        present = ~modality_absent(batch)
        heads = [self.unimodal[m](pooled[:, i]) for i, m in enumerate(MODALITIES)]
        uni_pred = torch.stack([p for p, _ in heads], dim=1)  # [B, 3]
        uni_rep = torch.stack([u for _, u in heads], dim=1)  # [B, 3, d]
        w = self.router(self._router_input(batch, pooled, present), present)
        weighted = w.unsqueeze(-1) * pooled
        fused_in = weighted.sum(1) if c.fusion == "sum" else len(MODALITIES) * weighted.flatten(1)
        pred, fused_rep = self.fused(fused_in)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            labels = batch.labels.to(pred.device).unsqueeze(1)
            mask = present.to(pred.dtype)
            err = uni_pred - labels
            if c.unimodal_weight > 0:
                losses["unimodal"] = c.unimodal_weight * (err.abs() * mask).sum() / mask.sum().clamp(min=1.0)
            if c.router_weight > 0:
                target = target_weights(err.detach().pow(2), present, c.error_offset)
                sim = (w - target).pow(2).mean()
                losses["router"] = c.router_weight * (entropy_balance(w) + c.target_weight * sim)
            if c.distill_weight > 0 and c.fusion == "sum":
                teacher = (w.unsqueeze(-1) * uni_rep).sum(1)
                losses["distill"] = c.distill_weight * distill_loss(fused_rep, teacher)
        extras = {"modality_weights": w.detach(), "unimodal": uni_pred.detach(), "present": present}
        return {"pred": pred, "losses": losses, "extras": extras}
