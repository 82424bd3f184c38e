"""Base types of the raw-level corruption families (audio clips, video frames, transcripts).

A raw family acts on one clip of one modality before any feature extraction:

* audio:  :class:`AudioClip` (mono float32 samples and a sample rate)
* vision: uint8 RGB frames ``[T, H, W, 3]``
* text:   a transcript ``str``

As at feature level, all randomness is drawn in ``sample(key, data)`` from a private generator
seeded with the clip's 63-bit key (``derive_keys(seed, sample_keys, modality, family, stream)``):
``np.random.Generator(PCG64(key))``, ``random.Random(key)`` for short texts, or the project's keyed
torch draws (:func:`corruptions.keys.normal`) where bulk Gaussian noise must be fast;
``apply(data, rho, params)`` is pure. The drawn parameters never depend on ``rho``, so one draw
serves every level of a grid and damage is nested / monotone in ``rho``. ``rho = 1`` returns a copy
of the input, equal bit for bit; ``rho = 0`` is the modality absent as the family defines it.

The wrapped libraries draw their random parameters from global RNGs (audiomentations: ``random``
and ``numpy.random``; albumentations' ``GaussNoise``: OpenCV's global RNG). The families never call
those randomising paths: they pass fixed parameters to the libraries' deterministic application
paths (``freeze_parameters`` / ``apply``), so no global RNG is read or changed.
"""
from __future__ import annotations

import copy
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

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


def check_key(key: int) -> int:
    """``key`` as a Python int; raises ``ValueError`` unless it is a non-negative 63-bit integer."""
    k = int(key)
    if k != key or k < 0 or k >= 1 << 63:
        raise ValueError(f"key must be a non-negative 63-bit integer, got {key!r}")
    return k


def make_rng(key: int) -> np.random.Generator:
    """The private numpy generator of one clip: PCG64 seeded with the clip's ``key``."""
    return np.random.Generator(np.random.PCG64(check_key(key)))


def make_py_rng(key: int) -> random.Random:
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


class RawCorruption(ABC):
    """A raw-level corruption family: one modality, one clip at a time."""

    name: ClassVar[str]
    version: ClassVar[str]
    level: ClassVar[str] = "raw"
    #: exactly one of "audio", "vision", "text"
    modalities: ClassVar[tuple[str]]
    #: physical parameter controlled by rho, its unit and the mapping as text (for the catalogue)
    parameter_name: ClassVar[str]
    parameter_unit: ClassVar[str] = ""
    mapping: ClassVar[str]
    #: what rho = 0 means for this family
    absent: ClassVar[str]
    #: largest relative decrease of damage allowed when rho falls (0.0: exactly monotone); a family
    #: with a non-zero value says in its docstring why exact monotonicity is impossible
    monotone_tolerance: ClassVar[float] = 0.0

    @property
    def modality(self) -> str:
        return self.modalities[0]

    @abstractmethod
    def parameter(self, rho: float) -> float:
        """The physical parameter at reliability ``rho``."""

    def sample(self, key: int, data: RawData) -> Any:
        """All randomness for ``data`` from ``key`` (never from ``rho``). Default: none."""
        _check_data(self.modality, data)
        check_key(key)
        return {}

    @abstractmethod
    def corrupt(self, data: RawData, rho: float, params: Any) -> RawData:
        """Pure application at ``0 <= rho < 1`` (``rho = 1`` is handled by :meth:`apply`)."""

    def apply(self, data: RawData, rho: float, params: Any) -> RawData:
        """Pure: ``rho = 1`` gives a bit-identical copy, otherwise :meth:`corrupt`."""
        _check_data(self.modality, data)
        r = check_rho(rho)
        if r == 1.0:
            if isinstance(data, AudioClip):
                return AudioClip(data.samples.copy(), data.sample_rate)
            return data.copy() if isinstance(data, np.ndarray) else data
        return self.corrupt(data, r, params)

    def __call__(self, data: RawData, rho: float, key: int) -> RawData:
        return self.apply(data, rho, self.sample(key, data))

    def config(self) -> dict[str, Any]:
        """Constructor parameters (for records and identities)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def corrupt_many(
    family: RawCorruption,
    items: Sequence[RawData],
    rho: float | Sequence[float],
    keys: Sequence[int] | Any,
) -> list[RawData]:
    """Corrupt every clip of ``items`` with its own key (and its own ``rho`` if a sequence is given).

    ``keys`` may be a list of ints, a numpy array or the int64 tensor of ``derive_keys``.
    """
    key_list = [int(k) for k in (keys.tolist() if hasattr(keys, "tolist") else keys)]
    rhos = [rho] * len(items) if np.ndim(rho) == 0 else list(rho)
    if not len(key_list) == len(rhos) == len(items):
        raise ValueError(f"got {len(items)} items, {len(key_list)} keys and {len(rhos)} rho values")
    return [family(x, r, k) for x, r, k in zip(items, rhos, key_list)]
