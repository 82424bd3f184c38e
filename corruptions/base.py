"""Base types of the corruption engine: one vocabulary for every family, feature or raw level.

A *family* is one small class: parameters validated at construction, all randomness in one
``sample`` step fed by per-sample keys (:mod:`corruptions.keys`), ``apply`` pure (vectorised over
the batch at feature level), the maths in plain functions. :class:`Corruption` states the
vocabulary; :class:`FeatureCorruption` (batches of features, torch) and
:class:`corruptions.raw.RawCorruption` (one raw clip: audio, frames or a transcript) implement it.

Reliability ``rho``: ``rho = 1`` is the identity bit for bit, ``rho = 0`` is the modality absent
as the family defines it. The random state never depends on ``rho``: the same state serves every
level of a grid, which makes masks nested and damage monotone in ``rho``.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from .keys import MODALITIES

__all__ = ["Corruption", "FeatureCorruption", "ModalityBatch", "as_rho", "Level", "LEVELS"]

#: the level a family acts at: extracted features or raw media (before feature extraction)
Level = Literal["feature", "raw"]
LEVELS: tuple[Level, ...] = ("feature", "raw")


@dataclass(frozen=True)
class ModalityBatch:
    """One modality of a batch, at feature level.

    features: float [B, T, D] (on any device)
    mask:     bool  [B, T]   True where the element is a valid (present) token or frame
    missing:  bool  [B]      True where the whole modality is absent
    ids:      long  [B, T] or None; token ids (text only), for families that act on tokens
    """

    features: torch.Tensor
    mask: torch.Tensor
    missing: torch.Tensor
    ids: torch.Tensor | None = None

    def replace(self, **changes: Any) -> ModalityBatch:
        return dataclasses.replace(self, **changes)

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    def index(self, idx: torch.Tensor) -> ModalityBatch:
        return ModalityBatch(
            self.features[idx], self.mask[idx], self.missing[idx],
            None if self.ids is None else self.ids[idx],
        )


def as_rho(rho: float | torch.Tensor, batch_size: int, device: torch.device | str) -> torch.Tensor:
    """Broadcast a scalar or [B] reliability to a float32 tensor [B] on ``device``; validate range."""
    r = torch.as_tensor(rho, dtype=torch.float32, device=device)
    if r.ndim == 0:
        r = r.expand(batch_size)
    if r.shape != (batch_size,):
        raise ValueError(f"rho must be a scalar or shape [{batch_size}], got {tuple(r.shape)}")
    if not torch.isfinite(r).all() or (r < 0).any() or (r > 1).any():
        raise ValueError("rho must lie in [0, 1]")
    return r


class Corruption(ABC):
    """A corruption family: one vocabulary at every level.

    ======================================  ==================================================
    ``sample(keys, data) -> state``         all randomness of ``data``, drawn from ``keys`` only
    ``apply(data, rho, state) -> data``     pure application at reliability ``rho``
    ``corrupt(data, rho, keys) -> data``    both in one: ``apply(data, rho, sample(keys, data))``
    ``family(data, rho, keys)``             :meth:`corrupt` with ``rho`` validated (and broadcast)
    ======================================  ==================================================

    Keys: ``keys`` is always an int64 :class:`torch.Tensor` with the batch shape of ``data``, one
    non-negative 63-bit key per sample, as :func:`corruptions.keys.derive_keys` returns them
    (``derive_keys(seed, sample_keys(ids), modality, family, stream)``): shape [B] for a
    feature-level :class:`ModalityBatch` of B samples, shape [] (0-d, e.g. ``derive_keys(...)[i]``)
    for the one clip a raw family takes. No other randomness exists: no global RNG is read.

    Reliability: ``rho`` has the batch shape of ``data`` too: a float32 tensor [B] for a batch (see
    :func:`as_rho`; ``family(data, 0.3, keys)`` broadcasts a scalar), a float for one clip.

    ``state`` is whatever the family needs (None when it draws nothing); it depends on ``keys``
    and the data's shapes only, so one ``sample`` serves every level of a grid.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    #: declared by every family (through its base class): which data it takes
    level: ClassVar[Level]
    modalities: ClassVar[tuple[str, ...]] = MODALITIES
    #: physical parameter controlled by rho, its unit and the mapping as text (for the catalogue)
    parameter_name: ClassVar[str]
    parameter_unit: ClassVar[str] = ""
    mapping: ClassVar[str]
    #: what rho = 0 means for this family
    absent: ClassVar[str]

    @abstractmethod
    def parameter(self, rho: float) -> float:
        """The physical parameter at reliability ``rho``."""

    @abstractmethod
    def sample(self, keys: torch.Tensor, data: Any) -> Any:
        """All randomness for ``data``: a state that depends on ``keys`` and shapes only."""

    @abstractmethod
    def apply(self, data: Any, rho: Any, state: Any) -> Any:
        """Pure application at reliability ``rho`` with the drawn ``state``."""

    def corrupt(self, data: Any, rho: Any, keys: torch.Tensor) -> Any:
        """``apply(data, rho, sample(keys, data))`` at one level, the state not kept.

        Families may fuse the draw into the application (e.g. ``noise`` mixes each row while its
        draw is still in cache); the result must equal the two-step form bit for bit.
        """
        return self.apply(data, rho, self.sample(keys, data))

    def __call__(self, data: Any, rho: Any, keys: torch.Tensor) -> Any:
        """:meth:`corrupt`; levels validate ``rho`` (feature families also broadcast a scalar)."""
        return self.corrupt(data, rho, keys)

    def config(self) -> dict[str, Any]:
        """Constructor parameters (for records and identities)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class FeatureCorruption(Corruption):
    """A feature-level family: torch, batched over a :class:`ModalityBatch`, device-agnostic.

    ``keys`` int64 [B] (CPU), ``rho`` float32 [B] on the data's device (:func:`as_rho`).
    """

    level: ClassVar[Level] = "feature"

    def fit(self, data: ModalityBatch) -> FeatureCorruption:
        """Fit statistics on the training split of one modality (e.g. feature std); returns self.

        A family instance serves one modality; families that need no statistics ignore this.
        """
        return self

    @abstractmethod
    def sample(self, keys: torch.Tensor, data: ModalityBatch) -> Any:
        """All randomness for ``data``: a state that depends on ``keys`` [B] and shapes only."""

    @abstractmethod
    def apply(self, data: ModalityBatch, rho: torch.Tensor, state: Any) -> ModalityBatch:
        """Pure, vectorised application at per-sample reliability ``rho`` [B]."""

    def apply_inplace(self, data: ModalityBatch, rho: torch.Tensor, state: Any) -> ModalityBatch:
        """:meth:`apply` that may overwrite ``data.features`` instead of allocating a new tensor.

        Only for callers that own ``data.features`` (no other reference may observe it), e.g.
        :class:`~corruptions.feature.Compose` on its intermediate results. The result must equal
        :meth:`apply` bit for bit. Default: :meth:`apply`.
        """
        return self.apply(data, rho, state)

    def __call__(self, data: ModalityBatch, rho: float | torch.Tensor, keys: torch.Tensor) -> ModalityBatch:
        r = as_rho(rho, data.batch_size, data.features.device)
        return self.corrupt(data, r, keys)
