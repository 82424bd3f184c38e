"""``compose``: several families applied in sequence at the same rho.

Mapping (reliability -> physical parameter): every component runs at the same rho (the parameter
reported is rho itself; each component's own mapping is in its catalogue row).

Component i draws its randomness from its own keys, ``derive_keys(i, keys, "compose", name_i)``:
a pure function of the sample key, the position and the component name, so two components of
the same family get independent draws. All components are sampled on the input data (states
depend on keys and shapes only, and no family changes shapes), then applied left to right.
rho = 1 is the identity because every component is; rho = 0 is every component's rho = 0, in order.

Constructor: ``families`` is a non-empty sequence of family names, ``{"name": ..., **params}``
dicts or family instances; ``fit`` fits each component on the same training data.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._families import FAMILIES, get_family, register_family
from ..base import FeatureCorruption, ModalityBatch
from ..keys import MODALITIES, derive_keys
from .missing import check_keys

__all__ = ["Compose", "build_family"]


def build_family(spec: str | dict[str, Any] | FeatureCorruption) -> FeatureCorruption:
    """A feature family instance from a name, a ``{"name": ..., **params}`` dict or an instance."""
    if isinstance(spec, FeatureCorruption):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"a family given as a dict needs a 'name' key, got keys {sorted(spec)}")
        params = dict(spec)
        name = params.pop("name")
    else:
        raise ValueError(f"a family must be a name, a {{'name': ...}} dict or an instance, got {spec!r}")
    if FAMILIES.get(name).level != "feature":
        raise ValueError(f"family {name!r} is not a feature-level family")
    return get_family(name, **params)


@register_family
class Compose(FeatureCorruption):
    """Several feature families in sequence at the same rho, each with its own keys."""

    name = "compose"
    version = "1"
    parameter_name = "rho of every component"
    parameter_unit = "reliability"
    mapping = "each component at the same rho, applied left to right (default: noise then drop)"
    absent = "every component at rho = 0, in order"

    def __init__(self, families: Sequence[str | dict[str, Any] | FeatureCorruption] = ("noise", "drop")):
        if isinstance(families, (str, dict)) or len(families) == 0:
            raise ValueError("families must be a non-empty list of family names, dicts or instances")
        self.families: list[FeatureCorruption] = [build_family(f) for f in families]
        if any(isinstance(f, Compose) for f in self.families):
            raise ValueError("compose: components must not be compose themselves; list them flat")
        self.modalities = tuple(m for m in MODALITIES if all(m in f.modalities for f in self.families))

    def fit(self, data: ModalityBatch) -> Compose:
        for family in self.families:
            family.fit(data)
        return self

    def parameter(self, rho: float) -> float:
        return float(rho)

    def component_keys(self, keys: torch.Tensor, position: int) -> torch.Tensor:
        """Keys of component ``position`` from this family's per-sample keys."""
        return derive_keys(position, keys, "compose", self.families[position].name)

    def sample(self, keys: torch.Tensor, data: ModalityBatch) -> list[Any]:
        check_keys(keys, data)
        return [f.sample(self.component_keys(keys, i), data) for i, f in enumerate(self.families)]

    def apply(self, data: ModalityBatch, rho: torch.Tensor, state: list[Any]) -> ModalityBatch:
        """Components left to right; once a component has returned new features, the later ones
        work in place on them (:meth:`FeatureCorruption.apply_inplace`): the input is never
        written and the result is bit-identical to chaining :meth:`apply`."""
        source = data.features.untyped_storage().data_ptr()
        owned = False
        for family, part in zip(self.families, state, strict=True):
            data = family.apply_inplace(data, rho, part) if owned else family.apply(data, rho, part)
            owned = owned or data.features.untyped_storage().data_ptr() != source
        return data

    def corrupt(self, data: ModalityBatch, rho: torch.Tensor, keys: torch.Tensor) -> ModalityBatch:
        """One level: each component's fused :meth:`~FeatureCorruption.corrupt` until one returns
        new features, then draw + in-place application; bit-identical to ``apply(sample())``."""
        check_keys(keys, data)
        source = data.features.untyped_storage().data_ptr()
        owned = False
        for i, family in enumerate(self.families):
            k = self.component_keys(keys, i)
            if owned:
                data = family.apply_inplace(data, rho, family.sample(k, data))
            else:
                data = family.corrupt(data, rho, k)
                owned = data.features.untyped_storage().data_ptr() != source
        return data

    def apply_inplace(self, data: ModalityBatch, rho: torch.Tensor, state: list[Any]) -> ModalityBatch:
        for family, part in zip(self.families, state, strict=True):
            data = family.apply_inplace(data, rho, part)
        return data

    def config(self) -> dict[str, Any]:
        return {"families": [{"name": f.name, **f.config()} for f in self.families]}
