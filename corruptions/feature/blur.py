"""``blur``: Gaussian smoothing along time over valid frames (mask-aware).

Mapping (reliability -> physical parameter): sigma = c (1 - rho) / rho frames (``c`` configurable,
default 2.0): sigma = 0 at rho = 1, c at rho = 0.5, infinite at rho = 0.

Each valid frame t of a present sample becomes ``sum_s w(t, s) x_s / sum_s w(t, s)`` with
``w(t, s) = exp(-(t - s)^2 / (2 sigma^2))`` over valid frames s only (padding never leaks in).
The kernel is written with ``1 / (2 sigma^2) = rho^2 / (2 c^2 (1 - rho)^2)``, which is 0 at
rho = 0: every valid frame becomes the masked mean over time. rho = 1 returns the input bit for
bit; padding and missing samples are untouched. No randomness: ``sample`` returns None.

Vectorised as per-sample kernel matrices [B, T, T] applied with ``bmm``, chunked over the batch so
that a chunk holds at most ``max_kernel_elements`` weights (bounded memory for T = 500).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .._families import register_family
from ..base import FeatureCorruption, ModalityBatch

__all__ = ["Blur", "blur_weights", "smooth"]


def blur_weights(mask: torch.Tensor, inv_two_sigma2: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gaussian weights [B, T, T] over valid frames; rows of padding frames are 0.

    ``exp`` is evaluated once per sample and lag (B x T values) and gathered into the Toeplitz
    matrices, instead of once per matrix entry.
    """
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device)
    lag = (pos[:, None] - pos[None, :]).abs()
    per_lag = torch.exp(-pos.to(torch.float32).square()[None, :] * inv_two_sigma2[:, None])
    w = per_lag[:, lag] * mask[:, None, :]
    total = w.sum(dim=2, keepdim=True)
    return w / total.clamp_min(torch.finfo(torch.float32).tiny)


def smooth(
    x: torch.Tensor, mask: torch.Tensor, inv_two_sigma2: torch.Tensor, max_kernel_elements: int
) -> torch.Tensor:
    """Mask-aware Gaussian smoothing of x [B, T, D] along T, in batch chunks of bounded size."""
    b, t = mask.shape
    chunk = max(1, max_kernel_elements // max(1, t * t))
    parts = []
    for start in range(0, b, chunk):
        sl = slice(start, start + chunk)
        w = blur_weights(mask[sl], inv_two_sigma2[sl])
        parts.append(torch.bmm(w.to(x.dtype), x[sl]))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


@register_family
class Blur(FeatureCorruption):
    """Temporal Gaussian blur with sigma = c (1 - rho) / rho frames."""

    name = "blur"
    version = "1"
    parameter_name = "sigma"
    parameter_unit = "frames"
    mapping = "sigma = c (1 - rho) / rho frames, c = 2.0 by default; mask-aware Gaussian over valid frames"
    absent = "every valid frame replaced by the masked mean over time"

    def __init__(self, c: float = 2.0, max_kernel_elements: int = 1 << 22):
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"c (sigma at rho = 0.5, in frames) must be a finite number > 0, got {c!r}")
        if isinstance(max_kernel_elements, bool) or not isinstance(max_kernel_elements, int) or max_kernel_elements < 1:
            raise ValueError(f"max_kernel_elements must be an int >= 1, got {max_kernel_elements!r}")
        self.c = float(c)
        self.max_kernel_elements = max_kernel_elements

    def parameter(self, rho: float) -> float:
        rho = float(rho)
        return math.inf if rho <= 0.0 else self.c * (1.0 - rho) / rho

    def sample(self, keys: torch.Tensor, data: ModalityBatch) -> None:
        """No randomness."""
        return None

    def apply(self, data: ModalityBatch, rho: torch.Tensor, state: None) -> ModalityBatch:
        x = data.features
        rho = rho.to(device=x.device, dtype=torch.float32)
        blurred = rho < 1
        safe = torch.where(blurred, rho, torch.zeros_like(rho))
        inv_two_sigma2 = safe.square() / (2 * self.c**2 * (1 - safe).square())
        out = smooth(x, data.mask, inv_two_sigma2, self.max_kernel_elements)
        active = data.mask & ~data.missing[:, None] & blurred[:, None]
        if not bool(active.all()):
            out = torch.where(active[:, :, None], out, x)
        return data.replace(features=out)

    def config(self) -> dict[str, Any]:
        return {"c": self.c, "max_kernel_elements": self.max_kernel_elements}
