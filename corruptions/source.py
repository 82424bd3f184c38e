"""The one interface of a prepared corruption: clean data in, any reliability point out.

A :class:`CorruptionSource` holds one family's drawn randomness over the samples of one split and
returns the data at any :class:`~corruptions.grids.ReliabilityPoint` (or per-sample reliabilities)
with :meth:`~CorruptionSource.at`. Evaluation loops, validation and reference predictors only
ever call ``at``, whatever the level the family acts at:

- feature level: :class:`corruptions.corrupter.Prepared` (from ``Corrupter.prepare``) applies
  the families to the features, vectorised, from one draw per modality;
- raw level: an application corrupts its raw media and re-extracts features behind the same
  interface (robustmsa's ``RawPrepared``).

Which implementation serves a family is decided by the family's declared
:attr:`~corruptions.base.Corruption.level`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch

from .base import ModalityBatch
from .grids import ReliabilityPoint, check_modality

__all__ = ["CorruptionSource", "PointLike", "point_rhos"]

#: a point: a :class:`ReliabilityPoint`, or ``{modality: rho}`` with rho a float or a tensor [B]
PointLike = ReliabilityPoint | Mapping[str, float | torch.Tensor]


def point_rhos(point: PointLike) -> dict[str, float | torch.Tensor]:
    """``{modality: rho}`` of ``point`` (modalities checked; those left out of a mapping are clean)."""
    rhos = point.as_dict() if isinstance(point, ReliabilityPoint) else dict(point)
    for m in rhos:
        check_modality(m)
    return rhos


class CorruptionSource(ABC):
    """The clean modalities of some samples plus one family's drawn state: ``at(point)``.

    ``data`` maps each modality to its clean :class:`~corruptions.base.ModalityBatch`; ``at``
    returns every modality of ``data`` at ``point`` (modalities at rho = 1 untouched), equal bit
    for bit for the same point however often it is asked.
    """

    data: dict[str, ModalityBatch]

    @abstractmethod
    def at(self, point: PointLike) -> dict[str, ModalityBatch]:
        """Every modality of :attr:`data` at ``point``; rho a float or a per-sample tensor [B]."""
