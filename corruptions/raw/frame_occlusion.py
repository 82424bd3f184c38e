"""``frame_occlusion``: coarse dropout of grid cells (occluders, lost macroblocks).

Mapping: each frame is divided into a ``grid x grid`` lattice (default 8 x 8); a fraction
``1 - rho`` of the cells (rounded to whole cells) is filled with ``fill`` (default black). The cells
are ranked once per key (:func:`~corruptions.raw.base.keyed_order`: SHAKE-128 words of the key;
version 1 ranked them by a PCG64 uniform draw, which cost a fifth of the occlusion itself to seed)
and level ``rho`` fills the first
``round((1 - rho) * grid^2)`` of that ranking, so occluded regions are nested across ``rho`` and
damage is exactly monotone. The same cells are occluded in every frame of a clip (a static
occluder, no flicker). rho = 1 is the identity; rho = 0 fills every cell (frames fully occluded).

Library: albumentations ``CoarseDropout.apply_to_images`` with the holes ``[x1, y1, x2, y2]`` of the
chosen cells; the transform's own ``get_params_dependent_on_data`` (which draws holes from its
generators) never runs.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from .._families import register_family
from ._albu import albumentations as A
from .base import RawCorruption, check_rho, keyed_order

__all__ = ["FrameOcclusion", "cell_holes", "n_occluded"]


@functools.lru_cache(maxsize=64)
def _lattice(grid: int, height: int, width: int) -> np.ndarray:
    """Holes ``[x1, y1, x2, y2]`` of every cell in row-major order (read-only, cached per geometry)."""
    cells = np.arange(grid * grid)
    rows, cols = cells // grid, cells % grid
    holes = np.empty((grid * grid, 4), dtype=np.int64)
    holes[:, 0], holes[:, 2] = cols * width // grid, (cols + 1) * width // grid
    holes[:, 1], holes[:, 3] = rows * height // grid, (rows + 1) * height // grid
    holes.setflags(write=False)
    return holes


def cell_holes(order: np.ndarray, grid: int, height: int, width: int) -> np.ndarray:
    """Holes ``[x1, y1, x2, y2]`` (int64 [grid^2, 4]) of the cells, in the ranking ``order``."""
    return _lattice(grid, height, width)[order]


def n_occluded(rho: float, n_cells: int) -> int:
    """Number of cells occluded at ``rho``: ``round((1 - rho) * n_cells)``, halves rounded up."""
    return math.floor((1.0 - rho) * n_cells + 0.5)


@register_family
class FrameOcclusion(RawCorruption):
    """Nested occlusion of ``1 - rho`` of a ``grid x grid`` lattice of cells."""

    name = "frame_occlusion"
    version = "2"
    modalities = ("vision",)
    parameter_name = "occluded_fraction"
    mapping = "fraction of grid x grid cells filled = 1 - rho (rounded to whole cells), nested"
    absent = "frames fully occluded (every cell filled)"

    def __init__(self, grid: int = 8, fill: int | tuple[int, int, int] = 0):
        if int(grid) != grid or grid < 1:
            raise ValueError(f"grid must be a positive integer, got {grid!r}")
        values = (fill,) if isinstance(fill, (int, np.integer)) else tuple(fill)
        if len(values) not in (1, 3) or any(int(v) != v or not 0 <= v <= 255 for v in values):
            raise ValueError(f"fill must be an int in [0, 255] or an RGB triple of them, got {fill!r}")
        self.grid = int(grid)
        self.fill = int(values[0]) if len(values) == 1 else tuple(int(v) for v in values)
        self._dropout = A.CoarseDropout(fill=self.fill, p=1.0)

    def parameter(self, rho: float) -> float:
        return 1.0 - check_rho(rho)

    def sample(self, keys: torch.Tensor, frames: np.ndarray) -> dict[str, np.ndarray]:
        super().sample(keys, frames)
        order = keyed_order(keys, self.grid * self.grid)
        return {"order": order, "holes": cell_holes(order, self.grid, frames.shape[1], frames.shape[2])}

    def _degrade(self, frames: np.ndarray, rho: float, state: dict[str, np.ndarray]) -> np.ndarray:
        holes = state["holes"][: n_occluded(rho, len(state["holes"]))]
        # seed is only read by the "random" fills, which this family does not allow
        return self._dropout.apply_to_images(frames, holes=holes, seed=0)

    def config(self) -> dict[str, Any]:
        return {"grid": self.grid, "fill": self.fill}
