"""Training samplers: per-sample, per-modality corruption drawn from keys.

For each sample and modality the sampler draws, from keys only,

1. whether the whole sample stays clean (probability ``p_clean_sample``, one draw per sample
   shared by its modalities), else
2. whether this modality stays clean (probability ``p_clean_modality``), else
3. a reliability ``rho ~ U(rho_low, rho_high)`` and a family from the mixture ``families`` with
   ``weights`` (uniform if None).

Draws come from ``derive_keys(seed, keys, modality, "sampler", stream)`` (and
``derive_keys(seed, keys, "*", "sampler/clean", stream)`` for the whole-sample draw), so they
depend only on (seed, sample id, modality, stream), never on batch composition or order; pass the
epoch as ``stream`` for fresh draws each epoch. Family ``i`` then draws its randomness from
``derive_keys(seed, keys, modality, f"{name_i}#{i}", stream)``. Families are applied vectorised:
the samples that drew family ``i`` are gathered, corrupted together and scattered back.

The output carries, per modality, the ``rho`` used (1.0 where clean) and the family index
(-1 where clean), so quality-aware models (e.g. QA-MoE) can regress the true reliability.

Published protocols expressed with it:

- LNLN: ``TrainingSampler([{"name": "drop", "report_mask": False, "text_token": "unk"}],
  p_clean_sample=0.5)``: half the samples clean, else each modality gets its own drop rate
  ``1 - rho`` with ``rho ~ U(0, 1)``; [UNK] tokens, mask left as it was.
- QA-MoE: ``TrainingSampler(["noise", "missing"])``: each modality of each sample gets noise or
  missingness with equal weight at ``rho ~ U(0, 1)``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import FeatureCorruption, ModalityBatch
from .feature.compose import build_family
from .keys import MODALITIES, derive_keys, uniform

__all__ = ["TrainingSampler", "SamplerOutput", "mixture_index"]


@dataclass(frozen=True)
class SamplerOutput:
    """Corrupted data, and per modality the rho [B] (1.0 clean) and family index [B] (-1 clean)."""

    data: dict[str, ModalityBatch]
    rho: dict[str, torch.Tensor]
    family: dict[str, torch.Tensor]


def mixture_index(u: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Long [B]: index i with cum_{i-1} <= u < cum_i for u in [0, 1) and normalised ``weights``."""
    cum = torch.tensor(np.cumsum(weights) / np.sum(weights), dtype=torch.float64)
    idx = torch.searchsorted(cum, u.to(torch.float64), right=True)
    return idx.clamp_(max=len(weights) - 1)


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _weights(weights: Sequence[float] | None, n: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * n
    w = tuple(float(v) for v in weights)
    if len(w) != n:
        raise ValueError(f"weights must have one entry per family ({n}), got {len(w)}")
    if not all(math.isfinite(v) and v >= 0 for v in w) or sum(w) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(w)}")
    return w


def _spec(family: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(family, str):
        return {"name": family}
    if isinstance(family, dict) and "name" in family:
        return dict(family)
    raise ValueError(f"each family must be a name or a {{'name': ..., **params}} dict, got {family!r}")


def _scatter(base: ModalityBatch, idx: torch.Tensor, part: ModalityBatch) -> ModalityBatch:
    """``base`` with rows ``idx`` replaced by ``part`` (in place on ``base``'s tensors)."""
    base.features[idx] = part.features
    base.mask[idx] = part.mask
    base.missing[idx] = part.missing
    if base.ids is not None and part.ids is not None:
        base.ids[idx] = part.ids
    return base


def _clone(data: ModalityBatch) -> ModalityBatch:
    return ModalityBatch(
        data.features.clone(), data.mask.clone(), data.missing.clone(),
        None if data.ids is None else data.ids.clone(),
    )


class TrainingSampler:
    """Per-sample, per-modality corruption for training, drawn from keys (see module docstring)."""

    def __init__(
        self,
        families: Sequence[str | dict[str, Any]],
        weights: Sequence[float] | None = None,
        p_clean_sample: float = 0.0,
        p_clean_modality: float = 0.0,
        rho_low: float = 0.0,
        rho_high: float = 1.0,
        modalities: Sequence[str] = MODALITIES,
        seed: int = 0,
    ):
        if isinstance(families, (str, dict)) or len(families) == 0:
            raise ValueError("families must be a non-empty list of family names or {'name': ...} dicts")
        self.specs = [_spec(f) for f in families]
        self.weights = _weights(weights, len(self.specs))
        self.p_clean_sample = _probability("p_clean_sample", p_clean_sample)
        self.p_clean_modality = _probability("p_clean_modality", p_clean_modality)
        self.rho_low = _probability("rho_low", rho_low)
        self.rho_high = _probability("rho_high", rho_high)
        if self.rho_low > self.rho_high:
            raise ValueError(f"rho_low ({rho_low}) must not exceed rho_high ({rho_high})")
        self.modalities = self._modalities(modalities)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.families: dict[str, list[FeatureCorruption]] = {
            m: [self._build(spec, m) for spec in self.specs] for m in self.modalities
        }

    @staticmethod
    def _modalities(modalities: Sequence[str]) -> tuple[str, ...]:
        for m in modalities:
            if m not in MODALITIES:
                raise KeyError(f"unknown modality {m!r}; allowed: {', '.join(MODALITIES)}")
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be distinct and non-empty, got {list(modalities)}")
        return tuple(m for m in MODALITIES if m in modalities)

    @staticmethod
    def _build(spec: dict[str, Any], modality: str) -> FeatureCorruption:
        family = build_family(spec)
        if modality not in family.modalities:
            raise ValueError(f"family {family.name!r} does not support modality {modality!r}")
        return family

    @property
    def family_names(self) -> tuple[str, ...]:
        """Family name of each mixture index."""
        return tuple(spec["name"] for spec in self.specs)

    def fit(self, train: Mapping[str, ModalityBatch]) -> TrainingSampler:
        """Fit every family of every modality on that modality of the training split."""
        for m, families in self.families.items():
            if m not in train:
                raise KeyError(f"fit: training data has no {m!r} modality; it has {', '.join(train)}")
            for family in families:
                family.fit(train[m])
        return self

    def draw(self, keys: torch.Tensor, stream: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per modality: rho float32 [B] (1.0 where clean) and family index long [B] (-1 where clean)."""
        keys = torch.as_tensor(keys, dtype=torch.int64).cpu()
        clean_sample = uniform(derive_keys(self.seed, keys, "*", "sampler/clean", stream), (1,))[:, 0]
        clean_sample = clean_sample < self.p_clean_sample
        rho, family = {}, {}
        for m in self.modalities:
            u = uniform(derive_keys(self.seed, keys, m, "sampler", stream), (3,))
            clean = clean_sample | (u[:, 0] < self.p_clean_modality)
            r = self.rho_low + (self.rho_high - self.rho_low) * u[:, 1]
            rho[m] = torch.where(clean, torch.ones_like(r), r.clamp(self.rho_low, self.rho_high))
            family[m] = torch.where(clean, -1, mixture_index(u[:, 2], self.weights))
        return rho, family

    def family_keys(self, keys: torch.Tensor, modality: str, index: int, stream: int = 0) -> torch.Tensor:
        """Keys with which mixture family ``index`` draws its randomness on ``modality``."""
        return derive_keys(self.seed, keys, modality, f"{self.specs[index]['name']}#{index}", stream)

    def apply(self, data: Mapping[str, ModalityBatch], keys: torch.Tensor, stream: int = 0) -> SamplerOutput:
        """Corrupt ``data`` (modalities not handled by the sampler pass through unchanged)."""
        keys = torch.as_tensor(keys, dtype=torch.int64).cpu()
        rho, family = self.draw(keys, stream)
        out = dict(data)
        for m in self.modalities:
            if m not in data:
                raise KeyError(f"apply: data has no {m!r} modality; it has {', '.join(data)}")
            out[m] = self._apply_modality(m, data[m], keys, rho[m], family[m], stream)
        device = {m: data[m].features.device for m in self.modalities}
        return SamplerOutput(
            data=out,
            rho={m: rho[m].to(device[m]) for m in self.modalities},
            family={m: family[m].to(device[m]) for m in self.modalities},
        )

    def _apply_modality(
        self, m: str, data: ModalityBatch, keys: torch.Tensor, rho: torch.Tensor, family: torch.Tensor, stream: int
    ) -> ModalityBatch:
        if keys.shape != (data.batch_size,):
            raise ValueError(f"keys must have shape [{data.batch_size}], got {tuple(keys.shape)}")
        result = None
        device = data.features.device
        for i, fam in enumerate(self.families[m]):
            idx = (family == i).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            idx_dev = idx.to(device)
            sub = data.index(idx_dev)
            part = fam.corrupt(sub, rho[idx].to(device), self.family_keys(keys[idx], m, i, stream))
            result = _scatter(_clone(data) if result is None else result, idx_dev, part)
        return data if result is None else result

    def config(self) -> dict[str, Any]:
        """Constructor parameters, plus ``versions`` (the version of each mixture family) for records."""
        return {
            "families": [dict(spec) for spec in self.specs],
            "weights": list(self.weights),
            "p_clean_sample": self.p_clean_sample,
            "p_clean_modality": self.p_clean_modality,
            "rho_low": self.rho_low,
            "rho_high": self.rho_high,
            "modalities": list(self.modalities),
            "seed": self.seed,
            "versions": [self.families[self.modalities[0]][i].version for i in range(len(self.specs))],
        }
