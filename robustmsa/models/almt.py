"""ALMT: Adaptive Language-guided Multimodal Transformer (Zhang et al., EMNLP 2023).

"Learning Language-guided Adaptive Hyper-modality Representation for Multimodal Sentiment
Analysis". Language is the dominant modality; it guides the attention over audio and vision, so
that the hyper-modality representation keeps what agrees with the language and suppresses
irrelevant or conflicting audio/visual content. Forward pass:

1. encoders (shared layers) -> sequences ``X_m`` [B, T_m, d]; lengths may differ (unaligned);
2. token compression per modality (:class:`TokenCompressor`): ``tokens`` learned tokens are
   prepended to the sequence (plus sinusoidal positions) and ``token_layers`` masked transformer
   blocks run over both; the first ``tokens`` outputs are ``H_m`` [B, k, d] (the paper's
   "embedding": 8 tokens per modality, whatever the sequence length);
3. language encoder: ``ahl_layers - 1`` transformer blocks over ``H_t``, keeping every scale
   ``H_t^0 = H_t, H_t^1, ..., H_t^{L-1}``;
4. Adaptive Hyper-modality Learning (:class:`HyperModalityLayer`), L = ``ahl_layers`` layers:
   ``H_hyper^j = H_hyper^{j-1} + W_o(softmax(Q K_a^T / sqrt(d_h)) V_a + softmax(Q K_v^T / sqrt(d_h)) V_v)``
   with ``Q = LN(H_t^{j-1}) W_q`` (the language at scale j-1), ``K_a, V_a`` from ``LN(H_a)`` and
   ``K_v, V_v`` from ``LN(H_v)``; ``H_hyper^0`` is a learned [k, d] parameter (ones, as in the
   authors' code);
5. cross-modality fusion (:class:`FusionTransformer`): a [CLS] token and learned positions are
   prepended to ``H_t^{L-1}`` (query side) and to ``H_hyper^L`` (key/value side); ``fusion_layers``
   cross-attention blocks in which the language queries the hyper-modality;
6. ``pred = Linear(readout)``: the [CLS] output (``readout="cls"``, ALMT) or the mean of the other
   outputs (``"mean"``, the choice of LNLN's code). The fusion blocks have no self-attention among
   the language tokens (as in the authors' code), so the [CLS] output reads the hyper-modality
   alone: with ``"cls"`` the language reaches the prediction through the AHL queries only.

Masked positions never influence anything: they are zeroed by the encoders and masked as keys of
the compression blocks; from step 2 on every sequence has exactly ``tokens`` valid tokens. An absent
modality compresses to what its learned tokens alone give (the authors zero-fill missing inputs).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from corruptions.keys import MODALITIES

from ..data.batch import Batch
from .base import BaseConfig, MSAModel, check_config, register_model
from .layers import AttentionBlock, CrossAttentionBlock, Encoded, sinusoid_positions

__all__ = ["ALMTConfig", "ALMT", "TokenCompressor", "HyperModalityLayer", "FusionTransformer", "ALMTCore",
           "CoreOutput"]


@dataclass(frozen=True)
class ALMTConfig(BaseConfig):
    """ALMT settings; shared encoder settings in ``BaseConfig`` (``num_heads`` also sets the heads
    of every ALMT block, ``dropout`` their dropout).

    tokens:        k, learned tokens each modality is compressed to (8, as in the paper).
    token_layers:  transformer blocks of each modality's token compression (1, as the authors'
                   ALMT code: ``proj_depth`` 1).
    ahl_layers:    Adaptive Hyper-modality Learning layers L (3, as in the paper); the language
                   encoder has L - 1 blocks, so each AHL layer reads one language scale.
    fusion_layers: cross-modality fusion blocks (2, as in the paper).
    readout:       "cls" (the [CLS] output of the fusion transformer, ALMT) or "mean" (mean of
                   the other fusion outputs, the choice of LNLN's code).

    Against the paper's MOSI settings (authors' code, configs/mosi.yaml: width 128, 8 heads of 16,
    MLP width 128, BERT-base fine-tuned, inputs truncated to 50/375/500 steps, AdamW lr 1e-4,
    weight decay 1e-4, batch 64, 200 epochs, MSE loss): the defaults keep
    d_model 64 with 4 heads (width and heads are the shared ``d_model``/``num_heads``), the
    transformer MLPs are 2 x d_model wide (the zoo's blocks), the projection of each modality is
    the zoo's shared encoder (standardisation, Linear, LayerNorm, one masked conv block) followed
    by the token compression, the attention blocks split d_model over the heads (the authors'
    blocks have 8 heads of 64, an inner width of 512 for a width of 128), and the sequence
    positions are sinusoidal instead of learned
    (learned positions would fix the maximum length; masks and unaligned lengths come for free).
    The language query and the audio/vision keys and values of an AHL layer have no bias, as in
    the authors' code; its residual adds to ``H_hyper`` itself (pre-norm, as the paper's equation
    writes it), where the authors' code adds the update to ``LN(H_hyper)``. Text is precomputed
    features by default, BERT through ``text_encoder: hf``. For the paper's sizes: overrides
    ``{d_model: 128, num_heads: 8}``. Batch size, learning rate and epochs are suite settings.
    """

    tokens: int = 8
    token_layers: int = 1
    ahl_layers: int = 3
    fusion_layers: int = 2
    readout: Literal["cls", "mean"] = "cls"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("tokens", "token_layers", "ahl_layers", "fusion_layers"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")


def _valid(x: torch.Tensor) -> torch.Tensor:
    """An all-True mask [B, T] for the token sequence ``x`` [B, T, d]."""
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


class TokenCompressor(nn.Module):
    """``k`` learned tokens + a masked sequence -> ``blocks`` transformer blocks -> the k token outputs.

    ``forward(enc: Encoded) -> [B, k, d]``: the tokens attend to each other and to the valid
    sequence positions only (sinusoidal positions are added to the sequence, then re-masked).
    """

    def __init__(self, d_model: int, tokens: int, blocks: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.tokens = nn.Parameter(0.02 * torch.randn(tokens, d_model))
        self.blocks = nn.ModuleList(AttentionBlock(d_model, num_heads, dropout) for _ in range(blocks))

    def forward(self, enc: Encoded) -> torch.Tensor:
        seq, mask = enc.seq, enc.mask
        seq = (seq + sinusoid_positions(seq.shape[1], seq.shape[2], seq.device, seq.dtype)) * mask.unsqueeze(-1).to(seq.dtype)
        k = self.tokens.shape[0]
        x = torch.cat([self.tokens.expand(seq.shape[0], -1, -1), seq], dim=1)
        m = torch.cat([_valid(x[:, :k]), mask], dim=1)
        for block in self.blocks:
            x = block(x, m)
        return x[:, :k]


class HyperModalityLayer(nn.Module):
    """One Adaptive Hyper-modality Learning layer (module docstring, step 4).

    ``forward(h_lang, h_audio, h_vision, h_hyper) -> (h_hyper', attn_audio, attn_vision)``, all token
    sequences [B, k, d]; the attention maps are [B, heads, k_lang, k_audio|k_vision].
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        self.heads = num_heads
        self.norms = nn.ModuleDict({m: nn.LayerNorm(d_model) for m in (*MODALITIES, "hyper")})
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.ModuleDict({m: nn.Linear(d_model, 2 * d_model, bias=False) for m in ("audio", "vision")})
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def _attend(self, q: torch.Tensor, m: str, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv[m](self.norms[m](h)).chunk(2, dim=-1)
        k, v = self._split(k), self._split(v)
        attn = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
        out = attn @ v
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1), attn

    def forward(self, h_lang: torch.Tensor, h_audio: torch.Tensor, h_vision: torch.Tensor,
                h_hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self._split(self.q(self.norms["text"](h_lang)))
        out_a, attn_a = self._attend(q, "audio", h_audio)
        out_v, attn_v = self._attend(q, "vision", h_vision)
        return h_hyper + self.drop(self.out(out_a + out_v)), attn_a, attn_v


class FusionTransformer(nn.Module):
    """Cross-modality fusion: the language tokens (with a [CLS] token) query the hyper-modality.

    ``forward(h_hyper [B, k, d], h_lang [B, k, d]) -> [B, k + 1, d]`` (position 0: [CLS]); learned
    positions for both sides, as in the authors' code (the token count is fixed, so they can be).
    """

    def __init__(self, d_model: int, tokens: int, layers: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_source = nn.Parameter(0.02 * torch.randn(tokens + 1, d_model))
        self.pos_target = nn.Parameter(0.02 * torch.randn(tokens + 1, d_model))
        self.blocks = nn.ModuleList(CrossAttentionBlock(d_model, num_heads, dropout) for _ in range(layers))

    def forward(self, h_hyper: torch.Tensor, h_lang: torch.Tensor) -> torch.Tensor:
        cls = self.cls.expand(h_lang.shape[0], -1, -1)
        source = torch.cat([cls, h_hyper], dim=1) + self.pos_source
        x = torch.cat([cls, h_lang], dim=1) + self.pos_target
        mask = _valid(x)
        for block in self.blocks:
            x = block(x, mask, source, mask)
        return x


class CoreOutput(NamedTuple):
    """What :class:`ALMTCore` gives: ``pred`` [B]; ``feature`` [B, d] (the readout); ``hyper``
    [B, k, d]; per AHL layer the attention maps over audio and over vision."""

    pred: torch.Tensor
    feature: torch.Tensor
    hyper: torch.Tensor
    attn_audio: list[torch.Tensor]
    attn_vision: list[torch.Tensor]


class ALMTCore(nn.Module):
    """Steps 3-6 of the module docstring on token sequences: the dominant (language) tokens, the
    audio and vision tokens in; the prediction out. LNLN's DMML is this module on the corrected
    dominant representation."""

    def __init__(self, config: ALMTConfig, outputs: int = 1):
        super().__init__()
        c, d = config, config.d_model
        self.readout = c.readout
        self.hyper0 = nn.Parameter(torch.ones(c.tokens, d))
        self.language = nn.ModuleList(AttentionBlock(d, c.num_heads, c.dropout) for _ in range(c.ahl_layers - 1))
        self.ahl = nn.ModuleList(HyperModalityLayer(d, c.num_heads, c.dropout) for _ in range(c.ahl_layers))
        self.fusion = FusionTransformer(d, c.tokens, c.fusion_layers, c.num_heads, c.dropout)
        self.head = nn.Linear(d, outputs)

    def forward(self, h_lang: torch.Tensor, h_audio: torch.Tensor, h_vision: torch.Tensor) -> CoreOutput:
        scales, mask = [h_lang], _valid(h_lang)
        for block in self.language:
            scales.append(block(scales[-1], mask))
        hyper = self.hyper0.expand(h_lang.shape[0], -1, -1)
        attn_a, attn_v = [], []
        for layer, h_t in zip(self.ahl, scales, strict=True):
            hyper, a, v = layer(h_t, h_audio, h_vision, hyper)
            attn_a.append(a)
            attn_v.append(v)
        fused = self.fusion(hyper, scales[-1])
        feature = fused[:, 0] if self.readout == "cls" else fused[:, 1:].mean(1)
        return CoreOutput(self.head(feature).squeeze(-1), feature, hyper, attn_a, attn_v)


def compressors(config: ALMTConfig) -> nn.ModuleDict:
    """One :class:`TokenCompressor` per modality, as ``config`` describes."""
    c = config
    return nn.ModuleDict({m: TokenCompressor(c.d_model, c.tokens, c.token_layers, c.num_heads, c.dropout)
                          for m in MODALITIES})


@register_model("almt", ALMTConfig)
class ALMT(MSAModel):
    """Adaptive Language-guided Multimodal Transformer; see the module docstring. No extras;
    :meth:`hyper_attention` gives the language-guided attention maps for analysis."""

    supports_classification = True

    def __init__(self, config: ALMTConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        self.compress = compressors(config)
        self.core = ALMTCore(config, self.num_outputs)

    def tokens(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The compressed token sequences ``H_m`` [B, k, d] of every modality."""
        enc = self.encoders(batch)
        return {m: self.compress[m](enc[m]) for m in MODALITIES}

    def _core(self, batch: Batch) -> CoreOutput:
        h = self.tokens(batch)
        return self.core(h["text"], h["audio"], h["vision"])

    def hyper_attention(self, batch: Batch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per AHL layer, the attention of the language queries over audio and over vision tokens."""
        out = self._core(batch)
        return out.attn_audio, out.attn_vision

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        return {"pred": self._core(batch).pred, "losses": {}}
