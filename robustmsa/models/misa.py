"""MISA: Modality-Invariant and -Specific Representations (Hazarika et al., ACM MM 2020).

Forward pass:

1. encoders (shared layers) -> pooled utterance vector per modality, projected to the subspace
   width: ``u_m = LayerNorm(ReLU(Linear(h_m)))`` [B, d] (MISA's ``project_m``);
2. one *shared* (invariant) encoder for every modality, ``s_m = sigmoid(W_s u_m + b_s)``, and one
   *private* (specific) encoder per modality, ``p_m = sigmoid(W_m u_m + b_m)``;
3. fusion: one transformer block over the six vectors ``(p_t, p_a, p_v, s_t, s_a, s_v)`` as a
   sequence, then their concatenation ``[B, 6d] -> Linear(6d, 3d) - Dropout - ReLU - Linear(3d, 1)``.

Losses (training mode only; the trainer adds the task loss):

- ``similarity``: CMD (central moment discrepancy, K moments) between the shared vectors of each
  pair of modalities, averaged over the three pairs;
- ``difference``: soft orthogonality ``mean_ij ((S^T P)_ij)^2`` of the batch-centred, row-L2-normalised
  matrices, summed over the three shared/private pairs and the three private/private pairs;
- ``reconstruction``: ``u_m`` reconstructed from ``s_m + p_m`` by a linear decoder per modality,
  mean squared error averaged over the modalities.

Missing modalities (the paper has none): an absent modality's shared and private vectors are zeroed
and masked out of the fusion block, and every loss term uses only the samples where the modalities
it involves are present (batch statistics of CMD and the centring of the difference loss included).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any, NamedTuple

import torch
from torch import nn

from corruptions.keys import MODALITIES

from ..data.batch import Batch
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import AttentionBlock, modality_absent

__all__ = ["MISAConfig", "MISA", "Subspaces", "cmd", "difference_loss", "misa_losses"]


@dataclass(frozen=True)
class MISAConfig(BaseConfig):
    """MISA settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.

    sim_weight:    weight of the CMD similarity loss (0.3: MMSA's MOSI value; 0.8 on MOSEI).
    diff_weight:   weight of the difference (soft orthogonality) loss (0.1: MMSA's MOSI value; 0.3 on
                   MOSEI and SIMS).
    recon_weight:  weight of the reconstruction loss (1.0, MMSA's MOSI and MOSEI value).
    cmd_moments:   K, the highest central moment CMD matches (5, as in the paper and MMSA).
    fusion_heads:  heads of the fusion transformer block (2, as MMSA; must divide d_model).

    Against the paper and MMSA 2.2.1 (the authors' code): the utterance encoders are the shared
    encoders of this harness (``encoder``, pooled to ``d_model``) instead of mean-pooled BERT for
    text and two-layer bidirectional LSTMs for audio and vision (``text_encoder: hf`` gives a
    pretrained text encoder, not the default); the subspace width is ``d_model`` (64) instead of
    ``hidden_size`` 128; the fusion block is the harness's pre-norm masked transformer block
    (feed-forward 2 d_model, dropout ``dropout``) instead of ``nn.TransformerEncoderLayer`` (post-norm,
    feed-forward 2048, dropout 0.1), so that absent modalities can be masked and dropout stays off
    by default. The similarity loss is CMD, the paper's reported best and MMSA's default
    (``use_cmd_sim``); the adversarial-discriminator alternative and the shared/private
    discriminator (built in MMSA but never in its loss) are not offered. The difference loss follows
    the authors' code: mean (not sum) of the squared entries of ``S^T P``, row norms without gradient.
    The task loss is the suite's (``training.loss``: L1 by default; MMSA trains MISA with MSE, batch
    16, lr 1e-4, gradient value clip 0.8).
    """

    sim_weight: float = 0.3
    diff_weight: float = 0.1
    recon_weight: float = 1.0
    cmd_moments: int = 5
    fusion_heads: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("sim_weight", "diff_weight", "recon_weight"):
            check_config(getattr(self, key) >= 0, key, "must be >= 0")
        check_config(self.cmd_moments >= 1, "cmd_moments", "must be >= 1")
        check_config(self.fusion_heads >= 1 and self.d_model % self.fusion_heads == 0, "fusion_heads",
                     f"must be >= 1 and divide d_model={self.d_model}")


def _weighted_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of the rows of ``x`` [N, d] with weights ``weight`` [N] (zeros when all weights are 0)."""
    return (x * weight.unsqueeze(-1)).sum(0) / weight.sum().clamp(min=1.0)


def cmd(x: torch.Tensor, y: torch.Tensor, moments: int = 5, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Central moment discrepancy (Zellinger et al., ICLR 2017) between the rows of ``x`` and ``y`` [N, d]:
    ``||E x - E y||_2 + sum_{k=2..K} ||E (x - E x)^k - E (y - E y)^k||_2`` (the bounds' scale factors
    are 1 for MISA's sigmoid outputs in [0, 1]). ``weight`` [N] (0/1) keeps only some rows; 0 when none."""
    w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weight is None else weight.to(x.dtype)
    if not bool(w.sum() > 0):
        return x.new_zeros(())
    mx, my = _weighted_mean(x, w), _weighted_mean(y, w)
    cx, cy = x - mx, y - my
    total = torch.linalg.vector_norm(mx - my)
    for k in range(2, moments + 1):
        total = total + torch.linalg.vector_norm(_weighted_mean(cx.pow(k), w) - _weighted_mean(cy.pow(k), w))
    return total


def difference_loss(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Soft orthogonality of ``a`` and ``b`` [N, d]: rows centred over the batch and scaled to unit L2
    norm (the norm without gradient, as the authors' code), then the mean of the squared entries of
    ``a^T b`` [d, d]. ``weight`` [N] (0/1) keeps only some rows (the others count as zero rows)."""
    w = torch.ones(a.shape[0], dtype=a.dtype, device=a.device) if weight is None else weight.to(a.dtype)

    def unit(x: torch.Tensor) -> torch.Tensor:
        x = (x - _weighted_mean(x, w)) * w.unsqueeze(-1)
        return x / (x.norm(dim=1, keepdim=True).detach() + 1e-6)

    return (unit(a).t() @ unit(b)).pow(2).mean()


class Subspaces(NamedTuple):
    """Per modality (dim 1: text, audio, vision): ``utterance`` u_m, ``shared`` s_m, ``private`` p_m
    and ``recon`` (the reconstruction of u_m) [B, 3, d], and ``present`` bool [B, 3]."""

    utterance: torch.Tensor
    shared: torch.Tensor
    private: torch.Tensor
    recon: torch.Tensor
    present: torch.Tensor


def misa_losses(sp: Subspaces, config: MISAConfig) -> dict[str, torch.Tensor]:
    """The weighted similarity, difference and reconstruction losses of ``sp`` (module docstring)."""
    w = sp.present.to(sp.shared.dtype)
    pairs = list(combinations(range(len(MODALITIES)), 2))
    sim = sum((cmd(sp.shared[:, i], sp.shared[:, j], config.cmd_moments, w[:, i] * w[:, j]) for i, j in pairs),
              sp.shared.new_zeros(())) / len(pairs)
    diff = sum((difference_loss(sp.private[:, i], sp.shared[:, i], w[:, i]) for i in range(len(MODALITIES))),
               sp.shared.new_zeros(()))
    diff = diff + sum((difference_loss(sp.private[:, i], sp.private[:, j], w[:, i] * w[:, j]) for i, j in pairs),
                      sp.shared.new_zeros(()))
    per = (sp.recon - sp.utterance).pow(2).mean(-1)  # [B, 3]
    recon = ((per * w).sum(0) / w.sum(0).clamp(min=1.0)).mean()
    return {"similarity": config.sim_weight * sim, "difference": config.diff_weight * diff,
            "reconstruction": config.recon_weight * recon}


@register_model("misa", MISAConfig)
class MISA(MSAModel):
    """MISA; see the module docstring. losses: ``similarity``, ``difference``, ``reconstruction``
    (training mode only). extras: ``shared_gap`` [B, 3], the distance of each modality's shared
    vector from the mean shared vector of the sample's present modalities (0 when absent): how far
    a modality sits from the invariant subspace, e.g. as a corruption pushes it away."""

    extras = (Extra("shared_gap", columns=MODALITIES),)
    supports_classification = True

    def __init__(self, config: MISAConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.LayerNorm(d))
                                      for m in MODALITIES})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.Sigmoid()) for m in MODALITIES})
        self.shared = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        self.recon = nn.ModuleDict({m: nn.Linear(d, d) for m in MODALITIES})
        self.fusion = AttentionBlock(d, c.fusion_heads, c.dropout)
        self.head = nn.Sequential(nn.Linear(6 * d, 3 * d), nn.Dropout(c.dropout), nn.ReLU(), nn.Linear(3 * d, self.num_outputs))

    def subspaces(self, batch: Batch) -> Subspaces:
        """Utterance vectors, their shared and private parts and reconstructions, per modality."""
        enc = self.encoders(batch)
        u = torch.stack([self.project[m](enc[m].pooled) for m in MODALITIES], dim=1)
        private = torch.stack([self.private[m](u[:, i]) for i, m in enumerate(MODALITIES)], dim=1)
        shared = self.shared(u)
        recon = torch.stack([self.recon[m](shared[:, i] + private[:, i]) for i, m in enumerate(MODALITIES)], dim=1)
        return Subspaces(u, shared, private, recon, ~modality_absent(batch))

    def fuse(self, sp: Subspaces) -> torch.Tensor:
        """[B, 6d]: the fusion block over the six vectors (absent modalities masked), concatenated."""
        tokens = torch.cat([sp.private, sp.shared], dim=1)
        mask = sp.present.repeat(1, 2)
        tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        return self.fusion(tokens, mask).flatten(1)


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        sp = self.subspaces(batch)
        pred = self.head(self.fuse(sp)).squeeze(-1)
        losses = misa_losses(sp, self.config) if self.training else {}
        w = sp.present.to(sp.shared.dtype).unsqueeze(-1)
        centre = (sp.shared * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)
        gap = (sp.shared - centre).norm(dim=-1) * sp.present.to(sp.shared.dtype)
        return {"pred": pred, "losses": losses, "extras": {"shared_gap": gap.detach()}}
