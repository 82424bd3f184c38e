"""Reliability points and the grids of an evaluation: sweeps, products and quasi-random designs.

A :class:`ReliabilityPoint` gives one reliability rho in [0, 1] per modality (1 = clean). A
:class:`GridPoint` places a point on a named sweep of one family:

- ``"text"`` / ``"audio"`` / ``"vision"``: that modality at each level, the others clean;
- ``"joint"``: all three modalities at the same level;
- ``"text+audio"`` (any 2 or 3 modalities joined by ``+``, canonical order text, audio, vision):
  the product of the levels over those modalities, index flattened row-major, level = mean rho;
- ``"qmc"``: a scrambled Sobol' or Halton design over the chosen modalities, level = mean rho.

Levels are validated in [0, 1], duplicates removed and sorted descending, so index 0 is always the
clean end of a sweep (the x_0 of the robustness summaries) and the index grows with damage.
Applying a point to data is the job of :mod:`corruptions.corrupter` (feature level) or of any
other :class:`~corruptions.source.CorruptionSource`.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._families import FAMILIES
from .keys import MODALITIES

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
    "check_modality",
    "canonical_modalities",
    "check_family_modalities",
]

SWEEPS: tuple[str, ...] = (*MODALITIES, "joint", "qmc")
#: sweeps whose levels form a degradation curve; products and qmc designs are grids
CURVE_SWEEPS: tuple[str, ...] = (*MODALITIES, "joint")


def is_curve_sweep(sweep: str) -> bool:
    """True for a single-modality or the joint sweep (a curve over rho); False for grids."""
    return sweep in CURVE_SWEEPS


def check_modality(modality: str) -> str:
    """``modality`` itself; raises ``KeyError`` naming the allowed modalities otherwise."""
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
        return getattr(self, check_modality(modality))

    @property
    def is_clean(self) -> bool:
        return all(getattr(self, m) == 1.0 for m in MODALITIES)

    def as_dict(self) -> dict[str, float]:
        return {m: getattr(self, m) for m in MODALITIES}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ReliabilityPoint:
        """From ``{modality: rho}``; modalities left out are clean (1.0)."""
        for key in values:
            check_modality(key)
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
        return cls(**{check_modality(modality): rho})


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


def check_family_modalities(family: str, modalities: Iterable[str]) -> None:
    """Raise ``ValueError`` unless the registered ``family`` supports every one of ``modalities``."""
    cls = FAMILIES.get(family)
    supported = cls.modalities
    for m in modalities:
        if m not in supported:
            raise ValueError(f"family {family!r} does not support modality {m!r}; it supports {', '.join(supported)}")


def single_modality_sweep(family: str, modality: str, levels: Iterable[float]) -> list[GridPoint]:
    """``modality`` at each level, the other modalities clean; sweep name = the modality."""
    check_family_modalities(family, [check_modality(modality)])
    return [
        GridPoint(family, modality, i, rho, ReliabilityPoint.only(modality, rho))
        for i, rho in enumerate(normalise_levels(levels))
    ]


def joint_sweep(family: str, levels: Iterable[float]) -> list[GridPoint]:
    """All three modalities at the same level; sweep name ``"joint"``."""
    check_family_modalities(family, MODALITIES)
    return [
        GridPoint(family, "joint", i, rho, ReliabilityPoint.joint(rho))
        for i, rho in enumerate(normalise_levels(levels))
    ]


def canonical_modalities(modalities: Iterable[str]) -> tuple[str, ...]:
    """Distinct, known ``modalities`` in the canonical order text, audio, vision."""
    chosen = [check_modality(m) for m in modalities]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"modalities must be distinct, got {chosen}")
    return tuple(m for m in MODALITIES if m in chosen)


def product_grid(family: str, modalities: Sequence[str], levels: Iterable[float]) -> list[GridPoint]:
    """Product of the levels over 2 or 3 modalities; sweep ``"text+audio"``, level = mean rho.

    Index is row-major over the modalities in canonical order, so index 0 is all clean.
    """
    mods = canonical_modalities(modalities)
    if len(mods) < 2:
        raise ValueError(f"product_grid needs at least 2 modalities, got {list(modalities)}")
    check_family_modalities(family, mods)
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
    mods = canonical_modalities(modalities)
    if not mods:
        raise ValueError("modalities must name at least one modality")
    check_family_modalities(family, mods)
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
    supported = set(FAMILIES.get(family).modalities)
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
