"""``frame_blur``: Gaussian blur of every frame (defocus, low-quality optics).

Mapping: ``sigma = max_sigma * (1 - rho)`` pixels (default ``max_sigma`` 16 px), kernel size
``int(3.5 sigma) * 2 + 1`` as in PIL: rho 0.9 -> 1.6 px, 0.5 -> 8 px, 0.1 -> 14.4 px.
rho = 1 is the identity; rho = 0 is the ``sigma -> infinity`` limit, every frame replaced by its
mean colour. The same kernel serves all frames of a clip (no flicker); the family has no randomness.

Library: albumentations ``GaussianBlur.apply_to_images`` with the kernel of
``create_gaussian_kernel_1d(sigma, 0)`` (what the transform builds for ``sigma_limit=(s, s)``).
Monotonicity: the Gaussian's frequency response falls with sigma at every frequency, but the
truncated, normalised kernel and uint8 rounding make it hold only up to ``monotone_tolerance``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._families import register_family
from ._albu import albumentations as A
from ._albu import fblur
from .base import RawCorruption, check_rho, mean_colour_frames

__all__ = ["FrameBlur"]


@register_family
class FrameBlur(RawCorruption):
    """Gaussian blur with ``sigma = max_sigma (1 - rho)`` px, same kernel on every frame."""

    name = "frame_blur"
    version = "1"
    modalities = ("vision",)
    parameter_name = "sigma"
    parameter_unit = "px"
    mapping = "sigma = max_sigma * (1 - rho) px; kernel size int(3.5*sigma)*2+1"
    absent = "fully blurred: every frame replaced by its mean colour (sigma -> infinity)"
    monotone_tolerance = 0.01

    def __init__(self, max_sigma: float = 16.0):
        if not math.isfinite(max_sigma) or max_sigma <= 0:
            raise ValueError(f"max_sigma must be positive, got {max_sigma!r}")
        self.max_sigma = float(max_sigma)
        self._blur = A.GaussianBlur(blur_limit=0, sigma_limit=(self.max_sigma, self.max_sigma), p=1.0)

    def parameter(self, rho: float) -> float:
        r = check_rho(rho)
        return math.inf if r == 0.0 else self.max_sigma * (1.0 - r)

    def _degrade(self, frames: np.ndarray, rho: float, state: Any) -> np.ndarray:
        if rho == 0.0:
            return mean_colour_frames(frames)
        kernel = fblur.create_gaussian_kernel_1d(self.parameter(rho), 0)
        return self._blur.apply_to_images(frames, kernel=kernel)

    def config(self) -> dict[str, Any]:
        return {"max_sigma": self.max_sigma}
