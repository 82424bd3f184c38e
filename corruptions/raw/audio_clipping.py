"""``audio_clipping``: hard clipping at percentile thresholds (overdriven recording).

Mapping: ``2 * floor(50 * (1 - rho))`` percent of the samples are clipped, i.e. the waveform is
clipped to its ``[p, 100 - p]`` percentiles with ``p = floor(50 * (1 - rho))``: rho 0.9 -> 10 %,
0.5 -> 50 %, 0.1 -> 90 %. rho = 1 is the identity; rho = 0 clips every sample to the median
(a constant signal). The clipping intervals are nested, so damage is exactly monotone.

Library: audiomentations ``ClippingDistortion`` with a frozen ``percentile_threshold`` (the library
itself uses the integer lower percentile ``int(threshold / 2)``), so its ``randomize_parameters``
(global ``random``) never runs. The family has no randomness.
"""
from __future__ import annotations

import math
from typing import Any

from .._families import register_family
from ._albu import audiomentations
from .base import AudioClip, RawCorruption, check_rho, frozen

__all__ = ["AudioClipping"]


@register_family
class AudioClipping(RawCorruption):
    """Clip to the ``[p, 100 - p]`` percentiles, ``p = floor(50 (1 - rho))``."""

    name = "audio_clipping"
    version = "1"
    modalities = ("audio",)
    parameter_name = "clipped_percent"
    parameter_unit = "%"
    mapping = "percent of samples clipped = 2*floor(50*(1-rho)); thresholds at the p and 100-p percentiles"
    absent = "every sample clipped to the median: a constant signal"

    def __init__(self) -> None:
        self._clip = audiomentations.ClippingDistortion(min_percentile_threshold=0, max_percentile_threshold=100, p=1.0)

    def parameter(self, rho: float) -> float:
        return float(2 * math.floor(50.0 * (1.0 - check_rho(rho)) + 1e-9))

    def _degrade(self, data: AudioClip, rho: float, state: Any) -> AudioClip:
        t = frozen(self._clip, percentile_threshold=int(self.parameter(rho)))
        return AudioClip(t(data.samples, data.sample_rate), data.sample_rate)
