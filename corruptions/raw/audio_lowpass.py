"""``audio_lowpass``: band-limiting by a zero-phase Butterworth low-pass filter.

Mapping: the cutoff falls linearly on the mel scale, ``cutoff = mel^-1(rho * mel(max_cutoff_hz))``
(default ``max_cutoff_hz`` 8000 Hz, the Nyquist frequency of 16 kHz audio): rho 0.9 -> 6.4 kHz,
0.5 -> 1.8 kHz, 0.1 -> 200 Hz. rho = 1 is the identity; rho = 0 (or a cutoff below 1 Hz) is silence.
Content above ``max_cutoff_hz`` is removed at every rho < 1 (relevant for sample rates > 16 kHz).

Library: audiomentations ``LowPassFilter`` (``zero_phase=True``, fixed roll-off), called with
frozen parameters so that its ``randomize_parameters`` (global ``random``/``numpy.random``) never
runs. Zero phase (``sosfiltfilt``) makes the response a real gain ``|H(f)|^2`` in [0, 1] that only
falls as the cutoff falls, so damage is monotone in ``rho`` (a causal filter's phase shift is not).
The family has no randomness.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._families import register_family
from ._albu import audio_utils, audiomentations
from .base import AudioClip, RawCorruption, check_rho, frozen

__all__ = ["AudioLowPass"]


@register_family
class AudioLowPass(RawCorruption):
    """Zero-phase low-pass at a cutoff falling linearly in mel with ``rho``."""

    name = "audio_lowpass"
    version = "1"
    modalities = ("audio",)
    parameter_name = "cutoff_frequency"
    parameter_unit = "Hz"
    mapping = "cutoff = mel^-1(rho * mel(max_cutoff_hz)); rho=1 -> identity"
    absent = "silence (all-zero samples): the cutoff reaches 0 Hz"

    def __init__(self, max_cutoff_hz: float = 8000.0, rolloff: int = 24):
        if not math.isfinite(max_cutoff_hz) or max_cutoff_hz <= 1.0:
            raise ValueError(f"max_cutoff_hz must be finite and > 1 Hz, got {max_cutoff_hz!r}")
        if rolloff < 12 or rolloff % 12:
            raise ValueError(f"rolloff must be a positive multiple of 12 dB/octave, got {rolloff!r}")
        self.max_cutoff_hz, self.rolloff = float(max_cutoff_hz), int(rolloff)
        self._filter = audiomentations.LowPassFilter(
            min_cutoff_freq=1.0, max_cutoff_freq=self.max_cutoff_hz, min_rolloff=self.rolloff,
            max_rolloff=self.rolloff, zero_phase=True, p=1.0,
        )

    def parameter(self, rho: float) -> float:
        r = check_rho(rho)
        return float(audio_utils.convert_mel_to_frequency(r * audio_utils.convert_frequency_to_mel(self.max_cutoff_hz)))

    def _degrade(self, data: AudioClip, rho: float, state: Any) -> AudioClip:
        cutoff = self.parameter(rho)
        if cutoff < 1.0:
            return AudioClip(np.zeros_like(data.samples), data.sample_rate)
        t = frozen(self._filter, rolloff=self.rolloff, cutoff_freq=cutoff)
        return AudioClip(t(data.samples, data.sample_rate), data.sample_rate)

    def config(self) -> dict[str, Any]:
        return {"max_cutoff_hz": self.max_cutoff_hz, "rolloff": self.rolloff}
