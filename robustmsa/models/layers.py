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

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from corruptions.keys import MODALITIES, derive_keys, uniform

from ..data.batch import Batch

__all__ = [
    "Encoded",
    "EncoderSpec",
    "masked_mean",
    "modality_absent",
    "ConvBlock",
    "AttentionBlock",
    "SequenceEncoder",
    "InputStandardizer",
    "AttentionPool",
    "POOLINGS",
    "masked_max",
    "local_contrast",
    "frame_deltas",
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
    "unimodal_loss",
    "input_group_norm",
    "shrink_input_groups",
    "EncodingCache",
    "encoding_cache",
    "CrossAttentionBlock",
    "masked_softmax",
    "sinusoid_positions",
    "MaskedAttention",
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


class InputStandardizer(nn.Module):
    """Per-dimension ``(x - mean) / std`` with statistics of the training features (buffers, so they
    travel with the checkpoint). Identity until :meth:`fit` is called; constant dimensions keep
    their scale (std 1). Features reach the models on wildly different per-dimension scales and
    offsets (COVAREP/Facet-like); a shared projection learns little from unstandardised inputs."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        frames = x[mask].to(torch.float64)
        if frames.shape[0] < 2:
            return
        std = frames.std(0, correction=0)
        self.mean.copy_(frames.mean(0).to(self.mean.dtype))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).to(self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean).div_(self.std)  # in place on the fresh difference: one allocation, same values


class AttentionPool(nn.Module):
    """Masked attention pooling: ``sum_t softmax_t(w . h_t) h_t`` per head over ``heads`` slices of
    the width; rows without a valid position pool to zeros. Finds the few salient frames or
    words that a mean over the whole sequence would dilute."""

    def __init__(self, d_model: int, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.score = nn.Linear(d_model, heads)

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The attention weights [B, T, H] (summing to 1 over valid positions, per head)."""
        return masked_softmax(self.score(h), mask.unsqueeze(-1), dim=1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = h.shape
        a = self.weights(h, mask) if weights is None else weights
        return (a.unsqueeze(-1) * h.view(b, t, self.heads, d // self.heads)).sum(1).reshape(b, d)


#: pooling of a sequence encoder: "mean" (masked mean), "attention" (:class:`AttentionPool`), "max",
#: "attention_mean" (both, projected back to the width: the salient frames against the rest),
#: "attention_max" (attention and max pooling, projected back to the width)
POOLINGS = ("mean", "attention", "max", "attention_mean", "attention_max")


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max of ``x`` [B, T, D] over valid positions; zeros where none is valid."""
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    return torch.where(mask.any(1, keepdim=True), filled, torch.zeros_like(filled))


@dataclass(frozen=True)
class EncoderSpec:
    """The shape of a modality encoder (:class:`SequenceEncoder`), shared by every modality of a model.

    d_model: output width; kind: "conv" or "attention" blocks; kernel_size: of the "conv" blocks;
    num_heads: of the "attention" blocks and the attention pooling; dropout: rate; pooling: one of
    :data:`POOLINGS`; layers: number of masked blocks; input_rank: inputs wider than this are
    projected through a rank-``input_rank`` bottleneck (0: a full projection); local_contrast: for
    the frame modalities (audio, vision), the standardised frames minus their masked moving average
    over ``2 local_contrast + 1`` frames join the input (0: off); frame_deltas: for the frame
    modalities, the first differences of the standardised frames (:func:`frame_deltas`) join the
    input; frame_readout: for the frame modalities, a linear readout of the standardised frames
    and their first differences, weighted by each head of the attention pooling, is added to the
    pooled vector (:class:`SequenceEncoder`; needs an attention pooling).
    """

    d_model: int
    kind: str = "conv"
    kernel_size: int = 3
    num_heads: int = 4
    dropout: float = 0.0
    pooling: str = "mean"
    layers: int = 1
    input_rank: int = 0
    local_contrast: int = 0
    frame_deltas: bool = False
    frame_readout: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "attention"):
            raise ValueError(f"unknown encoder kind {self.kind!r} (allowed: conv, attention)")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} (allowed: {', '.join(POOLINGS)})")
        if self.input_rank < 0 or self.local_contrast < 0:
            raise ValueError(f"input_rank and local_contrast must be >= 0, got {self.input_rank}, {self.local_contrast}")
        if self.frame_readout and not self.pooling.startswith("attention"):
            raise ValueError(f"frame_readout needs an attention pooling, got {self.pooling!r}")

    def block(self) -> nn.Module:
        """A new masked block of this spec's kind."""
        if self.kind == "conv":
            return ConvBlock(self.d_model, self.kernel_size, self.dropout)
        return AttentionBlock(self.d_model, self.num_heads, self.dropout)


def local_contrast(x: torch.Tensor, mask: torch.Tensor, half: int) -> torch.Tensor:
    """``x`` [B, T, D] minus its masked moving average over ``2 half + 1`` positions (valid positions
    only, the window shrinking at the ends); zeros at invalid positions. A temporal high-pass: a
    slowly varying background cancels, a short burst stands out."""
    m = mask.to(x.dtype).unsqueeze(1)  # [B, 1, T]
    xm = x.transpose(1, 2) * m
    k = 2 * half + 1
    total = F.avg_pool1d(xm, k, stride=1, padding=half, count_include_pad=True)
    count = F.avg_pool1d(m, k, stride=1, padding=half, count_include_pad=True)
    avg = total / count.clamp(min=1.0 / k)
    return (xm - avg * m).transpose(1, 2)


def frame_deltas(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x_t - x_{t-1}`` [B, T, D] where both frames are valid, zeros elsewhere (the "delta features"
    of speech processing). Against a smooth background a burst's onset and offset are its sharpest
    evidence: the steps that a temporal high-pass keeps."""
    both = (mask[:, 1:] & mask[:, :-1]).to(x.dtype).unsqueeze(-1)
    out = torch.zeros_like(x)
    out[:, 1:] = (x[:, 1:] - x[:, :-1]) * both
    return out


class SequenceEncoder(nn.Module):
    """Input standardisation, linear projection to ``spec.d_model`` + LayerNorm, then ``spec.layers``
    masked blocks ("conv" or "attention") and a pooling (one of :data:`POOLINGS`). Options of the
    spec, off by default: a low-rank input projection (``input_rank``, for inputs wider than it), a
    local-contrast channel of the frame modalities (``local_contrast``, :func:`local_contrast`),
    their first differences as a further channel (``frame_deltas``, :func:`frame_deltas`), and a
    linear readout of the frame modalities (``frame_readout``): per head of the attention pooling,
    the attention-weighted sum of the standardised frames and of their first differences,
    projected to ``d_model`` (initialised at zero) and added to the pooled vector. The projection
    and LayerNorm make every frame's encoding a non-linear function of that frame alone, so the
    pooled vector cannot form the linear statistics that estimate a burst's amplitude against a
    smooth background (the mean of the burst frames and the steps at its edges); the readout can.

    ``forward(x [B,T,D], mask [B,T]) -> Encoded``; ``fit_inputs(batch)`` sets the standardisation
    from training features of modality ``source`` (the trainer calls it through ``MSAModel.fit_inputs``).
    """

    def __init__(self, in_dim: int, spec: EncoderSpec, source: str | None = None):
        super().__init__()
        d_model = spec.d_model
        self.source = source
        self.standardize = InputStandardizer(in_dim)
        frames = source in ("audio", "vision")
        self.contrast = spec.local_contrast if frames else 0
        self.deltas = spec.frame_deltas and frames
        width = in_dim * (1 + bool(self.contrast) + self.deltas)
        low_rank = 0 < spec.input_rank < width
        self.proj = (nn.Sequential(nn.Linear(width, spec.input_rank, bias=False), nn.Linear(spec.input_rank, d_model))
                     if low_rank else nn.Linear(width, d_model))
        self.norm = nn.LayerNorm(d_model)
        self.kind = spec.kind
        self.blocks = nn.ModuleList(spec.block() for _ in range(spec.layers))
        self.pooling = spec.pooling
        self.pool = AttentionPool(d_model, spec.num_heads) if spec.pooling.startswith("attention") else None
        mixed = spec.pooling in ("attention_mean", "attention_max")
        self.pool_mix = nn.Linear(2 * d_model, d_model) if mixed else None
        self.readout = None
        if spec.frame_readout and frames:  # zeros, drawing nothing: every other layer is initialised as without it
            self.readout = torch.nn.utils.skip_init(nn.Linear, 2 * in_dim * spec.num_heads, d_model)
            nn.init.zeros_(self.readout.weight)
            nn.init.zeros_(self.readout.bias)

    def fit_inputs(self, batch: Batch) -> None:
        """Standardise with the statistics of ``batch``'s ``source`` modality (valid frames of present
        samples); a no-op for an encoder built without a source."""
        if self.source is not None:
            i = MODALITIES.index(self.source)
            mask = getattr(batch, f"{self.source}_mask") & ~batch.missing[:, i : i + 1]
            self.standardize.fit(getattr(batch, self.source), mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # The projection is per position, so masked-out inputs only reach masked-out positions,
        # which are zeroed here, before any mixing across positions.
        m = mask.to(x.dtype).unsqueeze(-1)
        x = self.standardize(x)
        frames = x
        deltas = frame_deltas(x, mask) if self.deltas or self.readout is not None else None
        if self.contrast:
            x = torch.cat([x, local_contrast(frames, mask, self.contrast)], dim=-1)
        if self.deltas:
            x = torch.cat([x, deltas], dim=-1)
        h = self.norm(self.proj(x))
        if self.kind == "attention":
            h = h + _sinusoid(h.shape[1], h.shape[2], h.device, h.dtype)
        h = h * m
        for block in self.blocks:
            h = block(h, mask)
        weights = self.pool.weights(h, mask) if self.readout is not None else None
        if self.pool_mix is not None:
            rest = masked_max(h, mask) if self.pooling == "attention_max" else masked_mean(h, mask)
            pooled = self.pool_mix(torch.cat([self.pool(h, mask, weights), rest], dim=-1))
        elif self.pool is not None:
            pooled = self.pool(h, mask, weights)
        elif self.pooling == "max":
            pooled = masked_max(h, mask)
        else:
            pooled = masked_mean(h, mask)
        if self.readout is not None:
            both = torch.cat([frames, deltas], dim=-1) * m  # [B, T, 2D], zeros on invalid frames
            pooled = pooled + self.readout(torch.einsum("bth,btd->bhd", weights, both).flatten(1))
        return Encoded(h, pooled, mask)


class TextEncoder(Protocol):
    """What a text encoder must do: encode the text of a batch (features or token ids) to ``Encoded``.

    The default, :class:`TextFeatureEncoder`, reads precomputed features (``batch.text``). A Hugging
    Face encoder over ``batch.text_ids`` implements the same call and is passed to
    :class:`ModalityEncoders` as ``text_encoder``; ``MSAModel.param_groups`` gives its pretrained
    weights their own learning rate.
    """

    def __call__(self, batch: Batch, mask: torch.Tensor) -> Encoded: ...


class TextFeatureEncoder(nn.Module):
    """Text from precomputed features ``batch.text`` [B, L, Dt] through a :class:`SequenceEncoder`."""

    def __init__(self, in_dim: int, spec: EncoderSpec):
        super().__init__()
        self.encoder = SequenceEncoder(in_dim, spec, source="text")

    def forward(self, batch: Batch, mask: torch.Tensor) -> Encoded:
        return self.encoder(batch.text, mask)


class ModalityEncoders(nn.Module):
    """One encoder per modality; ``forward(batch) -> {"text"|"audio"|"vision": Encoded}``.

    Each encoder sees ``mask & ~missing``: a missing modality encodes to zeros. ``text_encoder``
    replaces the default :class:`TextFeatureEncoder` (extension point for pretrained encoders).
    """

    def __init__(self, dims: Mapping[str, int], spec: EncoderSpec, text_encoder: nn.Module | None = None):
        super().__init__()
        self.text = text_encoder if text_encoder is not None else TextFeatureEncoder(dims["text"], spec)
        self.audio = SequenceEncoder(dims["audio"], spec, source="audio")
        self.vision = SequenceEncoder(dims["vision"], spec, source="vision")

    def forward(self, batch: Batch) -> dict[str, Encoded]:
        out: dict[str, Encoded] = {}
        cache = _ENCODING_CACHE.get()
        if cache is not None and (self.training or torch.is_grad_enabled()):
            cache = None  # reuse is only valid for inference
        for i, m in enumerate(MODALITIES):
            key = None if cache is None else cache.key(self, batch, m, i)
            if key is not None and key in cache.entries:
                cache.hits += 1
                out[m] = cache.entries[key]
                continue
            mask = getattr(batch, f"{m}_mask") & ~batch.missing[:, i : i + 1].to(batch.device)
            out[m] = self.text(batch, mask) if m == "text" else getattr(self, m)(getattr(batch, m), mask)
            if key is not None:
                cache.misses += 1
                cache.entries[key] = out[m]
        return out


class EncodingCache:
    """Per-modality encodings of *unchanged clean inputs*, reused across forward passes (inference).

    Evaluating one checkpoint over a grid feeds the same clean tensors for every modality a grid
    point leaves clean (a single-modality sweep leaves two of three clean), so
    :class:`ModalityEncoders` can skip those encoders. An input is recognised by identity, never by
    value: the modality's features (and token ids for text) and its mask must be views of the clean
    tensors registered here (same storage, offset, shape, strides and version counter, so an
    in-place change is a miss) and the missing flags must be equal. Only such inputs are cached:
    memory is bounded by one encoding of the clean data per encoder, and the registered tensors are
    kept alive so their addresses cannot be reused. Use :func:`encoding_cache`.
    """

    def __init__(self, clean: Batch):
        self._clean = clean  # keeps the storages alive
        names = [*MODALITIES, *(f"{m}_mask" for m in MODALITIES), "text_ids"]
        tensors = [getattr(clean, n) for n in names if getattr(clean, n) is not None]
        self._storages = {t.untyped_storage().data_ptr() for t in tensors}
        self.entries: dict[tuple, Encoded] = {}
        self.hits = 0
        self.misses = 0

    def _desc(self, t: torch.Tensor | None) -> tuple | None:
        if t is None:
            return ()
        if t.untyped_storage().data_ptr() not in self._storages:
            return None
        return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t._version)

    def key(self, owner: nn.Module, batch: Batch, m: str, i: int) -> tuple | None:
        """The cache key of modality ``m`` of ``batch`` for encoder ``owner``, or None if not cacheable."""
        parts = [self._desc(getattr(batch, m)), self._desc(getattr(batch, f"{m}_mask"))]
        if m == "text":
            parts.append(self._desc(batch.text_ids))
        if any(p is None for p in parts):
            return None
        return (id(owner), m, *parts, batch.missing[:, i].cpu().numpy().tobytes())


_ENCODING_CACHE: contextvars.ContextVar[EncodingCache | None] = contextvars.ContextVar("encoding_cache", default=None)


@contextlib.contextmanager
def encoding_cache(clean: Batch) -> Iterator[EncodingCache]:
    """Within the block, :class:`ModalityEncoders` reuse the encodings of ``clean``'s unchanged tensors."""
    cache = EncodingCache(clean)
    token = _ENCODING_CACHE.set(cache)
    try:
        yield cache
    finally:
        _ENCODING_CACHE.reset(token)


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


def input_group_norm(module: nn.Module) -> torch.Tensor:
    """The group-lasso norm of every input projection in ``module``: the sum over each
    :class:`SequenceEncoder`'s input dimensions of the L2 norm of that dimension's projection
    weights (the column of its first linear layer). A penalty on it drives the weights of whole
    input dimensions to zero: feature selection among many uninformative dimensions."""
    layers = _first_projections(module)
    if not layers:
        raise ValueError("input_group_norm: the module has no SequenceEncoder")
    return sum((layer.weight.norm(dim=0).sum() for layer in layers[1:]), layers[0].weight.norm(dim=0).sum())


def _first_projections(module: nn.Module) -> list[nn.Linear]:
    """The first linear layer of every :class:`SequenceEncoder` input projection in ``module``."""
    out = []
    for enc in module.modules():
        if isinstance(enc, SequenceEncoder):
            out.append(enc.proj[0] if isinstance(enc.proj, nn.Sequential) else enc.proj)
    return out


@torch.no_grad()
def shrink_input_groups(module: nn.Module, threshold: float) -> None:
    """Group soft-thresholding of the input projections in ``module`` (the proximal step of the
    group-lasso norm :func:`input_group_norm`): each input dimension's projection weights (a column)
    are scaled by ``max(0, 1 - threshold / norm)``, so a column whose norm is below ``threshold``
    becomes exactly zero: that input dimension is no longer read."""
    for layer in _first_projections(module):
        w = layer.weight
        norm = w.norm(dim=0, keepdim=True)
        w.mul_((1.0 - threshold / norm.clamp(min=1e-12)).clamp(min=0.0))


def unimodal_loss(preds: torch.Tensor, labels: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean loss of per-modality predictions against the sample's label over present (sample,
    modality) pairs: absolute error of scores ``preds`` [B, M], or cross-entropy of logits
    ``preds`` [B, M, C] against class indices; zero when no pair is present."""
    target = labels.to(preds.device).reshape(-1, 1).expand(preds.shape[:2])
    if preds.dim() == 3:
        per = F.cross_entropy(preds.transpose(1, 2), target.long(), reduction="none")
    else:
        per = (preds - target.to(preds.dtype)).abs()
    w = present.to(per.dtype)
    return (per * w).sum() / w.sum().clamp(min=1.0)


class MLPHead(nn.Module):
    """``Linear(in, hidden) - GELU - Dropout - Linear(hidden, out)``; returns [..., out]."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int = 1, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def sinusoid_positions(length: int, d_model: int, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed sinusoidal position table [length, d_model] (the one the "attention" encoder adds)."""
    return _sinusoid(length, d_model, torch.device(device), dtype)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``logits`` over the entries where ``mask`` is True; exactly 0 elsewhere.

    A slice without any True entry gives all zeros (no NaN, finite gradients).
    """
    any_valid = mask.any(dim, keepdim=True)
    filled = logits.masked_fill(~mask, float("-inf"))
    filled = torch.where(any_valid, filled, torch.zeros_like(logits))
    return filled.softmax(dim) * mask.to(logits.dtype)


class CrossAttentionBlock(nn.Module):
    """One pre-norm cross-modal transformer block (MulT): a target sequence attends to a source.

    ``forward(x [B,Tq,d], mask [B,Tq], ctx [B,Tk,d], ctx_mask [B,Tk]) -> [B,Tq,d]``:
    ``x + Attn(LN(x), LN(ctx), LN(ctx))`` over valid source positions only, then ``+ MLP(LN(.))``.
    A row whose source has no valid position gets no attention update (internally it attends to
    position 0, then the update is zeroed: no NaN). Outputs at invalid target positions are zeroed.
    Tq and Tk may differ (unaligned sequences).
    """

    def __init__(self, d_model: int, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.attn = MaskedAttention(d_model, num_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(x, mask, ctx, ctx_mask))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x * mask.to(x.dtype).unsqueeze(-1)


class MaskedAttention(nn.Module):
    """Pre-norm multi-head attention *sublayer*: the update only, no residual, no MLP.

    ``forward(q [B,Tq,d], q_mask [B,Tq], kv=None, kv_mask=None) -> [B,Tq,d]`` returns
    ``W_o Attn(LN_q(q), LN_kv(kv), LN_kv(kv))`` over the valid ``kv`` positions; ``kv=None`` is
    self-attention (``kv = q``, the query norm is used for both; build with ``cross=False`` when the
    layer only self-attends, so it has no unused key/value norm). Masked ``kv`` elements are zeroed
    before anything else, so they never influence the output; a row without any valid ``kv``
    position gets a zero update (no NaN); outputs at invalid query positions are zero. Models
    compose it freely: ``x + attn(x, m)`` (a transformer sublayer) or ``attn(q, qm, kv, km)``
    alone (explanation alignment, where the query must not leak into the output).
    """

    def __init__(self, d_model: int, num_heads: int = 4, dropout: float = 0.0, cross: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_model) if cross else None
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.p = dropout

    def forward(self, q: torch.Tensor, q_mask: torch.Tensor, kv: torch.Tensor | None = None,
                kv_mask: torch.Tensor | None = None) -> torch.Tensor:
        if kv is None:
            kv, kv_mask, norm_kv = q, q_mask, self.norm_q
        else:
            if self.norm_kv is None or kv_mask is None:
                raise ValueError("cross-attention needs a layer built with cross=True and kv_mask with kv")
            norm_kv = self.norm_kv
        b, tq, d = q.shape
        tk, h = kv.shape[1], self.num_heads
        kv = kv * kv_mask.to(kv.dtype).unsqueeze(-1)
        has_key = kv_mask.any(1)
        keys_ok = kv_mask.clone()
        keys_ok[:, 0] |= ~has_key
        qh = self.q(self.norm_q(q)).view(b, tq, h, d // h).transpose(1, 2)
        k, v = self.kv(norm_kv(kv)).view(b, tk, 2, h, d // h).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(qh, k, v, attn_mask=keys_ok[:, None, None, :],
                                              dropout_p=self.p if self.training else 0.0)
        keep = (q_mask & has_key[:, None]).to(q.dtype).unsqueeze(-1)
        return self.out(attn.transpose(1, 2).reshape(b, tq, d)) * keep
