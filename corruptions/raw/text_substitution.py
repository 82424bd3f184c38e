"""``text_substitution``: words replaced (ASR substitutions, out-of-vocabulary words).

Mapping: every whitespace-separated word gets a uniform draw ``u`` from the clip key and is replaced
iff ``u < 1 - rho``: the expected fraction replaced is ``1 - rho`` and the replaced sets are nested
across ``rho`` (damage exactly monotone). The replacement is ``filler`` (default ``[UNK]``, which
BERT tokenisers map to their unknown token as in the field's missing-text protocol) or, when a
``vocabulary`` is given, a vocabulary word drawn per position from the key (fixed across rho; it may
coincide with the original word). For ``rho < 1`` words are re-joined with single spaces.
rho = 1 is the identity; rho = 0 replaces every word.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._families import register_family
from .base import RawCorruption, check_rho, make_py_rng

__all__ = ["TextSubstitution"]


def _is_word(w: object) -> bool:
    return isinstance(w, str) and w != "" and w.split() == [w]


@register_family
class TextSubstitution(RawCorruption):
    """Each word replaced (by a filler or a vocabulary word) iff its draw is below ``1 - rho``."""

    name = "text_substitution"
    version = "1"
    modalities = ("text",)
    parameter_name = "substitution_probability"
    mapping = "word replaced iff u < 1 - rho (u ~ U[0, 1) per word from the key); nested"
    absent = "every word replaced by the filler (or by vocabulary words)"

    def __init__(self, filler: str = "[UNK]", vocabulary: Sequence[str] | None = None):
        if not _is_word(filler):
            raise ValueError(f"filler must be one non-empty word without whitespace, got {filler!r}")
        vocab = None if vocabulary is None else tuple(vocabulary)
        if vocab is not None and (not vocab or not all(_is_word(w) for w in vocab)):
            raise ValueError("vocabulary must be a non-empty sequence of words without whitespace")
        self.filler, self.vocabulary = filler, vocab

    def parameter(self, rho: float) -> float:
        return 1.0 - check_rho(rho)

    def sample(self, keys: torch.Tensor, text: str) -> dict[str, Any]:
        super().sample(keys, text)
        n, rng = len(text.split()), make_py_rng(keys)
        u = [rng.random() for _ in range(n)]
        if self.vocabulary is None:
            return {"u": u, "replacements": [self.filler] * n}
        return {"u": u, "replacements": [rng.choice(self.vocabulary) for _ in range(n)]}

    def _degrade(self, text: str, rho: float, state: dict[str, Any]) -> str:
        threshold = 1.0 - rho
        words, subs = text.split(), state["replacements"]
        return " ".join(r if u < threshold else w for w, r, u in zip(words, subs, state["u"]))

    def config(self) -> dict[str, Any]:
        return {"filler": self.filler, "vocabulary": self.vocabulary}
