"""MMoLRE: multimodal mixture of low-rank experts, multi-task (seed 001; review-level only).

Text and audio only: vision is ignored entirely (the paper uses text and audio; no vision encoder
is built, so vision inputs and vision missing flags cannot change the prediction).

1. shared encoders: text (features, or a Hugging Face encoder over token ids) and audio
   (:class:`~robustmsa.models.layers.SequenceEncoder`) -> sequences of width d;
2. unified encoder: the concatenated text + audio sequence (plus a learned modality embedding) runs
   through ``num_blocks`` stacked blocks with one stream per task (regression, classification),
   both streams starting from the same input. A block applies, to each task stream, a masked
   self-attention sublayer (weights shared by the tasks) and then a mixture of low-rank experts:
   ``num_shared`` (N) experts shared by both tasks plus one task-specific expert, weighted by that
   task's router ``softmax(Linear(d -> N + 1))`` of the stream's masked mean (a dense MMoE-style
   gate; the review names no sparsity). An expert is ``Conv1d(k=3, d -> r)`` then
   ``Conv1d(k=1, r -> d)`` with ``expert_activation`` in between; it convolves the text and audio
   segments separately, so no kernel straddles the modality boundary;
3. heads on the masked mean of each task stream: ``pred`` (regression) and 7-class sentiment
   logits. The second task of the paper (emotion recognition) has no labels in MSA data, so as
   MODELS.md advises it is 7-class sentiment: classes ``round(clip(label_scale * y, -3, 3)) + 3``;
   its cross-entropy, times ``cls_weight``, is returned in ``losses`` in training mode only (labels
   are never read at evaluation time).

The paper's sensitivity optimum is r = 128, N = 15; the defaults here (r = 16, N = 4) are
CPU-sized for d = 64.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import Batch
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import MaskedAttention, MLPHead, masked_mean

__all__ = ["MMoLREConfig", "MMoLRE", "LowRankExperts", "MoLREBlock", "sentiment_classes", "NUM_CLASSES"]

NUM_CLASSES = 7
"""Sentiment classes -3..3 of the classification task."""


@dataclass(frozen=True)
class MMoLREConfig(BaseConfig):
    """MMoLRE settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.

    num_blocks:        stacked blocks of the unified encoder (2).
    num_shared:        N low-rank experts shared by the tasks (4; the paper's optimum is 15).
    rank:              r, bottleneck width of each expert (16; the paper's optimum is 128 at larger d).
    expert_activation: between the two convolutions of an expert: "gelu" (default) or "none"
                       (a purely linear low-rank expert).
    head_hidden:       hidden width of both task heads (64).
    cls_weight:        weight of the 7-class cross-entropy (0.3; it is ~ln 7 at the start, the L1
                       task loss ~1).
    label_scale:       labels are multiplied by it before rounding to classes (1.0 for [-3, 3]
                       labels; 3.0 maps SIMS-style [-1, 1] labels onto the 7 classes).
    """

    num_blocks: int = 2
    num_shared: int = 4
    rank: int = 16
    expert_activation: Literal["gelu", "none"] = "gelu"
    head_hidden: int = 64
    cls_weight: float = 0.3
    label_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("num_blocks", "num_shared", "rank", "head_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        check_config(self.cls_weight >= 0, "cls_weight", "must be >= 0")
        check_config(self.label_scale > 0, "label_scale", "must be > 0")


def sentiment_classes(labels: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """int64 classes 0..6 of sentiment scores: ``round(clip(scale * y, -3, 3)) + 3``."""
    return torch.round((labels * scale).clamp(-3.0, 3.0)).long() + 3


class LowRankExperts(nn.Module):
    """A bank of ``num`` low-rank experts ``Conv1d(k=3, d -> r)`` -> activation -> ``Conv1d(k=1, r -> d)``.

    ``forward(x [B,T,d], mask [B,T], bounds) -> [B, num, T, d]``, every expert on the same input
    (computed together: one convolution d -> num * r, one grouped convolution back, the same maths
    as separate experts). ``bounds`` are (start, stop) segments convolved independently; masked
    inputs are zeroed first and masked outputs are zero.
    """

    def __init__(self, d_model: int, rank: int, num: int = 1, activation: str = "gelu"):
        super().__init__()
        self.num = num
        self.down = nn.Conv1d(d_model, num * rank, 3, padding=1)
        self.act = nn.GELU() if activation == "gelu" else nn.Identity()
        self.up = nn.Conv1d(num * rank, num * d_model, 1, groups=num)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
        b, t, d = x.shape
        m = mask.to(x.dtype).unsqueeze(-1)
        xt = (x * m).transpose(1, 2)
        parts = [self.up(self.act(self.down(xt[:, :, s:e]))) for s, e in bounds]
        out = torch.cat(parts, dim=2).view(b, self.num, d, t).transpose(2, 3)
        return out * m.unsqueeze(1)


class MoLREBlock(nn.Module):
    """One unified-encoder block over one stream per task (see the module docstring).

    ``forward(streams, mask, bounds) -> (streams', gates [B, tasks, N + 1])``; gate column N is the
    task-specific expert. Streams that are the same tensor (the first block) are computed once.
    """

    def __init__(self, d_model: int, num_heads: int, num_shared: int, rank: int, num_tasks: int,
                 activation: str, dropout: float = 0.0):
        super().__init__()
        self.attn = MaskedAttention(d_model, num_heads, dropout, cross=False)
        self.norm = nn.LayerNorm(d_model)
        self.shared = LowRankExperts(d_model, rank, num_shared, activation)
        self.specific = nn.ModuleList(LowRankExperts(d_model, rank, 1, activation) for _ in range(num_tasks))
        self.routers = nn.ModuleList(nn.Linear(d_model, num_shared + 1) for _ in range(num_tasks))
        self.drop = nn.Dropout(dropout)

    def forward(self, streams: list[torch.Tensor], mask: torch.Tensor,
                bounds: list[tuple[int, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        m = mask.to(streams[0].dtype).unsqueeze(-1)
        cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        out, gates = [], []
        for task, x in enumerate(streams):
            if id(x) not in cache:
                h_res = x + self.attn(x, mask)
                h = self.norm(h_res) * m
                cache[id(x)] = (h_res, h, self.shared(h, mask, bounds))
            x, h, shared = cache[id(x)]
            gate = self.routers[task](masked_mean(h, mask)).softmax(-1)
            mix = torch.einsum("be,betd->btd", gate[:, :-1], shared)
            mix = mix + gate[:, -1, None, None] * self.specific[task](h, mask, bounds)[:, 0]
            out.append((x + self.drop(mix)) * m)
            gates.append(gate)
        return out, torch.stack(gates, dim=1)


@register_model("mmolre", MMoLREConfig)
class MMoLRE(MSAModel):
    """Mixture of low-rank experts over text and audio, regression + 7-class sentiment.

    losses: ``classification`` (training mode only, when ``cls_weight`` > 0).
    extras: ``class_probs`` [B, 7] (classes -3..3), ``gates`` [B, num_blocks, 2, N + 1]
    (task 0 regression, task 1 classification; last column the task-specific expert).
    """

    extras = (Extra("class_probs"), Extra("gates"))

    shared_encoders = False  # text and audio only, built in __init__

    def __init__(self, config: MMoLREConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.text = self.build_text_encoder()
        self.audio = self.build_sequence_encoder("audio")
        self.modality = nn.Embedding(2, d)
        self.blocks = nn.ModuleList(
            MoLREBlock(d, c.num_heads, c.num_shared, c.rank, 2, c.expert_activation, c.dropout)
            for _ in range(c.num_blocks))
        self.reg_head = MLPHead(d, c.head_hidden, 1, c.dropout)
        self.cls_head = MLPHead(d, c.head_hidden, NUM_CLASSES, c.dropout)


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        missing = batch.missing.to(batch.device)
        text = self.text(batch, batch.text_mask & ~missing[:, 0:1])
        audio = self.audio(batch.audio, batch.audio_mask & ~missing[:, 1:2])
        mask = torch.cat([text.mask, audio.mask], dim=1)
        x = torch.cat([text.seq + self.modality.weight[0], audio.seq + self.modality.weight[1]], dim=1)
        x = x * mask.to(x.dtype).unsqueeze(-1)
        t_len = text.seq.shape[1]
        bounds = [(0, t_len), (t_len, x.shape[1])]
        streams, gates = [x, x], []
        for block in self.blocks:
            streams, g = block(streams, mask, bounds)
            gates.append(g)
        pred = self.reg_head(masked_mean(streams[0], mask)).squeeze(-1)
        logits = self.cls_head(masked_mean(streams[1], mask))
        losses: dict[str, torch.Tensor] = {}
        if self.training and c.cls_weight > 0:
            target = sentiment_classes(batch.labels.to(logits.device), c.label_scale)
            losses["classification"] = c.cls_weight * F.cross_entropy(logits, target)
        extras = {"class_probs": logits.softmax(-1).detach(), "gates": torch.stack(gates, dim=1).detach()}
        return {"pred": pred, "losses": losses, "extras": extras}
