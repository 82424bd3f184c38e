"""The reliability spectrum: points, grids, and a corrupter that covers a grid with one draw.

A :class:`ReliabilityPoint` gives one reliability rho in [0, 1] per modality (1 = clean). A
:class:`GridPoint` places a point on a named sweep of one family:

- ``"text"`` / ``"audio"`` / ``"vision"``: that modality at each level, the others clean;
- ``"joint"``: all three modalities at the same level;
- ``"text+audio"`` (any 2 or 3 modalities joined by ``+``, canonical order text, audio, vision):
  the product of the levels over those modalities, index flattened row-major, level = mean rho;
- ``"qmc"``: a scrambled Sobol' or Halton design over the chosen modalities, level = mean rho.

Levels are validated in [0, 1], duplicates removed and sorted descending, so index 0 is always the
clean end of a sweep (the x_0 of the robustness summaries) and the index grows with damage.

:class:`Corrupter` holds one fitted family instance per modality. ``prepare`` draws each
modality's random state once (``sample``); ``Prepared.at(point)`` then applies the families at any
reliability, so a whole grid costs one ``sample`` per modality and masks are nested across levels.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._families import FAMILIES
from .base import FeatureCorruption, ModalityBatch, as_rho
from .feature.compose import build_family
from .keys import MODALITIES, derive_keys

__all__ = [
    "ReliabilityPoint",
    "GridPoint",
    "SWEEPS",
    "normalise_levels",
    "single_modality_sweep",
    "joint_sweep",
    "product_grid",
    "qmc_grid",
    "standard_grid",
    "sweep_modalities",
    "supported_sweeps",
    "CURVE_SWEEPS",
    "is_curve_sweep",
    "Corrupter",
    "Prepared",
    "make_corrupter",
]

#: sweep names besides the products ("text+audio", ...)
SWEEPS: tuple[str, ...] = (*MODALITIES, "joint", "qmc")
#: sweeps whose levels form a degradation curve; products and qmc designs are grids
CURVE_SWEEPS: tuple[str, ...] = (*MODALITIES, "joint")


def is_curve_sweep(sweep: str) -> bool:
    """True for a single-modality or the joint sweep (a curve over rho); False for grids."""
    return sweep in CURVE_SWEEPS


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise KeyError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}")
    return modality


def _check_rho(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return value


@dataclass(frozen=True)
class ReliabilityPoint:
    """One reliability per modality, each in [0, 1] (1 = clean). Hashable; JSON round trip."""

    text: float = 1.0
    audio: float = 1.0
    vision: float = 1.0

    def __post_init__(self) -> None:
        for m in MODALITIES:
            object.__setattr__(self, m, _check_rho(m, getattr(self, m)))

    def __str__(self) -> str:
        return ",".join(f"{m}={getattr(self, m):.2f}" for m in MODALITIES)

    def of(self, modality: str) -> float:
        return getattr(self, _check_modality(modality))

    @property
    def is_clean(self) -> bool:
        return all(getattr(self, m) == 1.0 for m in MODALITIES)

    def as_dict(self) -> dict[str, float]:
        return {m: getattr(self, m) for m in MODALITIES}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ReliabilityPoint:
        """From ``{modality: rho}``; modalities left out are clean (1.0)."""
        for key in values:
            _check_modality(key)
        return cls(**dict(values))

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReliabilityPoint:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"a reliability point in JSON must be an object, got {text!r}")
        return cls.from_dict(values)

    @classmethod
    def joint(cls, rho: float) -> ReliabilityPoint:
        """All three modalities at ``rho``."""
        return cls(rho, rho, rho)

    @classmethod
    def only(cls, modality: str, rho: float) -> ReliabilityPoint:
        """``modality`` at ``rho``, the others clean."""
        return cls(**{_check_modality(modality): rho})


@dataclass(frozen=True)
class GridPoint:
    """A point of a sweep: ``index`` 0 is the clean end, ``level`` the sweep's x coordinate."""

    family: str
    sweep: str
    index: int
    level: float
    point: ReliabilityPoint

    @property
    def key(self) -> str:
        """Stable identity such as ``"noise/audio/3"``."""
        return f"{self.family}/{self.sweep}/{self.index}"


def normalise_levels(levels: Iterable[float]) -> list[float]:
    """Validate levels in [0, 1], drop duplicates, sort descending (index 0 = clean end)."""
    values = [_check_rho("level", v) for v in levels]
    if not values:
        raise ValueError("levels must contain at least one reliability in [0, 1]")
    return sorted(set(values), reverse=True)


def _check_family(family: str, modalities: Iterable[str]) -> None:
    cls = FAMILIES.get(family)
    supported = getattr(cls, "modalities", MODALITIES)
    for m in modalities:
        if m not in supported:
            raise ValueError(f"family {family!r} does not support modality {m!r}; it supports {', '.join(supported)}")


def single_modality_sweep(family: str, modality: str, levels: Iterable[float]) -> list[GridPoint]:
    """``modality`` at each level, the other modalities clean; sweep name = the modality."""
    _check_family(family, [_check_modality(modality)])
    return [
        GridPoint(family, modality, i, rho, ReliabilityPoint.only(modality, rho))
        for i, rho in enumerate(normalise_levels(levels))
    ]


def joint_sweep(family: str, levels: Iterable[float]) -> list[GridPoint]:
    """All three modalities at the same level; sweep name ``"joint"``."""
    _check_family(family, MODALITIES)
    return [
        GridPoint(family, "joint", i, rho, ReliabilityPoint.joint(rho))
        for i, rho in enumerate(normalise_levels(levels))
    ]


def _canonical_modalities(modalities: Iterable[str]) -> tuple[str, ...]:
    chosen = [_check_modality(m) for m in modalities]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"modalities must be distinct, got {chosen}")
    return tuple(m for m in MODALITIES if m in chosen)


def product_grid(family: str, modalities: Sequence[str], levels: Iterable[float]) -> list[GridPoint]:
    """Product of the levels over 2 or 3 modalities; sweep ``"text+audio"``, level = mean rho.

    Index is row-major over the modalities in canonical order, so index 0 is all clean.
    """
    mods = _canonical_modalities(modalities)
    if len(mods) < 2:
        raise ValueError(f"product_grid needs at least 2 modalities, got {list(modalities)}")
    _check_family(family, mods)
    sweep = "+".join(mods)
    grid = []
    for i, rhos in enumerate(itertools.product(normalise_levels(levels), repeat=len(mods))):
        point = ReliabilityPoint(**dict(zip(mods, rhos)))
        grid.append(GridPoint(family, sweep, i, float(np.mean(rhos)), point))
    return grid


def qmc_grid(
    family: str,
    n: int,
    seed: int,
    modalities: Sequence[str] = MODALITIES,
    method: str = "sobol",
) -> list[GridPoint]:
    """``n`` scrambled quasi-random points over ``modalities`` (others clean); sweep ``"qmc"``.

    ``method`` is ``"sobol"`` (the first ``n`` points of a 2^m Sobol' sequence, which keeps its
    balance properties for powers of two) or ``"halton"``. The scrambling uses a private generator
    seeded with ``seed``: the same (n, seed, modalities, method) gives the same points.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int (the design must be reproducible), got {seed!r}")
    mods = _canonical_modalities(modalities)
    if not mods:
        raise ValueError("modalities must name at least one modality")
    _check_family(family, mods)
    from scipy.stats import qmc  # imported here: scipy.stats takes seconds to import

    rng = np.random.default_rng(seed)
    if method == "sobol":
        sample = qmc.Sobol(d=len(mods), scramble=True, rng=rng).random_base2(max(0, math.ceil(math.log2(n))))[:n]
    elif method == "halton":
        sample = qmc.Halton(d=len(mods), scramble=True, rng=rng).random(n)
    else:
        raise ValueError(f"method must be 'sobol' or 'halton', got {method!r}")
    grid = []
    for i, row in enumerate(np.clip(sample, 0.0, 1.0)):
        point = ReliabilityPoint(**{m: float(v) for m, v in zip(mods, row)})
        grid.append(GridPoint(family, "qmc", i, float(np.mean(row)), point))
    return grid


def _sweep(family: str, sweep: str, levels: list[float]) -> list[GridPoint]:
    if sweep in MODALITIES:
        return single_modality_sweep(family, sweep, levels)
    if sweep == "joint":
        return joint_sweep(family, levels)
    if "+" in sweep:
        return product_grid(family, sweep.split("+"), levels)
    raise ValueError(
        f"unknown sweep {sweep!r}; allowed: {', '.join(MODALITIES)}, joint, or modalities joined by '+'"
    )


def sweep_modalities(sweep: str) -> tuple[str, ...]:
    """The modalities a sweep corrupts (``joint`` and ``qmc``: all three)."""
    if sweep in ("joint", "qmc"):
        return tuple(MODALITIES)
    return tuple(sweep.split("+"))


def supported_sweeps(family: str, sweeps: Iterable[str]) -> list[str]:
    """The sweeps of ``sweeps`` whose modalities the family supports (a raw audio family: ``audio``).

    A suite may mix families of different modalities; each family is swept where it applies.
    """
    supported = set(getattr(FAMILIES.get(family), "modalities", MODALITIES))
    return [s for s in sweeps if set(sweep_modalities(s)) <= supported]


def standard_grid(
    families: Sequence[str],
    levels: Iterable[float],
    sweeps: Sequence[str] = ("text", "audio", "vision", "joint"),
) -> list[GridPoint]:
    """Every family x sweep, in the given order; each sweep starts at its clean end."""
    if isinstance(families, str):
        raise ValueError("families must be a list of family names, not a single string")
    lv = normalise_levels(levels)
    return [p for family in families for sweep in sweeps for p in _sweep(family, sweep, lv)]


def _is_clean(rho: float | torch.Tensor) -> bool:
    if isinstance(rho, torch.Tensor):
        return bool((rho == 1).all())
    return float(rho) == 1.0


def _corrupted_levels(
    point: ReliabilityPoint | Mapping[str, float | torch.Tensor],
    data: Mapping[str, ModalityBatch],
    families: Mapping[str, FeatureCorruption],
    holder: str,
) -> list[tuple[str, torch.Tensor]]:
    """``(modality, rho [B])`` for every modality ``point`` corrupts (rho = 1 left out), validated.

    ``point`` is a :class:`ReliabilityPoint` or ``{modality: rho}`` with rho a float or a
    per-sample tensor [B]; modalities left out of a mapping are clean.
    """
    rhos = point.as_dict() if isinstance(point, ReliabilityPoint) else dict(point)
    for m in rhos:
        _check_modality(m)
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


class Prepared:
    """Data plus each modality's drawn state: ``at(point)`` applies the families at any rho."""

    def __init__(
        self,
        data: Mapping[str, ModalityBatch],
        families: Mapping[str, FeatureCorruption],
        states: Mapping[str, Any],
    ):
        self.data = dict(data)
        self.families = dict(families)
        self.states = dict(states)

    def at(self, point: ReliabilityPoint | Mapping[str, float | torch.Tensor]) -> dict[str, ModalityBatch]:
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
            _check_modality(m)
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
        point: ReliabilityPoint | Mapping[str, float | torch.Tensor],
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
    mods = _canonical_modalities(modalities)
    if not mods:
        raise ValueError("modalities must name at least one modality")
    _check_family(spec["name"], mods)
    corrupter = Corrupter({m: build_family(spec) for m in mods}, seed)
    return corrupter if train is None else corrupter.fit(train)
