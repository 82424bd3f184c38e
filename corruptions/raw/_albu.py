"""Import albumentations without its network update check (``NO_ALBUMENTATIONS_UPDATE``)."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations  # noqa: E402
from albumentations.augmentations.blur import functional as fblur  # noqa: E402

__all__ = ["albumentations", "fblur"]
