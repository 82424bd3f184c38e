"""``noise``: additive Gaussian noise scaled to the training-set feature statistics.

Mapping (reliability -> physical parameter): SNR = 10 log10(rho / (1 - rho)) dB
(+inf dB at rho = 1, -inf dB at rho = 0).

``fit`` computes the per-dimension mean ``mu`` and standard deviation ``std`` of the training
features over valid frames of present samples. On valid frames of present samples

    x' = mu + sqrt(rho) (x - mu) + sqrt(1 - rho) std z,     z ~ N(0, 1) per element from the key,

a variance- and mean-preserving interpolation towards pure noise with the feature statistics: a
feature with mean ``mu`` and variance ``std**2`` keeps both at every rho, the signal carries a
fraction rho of the variance and the noise 1 - rho, hence the SNR above. (The uncentred form
``sqrt(rho) x + sqrt(1 - rho) (mu + std z)`` would inflate the mean by up to sqrt(2) at rho = 0.5
and make the damage non-monotone for features whose mean is large against their spread.)
rho = 1 returns the input bit for bit (``torch.where``, so -0.0 stays -0.0); rho = 0 is pure
noise ``mu + std z``. Padding and missing samples are untouched. One state ``z`` serves every rho.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .._families import register_family
from ..base import FeatureCorruption, ModalityBatch
from ..keys import for_row_slices, normal
from .missing import check_keys

__all__ = ["Noise", "feature_statistics", "mix_noise", "noise_coefficients"]


def feature_statistics(data: ModalityBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (population) std, float32 CPU [D], over valid frames of present samples."""
    valid = data.mask & ~data.missing[:, None]
    frames = data.features[valid].detach().to("cpu", torch.float64)
    if frames.shape[0] == 0:
        raise ValueError("noise.fit: the training data has no valid frame (mask all False or all missing)")
    if not torch.isfinite(frames).all():
        raise ValueError("noise.fit: the training features contain NaN or inf")
    mean = frames.mean(dim=0)
    std = frames.std(dim=0, correction=0)
    return mean.to(torch.float32), std.to(torch.float32)


def mix_noise(
    x: torch.Tensor, z: torch.Tensor, rho: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """``mu + sqrt(rho) (x - mu) + sqrt(1 - rho) std z`` for x, z [B, T, D], rho [B], mean/std [D].

    Computed as ``(1 - a) mu + a x + b std z`` (a = sqrt(rho), b = sqrt(1 - rho)) in two fused
    passes over the data; the per-sample, per-dimension coefficients are tiny [B, 1, D] tensors.
    """
    a, offset, scale = noise_coefficients(rho, mean, std, x.dtype)
    out = torch.addcmul(offset, x, a)
    return out.addcmul_(z, scale)


def noise_coefficients(
    rho: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a`` [B, 1, 1], ``(1 - a) mu`` and ``b std`` [B, 1, D] (a = sqrt(rho), b = sqrt(1 - rho))."""
    a = rho.to(dtype).sqrt()
    b = (1 - rho).to(dtype).clamp_min(0).sqrt()
    offset = ((1 - a)[:, None] * mean[None, :])[:, None, :]
    scale = (b[:, None] * std[None, :])[:, None, :]
    return a[:, None, None], offset, scale


@register_family
class Noise(FeatureCorruption):
    """Gaussian feature noise at SNR 10 log10(rho / (1 - rho)) dB, scaled to training statistics."""

    name = "noise"
    version = "1"
    parameter_name = "SNR"
    parameter_unit = "dB"
    mapping = "SNR = 10 log10(rho / (1 - rho)); x' = mu + sqrt(rho)(x - mu) + sqrt(1 - rho) std z"
    absent = "pure noise mu + std z with the training feature statistics on valid frames"

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, data: ModalityBatch) -> Noise:
        self.mean, self.std = feature_statistics(data)
        return self

    def parameter(self, rho: float) -> float:
        rho = float(rho)
        if rho >= 1.0:
            return math.inf
        if rho <= 0.0:
            return -math.inf
        return 10.0 * math.log10(rho / (1.0 - rho))

    def sample(self, keys: torch.Tensor, data: ModalityBatch) -> torch.Tensor:
        """Standard normals [B, T, D] in the data's dtype, on the data's device."""
        check_keys(keys, data)
        self._check_fitted(data)
        z = normal(keys, tuple(data.features.shape[1:]))
        return z.to(device=data.features.device, dtype=data.features.dtype)

    def apply(self, data: ModalityBatch, rho: torch.Tensor, state: torch.Tensor) -> ModalityBatch:
        mean, std = self._check_fitted(data)
        x = data.features
        out = mix_noise(x, state, rho, mean.to(x.device, x.dtype), std.to(x.device, x.dtype))
        return data.replace(features=self._keep_inactive(data, rho, out))

    def corrupt(self, data: ModalityBatch, rho: torch.Tensor, keys: torch.Tensor) -> ModalityBatch:
        """One level without materialising ``z``: each sample's row is drawn into a small buffer
        (the same generator, seed and size as :meth:`sample`) and mixed while it is in cache, on
        up to ``torch.get_num_threads()`` threads. Bit-identical to ``apply(sample())``; CPU
        float32 only (other devices and dtypes take the two-step path)."""
        x = data.features
        if x.device.type != "cpu" or x.dtype != torch.float32 or not x.is_contiguous():
            return super().corrupt(data, rho, keys)
        check_keys(keys, data)
        mean, std = self._check_fitted(data)
        a3, offset, scale = noise_coefficients(rho, mean, std, x.dtype)  # as mix_noise, row by row
        out = torch.empty_like(x)
        key_list = [int(k) for k in keys.tolist()]
        shape = tuple(x.shape[1:])

        def rows(lo: int, hi: int) -> None:
            g = torch.Generator(device="cpu")
            z = torch.empty(shape, dtype=torch.float32)
            for i in range(lo, hi):
                g.manual_seed(key_list[i])
                torch.randn(shape, generator=g, out=z)
                row = out[i : i + 1]
                torch.addcmul(offset[i : i + 1], x[i : i + 1], a3[i : i + 1], out=row)
                row.addcmul_(z[None], scale[i : i + 1])

        for_row_slices(len(key_list), x.numel(), rows)
        return data.replace(features=self._keep_inactive(data, rho, out))

    @staticmethod
    def _keep_inactive(data: ModalityBatch, rho: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` on valid frames of present samples with rho < 1, the input elsewhere."""
        active = data.mask & ~data.missing[:, None] & (rho < 1)[:, None]
        if bool(active.all()):
            return out
        return torch.where(active[:, :, None], out, data.features)

    def config(self) -> dict[str, Any]:
        return {}

    def _check_fitted(self, data: ModalityBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean is None or self.std is None:
            raise ValueError("noise: call fit(train) first; the noise is scaled to training statistics")
        d = data.features.shape[-1]
        if self.mean.shape[0] != d:
            raise ValueError(f"noise: fitted on {self.mean.shape[0]} feature dimensions, data has {d}")
        return self.mean, self.std
