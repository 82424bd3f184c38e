"""EGMF: expert-guided multimodal fusion with a LoRA-adapted language model (seed 003; review-level).

1. shared encoders -> text, audio, vision sequences of width d (text from features or a Hugging
   Face encoder; the paper embeds the text with the LLM's own embeddings instead);
2. bidirectional cross-attention (:class:`~robustmsa.models.layers.CrossAttentionBlock`): text
   attends to the audio-visual sequence (audio and vision frames concatenated, plus a learned
   modality embedding) and the audio-visual sequence attends to the text; the masked means of both
   results are concatenated and projected: ``f = LN(Linear(2d -> d)(.))``;
3. three bottleneck experts ``Linear(d -> d/k) - act - Linear(d/k -> d)``: d/8 with Mish
   (fine-grained local), d/4 with GELU (semantic correlation), d/2 with SiLU = Swish (global
   context);
4. hierarchical gating: ``w = softmax(GateNetwork(f))`` with ``GateNetwork = Linear(d -> 3)``, then
   refined ``alpha = softmax(MLP(concat(f, w)))``; enhanced feature
   ``e = LN(f + sum_i alpha_i E_i(f))`` (residual: the review gives no formula);
5. ``e`` is projected to ``pseudo_tokens`` pseudo tokens of the LLM's width and wrapped in learnable
   prompt embeddings, ``[prefix (prompt_tokens); pseudo; suffix (prompt_tokens)]``, fed as
   ``inputs_embeds`` to a causal LM whose weights are frozen and adapted with LoRA (``peft``, r=8,
   alpha=16; target modules: ``lora_targets`` or peft's default for the architecture);
6. regression: a head ``MLP(H -> head_hidden -> 1)`` on the final position's last hidden state
   (the position that has seen every token under causal attention). The LM runs without its LM
   head (``transformers.AutoModel``): nothing is generated.

``llm`` is a Hugging Face id (local cache only: nothing is downloaded) or a local path. The
default ``""`` builds a tiny randomly initialised Llama-architecture decoder from ``llm_hidden``,
``llm_layers`` and ``llm_heads``, deterministically from the model seed, offline. ``transformers``
and ``peft`` are imported only when a model is built. The frozen LM weights are parameters with
``requires_grad=False``; only the LoRA matrices and EGMF's own layers train.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.batch import Batch
from ..errors import RobustMSAError
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import CrossAttentionBlock, MLPHead, masked_mean
from .text_encoders import load_pretrained

__all__ = ["EGMFConfig", "EGMF", "BottleneckExpert", "HierarchicalGate", "build_llm"]


@dataclass(frozen=True)
class EGMFConfig(BaseConfig):
    """EGMF settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.

    llm:           Hugging Face id or local path of the causal LM; "" = tiny random Llama built here.
    llm_hidden, llm_layers, llm_heads: size of that tiny LM (64, 2, 4); ignored when ``llm`` is set.
    lora_r, lora_alpha, lora_dropout: LoRA rank, scaling and dropout (8, 16 as reported; 0.0).
    lora_targets:  comma-separated module names to adapt ("" = peft's default for the architecture,
                   e.g. q_proj,v_proj for Llama).
    pseudo_tokens: pseudo tokens the enhanced feature is projected to (4).
    prompt_tokens: learnable prompt embeddings before and after them (2 each).
    gate_hidden:   hidden width of the gate refinement MLP (64).
    head_hidden:   hidden width of the regression head (64).
    """

    llm: str = ""
    llm_hidden: int = 64
    llm_layers: int = 2
    llm_heads: int = 4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: str = ""
    pseudo_tokens: int = 4
    prompt_tokens: int = 2
    gate_hidden: int = 64
    head_hidden: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("llm_hidden", "llm_layers", "llm_heads", "lora_r", "lora_alpha", "pseudo_tokens",
                    "gate_hidden", "head_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        check_config(self.llm_hidden % self.llm_heads == 0, "llm_heads", f"must divide llm_hidden={self.llm_hidden}")
        check_config(self.prompt_tokens >= 0, "prompt_tokens", "must be >= 0")
        check_config(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        check_config(self.d_model >= 8, "d_model", "must be >= 8 (the smallest expert has d/8 units)")


def build_llm(config: EGMFConfig) -> nn.Module:
    """The frozen decoder with LoRA adapters injected (trainable adapters only)."""
    if config.llm:
        model = load_pretrained(config.llm, "language model (llm)")
    else:
        from transformers import LlamaConfig, LlamaModel

        model = LlamaModel(LlamaConfig(
            vocab_size=16, hidden_size=config.llm_hidden, intermediate_size=2 * config.llm_hidden,
            num_hidden_layers=config.llm_layers, num_attention_heads=config.llm_heads,
            num_key_value_heads=config.llm_heads, max_position_embeddings=2 * config.prompt_tokens
            + config.pseudo_tokens, attention_dropout=config.dropout, pad_token_id=0, bos_token_id=1,
            eos_token_id=2))
    from peft import LoraConfig, inject_adapter_in_model

    targets = [t.strip() for t in config.lora_targets.split(",") if t.strip()] or None
    gpt2_style = any(type(m).__name__ == "Conv1D" for m in model.modules())  # weights stored (in, out)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, fan_in_fan_out=gpt2_style)
    model.requires_grad_(False)
    try:
        inject_adapter_in_model(lora, model)
    except ValueError as e:
        raise RobustMSAError(f"cannot add LoRA adapters to the language model: {e}",
                             hint="name the modules to adapt in lora_targets") from None
    return model


class BottleneckExpert(nn.Module):
    """``Linear(d -> hidden) - activation - Linear(hidden -> d)``."""

    def __init__(self, d_model: int, hidden: int, activation: nn.Module):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, hidden), activation, nn.Linear(hidden, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HierarchicalGate(nn.Module):
    """``w = softmax(Linear(d -> E)(f))``, ``alpha = softmax(MLP(concat(f, w)))``; returns (alpha, w)."""

    def __init__(self, d_model: int, num_experts: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d_model, num_experts)
        self.refine = MLPHead(d_model + num_experts, hidden, num_experts)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.gate(f).softmax(-1)
        return self.refine(torch.cat([f, w], dim=-1)).softmax(-1), w


@register_model("egmf", EGMFConfig)
class EGMF(MSAModel):
    """Expert-guided fusion, pseudo tokens into a LoRA-adapted causal LM; see the module docstring.

    extras: ``expert_weights`` [B, 3] (refined alpha), ``gate_weights`` [B, 3] (first-stage w).
    """

    extras = (Extra("expert_weights"), Extra("gate_weights"))
    supports_classification = True

    def __init__(self, config: EGMFConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c, d = config, config.d_model
        self.av_type = nn.Embedding(2, d)
        self.text_to_av = CrossAttentionBlock(d, c.num_heads, c.dropout)
        self.av_to_text = CrossAttentionBlock(d, c.num_heads, c.dropout)
        self.fuse = nn.Sequential(nn.Linear(2 * d, d), nn.LayerNorm(d))
        self.experts = nn.ModuleList([BottleneckExpert(d, d // 8, nn.Mish()), BottleneckExpert(d, d // 4, nn.GELU()),
                                      BottleneckExpert(d, d // 2, nn.SiLU())])
        self.gate = HierarchicalGate(d, len(self.experts), c.gate_hidden)
        self.enhance_norm = nn.LayerNorm(d)
        self.llm = build_llm(c)
        width = int(self.llm.config.hidden_size)
        self.to_pseudo = nn.Linear(d, c.pseudo_tokens * width)
        self.prefix = nn.Parameter(0.02 * torch.randn(c.prompt_tokens, width))
        self.suffix = nn.Parameter(0.02 * torch.randn(c.prompt_tokens, width))
        self.head = MLPHead(width, c.head_hidden, self.num_outputs, c.dropout)


    def fused(self, batch: Batch) -> torch.Tensor:
        """The cross-attention fused feature f [B, d]."""
        enc = self.encoders(batch)
        t, mt = enc["text"].seq, enc["text"].mask
        av = torch.cat([enc["audio"].seq + self.av_type.weight[0], enc["vision"].seq + self.av_type.weight[1]], 1)
        mav = torch.cat([enc["audio"].mask, enc["vision"].mask], dim=1)
        av = av * mav.to(av.dtype).unsqueeze(-1)
        t2av = self.text_to_av(t, mt, av, mav)
        av2t = self.av_to_text(av, mav, t, mt)
        return self.fuse(torch.cat([masked_mean(t2av, mt), masked_mean(av2t, mav)], dim=-1))

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        c = self.config
        f = self.fused(batch)
        alpha, w = self.gate(f)
        expert_out = torch.stack([e(f) for e in self.experts], dim=1)  # [B, 3, d]
        enhanced = self.enhance_norm(f + (alpha.unsqueeze(-1) * expert_out).sum(1))
        b = f.shape[0]
        pseudo = self.to_pseudo(enhanced).view(b, c.pseudo_tokens, -1)
        tokens = torch.cat([self.prefix.expand(b, -1, -1), pseudo, self.suffix.expand(b, -1, -1)], dim=1)
        attention = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        hidden = self.llm(inputs_embeds=tokens, attention_mask=attention).last_hidden_state
        pred = self.head(hidden[:, -1]).squeeze(-1)
        return {"pred": pred, "losses": {},
                "extras": {"expert_weights": alpha.detach(), "gate_weights": w.detach()}}
