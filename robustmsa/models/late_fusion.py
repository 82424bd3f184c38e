"""Late fusion: one encoder and one regression head per modality, predictions averaged.

The reference curve for effective robustness (MultiBench): honest and simple. The prediction is
the mean of the unimodal predictions over the modalities that are present (not flagged missing
and with at least one valid element); a learned bias is predicted when none is present.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from corruptions.keys import MODALITIES

from ..data.batch import Batch
from .base import BaseConfig, MSAModel, check_config, register_model
from .extras import Extra
from .layers import MLPHead, input_group_norm, modality_absent, unimodal_loss

__all__ = ["LateFusionConfig", "LateFusion"]


@dataclass(frozen=True)
class LateFusionConfig(BaseConfig):
    """Late fusion settings; shared encoder settings in :class:`~robustmsa.models.base.BaseConfig`.

    head_hidden: hidden width of each unimodal regression head (64).
    unimodal_weight: weight of a loss on each unimodal prediction (0.0: none). When > 0, the mean
                 absolute error of every present modality's own prediction against the label
                 (cross-entropy of its logits on a classification dataset), times
                 ``unimodal_weight``, is added in training as the ``unimodal`` loss: the task loss
                 alone trains the heads only through their mean.
    input_sparsity: weight of a group-lasso penalty on the input projections (0.0: none): in
                 training, ``input_sparsity`` times the sum over every input dimension of every
                 modality encoder of the L2 norm of its projection weights (:func:`input_group_norm`)
                 is added as the ``input_sparsity`` loss; it selects the few informative dimensions
                 among many (768-dimensional text features).

    The field's late-fusion baseline is MMSA's LF_DNN (sub-networks 128/16/128, text out 256,
    dropout 0.2, batch 128, lr 1e-3, weight decay 0.01): with that weight decay it collapses to the
    mean predictor on an exported pickle (bench/bench_mmsa_parity.py). This late fusion averages
    per-modality predictions from the shared encoders; batch size, learning rate and weight decay
    are suite settings.
    """

    head_hidden: int = 64
    unimodal_weight: float = 0.0
    input_sparsity: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.head_hidden >= 1, "head_hidden", "must be >= 1")
        check_config(self.unimodal_weight >= 0, "unimodal_weight", "must be >= 0 (0: no unimodal loss)")
        check_config(self.input_sparsity >= 0, "input_sparsity", "must be >= 0 (0: no penalty)")


@register_model("late_fusion", LateFusionConfig)
class LateFusion(MSAModel):
    """Per-modality encoders and heads; ``pred`` = mean over present modalities.

    losses: ``unimodal`` (in training, if ``unimodal_weight`` > 0), ``input_sparsity`` (in training,
    if ``input_sparsity`` > 0).

    extras: ``unimodal`` [B, 3] the per-modality predictions (text, audio, vision),
    ``present`` [B, 3] which of them entered the mean.
    """

    extras = (Extra("unimodal"), Extra("present"))
    supports_classification = True

    def __init__(self, config: LateFusionConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c = config
        self.heads = nn.ModuleDict({m: MLPHead(c.d_model, c.head_hidden, self.num_outputs, c.dropout)
                                    for m in MODALITIES})
        self.empty_bias = nn.Parameter(torch.zeros(() if not self.num_classes else (self.num_classes,)))


    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        enc = self.encoders(batch)
        present = ~modality_absent(batch)
        if self.num_classes:
            return self._classify(enc, present, batch)
        preds = torch.cat([self.heads[m](enc[m].pooled) for m in MODALITIES], dim=1)
        w = present.to(preds.dtype)
        count = w.sum(1)
        mean = (preds * w).sum(1) / count.clamp(min=1.0)
        pred = torch.where(count > 0, mean, self.empty_bias.expand_as(mean))
        return {"pred": pred, "losses": self._unimodal_losses(preds, batch, present),
                "extras": {"unimodal": preds.detach(), "present": present}}

    def _unimodal_losses(self, preds: torch.Tensor, batch: Batch, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """In training: ``unimodal`` when ``unimodal_weight`` > 0 and ``input_sparsity`` when
        ``input_sparsity`` > 0 (weighted); else ``{}``."""
        c, losses = self.config, {}
        if c.unimodal_weight > 0 and self.training:
            losses["unimodal"] = c.unimodal_weight * unimodal_loss(preds, batch.labels, present)
        if c.input_sparsity > 0 and self.training:
            losses["input_sparsity"] = c.input_sparsity * input_group_norm(self.encoders)
        return losses

    def _classify(self, enc: Mapping[str, Any], present: torch.Tensor, batch: Batch) -> dict[str, Any]:
        """Classification: the mean of the unimodal logits [B, 3, C] over present modalities;
        ``unimodal`` holds each modality's predicted class."""
        logits = torch.stack([self.heads[m](enc[m].pooled) for m in MODALITIES], dim=1)
        w = present.to(logits.dtype).unsqueeze(-1)
        count = w.sum(1)
        mean = (logits * w).sum(1) / count.clamp(min=1.0)
        pred = torch.where(count > 0, mean, self.empty_bias.expand_as(mean))
        return {"pred": pred, "losses": self._unimodal_losses(logits, batch, present),
                "extras": {"unimodal": logits.detach().argmax(-1).float(), "present": present}}
