"""MulT: Multimodal Transformer for unaligned sequences (Tsai et al., ACL 2019).

Forward pass:

1. encoders (shared layers) -> sequences ``X_m`` [B, T_m, d] with their masks; the lengths may
   differ (no alignment needed); sinusoidal positions are added (``positions``);
2. cross-modal transformers: for each target alpha and each source beta != alpha, a stack of
   ``cross_layers`` :class:`~robustmsa.models.layers.CrossAttentionBlock` in which the target
   sequence queries the source sequence: ``Z_{beta->alpha}`` [B, T_alpha, d]; six in all;
3. for each target, ``[Z_{beta1->alpha}; Z_{beta2->alpha}]`` [B, T_alpha, 2d] goes through
   ``self_layers`` self-attention blocks (over valid positions only) and is pooled: masked mean
   (``pooling="mean"``) or the last valid position (``"last"``, the paper's choice);
4. ``pred = MLPHead([pool_t; pool_a; pool_v])``.

Masked positions never influence anything (keys are masked, queries zeroed). An absent target
modality pools to zeros; an absent source adds nothing to the target's stream.
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
    AttentionBlock,
    CrossAttentionBlock,
    MLPHead,
    masked_mean,
    sinusoid_positions,
)

__all__ = ["MulTConfig", "MulT", "masked_last"]


@dataclass(frozen=True)
class MulTConfig(BaseConfig):
    """MulT settings; shared encoder settings in ``BaseConfig`` (``num_heads`` also sets the heads
    of the cross-modal and self-attention blocks).

    cross_layers: cross-modal blocks per (source, target) pair (1; the paper uses 4-5 on GPU).
    self_layers:  self-attention blocks over each target's concatenated streams (1).
    positions:    add sinusoidal positions to every sequence before the cross-modal blocks (True).
    pooling:      "mean" (masked mean over valid positions) or "last" (last valid position).
    head_hidden:  hidden width of the regression head (64).

    d_model:      width of every stream (128, not the shared default 64: with one cross-modal layer
                  this gives MulT about the parameters of MMSA's four-layer MulT, 2.68 M against
                  2.57 M; at 64, 0.71 M, it trailed MMSA's MulT on the same pickle).

    Against the paper's MOSI settings (as MMSA 2.2.1 configures MulT: d 50 with 10 heads, 4
    cross-modal layers, conv1d kernel 5, attention/embedding/output dropout 0.2-0.5, batch 16, lr
    2e-3, early stop 8): the defaults trade depth for width (one cross-modal and one self-attention
    layer, d_model 128) and use no dropout, because on CPU every cross-modal layer is paid six times
    (one per modality pair); trained on the same exported pickle, this is no worse than MMSA's MulT
    (bench/bench_mmsa_parity.py, BENCHMARKS.md). Batch size, learning rate, epochs and patience are
    suite settings (``training:``), shared by every model of a suite. For the paper's depth:
    overrides ``{cross_layers: 4, d_model: 50, num_heads: 10, dropout: 0.2}``.
    """

    d_model: int = 128
    cross_layers: int = 1
    self_layers: int = 1
    positions: bool = True
    pooling: Literal["mean", "last"] = "mean"
    head_hidden: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.cross_layers >= 1, "cross_layers", "must be >= 1")
        check_config(self.self_layers >= 0, "self_layers", "must be >= 0")
        check_config(self.head_hidden >= 1, "head_hidden", "must be >= 1")


def masked_last(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` [B, T, D] at the last valid position of ``mask`` [B, T]; zeros where none is valid."""
    t = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask, t, -1).max(dim=1).values
    out = x.gather(1, last.clamp(min=0)[:, None, None].expand(-1, 1, x.shape[2])).squeeze(1)
    return out * mask.any(1, keepdim=True).to(x.dtype)


def _pair(target: str, source: str) -> str:
    return f"{source}_to_{target}"


@register_model("mult", MulTConfig)
class MulT(MSAModel):
    """Multimodal Transformer; see the module docstring. extras: ``pooled_norm`` [B, 3]."""

    extras = (Extra("pooled_norm"),)
    supports_classification = True

    def __init__(self, config: MulTConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.cross = nn.ModuleDict({
            _pair(t, s): nn.ModuleList(CrossAttentionBlock(d, c.num_heads, c.dropout) for _ in range(c.cross_layers))
            for t in MODALITIES for s in MODALITIES if s != t})
        self.self_attn = nn.ModuleDict({
            t: nn.ModuleList(AttentionBlock(2 * d, c.num_heads, c.dropout) for _ in range(c.self_layers))
            for t in MODALITIES})
        self.head = MLPHead(len(MODALITIES) * 2 * d, c.head_hidden, self.num_outputs, c.dropout)


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        enc = self.encoders(batch)
        seqs, masks = {}, {}
        for m in MODALITIES:
            x, mask = enc[m].seq, enc[m].mask
            if c.positions:
                x = (x + sinusoid_positions(x.shape[1], x.shape[2], x.device, x.dtype)) * mask.unsqueeze(-1).to(x.dtype)
            seqs[m], masks[m] = x, mask
        pooled = []
        for t in MODALITIES:
            streams = []
            for s in MODALITIES:
                if s == t:
                    continue
                z = seqs[t]
                for block in self.cross[_pair(t, s)]:
                    z = block(z, masks[t], seqs[s], masks[s])
                streams.append(z)
            z = torch.cat(streams, dim=-1)
            for block in self.self_attn[t]:
                z = block(z, masks[t])
            pooled.append(masked_mean(z, masks[t]) if c.pooling == "mean" else masked_last(z, masks[t]))
        feats = torch.cat(pooled, dim=-1)
        pred = self.head(feats).squeeze(-1)
        norms = torch.stack([p.detach().norm(dim=-1) for p in pooled], dim=1)
        return {"pred": pred, "losses": {}, "extras": {"pooled_norm": norms}}
