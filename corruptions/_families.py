"""The registry of corruption families (feature and raw level). One mechanism: ``register_family``."""
from __future__ import annotations

from typing import Any

from .registry import Registry

__all__ = ["FAMILIES", "register_family", "get_family"]

FAMILIES: Registry[type] = Registry("corruption family")


def register_family(cls: type) -> type:
    """Class decorator: register a family class under its ``name`` class attribute."""
    FAMILIES.register(cls.name, cls)
    return cls


def get_family(name: str, **params: Any) -> Any:
    """Instantiate the family ``name`` with ``params`` (validated by its constructor)."""
    return FAMILIES.get(name)(**params)
