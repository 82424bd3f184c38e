"""The corruption engine: families on a continuous reliability spectrum, driven by keys.

Reliability rho in [0, 1] per sample and modality: rho = 1 is the clean input bit for bit,
rho = 0 the modality absent as each family defines it. Randomness comes only from per-sample
keys (:mod:`corruptions.keys`); one drawn state serves every level of a grid.

Every family speaks one vocabulary (:class:`~corruptions.base.Corruption`): ``sample(keys, data)``
draws, ``apply(data, rho, state)`` applies, ``corrupt(data, rho, keys)`` does both; ``keys`` is an
int64 tensor with the batch shape of ``data``. Modules: :mod:`.grids` (reliability points and
sweeps), :mod:`.corrupter` (feature-level :class:`Corrupter` / :class:`Prepared`), :mod:`.source`
(the :class:`CorruptionSource` interface every prepared corruption implements), :mod:`.samplers`
(training), :mod:`.feature` and :mod:`.raw` (the families).

Importing this package registers the feature-level families (:mod:`corruptions.feature`) and,
when present, the raw-level families (:mod:`corruptions.raw`) in :data:`FAMILIES`. This package
never imports :mod:`robustmsa`. The catalogue functions are loaded lazily so that
``python -m corruptions.catalogue`` runs cleanly.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from . import feature
from ._families import FAMILIES, family_level, get_family, register_family
from .base import LEVELS, Corruption, FeatureCorruption, ModalityBatch, as_rho
from .corrupter import Corrupter, Prepared, make_corrupter
from .feature import TEXT_TOKENS, Blur, Compose, Drop, Missing, Noise, build_family
from .grids import (
    SWEEPS,
    GridPoint,
    ReliabilityPoint,
    joint_sweep,
    normalise_levels,
    product_grid,
    qmc_grid,
    single_modality_sweep,
    standard_grid,
)
from .keys import MODALITIES, derive_keys, normal, sample_keys, stable_hash64, uniform
from .registry import DuplicateNameError, Registry, UnknownNameError
from .samplers import SamplerOutput, TrainingSampler
from .source import CorruptionSource, PointLike

if importlib.util.find_spec(f"{__name__}.raw") is not None:
    importlib.import_module(f"{__name__}.raw")

__all__ = [
    # registry and base types
    "FAMILIES",
    "register_family",
    "get_family",
    "family_level",
    "build_family",
    "Registry",
    "UnknownNameError",
    "DuplicateNameError",
    "Corruption",
    "FeatureCorruption",
    "LEVELS",
    "ModalityBatch",
    "as_rho",
    # keys
    "MODALITIES",
    "stable_hash64",
    "sample_keys",
    "derive_keys",
    "uniform",
    "normal",
    # feature families
    "feature",
    "Missing",
    "Drop",
    "Noise",
    "Blur",
    "Compose",
    "TEXT_TOKENS",
    # grids
    "ReliabilityPoint",
    "GridPoint",
    "SWEEPS",
    "normalise_levels",
    "single_modality_sweep",
    "joint_sweep",
    "product_grid",
    "qmc_grid",
    "standard_grid",
    # corrupter
    "Corrupter",
    "Prepared",
    "make_corrupter",
    # the interface of prepared corruptions (feature and raw level)
    "CorruptionSource",
    "PointLike",
    # training samplers
    "TrainingSampler",
    "SamplerOutput",
    # catalogue (lazy)
    "catalogue_rows",
    "catalogue_markdown",
]

_LAZY = {"catalogue_rows", "catalogue_markdown"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.catalogue"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
