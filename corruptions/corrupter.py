"""The feature-level corrupter: one fitted family per modality, one draw for a whole grid.

:class:`Corrupter` holds one fitted family instance per modality. ``prepare`` draws each
modality's random state once (``sample``); ``Prepared.at(point)`` then applies the families at any
reliability, so a whole grid costs one ``sample`` per modality and masks are nested across levels.
:class:`Prepared` is the feature-level :class:`~corruptions.source.CorruptionSource`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import FeatureCorruption, ModalityBatch, as_rho
from .feature.compose import build_family
from .grids import canonical_modalities, check_family_modalities, check_modality
from .keys import MODALITIES, derive_keys
from .source import CorruptionSource, PointLike, point_rhos

__all__ = ["Corrupter", "Prepared", "make_corrupter"]


def _is_clean(rho: float | torch.Tensor) -> bool:
    if isinstance(rho, torch.Tensor):
        return bool((rho == 1).all())
    return float(rho) == 1.0


def _corrupted_levels(
    point: PointLike,
    data: Mapping[str, ModalityBatch],
    families: Mapping[str, FeatureCorruption],
    holder: str,
) -> list[tuple[str, torch.Tensor]]:
    """``(modality, rho [B])`` for every modality ``point`` corrupts (rho = 1 left out), validated.

    ``point`` is a :class:`ReliabilityPoint` or ``{modality: rho}`` with rho a float or a
    per-sample tensor [B]; modalities left out of a mapping are clean.
    """
    rhos = point_rhos(point)
    levels = []
    for m, rho in rhos.items():
        if _is_clean(rho):
            continue
        if m not in data:
            raise KeyError(f"{m}={rho} asked for, but {holder} has no {m!r} modality")
        if m not in families:
            raise KeyError(f"{m}={rho} asked for, but the corrupter has no family for {m!r}")
        levels.append((m, as_rho(rho, data[m].batch_size, data[m].features.device)))
    return levels


class Prepared(CorruptionSource):
    """Data plus each modality's drawn state: ``at(point)`` applies the feature families at any rho.

    The feature-level :class:`~corruptions.source.CorruptionSource`; ``families`` and ``states``
    (per modality) are what reference predictors such as an oracle read.
    """

    def __init__(
        self,
        data: Mapping[str, ModalityBatch],
        families: Mapping[str, FeatureCorruption],
        states: Mapping[str, Any],
    ):
        self.data = dict(data)
        self.families = dict(families)
        self.states = dict(states)

    def at(self, point: PointLike) -> dict[str, ModalityBatch]:
        """Every modality of the data at ``point`` (modalities at rho = 1 are returned untouched).

        ``point`` is a :class:`ReliabilityPoint` or ``{modality: rho}`` with rho a float or a
        per-sample tensor [B]; modalities left out of a mapping are clean.
        """
        out = dict(self.data)
        for m, r in _corrupted_levels(point, self.data, self.families, "the prepared data"):
            out[m] = self.families[m].apply(self.data[m], r, self.states[m])
        return out


class Corrupter:
    """One fitted family instance per modality, with a seed for its keys."""

    def __init__(self, families: Mapping[str, FeatureCorruption], seed: int):
        if not families:
            raise ValueError("families must map at least one modality to a family instance")
        for m, family in families.items():
            check_modality(m)
            if not isinstance(family, FeatureCorruption):
                raise ValueError(f"families[{m!r}] must be a FeatureCorruption instance, got {family!r}")
            if m not in family.modalities:
                raise ValueError(f"family {family.name!r} does not support modality {m!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.families = dict(families)
        self.seed = seed

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.families)

    def fit(self, train: Mapping[str, ModalityBatch]) -> Corrupter:
        """Fit each modality's family on that modality of the training split."""
        for m, family in self.families.items():
            if m not in train:
                raise KeyError(f"fit: training data has no {m!r} modality; it has {', '.join(train)}")
            family.fit(train[m])
        return self

    def keys_for(self, modality: str, keys: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """The family keys of ``modality``: ``derive_keys(seed, keys, modality, family.name, stream)``."""
        return derive_keys(self.seed, keys, modality, self.families[modality].name, stream)

    def prepare(self, data: Mapping[str, ModalityBatch], keys: torch.Tensor, stream: int = 0) -> Prepared:
        """Draw each modality's state once (one ``sample`` per modality present in ``data``)."""
        states = {
            m: family.sample(self.keys_for(m, keys, stream), data[m])
            for m, family in self.families.items()
            if m in data
        }
        return Prepared(data, {m: f for m, f in self.families.items() if m in data}, states)

    def corrupt(
        self,
        data: Mapping[str, ModalityBatch],
        keys: torch.Tensor,
        point: PointLike,
        stream: int = 0,
    ) -> dict[str, ModalityBatch]:
        """The data at one ``point`` in one go: ``prepare(data, keys, stream).at(point)`` bit for bit,
        but only the modalities the point corrupts are drawn, and families may fuse their draw
        into the application (:meth:`FeatureCorruption.corrupt`). For several levels of the same
        data, :meth:`prepare` once and call :meth:`Prepared.at` per level instead."""
        out = dict(data)
        for m, r in _corrupted_levels(point, data, self.families, "the data"):
            out[m] = self.families[m].corrupt(data[m], r, self.keys_for(m, keys, stream))
        return out

    def config(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "families": {
                m: {"name": f.name, "version": f.version, **f.config()} for m, f in self.families.items()
            },
        }


def make_corrupter(
    family: str | dict[str, Any],
    seed: int,
    train: Mapping[str, ModalityBatch] | None = None,
    modalities: Sequence[str] = MODALITIES,
    **params: Any,
) -> Corrupter:
    """A :class:`Corrupter` with one ``family`` instance per modality, fitted on ``train`` if given."""
    spec = {"name": family} if isinstance(family, str) else dict(family)
    if "name" not in spec:
        raise ValueError(f"a family given as a dict needs a 'name' key, got keys {sorted(spec)}")
    overlap = set(spec) & set(params)
    if overlap:
        raise ValueError(f"parameters given twice (in the family dict and as keywords): {sorted(overlap)}")
    spec.update(params)
    mods = canonical_modalities(modalities)
    if not mods:
        raise ValueError("modalities must name at least one modality")
    check_family_modalities(spec["name"], mods)
    corrupter = Corrupter({m: build_family(spec) for m in mods}, seed)
    return corrupter if train is None else corrupter.fit(train)
