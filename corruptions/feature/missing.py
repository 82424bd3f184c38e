"""``missing``: the whole modality of a sample is absent or present.

Mapping (reliability -> physical parameter): P(missing) = 1 - rho.

Per sample one uniform ``u ~ U[0, 1)`` is drawn from the sample's key; the modality is absent iff
``u >= rho``. Hence rho = 1 never removes anything (identity bit for bit), rho = 0 removes every
sample, and the absent set only grows as rho falls (nested across levels).

An absent modality has its features zeroed (padding included), its mask all False and its
``missing`` flag True. Token ids are left unchanged: with the mask all False and the flag set no
consumer may read them, and keeping them avoids inventing a token.
"""
from __future__ import annotations

from typing import Any

import torch

from .._families import register_family
from ..base import FeatureCorruption, ModalityBatch
from ..keys import uniform

__all__ = ["Missing", "absent_samples", "check_keys", "zero_where"]


def zero_where(cond: torch.Tensor, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``x`` with +0.0 where ``cond`` (broadcast) holds, bit-identical elsewhere; one pass over ``x``.

    (``masked_fill`` out of place is a clone plus an in-place fill: two passes.) ``inplace``
    overwrites ``x`` itself (no allocation) and returns it.
    """
    if inplace:
        return x.masked_fill_(cond, 0.0)
    return torch.where(cond, torch.zeros((), dtype=x.dtype, device=x.device), x)


def absent_samples(u: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Bool [B]: True where the modality is absent at reliability ``rho`` (``u >= rho``)."""
    return u >= rho


@register_family
class Missing(FeatureCorruption):
    """Whole-modality absence with probability ``1 - rho`` per sample."""

    name = "missing"
    version = "1"
    parameter_name = "P(missing)"
    parameter_unit = "probability"
    mapping = "P(missing) = 1 - rho; absent iff u >= rho, u ~ U[0,1) per sample"
    absent = "every sample missing: features zero, mask all False, missing flag True"

    def parameter(self, rho: float) -> float:
        return 1.0 - float(rho)

    def sample(self, keys: torch.Tensor, data: ModalityBatch) -> torch.Tensor:
        """One uniform per sample, float32 [B] on the data's device."""
        check_keys(keys, data)
        return uniform(keys, (1,))[:, 0].to(data.features.device)

    def apply(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor) -> ModalityBatch:
        return self._apply(data, rho, state, inplace=False)

    def apply_inplace(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor) -> ModalityBatch:
        return self._apply(data, rho, state, inplace=True)

    def _apply(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor, inplace: bool) -> ModalityBatch:
        gone = absent_samples(state, rho)
        return data.replace(
            features=zero_where(gone[:, None, None], data.features, inplace),
            mask=data.mask & ~gone[:, None],
            missing=data.missing | gone,
        )

    def config(self) -> dict[str, Any]:
        return {}


def check_keys(keys: torch.Tensor, data: ModalityBatch) -> None:
    """Raise ValueError unless ``keys`` is one key per sample of ``data`` (shared by the families)."""
    if keys.shape != (data.batch_size,):
        raise ValueError(f"keys must have shape [{data.batch_size}], got {tuple(keys.shape)}")
