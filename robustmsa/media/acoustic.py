"""``acoustic``: frame-level prosody and spectral features of speech (numpy/scipy, no numba).

Per frame of ``frame_ms`` (Hann window) every ``hop_ms``, ``4 + n_mfcc + 3`` features:

=====  ===================  ==========================================================  =========
index  feature              definition                                                  scaling
=====  ===================  ==========================================================  =========
0      energy               20 log10(RMS + 1e-5) dB                                     / 20
1      pitch                f0 in semitones above 55 Hz, linearly interpolated across   / 24
                            unvoiced frames (held at the ends; 0 if no frame is voiced)
2      pitch slope          (pitch[t+2] - pitch[t-2]) / 4, semitones per frame          as is
3      voicing              1 - min of YIN's cumulative mean normalised difference      as is
4..    MFCC c0..c(n-1)      DCT-II (orthonormal) of log mel power, ``n_mels`` HTK bands / 20
-3     spectral centroid    power-weighted mean frequency, kHz                          / 4
-2     spectral flatness    geometric / arithmetic mean of the power spectrum           as is
-1     zero-crossing rate   fraction of sign changes                                    as is
=====  ===================  ==========================================================  =========

A continuous pitch contour (as in prosody toolkits) lets a temporal model read intonation (rising
or falling) from local slopes instead of jumps to 0 at every unvoiced frame.

Pitch is YIN (de Cheveigné and Kawahara 2002): the difference function from FFT
autocorrelations, cumulative mean normalisation, the first dip below ``yin_threshold`` inside
``[fmin, fmax]`` refined by parabolic interpolation; a frame is voiced when that minimum is below
``voicing_threshold``. The scalings are fixed constants (not fitted), so features stay in a unit
range without statistics of any split. Padded frames are zero with mask False.

Why not librosa: it is installed (audiomentations needs it), but on this project's 2-core machines
the first call of ``librosa.stft`` / ``feature.mfcc`` / ``yin`` compiles numba kernels for 40 to 80 s
per fresh environment and worker process; these few numpy lines give the same quantities at about
2 ms per 2 s clip with no compilation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.fft import dct, irfft, rfft
from scipy.signal import get_window

from corruptions.raw import AudioClip

from ..errors import DataError
from .features import Extractor, FeatureRow, pad_rows, register_extractor

__all__ = ["AcousticFeatures", "mel_filterbank", "yin_pitch", "continuous_pitch"]


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """float64 [n_mels, n_fft // 2 + 1] triangular HTK-mel filters (peak 1)."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None, :]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None)


def yin_pitch(frames: np.ndarray, sample_rate: int, fmin: float, fmax: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """YIN f0 (Hz, NaN where no dip) and the minimum normalised difference per frame [F]."""
    n_frames, width = frames.shape
    tau_min = max(2, int(math.floor(sample_rate / fmax)))
    tau_max = min(width // 2, int(math.ceil(sample_rate / fmin)))
    w = width - tau_max  # integration window
    x = frames.astype(np.float64)
    size = 1 << int(math.ceil(math.log2(width + w)))
    corr = irfft(rfft(x, size) * np.conj(rfft(x[:, :w], size)), size)[:, : tau_max + 1]
    sq = np.concatenate([np.zeros((n_frames, 1)), np.cumsum(x * x, axis=1)], axis=1)
    e0 = sq[:, w][:, None]
    taus = np.arange(tau_max + 1)
    e_tau = sq[:, taus + w] - sq[:, taus]
    diff = np.maximum(e0 + e_tau - 2.0 * corr, 0.0)
    diff[:, 0] = 0.0
    cum = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, tau_max + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.maximum(cum, 1e-12)
    region = cmnd[:, tau_min : tau_max + 1]
    below = region < threshold
    # first local dip under the threshold: first index below it, then walk to the local minimum
    first = np.where(below.any(axis=1), below.argmax(axis=1), region.argmin(axis=1))
    idx = first.copy()
    for _ in range(region.shape[1]):
        nxt = np.minimum(idx + 1, region.shape[1] - 1)
        step = region[np.arange(n_frames), nxt] < region[np.arange(n_frames), idx]
        if not step.any():
            break
        idx = np.where(step, nxt, idx)
    best = region[np.arange(n_frames), idx]
    tau = (idx + tau_min).astype(np.float64)
    left = cmnd[np.arange(n_frames), np.maximum(idx + tau_min - 1, 1)]
    right = cmnd[np.arange(n_frames), np.minimum(idx + tau_min + 1, tau_max)]
    denom = left - 2.0 * best + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1.0, denom), 0.0)
    tau = tau + np.clip(shift, -1.0, 1.0)
    f0 = np.where(tau > 0, sample_rate / np.maximum(tau, 1e-9), np.nan)
    return f0, best


def continuous_pitch(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Semitones above 55 Hz, interpolated over unvoiced frames (0 everywhere if none is voiced)."""
    t = np.flatnonzero(voiced)
    if t.size == 0:
        return np.zeros(len(f0))
    semis = 12.0 * np.log2(f0[t] / 55.0)
    return np.interp(np.arange(len(f0)), t, semis)


@dataclass(frozen=True)
class AcousticSettings:
    """The acoustic extractor's settings (frames of ``frame_ms`` every ``hop_ms``; pitch searched
    in [fmin, fmax] Hz)."""

    sample_rate: int = 16000
    frame_ms: float = 40.0
    hop_ms: float = 40.0
    n_mfcc: int = 13
    n_mels: int = 26
    fmin: float = 60.0
    fmax: float = 500.0
    yin_threshold: float = 0.15
    voicing_threshold: float = 0.3
    max_frames: int = 50

    def __post_init__(self) -> None:
        for f in fields(self):  # the types as declared (YAML may hand an int where a float is meant)
            object.__setattr__(self, f.name, (int if f.type == "int" else float)(getattr(self, f.name)))


@register_extractor
class AcousticFeatures(Extractor):
    """Energy, YIN pitch and voicing, MFCCs, spectral centroid, flatness and zero-crossing rate."""

    name = "acoustic"
    version = "2"
    modality = "audio"
    description = "energy, YIN pitch (continuous) + slope + voicing, MFCC, centroid, flatness, ZCR per 40 ms frame"
    accepts = ("sample_rate", "max_frames")

    def __init__(self, **settings: Any):
        c = AcousticSettings(**settings)
        if c.sample_rate <= 0 or c.frame_ms <= 0 or c.hop_ms <= 0 or c.max_frames < 1:
            raise DataError("acoustic extractor: sample_rate, frame_ms, hop_ms, max_frames must be positive")
        if not (0 < c.fmin < c.fmax < c.sample_rate / 2) or not (1 <= c.n_mfcc <= c.n_mels):
            raise DataError("acoustic extractor: need 0 < fmin < fmax < sample_rate / 2 and 1 <= n_mfcc <= n_mels")
        self.sample_rate, self.frame_ms, self.hop_ms = c.sample_rate, c.frame_ms, c.hop_ms
        self.n_mfcc, self.n_mels, self.fmin, self.fmax = c.n_mfcc, c.n_mels, c.fmin, c.fmax
        self.yin_threshold, self.voicing_threshold = c.yin_threshold, c.voicing_threshold
        self.max_frames = c.max_frames
        self.frame = int(round(self.sample_rate * self.frame_ms / 1000.0))
        self.hop = int(round(self.sample_rate * self.hop_ms / 1000.0))
        self.n_fft = 1 << int(math.ceil(math.log2(self.frame)))
        self._window = get_window("hann", self.frame, fftbins=True)
        self._mel = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, 0.0, self.sample_rate / 2.0)
        self._freqs = np.linspace(0.0, self.sample_rate / 2.0, self.n_fft // 2 + 1)

    @property
    def dim(self) -> int:
        return 4 + self.n_mfcc + 3

    @property
    def length(self) -> int:
        return self.max_frames

    def frames_for(self, n_samples: int) -> int:
        """Number of frames of a clip of ``n_samples`` samples (before padding/truncation)."""
        return 1 + max(0, (n_samples - self.frame) // self.hop)

    def extract(self, clip: AudioClip) -> FeatureRow:
        if not isinstance(clip, AudioClip):
            raise TypeError(f"acoustic features take an AudioClip, got {type(clip).__name__}")
        if clip.sample_rate != self.sample_rate:
            raise DataError(f"acoustic extractor runs at {self.sample_rate} Hz, the clip is at {clip.sample_rate} Hz")
        x = clip.samples.astype(np.float64)
        if x.size < self.frame:
            x = np.pad(x, (0, self.frame - x.size))
        n = min(self.frames_for(x.size), self.max_frames)
        frames = np.lib.stride_tricks.sliding_window_view(x, self.frame)[:: self.hop][:n]
        rms = np.sqrt(np.mean(frames**2, axis=1))
        power = np.abs(rfft(frames * self._window, self.n_fft, axis=1)) ** 2
        logmel = np.log(power @ self._mel.T + 1e-10)
        mfcc = dct(logmel, type=2, norm="ortho", axis=1)[:, : self.n_mfcc]
        total = power.sum(axis=1)
        centroid = (power @ self._freqs) / np.maximum(total, 1e-20)
        flatness = np.exp(np.mean(np.log(power + 1e-20), axis=1)) / np.maximum(np.mean(power, axis=1), 1e-20)
        zcr = np.mean(np.abs(np.diff(np.signbit(frames), axis=1)), axis=1)
        f0, dip = yin_pitch(frames, self.sample_rate, self.fmin, self.fmax, self.yin_threshold)
        silent = rms < 1e-6
        voiced = (dip < self.voicing_threshold) & np.isfinite(f0) & ~silent
        pitch = continuous_pitch(f0, voiced)
        slope = (np.pad(pitch, 2, mode="edge")[4:] - np.pad(pitch, 2, mode="edge")[:-4]) / 4.0
        voicing = np.where(silent, 0.0, np.clip(1.0 - dip, 0.0, 1.0))
        feats = np.column_stack([
            20.0 * np.log10(rms + 1e-5) / 20.0, pitch / 24.0, slope, voicing, mfcc / 20.0,
            np.where(silent, 0.0, centroid / 4000.0), np.where(silent, 0.0, flatness), zcr,
        ])
        return pad_rows(np.nan_to_num(feats).astype(np.float32), self.max_frames)

    def config(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "frame_ms": self.frame_ms, "hop_ms": self.hop_ms,
                "n_mfcc": self.n_mfcc, "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax,
                "yin_threshold": self.yin_threshold, "voicing_threshold": self.voicing_threshold,
                "max_frames": self.max_frames}
