"""``frame_motion_blur``: linear motion blur (camera shake, fast motion).

Mapping: kernel length ``L = 1 + 2 * round((max_length - 1) / 2 * (1 - rho))`` pixels (odd;
default ``max_length`` 31 px): rho 0.9 -> 5 px, 0.5 -> 17 px, 0.1 -> 29 px. The angle (uniform in
[0, 360) degrees) is drawn once per clip from the key, so every frame of a clip and every level
share it (no flicker); the line is centred on the pixel (direction bias 0): one-sided lines shift the
image by an amount that does not grow smoothly with L and broke monotonicity by up to 17 % in our
checks. rho = 1 is the identity; rho = 0 replaces every frame by its mean colour.

Library: albumentations ``MotionBlur.apply_to_images`` with the normalised kernel of
``create_motion_kernel(L, angle, 0, allow_shifted=False)``, exactly what the transform builds for
``blur_limit=(L, L)``, ``angle_range=(a, a)``, ``direction_range=(0, 0)``, ``allow_shifted=False``.
Monotonicity: a line kernel's frequency response (a Dirichlet kernel) is not monotone in its length
and the rasterised line changes shape with L, so damage grows with L only up to
``monotone_tolerance``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._families import register_family
from ._albu import albumentations as A
from ._albu import fblur
from .base import RawCorruption, check_rho, make_rng, mean_colour_frames

__all__ = ["FrameMotionBlur"]


@register_family
class FrameMotionBlur(RawCorruption):
    """Centred motion blur of length ``1 + 2 round((max_length - 1)(1 - rho) / 2)`` px, angle per clip."""

    name = "frame_motion_blur"
    version = "1"
    modalities = ("vision",)
    parameter_name = "kernel_length"
    parameter_unit = "px"
    mapping = "L = 1 + 2*round((max_length-1)/2*(1-rho)) px, centred line at a per-clip angle; rho=0 -> +inf"
    absent = "every frame replaced by its mean colour"
    monotone_tolerance = 0.02

    def __init__(self, max_length: int = 31):
        if int(max_length) != max_length or max_length < 3 or max_length % 2 == 0:
            raise ValueError(f"max_length must be an odd integer >= 3, got {max_length!r}")
        self.max_length = int(max_length)
        self._blur = A.MotionBlur(blur_limit=(3, self.max_length), allow_shifted=False,
                                  direction_range=(0.0, 0.0), p=1.0)

    def parameter(self, rho: float) -> float:
        r = check_rho(rho)
        return math.inf if r == 0.0 else float(1 + 2 * round((self.max_length - 1) / 2 * (1.0 - r)))

    def sample(self, keys: torch.Tensor, frames: np.ndarray) -> dict[str, float]:
        super().sample(keys, frames)
        return {"angle": float(make_rng(keys).uniform(0.0, 360.0))}

    def _degrade(self, frames: np.ndarray, rho: float, state: dict[str, float]) -> np.ndarray:
        if rho == 0.0:
            return mean_colour_frames(frames)
        length = int(self.parameter(rho))
        if length == 1:
            return frames.copy()
        # allow_shifted=False: create_motion_kernel never draws from its random_state
        line = fblur.create_motion_kernel(length, state["angle"], 0.0, False, None)
        kernel = line.astype(np.float32) / np.sum(line)
        return self._blur.apply_to_images(frames, kernel=kernel)

    def config(self) -> dict[str, Any]:
        return {"max_length": self.max_length}
