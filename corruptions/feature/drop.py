"""``drop``: token / frame drop (LNLN-style element masks, nested across levels).

Mapping (reliability -> physical parameter): drop rate = 1 - rho.

Per element one uniform ``u ~ U[0, 1)`` is drawn from the sample's key; a valid, droppable element
is dropped iff ``u >= rho`` (kept iff ``u < rho``). In distribution this is LNLN's rule "keep iff
u' > rate" with rate = 1 - rho and u' = 1 - u, but it is exact at both ends: rho = 1 keeps every
element (identity bit for bit), rho = 0 drops every droppable element. The dropped set only grows
as rho falls, so masks are nested across levels.

- dropped elements: features zeroed, mask False (``report_mask=True``) or left True
  (``report_mask=False``, MMSA / LNLN protocol where the model is not told what was dropped);
- text with token ids: dropped ids become [UNK] (100, ``text_token="unk"``) or [MASK]
  (103, ``text_token="mask"``); the first valid token ([CLS]) and the last valid token ([SEP]) are
  never dropped;
- padding stays padding; a sample left with no droppable element (always the case at rho = 0) is
  flagged missing: all its features zeroed and, with ``report_mask=True``, its mask all False.
"""
from __future__ import annotations

from typing import Any

import torch

from .._families import register_family
from ..base import FeatureCorruption, ModalityBatch
from ..keys import uniform
from .missing import check_keys, zero_where

__all__ = ["Drop", "TEXT_TOKENS", "droppable_elements", "dropped_elements"]

#: BERT vocabulary ids used for dropped text tokens
TEXT_TOKENS: dict[str, int] = {"unk": 100, "mask": 103}


def droppable_elements(mask: torch.Tensor, protect_ends: bool) -> torch.Tensor:
    """Bool [B, T]: valid elements that may be dropped (first and last valid kept if ``protect_ends``)."""
    if not protect_ends:
        return mask
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device)
    as_int = mask.to(torch.int8)
    first = as_int.argmax(dim=1)
    last = t - 1 - as_int.flip(1).argmax(dim=1)
    ends = (pos == first[:, None]) | (pos == last[:, None])
    return mask & ~ends


def dropped_elements(u: torch.Tensor, rho: torch.Tensor, droppable: torch.Tensor) -> torch.Tensor:
    """Bool [B, T]: droppable elements with ``u >= rho`` (per-sample ``rho`` [B])."""
    return droppable & (u >= rho[:, None])


def emptied_samples(droppable: torch.Tensor, dropped: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Bool [B]: samples left with no droppable element (had some, or rho == 0)."""
    kept_any = (droppable & ~dropped).any(dim=1)
    return ~kept_any & (droppable.any(dim=1) | (rho == 0))


@register_family
class Drop(FeatureCorruption):
    """Element (token / frame) drop with rate ``1 - rho``, nested across levels."""

    name = "drop"
    version = "1"
    parameter_name = "drop rate"
    parameter_unit = "fraction of valid elements"
    mapping = "drop rate = 1 - rho; element dropped iff u >= rho, u ~ U[0,1) per element"
    absent = "every droppable element dropped; sample flagged missing ([CLS]/[SEP] ids kept)"

    def __init__(self, report_mask: bool = True, text_token: str = "unk"):
        if not isinstance(report_mask, bool):
            raise ValueError(f"report_mask must be True or False, got {report_mask!r}")
        if text_token not in TEXT_TOKENS:
            raise ValueError(f"text_token must be one of {sorted(TEXT_TOKENS)}, got {text_token!r}")
        self.report_mask = report_mask
        self.text_token = text_token

    def parameter(self, rho: float) -> float:
        return 1.0 - float(rho)

    def sample(self, keys: torch.Tensor, data: ModalityBatch) -> torch.Tensor:
        """One uniform per element, float32 [B, T] on the data's device."""
        check_keys(keys, data)
        return uniform(keys, (data.mask.shape[1],)).to(data.features.device)

    def apply(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor) -> ModalityBatch:
        return self._apply(data, rho, state, inplace=False)

    def apply_inplace(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor) -> ModalityBatch:
        return self._apply(data, rho, state, inplace=True)

    def _apply(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor, inplace: bool) -> ModalityBatch:
        droppable = droppable_elements(data.mask, protect_ends=data.ids is not None)
        dropped = dropped_elements(state, rho, droppable)
        emptied = emptied_samples(droppable, dropped, rho)
        zero = dropped | emptied[:, None]
        mask = data.mask & ~zero if self.report_mask else data.mask
        ids = data.ids
        if ids is not None:
            ids = ids.masked_fill(dropped, TEXT_TOKENS[self.text_token])
        return ModalityBatch(
            features=zero_where(zero[:, :, None], data.features, inplace),
            mask=mask,
            missing=data.missing | emptied,
            ids=ids,
        )

    def config(self) -> dict[str, Any]:
        return {"report_mask": self.report_mask, "text_token": self.text_token}
