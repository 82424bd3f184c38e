"""Shared building blocks: masked pooling, modality encoders, GLU experts, routing, heads.

Written once, used by every model. Conventions:

- a sequence is ``x`` float [B, T, D] with ``mask`` bool [B, T] (True = valid element); masked-out
  elements never influence any output (their features are zeroed before any mixing);
- a modality that is absent (``missing`` True, or no valid element) encodes to all-zero sequence
  and pooled vectors; all-False masks never produce NaN;
- routing works on per-sample router logits [B, E] and returns a :class:`Routing` whose ``weights``
  rows sum to one; :class:`ExpertMixture` evaluates only the experts a sample is routed to.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from corruptions.keys import MODALITIES, derive_keys, uniform

from ..data.batch import Batch

__all__ = [
    "Encoded",
    "masked_mean",
    "modality_absent",
    "ConvBlock",
    "AttentionBlock",
    "SequenceEncoder",
    "TextEncoder",
    "TextFeatureEncoder",
    "ModalityEncoders",
    "GLUExpert",
    "ExpertMixture",
    "Routing",
    "topk_routing",
    "dense_routing",
    "random_routing",
    "load_balance_loss",
    "GatedRouter",
    "MLPHead",
]


class Encoded(NamedTuple):
    """An encoded modality: ``seq`` [B, T, d] (zeros where ``mask`` is False), ``pooled`` [B, d]."""

    seq: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [B, T, D] over valid positions of ``mask`` [B, T]; zeros where none is valid."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def modality_absent(batch: Batch) -> torch.Tensor:
    """Bool [B, 3] (text, audio, vision): the modality is flagged missing or has no valid element."""
    masks = torch.stack([getattr(batch, f"{m}_mask").any(1) for m in MODALITIES], 1)
    return batch.missing.to(masks.device) | ~masks


class ConvBlock(nn.Module):
    """Masked residual 1-D convolution: ``LN(x + drop(GELU(conv(x * mask)))) * mask``."""

    def __init__(self, d_model: int, kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype).unsqueeze(-1)
        y = self.conv((x * m).transpose(1, 2)).transpose(1, 2)
        return self.norm(x + self.drop(F.gelu(y))) * m


def _sinusoid(length: int, d_model: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / d_model))
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe.to(dtype)


class AttentionBlock(nn.Module):
    """One pre-norm transformer block (self-attention + GELU MLP) over valid positions only.

    Rows without any valid position attend to position 0 internally (no NaN); their output is zeroed.
    """

    def __init__(self, d_model: int, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        keys_ok = mask.clone()
        keys_ok[:, 0] |= ~mask.any(1)
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=keys_ok[:, None, None, :],
                                              dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, t, d)))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x * mask.to(x.dtype).unsqueeze(-1)


class SequenceEncoder(nn.Module):
    """Linear projection to ``d_model`` + LayerNorm, then one masked block ("conv" or "attention").

    ``forward(x [B,T,D], mask [B,T]) -> Encoded`` with the masked mean as ``pooled``.
    """

    def __init__(self, in_dim: int, d_model: int, kind: str = "conv", kernel_size: int = 3,
                 num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.kind = kind
        if kind == "conv":
            self.block: nn.Module = ConvBlock(d_model, kernel_size, dropout)
        elif kind == "attention":
            self.block = AttentionBlock(d_model, num_heads, dropout)
        else:
            raise ValueError(f"unknown encoder kind {kind!r} (allowed: conv, attention)")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # The projection is per position, so masked-out inputs only reach masked-out positions,
        # which are zeroed here, before any mixing across positions.
        m = mask.to(x.dtype).unsqueeze(-1)
        h = self.norm(self.proj(x))
        if self.kind == "attention":
            h = h + _sinusoid(h.shape[1], h.shape[2], h.device, h.dtype)
        h = self.block(h * m, mask)
        return Encoded(h, masked_mean(h, mask), mask)


class TextEncoder(Protocol):
    """What a text encoder must do: encode the text of a batch (features or token ids) to ``Encoded``.

    The default, :class:`TextFeatureEncoder`, reads precomputed features (``batch.text``). A Hugging
    Face encoder over ``batch.text_ids`` implements the same call and is passed to
    :class:`ModalityEncoders` as ``text_encoder``; the model then overrides ``param_groups`` to give
    it its own learning rate.
    """

    def __call__(self, batch: Batch, mask: torch.Tensor) -> Encoded: ...


class TextFeatureEncoder(nn.Module):
    """Text from precomputed features ``batch.text`` [B, L, Dt] through a :class:`SequenceEncoder`."""

    def __init__(self, in_dim: int, d_model: int, kind: str = "conv", kernel_size: int = 3,
                 num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.encoder = SequenceEncoder(in_dim, d_model, kind, kernel_size, num_heads, dropout)

    def forward(self, batch: Batch, mask: torch.Tensor) -> Encoded:
        return self.encoder(batch.text, mask)


class ModalityEncoders(nn.Module):
    """One encoder per modality; ``forward(batch) -> {"text"|"audio"|"vision": Encoded}``.

    Each encoder sees ``mask & ~missing``: a missing modality encodes to zeros. ``text_encoder``
    replaces the default :class:`TextFeatureEncoder` (extension point for pretrained encoders).
    """

    def __init__(self, dims: Mapping[str, int], d_model: int, kind: str = "conv", kernel_size: int = 3,
                 num_heads: int = 4, dropout: float = 0.0, text_encoder: nn.Module | None = None):
        super().__init__()
        args = (d_model, kind, kernel_size, num_heads, dropout)
        self.text = text_encoder if text_encoder is not None else TextFeatureEncoder(dims["text"], *args)
        self.audio = SequenceEncoder(dims["audio"], *args)
        self.vision = SequenceEncoder(dims["vision"], *args)

    def forward(self, batch: Batch) -> dict[str, Encoded]:
        out: dict[str, Encoded] = {}
        for i, m in enumerate(MODALITIES):
            mask = getattr(batch, f"{m}_mask") & ~batch.missing[:, i : i + 1].to(batch.device)
            out[m] = self.text(batch, mask) if m == "text" else getattr(self, m)(getattr(batch, m), mask)
        return out


class GLUExpert(nn.Module):
    """A gated-linear-unit expert (SwiGLU form): ``W_out(a * SiLU(g))`` with ``[a, g] = W_in x``."""

    def __init__(self, d_in: int, hidden: int, d_out: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.w_in = nn.Linear(d_in, 2 * hidden)
        self.w_out = nn.Linear(hidden, d_in if d_out is None else d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.w_in(x).chunk(2, dim=-1)
        return self.w_out(self.drop(a * F.silu(g)))


class ExpertMixture(nn.Module):
    """``num_experts`` GLU experts; ``forward(x [B,d], weights [B,E]) = sum_e w[:,e] * expert_e(x)``.

    An expert runs only on the samples with a non-zero weight for it (sparse dispatch).
    """

    def __init__(self, num_experts: int, d_in: int, hidden: int, d_out: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.d_out = d_in if d_out is None else d_out
        self.experts = nn.ModuleList(GLUExpert(d_in, hidden, d_out, dropout) for _ in range(num_experts))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.d_out)
        for e, expert in enumerate(self.experts):
            idx = torch.nonzero(weights[:, e] > 0).squeeze(1)
            if idx.numel():
                out = out.index_add(0, idx, weights[idx, e, None] * expert(x[idx]))
        return out


@dataclass
class Routing:
    """Routing of B samples over E experts.

    weights:  float [B, E], rows sum to one, zero for experts a sample is not routed to;
    probs:    float [B, E], the full router softmax (uniform for random routing);
    selected: bool  [B, E], experts each sample is routed to.
    """

    weights: torch.Tensor
    probs: torch.Tensor
    selected: torch.Tensor


def topk_routing(logits: torch.Tensor, k: int) -> Routing:
    """Top-``k`` experts per sample; weights = softmax renormalised over the selected experts."""
    probs = logits.softmax(-1)
    top = logits.topk(k, dim=-1).indices
    selected = torch.zeros_like(logits, dtype=torch.bool).scatter(1, top, True)
    weights = logits.masked_fill(~selected, float("-inf")).softmax(-1)
    return Routing(weights, probs, selected)


def dense_routing(logits: torch.Tensor) -> Routing:
    """Every expert, softmax weights."""
    probs = logits.softmax(-1)
    return Routing(probs, probs, torch.ones_like(probs, dtype=torch.bool))


def random_routing(keys: torch.Tensor, num_experts: int, k: int, seed: int = 0,
                   device: torch.device | str = "cpu") -> Routing:
    """``k`` uniformly random experts per sample with equal weights, ignoring the input.

    Each sample's choice comes from a private generator seeded by its key (``keys`` int64 [B], see
    :mod:`corruptions.keys`) and ``seed``: a pure function of the sample (hash routing), whatever the
    batch composition or device. No global RNG is used.
    """
    draws = uniform(derive_keys(seed, keys, "router", "random_routing"), (num_experts,))
    top = draws.topk(k, dim=-1).indices
    selected = torch.zeros(len(keys), num_experts, dtype=torch.bool).scatter(1, top, True).to(device)
    weights = selected.float() / k
    return Routing(weights, torch.full_like(weights, 1.0 / num_experts), selected)


def load_balance_loss(probs: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Switch-style balance loss ``E * sum_e f_e P_e`` (1 when perfectly balanced).

    f_e = share of all (sample, expert) assignments that go to e (sums to one over e);
    P_e = mean router probability of e over the batch.
    """
    sel = selected.to(probs.dtype)
    f = sel.sum(0) / sel.sum().clamp(min=1.0)
    return probs.shape[-1] * (f * probs.mean(0)).sum()


class GatedRouter(nn.Module):
    """Router logits [B, E] = ``gate(x)`` (+ ``side_gate(side)`` when built with ``side_dim``).

    The side input carries extra routing evidence (QA-MoE: the modality qualities).
    """

    def __init__(self, in_dim: int, num_experts: int, side_dim: int | None = None):
        super().__init__()
        self.gate = nn.Linear(in_dim, num_experts)
        self.side_gate = nn.Linear(side_dim, num_experts) if side_dim else None

    def forward(self, x: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.gate(x)
        if self.side_gate is not None:
            if side is None:
                raise ValueError("this router was built with a side input; pass it")
            logits = logits + self.side_gate(side)
        return logits


class MLPHead(nn.Module):
    """``Linear(in, hidden) - GELU - Dropout - Linear(hidden, out)``; returns [..., out]."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int = 1, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
