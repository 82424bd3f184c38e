"""``frame_downscale``: loss of resolution (low-resolution capture, upsampled for the model).

Mapping: the linear resolution kept is ``max(rho, 1 / min(H, W))``: frames are downscaled by that
factor (``INTER_AREA``) and upscaled back (``INTER_LINEAR``): rho 0.5 -> half resolution, 0.1 ->
a tenth. rho = 1 is the identity; rho = 0 is a single pixel, every frame its mean colour. The same
scale serves all frames; the family has no randomness.

Library: albumentations ``Downscale.apply_to_images`` with ``scale``, what the transform does for
``scale_range=(s, s)``. Monotonicity: the resampling grid changes with the scale (a factor that
divides the frame size evenly loses less than a slightly larger one that does not), so damage grows
as rho falls only up to ``monotone_tolerance``: dips of up to 5 % between neighbouring levels of an
11-level grid, 15 % on a 21-level grid, in our checks on 64-112 px frames.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._families import register_family
from ._albu import albumentations as A
from .base import RawCorruption, check_rho, mean_colour_frames

__all__ = ["FrameDownscale"]


@register_family
class FrameDownscale(RawCorruption):
    """Down- and up-scaling by ``max(rho, 1 / min(H, W))``."""

    name = "frame_downscale"
    version = "1"
    modalities = ("vision",)
    parameter_name = "scale"
    mapping = "linear resolution kept = max(rho, 1/min(H, W)); INTER_AREA down, INTER_LINEAR up"
    absent = "one pixel: every frame replaced by its mean colour"
    monotone_tolerance = 0.15

    def __init__(self) -> None:
        import cv2  # lazy: OpenCV is needed only when the family is built

        pair = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}
        self._downscale = A.Downscale(scale_range=(0.5, 0.5), interpolation_pair=pair, p=1.0)

    def parameter(self, rho: float) -> float:
        return check_rho(rho)

    def _degrade(self, frames: np.ndarray, rho: float, state: Any) -> np.ndarray:
        if rho == 0.0:
            return mean_colour_frames(frames)
        scale = max(rho, 1.0 / min(frames.shape[1], frames.shape[2]))
        return self._downscale.apply_to_images(frames, scale=scale)
