"""``example_concat``: the shared encoders' pooled vectors, concatenated, through one MLP.

Imported by robustmsa through the entry point ``example_concat`` of group ``robustmsa.models``
(pyproject.toml); ``@register_model`` registers the class and its config on import.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustmsa.data.batch import Batch
from robustmsa.models import BaseConfig, Extra, MSAModel, check_config, register_model

MODALITIES = ("text", "audio", "vision")


@dataclass(frozen=True)
class ExampleConfig(BaseConfig):
    """hidden: width of the fusion MLP (32)."""

    hidden: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.hidden >= 1, "hidden", "must be >= 1")


@register_model("example_concat", ExampleConfig)
class ExampleConcat(MSAModel):
    """Concatenation fusion; ``extras["present"]`` [B, 3] says which modalities were not flagged missing."""

    extras = (Extra("present"),)

    def __init__(self, config: ExampleConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        self.head = nn.Sequential(nn.Linear(3 * config.d_model, config.hidden), nn.GELU(),
                                  nn.Linear(config.hidden, 1))

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        enc = self.encoders(batch)
        present = ~batch.missing
        z = torch.cat([enc[m].pooled * present[:, i:i + 1] for i, m in enumerate(MODALITIES)], dim=1)
        return {"pred": self.head(z)[:, 0], "losses": {}, "extras": {"present": present.float()}}
