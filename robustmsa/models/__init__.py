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

__all__ = [
    "MODELS",
    "BaseConfig",
    "Extra",
    "MSAModel",
    "check_config",
    "count_parameters",
    "create_model",
    "extra_columns",
    "extra_summaries",
    "model_config",
    "register_model",
    "resolve_config",
]
