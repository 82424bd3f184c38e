"""``text_word_drop``: words deleted from the transcript (ASR deletions, dropped speech).

Mapping: every whitespace-separated word gets a uniform draw ``u`` in [0, 1) from the clip key and
is kept iff ``u > 1 - rho``: the expected fraction kept is ``rho`` and the kept sets are nested
across ``rho`` (damage exactly monotone). For ``rho < 1`` the kept words are re-joined with single
spaces. rho = 1 is the identity; rho = 0 drops every word (the empty transcript).
"""
from __future__ import annotations

from typing import Any

import torch

from .._families import register_family
from .base import RawCorruption, check_rho, make_py_rng

__all__ = ["TextWordDrop"]


@register_family
class TextWordDrop(RawCorruption):
    """Each word kept iff its per-key uniform draw exceeds ``1 - rho``."""

    name = "text_word_drop"
    version = "1"
    modalities = ("text",)
    parameter_name = "drop_probability"
    mapping = "word kept iff u > 1 - rho (u ~ U[0, 1) per word from the key); nested"
    absent = "the empty transcript (every word dropped)"

    def parameter(self, rho: float) -> float:
        return 1.0 - check_rho(rho)

    def sample(self, keys: torch.Tensor, text: str) -> dict[str, list[float]]:
        super().sample(keys, text)
        rng = make_py_rng(keys)
        return {"u": [rng.random() for _ in text.split()]}

    def _degrade(self, text: str, rho: float, state: dict[str, Any]) -> str:
        threshold = 1.0 - rho
        return " ".join(w for w, u in zip(text.split(), state["u"]) if u > threshold)
