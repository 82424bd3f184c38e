"""Base types of the raw-level corruption families (audio clips, video frames, transcripts).

A raw family acts on one clip of one modality before any feature extraction:

* audio:  :class:`AudioClip` (mono float32 samples and a sample rate)
* vision: uint8 RGB frames ``[T, H, W, 3]``
* text:   a transcript ``str``

It speaks the vocabulary of :class:`corruptions.base.Corruption`: ``sample(keys, clip)`` draws all
randomness, ``apply(clip, rho, state)`` is pure, ``corrupt(clip, rho, keys)`` does both. One clip
has batch shape [], so ``keys`` is a 0-d int64 tensor: the clip's 63-bit key, one entry of
``derive_keys(seed, sample_keys(ids), modality, family, stream)`` (:func:`corrupt_many` hands each
clip its entry). The state comes from a private generator seeded with that key:
``np.random.Generator(PCG64(key))``, ``random.Random(key)`` for short texts, or the project's keyed
torch draws (:func:`corruptions.keys.normal`) where bulk Gaussian noise must be fast. The drawn
state never depends on ``rho``, so one draw serves every level of a grid and damage is nested /
monotone in ``rho``. ``apply`` validates the clip and ``rho``; ``rho = 1`` returns a copy of the
input, equal bit for bit; below 1 it calls the family's :meth:`RawCorruption._degrade`;
``rho = 0`` is the modality absent as the family defines it.

The wrapped libraries draw their random parameters from global RNGs (audiomentations: ``random``
and ``numpy.random``; albumentations' ``GaussNoise``: OpenCV's global RNG). The families never call
those randomising paths: they pass fixed parameters to the libraries' deterministic application
paths (``freeze_parameters`` / ``apply``), so no global RNG is read or changed.
"""
from __future__ import annotations

import copy
import hashlib
import math
import random
import struct
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..base import Corruption, Level

__all__ = [
    "AudioClip",
    "RawData",
    "RawCorruption",
    "corrupt_many",
    "check_rho",
    "check_key",
    "make_rng",
    "make_py_rng",
    "frozen",
    "mean_colour_frames",
]


@dataclass(frozen=True, eq=False)
class AudioClip:
    """A mono audio clip: float32 samples ``[n]`` and the sample rate in Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        s = self.samples
        if not isinstance(s, np.ndarray) or s.dtype != np.float32 or s.ndim != 1:
            raise TypeError("AudioClip.samples must be a 1-D float32 numpy array (mono)")
        if s.size == 0:
            raise ValueError("AudioClip.samples must not be empty")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, (int, np.integer)):
            raise TypeError("AudioClip.sample_rate must be an int")
        if self.sample_rate <= 0:
            raise ValueError("AudioClip.sample_rate must be positive")


RawData = AudioClip | np.ndarray | str


def check_rho(rho: float) -> float:
    """``rho`` as a Python float; raises ``ValueError`` outside [0, 1] or when not finite."""
    r = float(rho)
    if not math.isfinite(r) or r < 0.0 or r > 1.0:
        raise ValueError(f"rho must lie in [0, 1], got {rho!r}")
    return r


def check_key(key: torch.Tensor) -> int:
    """The clip's key (a 0-d int64 tensor) as a Python int.

    Raises ``TypeError`` for anything but a 0-d int64 tensor and ``ValueError`` for a negative key
    (keys are non-negative 63-bit integers).
    """
    if not isinstance(key, torch.Tensor) or key.dtype != torch.int64 or key.ndim != 0:
        raise TypeError(f"a raw family takes the clip's key as a 0-d int64 tensor (one entry of derive_keys), "
                        f"got {key!r}")
    k = int(key)
    if k < 0:
        raise ValueError(f"key must be a non-negative 63-bit integer, got {k}")
    return k


def make_rng(key: torch.Tensor) -> np.random.Generator:
    """The private numpy generator of one clip: PCG64 seeded with the clip's ``key``."""
    return np.random.Generator(np.random.PCG64(check_key(key)))


def keyed_order(key: torch.Tensor, n: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` (int64) from the clip's ``key`` alone: the
    stable ranking of ``n`` 64-bit words of SHAKE-128 of the key (a tie has probability below
    n^2 / 2^65). About 2 us for n = 64, a quarter of seeding a numpy generator and drawing: for
    families whose whole draw is one ranking of a few cells on a cheap operation."""
    words = np.frombuffer(hashlib.shake_128(struct.pack("<Q", check_key(key))).digest(8 * n), dtype="<u8")
    return np.argsort(words, kind="stable")


def make_py_rng(key: torch.Tensor) -> random.Random:
    """The private Python generator of one clip (cheaper to seed than PCG64: for short texts)."""
    return random.Random(check_key(key))


def frozen(transform: Any, **parameters: Any) -> Any:
    """A shallow copy of an audiomentations transform with fixed, frozen ``parameters``.

    Its ``__call__`` then skips ``randomize_parameters`` (no global RNG) and the shared instance
    is never mutated, so families stay pure and thread-safe.
    """
    t = copy.copy(transform)
    t.parameters = {"should_apply": True, **parameters}
    t.freeze_parameters()
    return t


def mean_colour_frames(frames: np.ndarray) -> np.ndarray:
    """Each frame replaced by its per-channel mean colour (rounded): the limit of infinite blur."""
    mean = np.rint(frames.mean(axis=(1, 2), dtype=np.float64, keepdims=True))
    return np.broadcast_to(mean.astype(np.uint8), frames.shape).copy()


def _check_data(modality: str, data: RawData) -> None:
    if modality == "audio" and not isinstance(data, AudioClip):
        raise TypeError(f"audio families take an AudioClip, got {type(data).__name__}")
    if modality == "text" and not isinstance(data, str):
        raise TypeError(f"text families take a str, got {type(data).__name__}")
    if modality == "vision":
        ok = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4
        if not ok or data.shape[-1] != 3 or min(data.shape) < 1:
            raise TypeError("vision families take uint8 RGB frames of shape [T, H, W, 3]")


class RawCorruption(Corruption):
    """A raw-level corruption family: one modality, one clip at a time (``keys`` 0-d, ``rho`` a float)."""

    level: ClassVar[Level] = "raw"
    #: exactly one of "audio", "vision", "text"
    modalities: ClassVar[tuple[str, ...]]
    #: largest relative decrease of damage allowed when rho falls (0.0: exactly monotone); a family
    #: with a non-zero value says in its docstring why exact monotonicity is impossible
    monotone_tolerance: ClassVar[float] = 0.0

    @property
    def modality(self) -> str:
        return self.modalities[0]

    def sample(self, keys: torch.Tensor, data: RawData) -> Any:
        """All randomness for ``data`` from its key ``keys`` (never from ``rho``). Default: none.

        Validates the clip and the key; families that draw call this first.
        """
        _check_data(self.modality, data)
        check_key(keys)
        return {}

    def apply(self, data: RawData, rho: float, state: Any) -> RawData:
        """Pure: ``rho = 1`` gives a bit-identical copy, otherwise :meth:`_degrade`."""
        _check_data(self.modality, data)
        r = check_rho(rho)
        if r == 1.0:
            if isinstance(data, AudioClip):
                return AudioClip(data.samples.copy(), data.sample_rate)
            return data.copy() if isinstance(data, np.ndarray) else data
        return self._degrade(data, r, state)

    @abstractmethod
    def _degrade(self, data: RawData, rho: float, state: Any) -> RawData:
        """The family's maths at ``0 <= rho < 1`` on a validated clip (``rho = 1`` is :meth:`apply`'s)."""


def corrupt_many(
    family: RawCorruption,
    items: Sequence[RawData],
    rho: float | Sequence[float],
    keys: torch.Tensor,
) -> list[RawData]:
    """Corrupt every clip of ``items`` with its own key (and its own ``rho`` if a sequence is given).

    ``keys`` is the int64 tensor [N] of ``derive_keys``: clip ``i`` gets the 0-d key ``keys[i]``.
    """
    if not isinstance(keys, torch.Tensor) or keys.dtype != torch.int64 or keys.ndim != 1:
        raise TypeError(f"keys must be an int64 tensor [N] (derive_keys), got {keys!r}")
    rhos = [rho] * len(items) if np.ndim(rho) == 0 else list(rho)
    if not len(keys) == len(rhos) == len(items):
        raise ValueError(f"got {len(items)} items, {len(keys)} keys and {len(rhos)} rho values")
    return [family.corrupt(x, r, k) for x, r, k in zip(items, rhos, keys)]
