"""QA-MoE: quality-aware mixture of experts (seed 004), the project's main model.

Idea (firm in the paper): modality reliability is a self-supervised *aleatoric uncertainty*
estimate, and that estimate steers expert routing so that unreliable signals are suppressed; one
checkpoint serves every degradation condition. The details below follow MODELS.md; every choice
the paper leaves open is a config field of :class:`QAMoEConfig`.

Forward pass, per sample:

1. encoders (shared layers) -> ``h_m`` [B, d] per modality m in (text, audio, vision);
2. uncertainty head per modality (dual branch): value ``mu_m = h_m + MLP(h_m)`` [B, d] and
   ``s_m = log sigma_m^2`` [B] squashed smoothly into [log_var_min, log_var_max];
   quality ``r_m = 1 / (1 + sigma_m^2)``; ``r_m = 0`` exactly for an absent modality;
3. prior fallback: ``fused_m = r_m h_m + (1 - r_m) prior_m`` (learnable ``prior_m`` [d]);
4. router logits = semantic gate ``Linear(3d -> E)`` on ``concat_m fused_m`` + quality gate
   ``Linear(3 -> E)`` on ``r``; top-k routing with renormalised weights;
5. expert input ``x = LayerNorm(Linear(3d -> d)(concat_m fused_m))``; ``y = sum_e w_e GLU_e(x)``;
   ``pred = MLPHead(y)``.

Self-supervised loss (no quality labels): ``mean_d (mu_m - t_m)^2 / (2 sigma_m^2) + 0.5 s_m``
averaged over present (sample, modality) pairs, with target ``t_m`` = the *clean* representation
``h_m(clean)`` computed without gradient when the trainer passes ``clean``, else ``h_m`` of the
input itself (no gradient): on clean inputs the value branch reproduces ``h_m`` and sigma shrinks;
on corrupted inputs the clean representation cannot be recovered, so sigma grows.
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
from .layers import (
    ExpertMixture,
    GatedRouter,
    MLPHead,
    Routing,
    dense_routing,
    input_group_norm,
    load_balance_loss,
    modality_absent,
    random_routing,
    topk_routing,
    unimodal_loss,
)

__all__ = ["QAMoEConfig", "QAMoE", "UncertaintyHead", "heteroscedastic_loss"]


@dataclass(frozen=True)
class QAMoEConfig(BaseConfig):
    """QA-MoE settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.
    Ablations: ``quality_gate``, ``prior_fallback``, ``uncertainty_loss``, ``routing``.

    num_experts:        E GLU experts (8, as reported).
    top_k:              experts per sample for "topk" routing (3, as reported).
    expert_hidden:      hidden width of each GLU expert (128 = 2 d_model).
    head_hidden:        hidden width of the regression head (64).
    uncertainty_hidden: hidden width of both branches of each uncertainty head (64).
    routing:            "topk" (paper), "dense" (all experts, softmax weights; the top-k sparsity
                        ablation) or "random" (k uniformly random experts per sample with equal
                        weights, drawn from a generator seeded by the sample key: hash routing).
    random_seed:        salt of the "random" routing draws (0).
    quality_gate:       add the quality gate ``Linear(3 -> E)`` on r to the router logits (True).
    prior_fallback:     ``fused_m = r_m h_m + (1 - r_m) prior_m`` (True); False: ``fused_m = h_m``.
    uncertainty_loss:   train the uncertainty heads with the heteroscedastic loss (True). When
                        False r is still computed; with ``detach_quality`` it then stays untrained.
    zero_quality_if_missing: r_m = 0 exactly when modality m is absent (True).
    detach_quality:     r enters fusion and routing without gradient (True), so it stays a pure
                        self-supervised reliability estimate that the task loss cannot repurpose.
    uncertainty_weight: weight of the heteroscedastic loss (0.1: the loss is O(1) per modality
                        and must not dominate the task loss).
    balance_weight:     weight of the Switch load-balance loss (0.01); only added for "topk"
                        routing (constant under dense routing, no gradient under random routing).
    log_var_min, log_var_max: range of log sigma^2 ([-6, 6]: r in about [0.0025, 0.9975]);
                        a sigmoid maps the raw output into it, so gradients never vanish at a
                        hard clamp.
    quality_supervision: a documented variant, not the paper's mechanism (False). True: the quality
                        head is trained with the reliability rho each modality was corrupted at in
                        spectrum training (``batch.reliability``; binary cross-entropy of r against
                        rho, weight ``quality_weight``, 10) instead of the heteroscedastic loss, so r
                        estimates the reliability directly. The clean-representation error the
                        heteroscedastic loss targets does track rho, but a head that reads only the
                        corrupted encoding cannot predict its size (docs/qa_moe.md). Batches without
                        ``reliability`` (clean training) fall back to the heteroscedastic loss.
    aux_weight:         weight of auxiliary unimodal heads (0.0: none). When > 0, each modality's
                        encoding ``h_m`` also feeds its own ``MLPHead`` that predicts the label, and the
                        mean absolute error of those predictions over present modalities (cross-entropy
                        on a classification dataset), times ``aux_weight``, is added in training as the
                        ``unimodal`` loss: every encoder gets a direct gradient for what its modality
                        alone says about the label. The prediction does not use these heads.
    input_sparsity:     weight of a group-lasso penalty on the input projections (0.0: none): in
                        training, ``input_sparsity`` times the sum over every input dimension of every
                        modality encoder of the L2 norm of its projection weights (:func:`input_group_norm`)
                        is added as the ``input_sparsity`` loss; it selects the few informative dimensions
                        among many (768-dimensional text features).
    quality_statistics: a documented variant (False): the sigma^2 head also reads
                        :func:`reliability_statistics` of each modality's input (holes left by drops,
                        lag-1 autocorrelation that white noise lowers). The paper's head reads the
                        encoding alone, from which the size of the error it must predict is often
                        not identifiable (docs/qa_moe.md).
    """

    num_experts: int = 8
    top_k: int = 3
    expert_hidden: int = 128
    head_hidden: int = 64
    uncertainty_hidden: int = 64
    routing: Literal["topk", "dense", "random"] = "topk"
    random_seed: int = 0
    quality_gate: bool = True
    prior_fallback: bool = True
    uncertainty_loss: bool = True
    zero_quality_if_missing: bool = True
    detach_quality: bool = True
    uncertainty_weight: float = 0.1
    balance_weight: float = 0.01
    log_var_min: float = -6.0
    log_var_max: float = 6.0
    quality_supervision: bool = False
    quality_weight: float = 10.0
    quality_statistics: bool = False
    aux_weight: float = 0.0
    input_sparsity: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.num_experts >= 1, "num_experts", "must be >= 1")
        check_config(1 <= self.top_k <= self.num_experts, "top_k", f"must be in [1, num_experts={self.num_experts}]")
        for key in ("expert_hidden", "head_hidden", "uncertainty_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        check_config(self.uncertainty_weight >= 0, "uncertainty_weight", "must be >= 0")
        check_config(self.balance_weight >= 0, "balance_weight", "must be >= 0")
        check_config(self.quality_weight >= 0, "quality_weight", "must be >= 0")
        check_config(self.aux_weight >= 0, "aux_weight", "must be >= 0 (0: no auxiliary heads)")
        check_config(self.input_sparsity >= 0, "input_sparsity", "must be >= 0 (0: no penalty)")
        check_config(self.log_var_min < self.log_var_max, "log_var_min", "must be < log_var_max")


class UncertaintyHead(nn.Module):
    """Dual-branch aleatoric head: value ``mu = h + MLP(h)`` [B, d] and ``log sigma^2`` [B].

    The value branch starts as the identity (last layer zero-initialised); ``log sigma^2`` is
    ``lo + (hi - lo) * sigmoid(MLP(h))`` (starts at the middle of the range).
    """

    def __init__(self, d_model: int, hidden: int, log_var_min: float, log_var_max: float, extra: int = 0):
        super().__init__()
        self.value = MLPHead(d_model, hidden, d_model)
        nn.init.zeros_(self.value.net[-1].weight)
        nn.init.zeros_(self.value.net[-1].bias)
        self.log_var = MLPHead(d_model + extra, hidden, 1)
        self.lo, self.hi = log_var_min, log_var_max

    def forward(self, h: torch.Tensor, stats: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu = h + self.value(h)
        x = h if stats is None else torch.cat([h, stats], dim=-1)
        s = self.lo + (self.hi - self.lo) * torch.sigmoid(self.log_var(x).squeeze(-1))
        return mu, s


def reliability_statistics(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, 2] input statistics that reveal damage whatever the content: the share of positions
    between the first and the last valid element that are valid (drops leave holes) and the lag-1
    autocorrelation of the per-sample centred features over consecutive valid elements, averaged
    over dimensions (additive white noise lowers it). Zeros for a row without valid elements."""
    m = mask.to(x.dtype)
    t = torch.arange(mask.shape[1], device=mask.device)
    first = torch.where(mask, t, mask.shape[1]).min(1).values
    last = torch.where(mask, t, -1).max(1).values
    span = (last - first + 1).clamp(min=1).to(x.dtype)
    kept = m.sum(1) / span
    n = m.sum(1, keepdim=True).clamp(min=1.0)
    xc = (x - (x * m.unsqueeze(-1)).sum(1, keepdim=True) / n.unsqueeze(-1)) * m.unsqueeze(-1)
    pair = (m[:, 1:] * m[:, :-1]).unsqueeze(-1)
    num = (xc[:, 1:] * xc[:, :-1] * pair).sum(1)
    den = (xc * xc).sum(1).clamp(min=1e-6)
    lag1 = (num / den).mean(-1)
    present = mask.any(1).to(x.dtype)
    return torch.stack([kept * present, lag1 * present], dim=-1)


def heteroscedastic_loss(mu: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor,
                         weight: torch.Tensor) -> torch.Tensor:
    """``mean_d (mu - t)^2 / (2 sigma^2) + 0.5 log sigma^2``, averaged with ``weight``.

    mu, target [..., d]; log_var, weight [...] (weight 0 drops a term). Zero when all weights are 0.
    """
    per = 0.5 * (mu - target).pow(2).mean(-1) * torch.exp(-log_var) + 0.5 * log_var
    return (per * weight).sum() / weight.sum().clamp(min=1.0)


@register_model("qa_moe", QAMoEConfig)
class QAMoE(MSAModel):
    """Quality-aware mixture of experts; see the module docstring for the architecture.

    losses: ``uncertainty`` (if ``uncertainty_loss``), ``load_balance`` (top-k routing), ``unimodal``
    (in training, if ``aux_weight`` > 0), ``input_sparsity`` (in training, if ``input_sparsity`` > 0).
    extras: ``quality`` [B, 3] = r, ``sigma2`` [B, 3] = the heads' sigma^2 (also for absent
    modalities, where r is forced to 0), ``expert_weights`` [B, E].
    """

    # r per modality: columns quality_text/audio/vision, and their means as metric rows (quality vs rho)
    extras = (Extra("quality", columns=MODALITIES, summary=True), Extra("sigma2"), Extra("expert_weights"))
    supports_classification = True

    def __init__(self, config: QAMoEConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.uncertainty = nn.ModuleDict(
            {m: UncertaintyHead(d, c.uncertainty_hidden, c.log_var_min, c.log_var_max,
                                extra=2 if c.quality_statistics else 0) for m in MODALITIES})
        self.prior = nn.Parameter(0.02 * torch.randn(len(MODALITIES), d))
        self.router = GatedRouter(len(MODALITIES) * d, c.num_experts, len(MODALITIES) if c.quality_gate else None)
        self.expert_in = nn.Sequential(nn.Linear(len(MODALITIES) * d, d), nn.LayerNorm(d))
        self.experts = ExpertMixture(c.num_experts, d, c.expert_hidden, d, c.dropout)
        self.head = MLPHead(d, c.head_hidden, self.num_outputs, c.dropout)
        if c.aux_weight > 0:  # built last: with it off, every other layer is initialised as before
            self.aux_heads = nn.ModuleDict({m: MLPHead(d, c.head_hidden, self.num_outputs) for m in MODALITIES})

    def _encode(self, batch: Batch) -> torch.Tensor:
        enc = self.encoders(batch)
        return torch.stack([enc[m].pooled for m in MODALITIES], dim=1)

    def _quality(self, h: torch.Tensor, absent: torch.Tensor, batch: Batch
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stats = [None] * len(MODALITIES)
        if self.config.quality_statistics:
            stats = [reliability_statistics(getattr(batch, m), getattr(batch, f"{m}_mask") & ~absent[:, i : i + 1])
                     for i, m in enumerate(MODALITIES)]
        pairs = [self.uncertainty[m](h[:, i], stats[i]) for i, m in enumerate(MODALITIES)]
        mu = torch.stack([p[0] for p in pairs], dim=1)
        log_var = torch.stack([p[1] for p in pairs], dim=1)
        r = torch.sigmoid(-log_var)  # = 1 / (1 + sigma^2)
        if self.config.zero_quality_if_missing:
            r = r.masked_fill(absent, 0.0)
        return mu, log_var, r

    def _route(self, logits: torch.Tensor, keys: torch.Tensor) -> Routing:
        c = self.config
        if c.routing == "dense":
            return dense_routing(logits)
        if c.routing == "random":
            return random_routing(keys, c.num_experts, c.top_k, c.random_seed, logits.device)
        return topk_routing(logits, c.top_k)

    def _uncertainty_loss(self, h: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
                          absent: torch.Tensor, clean: Batch | None) -> torch.Tensor:
        present = ~absent
        if clean is None:
            target = h.detach()
        else:
            if len(clean) != h.shape[0]:
                raise ValueError(f"clean batch has {len(clean)} samples, the input batch {h.shape[0]}")
            with torch.no_grad():
                target = self._encode(clean)
            present = present & ~modality_absent(clean)
        loss = heteroscedastic_loss(mu, log_var, target, present.to(h.dtype))
        return self.config.uncertainty_weight * loss

    def _supervised_quality_loss(self, log_var: torch.Tensor, absent: torch.Tensor,
                                 reliability: torch.Tensor) -> torch.Tensor:
        """BCE of r = sigmoid(-log sigma^2) against the applied rho, over present modalities."""
        target = reliability.to(log_var.device, log_var.dtype).clamp(0.0, 1.0)
        per = torch.nn.functional.binary_cross_entropy_with_logits(-log_var, target, reduction="none")
        weight = (~absent).to(log_var.dtype)
        return self.config.quality_weight * (per * weight).sum() / weight.sum().clamp(min=1.0)


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        h = self._encode(batch)
        absent = modality_absent(batch)
        mu, log_var, r = self._quality(h, absent, batch)
        q = r.detach() if c.detach_quality else r
        fused = q.unsqueeze(-1) * h + (1 - q.unsqueeze(-1)) * self.prior if c.prior_fallback else h
        flat = fused.flatten(1)
        routing = self._route(self.router(flat, q if c.quality_gate else None), batch.keys)
        pred = self.head(self.experts(self.expert_in(flat), routing.weights)).squeeze(-1)
        losses: dict[str, torch.Tensor] = {}
        if c.uncertainty_loss and c.quality_supervision and batch.reliability is not None:
            losses["quality"] = self._supervised_quality_loss(log_var, absent, batch.reliability)
        elif c.uncertainty_loss:
            losses["uncertainty"] = self._uncertainty_loss(h, mu, log_var, absent, clean)
        if c.aux_weight > 0 and self.training:
            preds = torch.stack([self.aux_heads[m](h[:, i]) for i, m in enumerate(MODALITIES)], dim=1)
            preds = preds if self.num_classes else preds.squeeze(-1)
            losses["unimodal"] = c.aux_weight * unimodal_loss(preds, batch.labels, ~absent)
        if c.input_sparsity > 0 and self.training:
            losses["input_sparsity"] = c.input_sparsity * input_group_norm(self.encoders)
        if c.routing == "topk" and c.balance_weight > 0:
            losses["load_balance"] = c.balance_weight * load_balance_loss(routing.probs, routing.selected)
        extras = {"quality": r.detach(), "sigma2": log_var.detach().exp(), "expert_weights": routing.weights.detach()}
        return {"pred": pred, "losses": losses, "extras": extras}
