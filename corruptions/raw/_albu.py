"""Lazy handles on the media libraries, so importing :mod:`corruptions` stays fast.

The libraries are imported on first attribute access (albumentations without its network update
check, ``NO_ALBUMENTATIONS_UPDATE``). Registering the raw families therefore costs nothing until
a raw family is actually constructed.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "albumentations", "fblur", "audiomentations", "audio_utils"]


class LazyModule:
    """A module imported on first attribute access."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


albumentations = LazyModule("albumentations")
fblur = LazyModule("albumentations.augmentations.blur.functional")
audiomentations = LazyModule("audiomentations")
audio_utils = LazyModule("audiomentations.core.utils")
