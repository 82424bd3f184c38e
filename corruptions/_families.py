"""The registry of corruption families (feature and raw level). One mechanism: ``register_family``."""
from __future__ import annotations

from typing import Any

from .base import LEVELS, Corruption, Level
from .registry import Registry

__all__ = ["FAMILIES", "register_family", "get_family", "family_level"]

FAMILIES: Registry[type[Corruption]] = Registry("corruption family")


def register_family(cls: type[Corruption]) -> type[Corruption]:
    """Class decorator: register a :class:`~corruptions.base.Corruption` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Corruption)):
        raise TypeError(f"a corruption family must subclass corruptions.base.Corruption, got {cls!r}")
    if cls.level not in LEVELS:
        raise ValueError(f"family {cls.name!r} declares level {cls.level!r}; allowed: {', '.join(LEVELS)}")
    FAMILIES.register(cls.name, cls)
    return cls


def get_family(name: str, **params: Any) -> Corruption:
    """Instantiate the family ``name`` with ``params`` (validated by its constructor)."""
    return FAMILIES.get(name)(**params)


def family_level(name: str) -> Level:
    """The declared :attr:`~corruptions.base.Corruption.level` of the registered family ``name``."""
    return FAMILIES.get(name).level
