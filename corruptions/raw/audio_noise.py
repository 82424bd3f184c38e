"""``audio_noise``: additive white Gaussian noise at a signal-to-noise ratio set by ``rho``.

Mapping: ``rho`` is the fraction of the mixture's power that is signal, ``P_s / (P_s + P_n)``,
so ``SNR_dB = 10 log10(rho / (1 - rho))`` clipped below at ``min_snr_db`` (default -20 dB):
rho 0.99 -> 20 dB, 0.9 -> 9.5 dB, 0.5 -> 0 dB, 0.1 -> -9.5 dB; rho = 1 -> +inf (identity).
rho = 0: the signal is removed and only the noise remains, at the ``min_snr_db`` level.

Library: audiomentations ``AddGaussianSNR`` computes ``noise_std =
calculate_desired_noise_rms(calculate_rms(x), snr)`` and returns
``x + np.random.normal(0, noise_std, x.shape).astype(float32)``. Its ``apply`` draws the noise from
the *global* numpy RNG, so this family uses the library's maths and formula but draws the standard
normal noise ``z`` itself, in ``sample``, from the clip key. ``z`` is fixed per key and its scale
grows as ``rho`` falls, so damage is exactly monotone. A silent clip (RMS 0) gets no noise.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._families import register_family
from ._albu import audio_utils
from .base import AudioClip, RawCorruption, check_rho, make_rng

__all__ = ["AudioNoise"]


@register_family
class AudioNoise(RawCorruption):
    """White Gaussian noise at SNR ``10 log10(rho / (1 - rho))`` dB (audiomentations maths)."""

    name = "audio_noise"
    version = "1"
    modalities = ("audio",)
    parameter_name = "snr"
    parameter_unit = "dB"
    mapping = "SNR = 10*log10(rho/(1-rho)) dB, clipped below at min_snr_db; rho=1 -> +inf (identity)"
    absent = "signal removed: Gaussian noise only, at the min_snr_db level of the clean RMS"

    def __init__(self, min_snr_db: float = -20.0):
        if not math.isfinite(min_snr_db) or min_snr_db > 0:
            raise ValueError(f"min_snr_db must be finite and <= 0 dB, got {min_snr_db!r}")
        self.min_snr_db = float(min_snr_db)

    def parameter(self, rho: float) -> float:
        r = check_rho(rho)
        if r == 1.0:
            return math.inf
        if r == 0.0:
            return self.min_snr_db
        return max(10.0 * math.log10(r / (1.0 - r)), self.min_snr_db)

    def sample(self, keys: torch.Tensor, data: AudioClip) -> dict[str, Any]:
        super().sample(keys, data)
        # float64 like the library's np.random.normal, scaled and cast to float32 in corrupt
        return {"noise": make_rng(keys).standard_normal(data.samples.shape[0])}

    def _degrade(self, data: AudioClip, rho: float, state: dict[str, Any]) -> AudioClip:
        std = float(audio_utils.calculate_desired_noise_rms(audio_utils.calculate_rms(data.samples), self.parameter(rho)))
        noise = (std * state["noise"]).astype(np.float32)
        return AudioClip(noise if rho == 0.0 else data.samples + noise, data.sample_rate)

    def config(self) -> dict[str, Any]:
        return {"min_snr_db": self.min_snr_db}
