"""``frame_compression``: JPEG compression artefacts (low-bitrate video, re-encoding).

Mapping: JPEG quality ``max(1, round(100 * rho))`` (albumentations ``quality_range`` units): rho 0.9
-> 90, 0.5 -> 50, 0.1 -> 10, 0.01 -> 1. rho = 1 is the identity (even quality 100 is lossy);
rho = 0 replaces every frame by its mean colour (no content survives). The family has no randomness.

Library: albumentations ``ImageCompression.apply_to_images`` with ``quality`` and
``image_type=".jpg"``, what the transform does for ``quality_range=(q, q)``. Monotonicity: JPEG
error is not exactly monotone in quality (quantisation tables are rescaled and rounded per quality),
so damage grows as rho falls only up to ``monotone_tolerance``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._families import register_family
from ._albu import albumentations as A
from .base import RawCorruption, check_rho, mean_colour_frames

__all__ = ["FrameCompression"]


@register_family
class FrameCompression(RawCorruption):
    """JPEG at quality ``max(1, round(100 rho))``, same quality on every frame."""

    name = "frame_compression"
    version = "1"
    modalities = ("vision",)
    parameter_name = "jpeg_quality"
    mapping = "JPEG quality = max(1, round(100 * rho)); rho=1 -> identity; rho=0 -> 0 (mean colour)"
    absent = "every frame replaced by its mean colour"
    monotone_tolerance = 0.05

    def __init__(self) -> None:
        self._jpeg = A.ImageCompression(compression_type="jpeg", quality_range=(1, 100), p=1.0)

    def parameter(self, rho: float) -> float:
        r = check_rho(rho)
        return 0.0 if r == 0.0 else float(max(1, round(100.0 * r)))  # 0: no content survives

    def _degrade(self, frames: np.ndarray, rho: float, state: Any) -> np.ndarray:
        if rho == 0.0:
            return mean_colour_frames(frames)
        return self._jpeg.apply_to_images(frames, quality=int(self.parameter(rho)), image_type=".jpg")
