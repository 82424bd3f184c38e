"""``text_typos``: character-level typing errors (keyboard-neighbour substitutions, deletions, swaps).

Mapping: every ASCII letter is edited with probability ``1 - rho``: it gets a uniform draw ``u``
from the clip key and is edited iff ``u < 1 - rho`` (nested across rho). The edit of each position
is drawn once per key (fixed across rho) with ``weights`` (default 0.6 / 0.2 / 0.2): a substitution
by a QWERTY neighbour (case kept), a deletion, or a swap with the next character (only when that is
a different letter; otherwise a substitution). A swap consumes the next letter, whose own edit is
then skipped. Spaces, digits and punctuation are never edited.
rho = 1 is the identity; rho = 0 edits every letter (no word with a letter survives intact).
Monotonicity: edited sets are nested, but a swap absorbing a neighbour's edit can change which
letters differ, so the fraction of changed words grows with ``1 - rho`` only up to
``monotone_tolerance``.
"""
from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._families import register_family
from .base import RawCorruption, check_rho, make_py_rng

__all__ = ["TextTypos", "KEYBOARD_NEIGHBOURS"]

_ROWS = (("qwertyuiop", 0.0), ("asdfghjkl", 0.25), ("zxcvbnm", 0.75))
_POS = {c: (x + off, y) for y, (row, off) in enumerate(_ROWS) for x, c in enumerate(row)}
#: lower-case letter -> its QWERTY neighbours (keys whose centres lie within 1.3 key widths)
KEYBOARD_NEIGHBOURS: dict[str, str] = {
    c: "".join(sorted(d for d, (x2, y2) in _POS.items()
                      if d != c and (x2 - x) ** 2 + (y2 - y) ** 2 <= 1.3 ** 2))
    for c, (x, y) in _POS.items()
}
_LETTERS = set(string.ascii_letters)
_SUB, _DEL, _SWAP = 0, 1, 2


@register_family
class TextTypos(RawCorruption):
    """Each letter edited with probability ``1 - rho`` (substitution, deletion or swap)."""

    name = "text_typos"
    version = "1"
    modalities = ("text",)
    parameter_name = "edit_probability"
    mapping = "each letter edited iff u < 1 - rho (u ~ U[0, 1) per character from the key); nested"
    absent = "every letter edited"
    monotone_tolerance = 0.05

    def __init__(self, weights: Sequence[float] = (0.6, 0.2, 0.2)):
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (3,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be 3 non-negative numbers (sub, del, swap), got {weights!r}")
        self.weights = tuple(float(x) for x in w / w.sum())

    def parameter(self, rho: float) -> float:
        return 1.0 - check_rho(rho)

    def sample(self, keys: torch.Tensor, text: str) -> dict[str, list]:
        super().sample(keys, text)
        rng, n = make_py_rng(keys), len(text)
        sub_below, del_below = self.weights[0], self.weights[0] + self.weights[1]
        u, ops, subs = [2.0] * n, [_SUB] * n, list(text)  # u = 2: never edited
        for i, c in enumerate(text):
            if c not in _LETTERS:
                continue
            u[i], v, w = rng.random(), rng.random(), rng.random()
            op = _SUB if v < sub_below else _DEL if v < del_below else _SWAP
            if op == _SWAP and not (i + 1 < n and text[i + 1] in _LETTERS and text[i + 1] != c):
                op = _SUB
            near = KEYBOARD_NEIGHBOURS[c.lower()]
            ops[i], subs[i] = op, near[int(w * len(near))]
            if c.isupper():
                subs[i] = subs[i].upper()
        return {"u": u, "ops": ops, "subs": subs}

    def _degrade(self, text: str, rho: float, state: dict[str, list]) -> str:
        threshold, u, ops, subs = 1.0 - rho, state["u"], state["ops"], state["subs"]
        out, i, n = [], 0, len(text)
        while i < n:
            if u[i] >= threshold:
                out.append(text[i])
            elif ops[i] == _SUB:
                out.append(subs[i])
            elif ops[i] == _SWAP:
                out.append(text[i + 1] + text[i])
                i += 1
            i += 1
        return "".join(out)

    def config(self) -> dict[str, Any]:
        return {"weights": self.weights}
