"""Randomness from keys only.

Every random draw of the corruption engine is a pure function of
``(seed, sample id, modality, family, stream)``. ``stream`` separates independent uses of the
same family on the same sample (e.g. the training epoch). No global RNG (``random``, ``numpy``,
``torch``) is ever read or changed: per-sample draws come from private ``torch.Generator``
objects seeded with a 63-bit key, always on the CPU, so the same key gives the same bits on any
device, batch composition, order or worker count.

Large draws are spread over ``torch.get_num_threads()`` threads (contiguous slices of the batch,
one private generator per slice; torch releases the GIL while it fills a row). Every row is still
seeded from its own key alone, so the bits do not depend on the number of threads.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = [
    "MODALITIES",
    "stable_hash64",
    "sample_keys",
    "derive_keys",
    "uniform",
    "normal",
    "for_row_slices",
    "PARALLEL_MIN_NUMBERS",
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


#: draws of fewer numbers than this (in all) stay on the calling thread
PARALLEL_MIN_NUMBERS = 1 << 20

_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, executor)


def _executor(workers: int) -> ThreadPoolExecutor:
    """The shared draw pool with ``workers`` threads (rebuilt after a fork or a thread-count change)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != workers:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="corruptions-draw"))
        return _pool[2]


def for_row_slices(n: int, numbers: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(lo, hi)`` over contiguous slices covering ``range(n)``.

    On up to ``torch.get_num_threads()`` threads when the job touches at least
    :data:`PARALLEL_MIN_NUMBERS` numbers in all, on the calling thread otherwise. ``work`` must
    write only rows ``lo .. hi - 1`` of its outputs and draw from per-row keys, so that the
    result does not depend on the slicing.
    """
    workers = min(torch.get_num_threads(), n)
    if workers <= 1 or numbers < PARALLEL_MIN_NUMBERS:
        work(0, n)
        return
    bounds = np.linspace(0, n, workers + 1).round().astype(int).tolist()
    pool = _executor(workers)
    jobs = [pool.submit(work, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for job in jobs:
        job.result()


def _draw(keys: torch.Tensor, shape: tuple[int, ...], fn: Callable) -> torch.Tensor:
    key_list = [int(k) for k in keys.tolist()]
    out = torch.empty((len(key_list), *shape), dtype=torch.float32)

    def fill(lo: int, hi: int) -> None:
        g = torch.Generator(device="cpu")
        for b in range(lo, hi):
            g.manual_seed(key_list[b])
            fn(shape, generator=g, out=out[b])

    for_row_slices(len(key_list), out.numel(), fill)
    return out


def uniform(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """U[0, 1) draws, float32 CPU tensor [B, *shape]; row b depends on ``keys[b]`` only."""
    return _draw(keys, tuple(shape), torch.rand)


def normal(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, 1) draws, float32 CPU tensor [B, *shape]; row b depends on ``keys[b]`` only."""
    return _draw(keys, tuple(shape), torch.randn)
