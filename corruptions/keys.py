"""Randomness from keys only.

Every random draw of the corruption engine is a pure function of
``(seed, sample id, modality, family, stream)``. ``stream`` separates independent uses of the
same family on the same sample (e.g. the training epoch). No global RNG (``random``, ``numpy``,
``torch``) is ever read or changed: per-sample draws come from private ``torch.Generator``
objects seeded with a 63-bit key, always on the CPU, so the same key gives the same bits on any
device, batch composition, order or worker count.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "MODALITIES",
    "stable_hash64",
    "sample_keys",
    "derive_keys",
    "uniform",
    "normal",
]

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
_MASK63 = np.uint64((1 << 63) - 1)


def stable_hash64(*parts: object) -> int:
    """A 63-bit non-negative integer from the ``repr``-independent string form of ``parts``."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def sample_keys(ids: Sequence[str]) -> np.ndarray:
    """One int64 key per sample id (hash of the id string), computed once per dataset."""
    return np.fromiter((stable_hash64("sample", i) for i in ids), dtype=np.int64, count=len(ids))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def derive_keys(
    seed: int,
    keys: np.ndarray | torch.Tensor,
    modality: str,
    family: str,
    stream: int = 0,
) -> torch.Tensor:
    """Per-sample keys for one (seed, modality, family, stream) from per-sample ``keys`` [B].

    Returns an int64 CPU tensor [B] of non-negative 63-bit keys.
    """
    if isinstance(keys, torch.Tensor):
        keys = keys.detach().cpu().numpy()
    base = np.uint64(stable_hash64("derive", seed, modality, family, stream))
    mixed = _splitmix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ base) & _MASK63
    return torch.from_numpy(mixed.astype(np.int64))


def _draw(keys: torch.Tensor, shape: tuple[int, ...], fn) -> torch.Tensor:
    out = torch.empty((len(keys), *shape), dtype=torch.float32)
    g = torch.Generator(device="cpu")
    for b, k in enumerate(keys.tolist()):
        g.manual_seed(int(k))
        fn(shape, generator=g, out=out[b])
    return out


def uniform(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """U[0, 1) draws, float32 CPU tensor [B, *shape]; row b depends on ``keys[b]`` only."""
    return _draw(keys, tuple(shape), torch.rand)


def normal(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, 1) draws, float32 CPU tensor [B, *shape]; row b depends on ``keys[b]`` only."""
    return _draw(keys, tuple(shape), torch.randn)
