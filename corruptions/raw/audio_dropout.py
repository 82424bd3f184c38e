"""``audio_dropout``: short chunks of the clip silenced (packet loss / time masking).

Mapping: the clip is cut into chunks of ``chunk_ms`` (default 20 ms); a fraction ``1 - rho`` of
them (rounded to whole chunks) is silenced with hard edges. The chunks are ranked once per key by a
uniform draw, and level ``rho`` silences the first ``round((1 - rho) * n_chunks)`` of that ranking,
so the silenced sets are nested across ``rho`` and damage is exactly monotone.
rho = 1 is the identity; rho = 0 silences every chunk (silence).

Library: audiomentations ``TimeMask`` (``fade_duration=0``) applied once per run of adjacent
silenced chunks, with frozen ``t``/``t0`` parameters, so its ``randomize_parameters`` (global
``random``) never runs. Each run is masked on its own slice of one private copy of the clip
(``t0 = 0``, ``t`` = the run's length): ``TimeMask`` copies whatever it is given, so calling it
on the whole clip per run would copy the clip once per run; the samples are the same bit for bit.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._families import register_family
from ._albu import audiomentations
from .base import AudioClip, RawCorruption, check_rho, frozen, make_rng

__all__ = ["AudioDropout", "silenced_runs"]


def silenced_runs(rank: np.ndarray, rho: float, chunk: int, n: int) -> list[tuple[int, int]]:
    """``(t0, t)`` sample runs silenced at ``rho`` in an ``n``-sample clip.

    ``rank`` [n_chunks + 2] holds each chunk's place in the key's ranking, padded at both ends with
    ``n_chunks`` (never silenced); the first ``round((1 - rho) * n_chunks)`` ranks are silenced.
    """
    chosen = rank < math.floor((1.0 - rho) * (len(rank) - 2) + 0.5)
    edges = np.flatnonzero(chosen[1:] != chosen[:-1])
    starts, stops = edges[0::2] * chunk, np.minimum(edges[1::2] * chunk, n)
    return list(zip(starts.tolist(), (stops - starts).tolist()))


@register_family
class AudioDropout(RawCorruption):
    """Nested silencing of ``1 - rho`` of the ``chunk_ms`` chunks (audiomentations ``TimeMask``)."""

    name = "audio_dropout"
    version = "1"
    modalities = ("audio",)
    parameter_name = "silenced_fraction"
    mapping = "fraction of chunk_ms chunks silenced = 1 - rho (rounded to whole chunks), nested"
    absent = "silence: every chunk masked"

    def __init__(self, chunk_ms: float = 20.0):
        if not math.isfinite(chunk_ms) or chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive, got {chunk_ms!r}")
        self.chunk_ms = float(chunk_ms)
        self._mask = audiomentations.TimeMask(min_band_part=0.0, max_band_part=1.0, fade_duration=0.0, p=1.0)

    def parameter(self, rho: float) -> float:
        return 1.0 - check_rho(rho)

    def chunk_length(self, sample_rate: int) -> int:
        return max(1, round(self.chunk_ms * sample_rate / 1000.0))

    def sample(self, keys: torch.Tensor, data: AudioClip) -> dict[str, Any]:
        super().sample(keys, data)
        n_chunks = -(-data.samples.shape[0] // self.chunk_length(data.sample_rate))
        order = np.argsort(make_rng(keys).random(n_chunks), kind="stable")
        rank = np.full(n_chunks + 2, n_chunks, dtype=np.int64)
        rank[order + 1] = np.arange(n_chunks)
        return {"order": order, "rank": rank}

    def _degrade(self, data: AudioClip, rho: float, state: dict[str, Any]) -> AudioClip:
        sr = data.sample_rate
        out = data.samples.copy()
        mask = frozen(self._mask, t=0, t0=0)  # a private copy: its parameters are updated per run
        for t0, t in silenced_runs(state["rank"], rho, self.chunk_length(sr), out.shape[0]):
            mask.parameters["t"] = t
            out[t0 : t0 + t] = mask(out[t0 : t0 + t], sr)
        return AudioClip(out, sr)

    def config(self) -> dict[str, Any]:
        return {"chunk_ms": self.chunk_ms}
