"""Models by name: the interface, the registry and factory, and every registered model.

``create_model(name, dims, lengths, seed, **overrides)`` builds a model; ``MODELS.names()`` lists
them. Importing this package registers every model module listed below.
"""
from __future__ import annotations

from . import late_fusion, qa_moe  # noqa: F401  (registration side effect)
from .base import (
    CONFIG_DIR,
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

__all__ = [
    "CONFIG_DIR",
    "MODELS",
    "BaseConfig",
    "MSAModel",
    "check_config",
    "count_parameters",
    "create_model",
    "model_config",
    "register_model",
    "resolve_config",
]
