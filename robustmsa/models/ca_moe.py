"""CA-MoE: Customized-Allocation Mixture of Experts (seed 002), with ACMA routing and RAES selection.

Forward pass, per sample (M = 3 modalities text, audio, vision; E experts; C angular classes):

1. encoders (shared layers) -> pooled ``F_m`` [B, d]; hyperspherical features
   ``h_m = F_m / (||F_m|| + eps)`` (eq. 2; an absent modality encodes to 0 and stays 0);
2. ACMA routing: one bias-free router per modality, ``q_m = softmax(W_m h_m)`` [B, E]; each present
   modality picks its top-k experts, ``R_{e,m}`` = its softmax renormalised over those k (0 for the
   others, and 0 for an absent modality); expert input ``x_e = sum_m R_{e,m} h_m``, expert output
   ``h~_e = MLP_e(x_e)`` (Linear-GELU-Linear: a GLU is quadratic in small unit-sphere inputs and
   trains slowly). An expert that no modality of the sample
   was routed to is *inactive* for that sample (the seed's colourless experts) and, by default, takes
   no part in RAES;
3. RAES: learnable class centres ``mu_c`` on the sphere, ``cos theta_{e,c} = mu_c . h~_e/||h~_e||``,
   ``p_e = softmax_c(s cos theta_{e,c})``; entropy ``K_e``, magnitude ``H_e = ||h~_e||``, angular
   confidence ``varpi_e``; ``pi_e = alpha softmax_e(gamma1 H_e - gamma2 K_e) + (1 - alpha) varpi_e``;
   ``h^ = sum_e softmax_e(pi_e) h~_e`` (softmaxes over the active experts); ``pred = MLP(h^)``.

Training objective (eq. 14): trainer task loss + l1 L_att + l2 L_rep + l3 L_con + l4 L_bal, where

- ``L_att = sum_{pairs} A_mn [KL(q_m||q_n) + KL(q_n||q_m)]`` and
  ``L_rep = -sum_{pairs} (1 - A_mn) JS(q_m||q_n)`` over the three unordered pairs of present
  modalities (mean over the samples where both are present); ``L_att >= 0``, ``L_rep <= 0``;
- ``A = beta A_Ge + (1 - beta) A_Gr``, ``A_Ge = (1 + h_m . h_n) / 2``,
  ``A_Gr = (1 + cos(dL/dh_m, dL/dh_n)) / 2``. The gradients are computed *inside forward*, in
  training mode only: the fusion part (routing, experts, RAES, head) is run a second time on a
  detached copy of ``h`` that requires grad, the task loss ``affinity_loss`` (MSE, as the seed's
  L_task, or L1) against ``batch.labels`` is summed over the batch, and
  ``torch.autograd.grad(loss, h_copy, create_graph=False)`` gives per-sample gradients [B, M, d]
  (each sample's loss depends only on its own ``h``). Nothing flows back through this copy; A is
  detached (``detach_affinity``), so it weights the routing losses without being optimised by them.
  For one sample dL/dh_m = l'(pred, y) dpred/dh_m, so the scalar l' cancels in the cosine; a zero
  gradient gives cos = 0 (A_Gr = 0.5). With dropout on, the second pass draws its own masks;
- ``L_con = KL(y~ || p^margin_e)`` averaged over active (sample, expert) pairs: the additive angular
  margin (ArcFace) ``s cos(min(theta_{e,y} + nu, pi))`` on the labelled class, training mode only;
  class ``y = round(clip(label * label_scale, -K, K)) + K`` with ``K = (C - 1) / 2`` (C = 7: the MOSI
  classes -3..3; round half to even, like the Acc-7 metric); Gaussian soft label
  ``y~ = softmax_c(exp(-(c - y)^2 / (2 sigma^2)))`` (the seed's formula, ``soft_label="softmax"``)
  or the normalised Gaussian (``"normalized"``). The seed says L_con "is used to optimize the
  category centre": by default (``confidence_grad="centres"``) the expert outputs enter it detached,
  so it trains the centres only (letting it train the experts too slowed learning a lot in our runs);
- ``L_bal``: the Switch load-balance loss of each modality's router (over its present samples),
  averaged over modalities.

Labels never reach the prediction. The seed's confidence ``varpi_e = sum_c p_e(c) y~(c)`` needs the
label, which does not exist at test time, and p_e with the margin also depends on it; using either
in ``pi_e`` would leak the label into training predictions. So ``pi_e`` always uses margin-free
``p_e``, and ``varpi_e = sum_c p_e(c) p_bar(c)`` with ``p_bar`` the mean of ``p_e`` over the active
experts (agreement with the experts' consensus, ``confidence_target="consensus"``) or
``max_c p_e(c)`` (``"max_prob"``). The margin and the soft labels act only through L_con.
In eval mode ``losses`` is empty (L_con and A_Gr need labels).
"""
from __future__ import annotations

import math
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
from .layers import MLPHead, load_balance_loss, masked_softmax, modality_absent

__all__ = [
    "CAMoEConfig",
    "CAMoE",
    "PAIRS",
    "hyperspherical",
    "g2_affinity",
    "symmetric_kl",
    "js_divergence",
    "bin_labels",
    "gaussian_soft_labels",
    "angular_logits",
]

PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
"""The unordered modality pairs (text-audio, text-vision, audio-vision) of the routing losses."""


@dataclass(frozen=True)
class CAMoEConfig(BaseConfig):
    """CA-MoE settings (seed 002, table 6 for MOSI); shared encoder settings in ``BaseConfig``.

    num_experts:        |E| experts (6; the seed uses 8 for MOSEI).
    top_k:              experts each modality is routed to (3).
    expert_hidden:      hidden width of each expert MLP_e, Linear-GELU-Linear (128 = 2 d_model).
    head_hidden:        hidden width of the regression head (64).
    beta:               weight of the geometric affinity in A (0.6).
    scale:              s, scale of the angular logits (30).
    margin:             nu, additive angular margin in radians, training only (0.3).
    alpha:              weight of the ability term in pi_e (0.7).
    gamma1, gamma2:     weights of the magnitude H_e and the entropy K_e (0.8, 30).
    attraction_weight, repulsion_weight, confidence_weight, balance_weight:
                        lambda1..lambda4 (1, 1, 0.1, 0.01).
    num_classes:        C angular classes (7: MOSI's -3..3; must be odd, centre class = score 0).
    label_scale:        labels are multiplied by this before binning (1; 3 maps SIMS' [-1, 1] to -3..3).
    soft_label:         "softmax" (the seed: softmax over c of the Gaussian kernel) or "normalized"
                        (the kernel divided by its sum).
    soft_label_sigma:   sigma of the Gaussian soft label, in classes (1; not given in the seed).
    confidence_target:  label-free target of the angular confidence varpi_e: "consensus" (mean p_e
                        of the active experts) or "max_prob" (max_c p_e); see the module docstring.
    confidence_grad:    what L_con trains: "centres" (the seed: "L_con is used to optimize the category
                        centre"; the expert outputs enter it detached) or "all" (experts and encoders too).
    affinity_loss:      task loss whose gradients give A_Gr: "mse" (the seed's L_task) or "l1".
    detach_affinity:    A enters L_att / L_rep as a constant weight (True).
    inactive_experts:   "exclude" (experts no modality was routed to take no part in RAES) or
                        "include" (they do, with output MLP_e(0)).
    eps:                epsilon of the hyperspherical map (1e-8, as in eq. 2).
    """

    num_experts: int = 6
    top_k: int = 3
    expert_hidden: int = 128
    head_hidden: int = 64
    beta: float = 0.6
    scale: float = 30.0
    margin: float = 0.3
    alpha: float = 0.7
    gamma1: float = 0.8
    gamma2: float = 30.0
    attraction_weight: float = 1.0
    repulsion_weight: float = 1.0
    confidence_weight: float = 0.1
    balance_weight: float = 0.01
    num_classes: int = 7
    label_scale: float = 1.0
    soft_label: Literal["softmax", "normalized"] = "softmax"
    soft_label_sigma: float = 1.0
    confidence_target: Literal["consensus", "max_prob"] = "consensus"
    confidence_grad: Literal["centres", "all"] = "centres"
    affinity_loss: Literal["mse", "l1"] = "mse"
    detach_affinity: bool = True
    inactive_experts: Literal["exclude", "include"] = "exclude"
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.num_experts >= 1, "num_experts", "must be >= 1")
        check_config(1 <= self.top_k <= self.num_experts, "top_k", f"must be in [1, num_experts={self.num_experts}]")
        for key in ("expert_hidden", "head_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("beta", "alpha"):
            check_config(0.0 <= getattr(self, key) <= 1.0, key, "must be in [0, 1]")
        check_config(self.scale > 0, "scale", "must be > 0")
        check_config(0.0 <= self.margin < math.pi, "margin", "must be in [0, pi)")
        for key in ("gamma1", "gamma2", "attraction_weight", "repulsion_weight", "confidence_weight",
                    "balance_weight"):
            check_config(getattr(self, key) >= 0, key, "must be >= 0")
        check_config(self.num_classes >= 3 and self.num_classes % 2 == 1, "num_classes", "must be odd and >= 3")
        check_config(self.label_scale > 0, "label_scale", "must be > 0")
        check_config(self.soft_label_sigma > 0, "soft_label_sigma", "must be > 0")
        check_config(self.eps > 0, "eps", "must be > 0")


# --- the maths, as plain functions -------------------------------------------------------------

def hyperspherical(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / (||x||_2 + eps)`` over the last dimension (eq. 2); 0 stays 0 with a zero gradient."""
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


def _cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return (a * b).sum(-1) / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)).clamp(min=eps)


def g2_affinity(h: torch.Tensor, grads: torch.Tensor, beta: float) -> torch.Tensor:
    """G^2-affinity [B, M, M] from unit features ``h`` and task gradients ``grads`` (both [B, M, d]).

    ``beta (1 + h_m . h_n) / 2 + (1 - beta) (1 + cos(g_m, g_n)) / 2``: symmetric, in [0, 1] (for unit
    or zero ``h``); a zero gradient counts as cos = 0.
    """
    geo = 0.5 * (1 + torch.einsum("bmd,bnd->bmn", h, h))
    gn = grads / torch.linalg.vector_norm(grads, dim=-1, keepdim=True).clamp(min=1e-12)
    grad = 0.5 * (1 + torch.einsum("bmd,bnd->bmn", gn, gn))
    return (beta * geo + (1 - beta) * grad).clamp(0.0, 1.0)


def symmetric_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p||q) + KL(q||p) = sum (p - q)(log p - log q)`` over the last dim, from log-probabilities."""
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)


def js_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (natural log, in [0, log 2]) over the last dim, from log-probabilities."""
    log_mid = torch.logaddexp(log_p, log_q) - math.log(2.0)
    return 0.5 * ((log_p.exp() * (log_p - log_mid)).sum(-1) + (log_q.exp() * (log_q - log_mid)).sum(-1))


def bin_labels(labels: torch.Tensor, num_classes: int = 7, scale: float = 1.0) -> torch.Tensor:
    """Class index (long) ``round(clip(labels * scale, -K, K)) + K``, K = (C - 1) / 2 (C=7: -3..3 -> 0..6)."""
    k = (num_classes - 1) // 2
    return torch.round((labels * scale).clamp(-k, k)).long() + k


def gaussian_soft_labels(classes: torch.Tensor, num_classes: int, sigma: float = 1.0,
                         kind: str = "softmax") -> torch.Tensor:
    """Soft targets [B, C] around integer ``classes``: the Gaussian kernel ``exp(-(c-y)^2 / 2 sigma^2)``
    through a softmax over c (``"softmax"``, the seed's formula) or divided by its sum (``"normalized"``)."""
    c = torch.arange(num_classes, device=classes.device, dtype=torch.float32)
    kernel = torch.exp(-(c - classes.unsqueeze(-1).float()).pow(2) / (2 * sigma**2))
    return kernel.softmax(-1) if kind == "softmax" else kernel / kernel.sum(-1, keepdim=True)


def angular_logits(cos: torch.Tensor, scale: float, margin: float = 0.0,
                   classes: torch.Tensor | None = None) -> torch.Tensor:
    """``s cos theta`` [..., C], with ``s cos(min(theta + nu, pi))`` on the class in ``classes`` (ArcFace).

    ``cos`` is [B, E, C]; ``classes`` [B] (None or ``margin == 0``: no margin).
    """
    if classes is None or margin == 0.0:
        return scale * cos
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    onehot = F.one_hot(classes, cos.shape[-1]).to(cos.dtype).unsqueeze(1)
    return scale * torch.cos((theta + margin * onehot).clamp(max=math.pi))


# --- the model ---------------------------------------------------------------------------------

@register_model("ca_moe", CAMoEConfig)
class CAMoE(MSAModel):
    """CA-MoE; see the module docstring for the architecture, the losses and the label policy.

    losses (training mode only): ``attraction``, ``repulsion``, ``confidence``, ``load_balance``
    (each already multiplied by its lambda; a weight of 0 drops the term).
    extras: ``routing`` [B, 3, E] = R, ``expert_weights`` [B, E] = softmax(pi) over active experts,
    ``active`` [B, E], ``geometric_affinity`` [B, 3] (pairs t-a, t-v, a-v); in training also
    ``affinity`` [B, 3] = A.
    """

    extras = (Extra("routing"), Extra("expert_weights"), Extra("active"), Extra("geometric_affinity"),
              Extra("affinity"))

    def __init__(self, config: CAMoEConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.routers = nn.ModuleList(nn.Linear(d, c.num_experts, bias=False) for _ in MODALITIES)
        self.experts = nn.ModuleList(MLPHead(d, c.expert_hidden, d, c.dropout) for _ in range(c.num_experts))
        self.centres = nn.Parameter(torch.randn(c.num_classes, d))
        self.head = MLPHead(d, c.head_hidden, 1, c.dropout)

    def _features(self, batch: Batch) -> torch.Tensor:
        enc = self.encoders(batch)
        return hyperspherical(torch.stack([enc[m].pooled for m in MODALITIES], dim=1), self.config.eps)

    def _fuse(self, h: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """Routing, experts and RAES on unit features ``h`` [B, M, d]; no labels involved."""
        c = self.config
        logits = torch.stack([router(h[:, i]) for i, router in enumerate(self.routers)], dim=1)  # [B, M, E]
        top = logits.topk(c.top_k, dim=-1).indices
        selected = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, top, True)
        routing = logits.masked_fill(~selected, float("-inf")).softmax(-1) * present.unsqueeze(-1).to(h.dtype)
        expert_in = torch.einsum("bme,bmd->bed", routing, h)
        out = torch.stack([expert(expert_in[:, e]) for e, expert in enumerate(self.experts)], dim=1)  # [B, E, d]
        active = (routing > 0).any(1)
        use = active if c.inactive_experts == "exclude" else torch.ones_like(active)
        cos = torch.einsum("bed,cd->bec", hyperspherical(out, 1e-12), hyperspherical(self.centres, 1e-12))
        p = angular_logits(cos, c.scale).softmax(-1)
        entropy = -(p * torch.log(p.clamp(min=1e-12))).sum(-1)
        magnitude = torch.linalg.vector_norm(out, dim=-1)
        if c.confidence_target == "consensus":
            w = use.to(h.dtype).unsqueeze(-1)
            p_bar = (p * w).sum(1) / w.sum(1).clamp(min=1.0)
            confidence = (p * p_bar.unsqueeze(1)).sum(-1)
        else:
            confidence = p.max(-1).values
        ability = masked_softmax(c.gamma1 * magnitude - c.gamma2 * entropy, use)
        pi = c.alpha * ability + (1 - c.alpha) * confidence
        weights = masked_softmax(pi, use)
        pred = self.head((weights.unsqueeze(-1) * out).sum(1)).squeeze(-1)
        return {"pred": pred, "logits": logits, "routing": routing, "selected": selected, "cos": cos, "out": out,
                "active": active, "use": use, "weights": weights}

    def _task_gradients(self, h: torch.Tensor, present: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """dL_task/dh [B, M, d] on a detached copy of ``h`` (see the module docstring)."""
        copy = h.detach().requires_grad_(True)
        with torch.enable_grad():
            pred = self._fuse(copy, present)["pred"]
            diff = pred - labels.to(pred.dtype)
            loss = diff.pow(2).sum() if self.config.affinity_loss == "mse" else diff.abs().sum()
            if not loss.requires_grad:
                return torch.zeros_like(h)
            (grad,) = torch.autograd.grad(loss, copy, create_graph=False, allow_unused=True)
        return torch.zeros_like(h) if grad is None else grad

    def _routing_losses(self, fused: dict[str, torch.Tensor], affinity: torch.Tensor,
                        present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_q = fused["logits"].log_softmax(-1)
        att = rep = log_q.new_zeros(())
        for m, n in PAIRS:
            both = (present[:, m] & present[:, n]).to(log_q.dtype)
            count = both.sum().clamp(min=1.0)
            a = affinity[:, m, n]
            att = att + (both * a * symmetric_kl(log_q[:, m], log_q[:, n])).sum() / count
            rep = rep - (both * (1 - a) * js_divergence(log_q[:, m], log_q[:, n])).sum() / count
        return att, rep

    def _confidence_loss(self, fused: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        c = self.config
        classes = bin_labels(labels, c.num_classes, c.label_scale)
        target = gaussian_soft_labels(classes, c.num_classes, c.soft_label_sigma, c.soft_label)
        cos = fused["cos"]
        if c.confidence_grad == "centres":
            cos = torch.einsum("bed,cd->bec", hyperspherical(fused["out"].detach(), 1e-12),
                               hyperspherical(self.centres, 1e-12))
        log_p = angular_logits(cos, c.scale, c.margin, classes).log_softmax(-1)
        t = target.unsqueeze(1)
        kl = (torch.special.xlogy(t, t) - t * log_p).sum(-1)  # [B, E]
        use = fused["use"].to(kl.dtype)
        return (kl * use).sum() / use.sum().clamp(min=1.0)

    def _balance_loss(self, fused: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        probs = fused["logits"].softmax(-1)
        terms = [load_balance_loss(probs[present[:, i], i], fused["selected"][present[:, i], i])
                 for i in range(len(MODALITIES)) if present[:, i].any()]
        return torch.stack(terms).mean() if terms else probs.new_zeros(())


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        h = self._features(batch)
        present = ~modality_absent(batch)
        fused = self._fuse(h, present)
        geo = 0.5 * (1 + torch.einsum("bmd,bnd->bmn", h, h))
        extras: dict[str, torch.Tensor] = {
            "routing": fused["routing"].detach(), "expert_weights": fused["weights"].detach(),
            "active": fused["active"], "geometric_affinity": torch.stack([geo[:, m, n] for m, n in PAIRS], 1).detach()}
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            labels = batch.labels.to(h.device)
            affinity = g2_affinity(h, self._task_gradients(h, present, labels), c.beta)
            if c.detach_affinity:
                affinity = affinity.detach()
            extras["affinity"] = torch.stack([affinity[:, m, n] for m, n in PAIRS], 1).detach()
            att, rep = self._routing_losses(fused, affinity, present)
            if c.attraction_weight > 0:
                losses["attraction"] = c.attraction_weight * att
            if c.repulsion_weight > 0:
                losses["repulsion"] = c.repulsion_weight * rep
            if c.confidence_weight > 0:
                losses["confidence"] = c.confidence_weight * self._confidence_loss(fused, labels)
            if c.balance_weight > 0:
                losses["load_balance"] = c.balance_weight * self._balance_loss(fused, present)
        return {"pred": fused["pred"], "losses": losses, "extras": extras}
