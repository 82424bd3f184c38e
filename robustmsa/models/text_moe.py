"""TEXT: text-routed sparse mixture of experts with explanation and temporal alignment (seed 000).

Follows the authors' code as summarised in MODELS.md, at CPU-friendly sizes (d 64 instead of 128);
every choice the summary leaves open is a field of :class:`TEXTConfig`.

Forward pass:

1. shared encoders (:class:`~robustmsa.models.layers.ModalityEncoders`; text from features or a
   Hugging Face encoder) -> text, audio, vision sequences of width d;
2. one 1-layer transformer per stream (:class:`~robustmsa.models.layers.AttentionBlock`) over the
   stream with one learnable *aggregation token* prepended (T + 1 tokens);
3. explanation alignment, only when the batch carries clue token ids for audio AND vision
   (``batch.clues``) and ``use_clues``: each clue sequence is embedded (a small learned embedding
   over the clue vocabulary, id 0 = padding, with sinusoidal positions; with ``text_encoder: hf``
   the shared pretrained text encoder, as the paper's shared BERT), passed through its own stream
   transformer, and used as the *query* of a cross-attention whose keys/values are the modality
   stream: the aligned audio (vision) stream has the clue's length. Without clues the step is
   skipped (the paper's "w/o explanations" ablation) and the modality streams go on directly.
   ``clue_residual`` False (default): the aligned stream is the attention read-out only, so the
   clue chooses *where* to read but the content comes from the (possibly corrupted) features; the
   harness never corrupts clues, and a residual would let clean clue content bypass every
   corruption of audio and vision;
4. temporal alignment block (audio and vision streams of equal length; when their lengths differ,
   e.g. unaligned data without clues, the valid frames of each are resampled by nearest neighbour to
   the longer length, aggregation tokens kept first): per stream RMSNorm, in_proj d -> 2 inner
   split into x and w, depthwise causal Conv1d(kernel 4) on x, cross gating
   ``x_a * SiLU(w_v)`` and ``x_v * SiLU(w_a)``, out_proj, residual. Causal: position t only sees
   positions <= t of both streams;
5. concatenate text + audio + vision streams; sinusoidal positions within each stream plus a
   learned stream-type embedding (lengths vary across datasets, so no learned absolute positions);
6. text-routed sparse MoE transformer (``depth`` layers): masked self-attention, then a sparse MoE
   whose router input is the masked mean of the layer's *text* tokens: one routing per sample for
   all its tokens, ``num_experts`` Linear-GELU-Linear experts, top-``top_k``. During training the
   router is Shazeer's noisy top-k, ``logits + eps * softplus(W_noise x)``, with ``eps ~ N(0, 1)``
   drawn from a private generator keyed by (``noise_seed``, sample key, layer, forward call index):
   no global RNG, the same samples in the same training order give the same noise. The authors'
   capacity factor (1.0) is not applied: dropping overflow samples would make a prediction depend
   on the other samples of its batch. No balance loss by default (as in the code);
7. read the three aggregation tokens; gated fusion ``softmax(Linear(3d -> 3))``-weighted sum;
   head d -> 64 -> 1.

Masks: masked elements are zeroed before any mixing; aggregation tokens are always valid, so an
absent modality contributes only learned constants (no NaN).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from corruptions.keys import derive_keys, normal

from ..data.batch import Batch
from ..errors import RobustMSAError
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import (
    AttentionBlock,
    MaskedAttention,
    MLPHead,
    load_balance_loss,
    masked_mean,
    sinusoid_positions,
    topk_routing,
)
from .text_encoders import HFTextEncoder

__all__ = ["TEXTConfig", "TEXT", "TemporalAlignment", "AggregationStream", "TextRoutedMoELayer",
           "resample_valid"]


@dataclass(frozen=True)
class TEXTConfig(BaseConfig):
    """TEXT settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.
    Ablations: ``use_clues`` (w/o explanations), ``temporal_alignment`` (TA -> Concat),
    ``gated_fusion``, ``router_noise``.

    depth:          text-routed MoE transformer layers (2; the paper uses 3 on MOSI/SIMS, 2 on MOSEI).
    num_experts:    experts per MoE layer (5, as in the code).
    top_k:          experts per sample (3, as in the code).
    expert_hidden:  hidden width of each Linear-GELU-Linear expert (128 = 2 d).
    temporal_inner: inner width of the temporal alignment block (128 = 2 d, as 256 = 2 x 128).
    conv_kernel:    kernel of its depthwise causal convolution (4).
    head_hidden:    hidden width of the regression head (64).
    use_clues:      use clue ids when the batch has them for audio and vision (True); False always
                    runs the "w/o explanations" path.
    clue_vocab:     size of the learned clue embedding (32 >= the synthetic clue vocabulary of 27);
                    clue ids must be below it (unused with text_encoder "hf").
    clue_residual:  add the clue embedding to its alignment read-out (False, see module docstring).
    temporal_alignment: the temporal alignment block (True); False = plain concatenation (the
                    paper's "TA -> Concat" ablation).
    gated_fusion:   gated fusion of the aggregation tokens (True); False = their plain mean.
    router_noise:   noisy top-k routing during training (True).
    noise_seed:     salt of the keyed router noise (0).
    balance_weight: weight of a Switch load-balance loss (0.0: none, as in the code).
    """

    depth: int = 2
    num_experts: int = 5
    top_k: int = 3
    expert_hidden: int = 128
    temporal_inner: int = 128
    conv_kernel: int = 4
    head_hidden: int = 64
    use_clues: bool = True
    clue_vocab: int = 32
    clue_residual: bool = False
    temporal_alignment: bool = True
    gated_fusion: bool = True
    router_noise: bool = True
    noise_seed: int = 0
    balance_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("depth", "num_experts", "expert_hidden", "temporal_inner", "conv_kernel", "head_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        check_config(1 <= self.top_k <= self.num_experts, "top_k", f"must be in [1, num_experts={self.num_experts}]")
        check_config(self.clue_vocab >= 2, "clue_vocab", "must be >= 2 (id 0 is padding)")
        check_config(self.balance_weight >= 0, "balance_weight", "must be >= 0")


def resample_valid(x: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-neighbour resampling of the valid elements of ``x`` [B, T, d] to ``length`` steps.

    The valid elements of each row, in order, are spread over ``length`` positions (repeated when
    fewer); masked elements never enter. A row without valid elements gives zeros and an all-False
    mask; other rows are valid everywhere. Returns ``(y [B, length, d], mask [B, length])``.
    """
    n = mask.sum(1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # valid positions first
    steps = torch.arange(length, device=x.device)
    src = torch.minimum(steps[None, :] * n[:, None] // length, (n - 1).clamp(min=0)[:, None])
    idx = order.gather(1, src)
    out_mask = (n > 0)[:, None].expand(-1, length)
    y = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])) * out_mask.unsqueeze(-1).to(x.dtype)
    return y, out_mask


class AggregationStream(nn.Module):
    """One stream transformer: prepend a learnable aggregation token, one masked AttentionBlock.

    ``forward(seq [B,T,d], mask [B,T]) -> (out [B,T+1,d], mask [B,T+1])``; the token is always valid.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.token = nn.Parameter(0.02 * torch.randn(d_model))
        self.block = AttentionBlock(d_model, num_heads, dropout)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = seq.shape[0]
        x = torch.cat([self.token.expand(b, 1, -1), seq], dim=1)
        m = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        return self.block(x, m), m


class TemporalAlignment(nn.Module):
    """Mamba-like cross-gated causal block over equal-length audio and vision streams.

    ``a' = a + out_a(conv_a(x_a) * SiLU(w_v))``, ``v' = v + out_v(conv_v(x_v) * SiLU(w_a))`` with
    ``[x_m, w_m] = in_m(RMSNorm(m))``; the depthwise convolution is causal (left padding), masked
    inputs are zeroed first and masked outputs are zero.
    """

    def __init__(self, d_model: int, inner: int, kernel: int = 4):
        super().__init__()
        self.kernel = kernel
        self.norm = nn.ModuleList(nn.RMSNorm(d_model) for _ in range(2))
        self.in_proj = nn.ModuleList(nn.Linear(d_model, 2 * inner) for _ in range(2))
        self.conv = nn.ModuleList(nn.Conv1d(inner, inner, kernel, groups=inner) for _ in range(2))
        self.out_proj = nn.ModuleList(nn.Linear(inner, d_model) for _ in range(2))

    def _causal_conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.conv[i](F.pad(x.transpose(1, 2), (self.kernel - 1, 0))).transpose(1, 2)

    def forward(self, a: torch.Tensor, v: torch.Tensor, mask_a: torch.Tensor,
                mask_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if a.shape != v.shape:
            raise ValueError(f"temporal alignment needs equal shapes, got {tuple(a.shape)} and {tuple(v.shape)}")
        ms = [mask_a.to(a.dtype).unsqueeze(-1), mask_v.to(v.dtype).unsqueeze(-1)]
        xs, ws = [], []
        for i, (s, m) in enumerate(zip((a, v), ms)):
            x, w = self.in_proj[i](self.norm[i](s * m)).chunk(2, dim=-1)
            xs.append(self._causal_conv(i, x * m))
            ws.append(w)
        a_out = (a + self.out_proj[0](xs[0] * F.silu(ws[1]))) * ms[0]
        v_out = (v + self.out_proj[1](xs[1] * F.silu(ws[0]))) * ms[1]
        return a_out, v_out


class TextRoutedMoELayer(nn.Module):
    """Masked self-attention, then a sparse MoE routed per sample by the mean of the text tokens.

    ``forward(x [B,T,d], mask [B,T], text_len, noise [B,E] or None) -> (x', Routing)``; the first
    ``text_len`` positions are the text stream. Experts are Linear-GELU-Linear and run only on the
    samples routed to them.
    """

    def __init__(self, d_model: int, num_heads: int, num_experts: int, top_k: int, hidden: int,
                 noisy: bool, dropout: float = 0.0):
        super().__init__()
        self.top_k = top_k
        self.attn = MaskedAttention(d_model, num_heads, dropout, cross=False)
        self.norm = nn.LayerNorm(d_model)
        self.router = nn.Linear(d_model, num_experts)
        self.noise_scale = nn.Linear(d_model, num_experts) if noisy else None
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_model))
            for _ in range(num_experts))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, text_len: int, noise: torch.Tensor | None):
        m = mask.to(x.dtype).unsqueeze(-1)
        x = x + self.attn(x, mask)
        h = self.norm(x) * m
        key = masked_mean(h[:, :text_len], mask[:, :text_len])
        logits = self.router(key)
        if noise is not None and self.noise_scale is not None:
            logits = logits + noise * F.softplus(self.noise_scale(key))
        routing = topk_routing(logits, self.top_k)
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            idx = torch.nonzero(routing.weights[:, e] > 0).squeeze(1)
            if idx.numel():
                out = out.index_add(0, idx, routing.weights[idx, e, None, None] * expert(h[idx]))
        return (x + out) * m, routing


@register_model("text_moe", TEXTConfig)
class TEXT(MSAModel):
    """TEXT (display name); see the module docstring for the architecture.

    losses: ``load_balance`` when ``balance_weight`` > 0.
    extras: ``fusion_weights`` [B, 3] (text, audio, vision aggregation tokens),
    ``expert_weights`` [B, depth, E], ``clues_used`` [B] (1.0 where the clue path ran).
    """

    extras = (Extra("fusion_weights"), Extra("expert_weights"), Extra("clues_used"))
    supports_classification = True

    display_name = "TEXT"

    def __init__(self, config: TEXTConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.streams = nn.ModuleDict({name: AggregationStream(d, c.num_heads, c.dropout)
                                      for name in ("text", "audio", "vision", "clue_audio", "clue_vision")})
        learned = not isinstance(self.encoders.text, HFTextEncoder)  # clue ids: own embedding or the shared encoder
        self.clue_embed = nn.Embedding(c.clue_vocab, d, padding_idx=0) if learned else None
        self.clue_norm = nn.LayerNorm(d) if learned else None
        self.align = nn.ModuleDict({m: MaskedAttention(d, c.num_heads, c.dropout) for m in ("audio", "vision")})
        self.align_mlp = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(),
                                                         nn.Linear(2 * d, d)) for m in ("audio", "vision")})
        self.temporal = TemporalAlignment(d, c.temporal_inner, c.conv_kernel) if c.temporal_alignment else None
        self.stream_type = nn.Embedding(3, d)
        self.layers = nn.ModuleList(
            TextRoutedMoELayer(d, c.num_heads, c.num_experts, c.top_k, c.expert_hidden, c.router_noise, c.dropout)
            for _ in range(c.depth))
        self.fusion_gate = nn.Linear(3 * d, 3) if c.gated_fusion else None
        self.head = MLPHead(d, c.head_hidden, self.num_outputs, c.dropout)
        self._noise_calls = 0  # training forward calls so far: the stream of the keyed router noise


    # --- explanation alignment ------------------------------------------------------------------

    def _has_clues(self, batch: Batch) -> bool:
        return self.config.use_clues and "audio" in batch.clues and "vision" in batch.clues

    def _embed_clue(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ids != 0
        if self.clue_embed is None or self.clue_norm is None:
            text_encoder = self.encoders.text
            assert isinstance(text_encoder, HFTextEncoder)
            return text_encoder.encode_ids(ids, mask).seq, mask
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.clue_vocab:
            raise RobustMSAError(f"clue ids must lie in [0, clue_vocab={self.config.clue_vocab}), got "
                                 f"[{int(ids.min())}, {int(ids.max())}]", hint="raise clue_vocab")
        x = self.clue_embed(ids) + sinusoid_positions(ids.shape[1], self.config.d_model,
                                                      ids.device, self.clue_embed.weight.dtype)
        return self.clue_norm(x) * mask.unsqueeze(-1), mask

    def _aligned(self, m: str, ids: torch.Tensor, feats: torch.Tensor,
                 feat_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ids.shape[0] != feats.shape[0]:
            raise ValueError(f"clues[{m!r}] has {ids.shape[0]} rows, the batch {feats.shape[0]}")
        clue, clue_mask = self.streams[f"clue_{m}"](*self._embed_clue(ids.to(feats.device)))
        read = self.align[m](clue, clue_mask, feats, feat_mask)
        y = clue + read if self.config.clue_residual else read
        y = y + self.align_mlp[m](y)
        return y * clue_mask.to(y.dtype).unsqueeze(-1), clue_mask

    # --- forward --------------------------------------------------------------------------------

    def _router_noise(self, batch: Batch, layer: int) -> torch.Tensor | None:
        c = self.config
        if not (self.training and c.router_noise):
            return None
        keys = derive_keys(c.noise_seed, batch.keys, "router", f"text_moe.layer{layer}", stream=self._noise_calls)
        return normal(keys, (c.num_experts,)).to(batch.device)

    def _av_streams(self, batch: Batch, enc: dict) -> tuple[list[torch.Tensor], list[torch.Tensor], bool]:
        feats = {m: self.streams[m](enc[m].seq, enc[m].mask) for m in ("audio", "vision")}
        use_clues = self._has_clues(batch)
        if use_clues:
            feats = {m: self._aligned(m, batch.clues[m], *feats[m]) for m in ("audio", "vision")}
        (a, ma), (v, mv) = feats["audio"], feats["vision"]
        if a.shape[1] != v.shape[1]:
            length = max(a.shape[1], v.shape[1]) - 1
            a_frames, ma_frames = resample_valid(a[:, 1:], ma[:, 1:], length)
            v_frames, mv_frames = resample_valid(v[:, 1:], mv[:, 1:], length)
            a, ma = torch.cat([a[:, :1], a_frames], 1), torch.cat([ma[:, :1], ma_frames], 1)
            v, mv = torch.cat([v[:, :1], v_frames], 1), torch.cat([mv[:, :1], mv_frames], 1)
        if self.temporal is not None:
            a, v = self.temporal(a, v, ma, mv)
        return [a, v], [ma, mv], use_clues

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        enc = self.encoders(batch)
        t, mt = self.streams["text"](enc["text"].seq, enc["text"].mask)
        (a, v), (ma, mv), used = self._av_streams(batch, enc)
        parts = [t, a, v]
        x = torch.cat([p + sinusoid_positions(p.shape[1], c.d_model, p.device, p.dtype) + self.stream_type.weight[i]
                       for i, p in enumerate(parts)], dim=1)
        mask = torch.cat([mt, ma, mv], dim=1)
        x = x * mask.to(x.dtype).unsqueeze(-1)
        routings = []
        for i, layer in enumerate(self.layers):
            x, routing = layer(x, mask, t.shape[1], self._router_noise(batch, i))
            routings.append(routing)
        if self.training:
            self._noise_calls += 1
        starts = [0, t.shape[1], t.shape[1] + a.shape[1]]
        agg = torch.stack([x[:, s] for s in starts], dim=1)  # [B, 3, d]
        if self.fusion_gate is not None:
            weights = self.fusion_gate(agg.flatten(1)).softmax(-1)
        else:
            weights = torch.full(agg.shape[:2], 1.0 / 3, device=agg.device, dtype=agg.dtype)
        pred = self.head((weights.unsqueeze(-1) * agg).sum(1)).squeeze(-1)
        losses: dict[str, torch.Tensor] = {}
        if c.balance_weight > 0:
            losses["load_balance"] = c.balance_weight * torch.stack(
                [load_balance_loss(r.probs, r.selected) for r in routings]).mean()
        extras = {"fusion_weights": weights.detach(),
                  "expert_weights": torch.stack([r.weights for r in routings], dim=1).detach(),
                  "clues_used": torch.full((len(batch),), float(used), device=pred.device)}
        return {"pred": pred, "losses": losses, "extras": extras}
