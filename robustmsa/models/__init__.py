"""Models by name: the interface, the registry and factory, and every registered model.

``create_model(name, dims, lengths, seed, **overrides)`` builds a model; ``MODELS.names()`` lists
them. Importing this package imports every module of the package (registration side effect), so a
new model is one new file: its config dataclass (the defaults) and its ``@register_model`` class,
which declares its extras (:mod:`robustmsa.models.extras`: :func:`extra_columns` and
:func:`extra_summaries` turn any registered model's extras into tracking columns and rows).
"""
from __future__ import annotations

from corruptions.registry import import_submodules

from .base import (
    MODELS,
    BaseConfig,
    MSAModel,
    check_config,
    count_parameters,
    create_model,
    model_config,
    register_model,
    resolve_config,
)
from .extras import Extra, extra_columns, extra_summaries

import_submodules(__name__, __path__, skip={"base", "extras", "layers", "text_encoders"})  # one file per model

#: the entry-point group through which an installed package adds models (docs/byo_model.md)
PLUGIN_GROUP = "robustmsa.models"
_LOADED: set[str] = set()


def load_plugins() -> list[str]:
    """Import every entry point of group ``robustmsa.models`` not imported yet (each names a module
    whose ``@register_model`` classes register on import, or a model class); the names loaded.
    A plugin that fails to load is a :class:`~robustmsa.errors.ModelError` naming it."""
    from importlib.metadata import entry_points

    from ..errors import ModelError

    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _LOADED:
            continue
        _LOADED.add(key)
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - whatever the plugin raises
            raise ModelError(f"plugin {ep.name!r} ({ep.value}, entry-point group {PLUGIN_GROUP}) does not load: "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             hint="fix or uninstall the plugin package") from None
        loaded.append(ep.name)
    return loaded


load_plugins()

__all__ = [
    "MODELS",
    "PLUGIN_GROUP",
    "BaseConfig",
    "Extra",
    "MSAModel",
    "check_config",
    "count_parameters",
    "create_model",
    "extra_columns",
    "extra_summaries",
    "load_plugins",
    "model_config",
    "register_model",
    "resolve_config",
]
