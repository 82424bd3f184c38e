"""Randomness from keys only.

Every random draw of the corruption engine is a pure function of
``(seed, sample id, modality, family, stream)``. ``stream`` separates independent uses of the
same family on the same sample (e.g. the training epoch). No global RNG (``random``, ``numpy``,
``torch``) is ever read or changed, and every draw is made on the CPU, so the same key gives the
same bits on any device, batch composition, order or worker count.

- :func:`uniform`, :func:`normal`: per-sample private ``torch.Generator`` objects (Mersenne
  Twister) seeded with the sample's 63-bit key.
- :func:`counter_normal` (the ``noise`` family's draw): counter-based: element ``p`` of sample ``b`` is a function of ``(keys[b], p)``
  alone (SplitMix64 outputs turned into normals by Box-Muller, vectorised with numpy over a
  block of samples; see :func:`normal`). About three times faster than a generator per sample,
  and any sub-range of a row can be computed on its own.

Large draws are spread over ``torch.get_num_threads()`` threads (contiguous slices of the batch;
torch and numpy release the GIL while they fill rows). Every row is still drawn from its own key
alone, so the bits do not depend on the number of threads.
"""
from __future__ import annotations

import hashlib
import math
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
    "counter_normal",
    "fill_normal_rows",
    "NormalScratch",
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
    """N(0, 1) draws from a Mersenne-Twister generator per row (``torch.randn``), float32 CPU
    tensor [B, *shape]; row b depends on ``keys[b]`` only (used by ``frame_noise``)."""
    return _draw(keys, tuple(shape), torch.randn)


# ----------------------------------------------------------------------------- counter-based normals

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (odd)
_MIX = ((np.uint64(30), np.uint64(0xBF58476D1CE4E5B9)), (np.uint64(27), np.uint64(0x94D049BB133111EB)))
_LOW24 = np.uint64(0xFFFFFF)
_TO_UNIT = np.float32(2.0**-24)
_TO_ANGLE = np.float32(2.0 * np.pi * 2.0**-24)
#: pairs (two normals each) per numpy pass: a block of rows (or a long row) in a few hundred kB
PAIRS_PER_BLOCK = 1 << 15


class NormalScratch:
    """Work arrays of :func:`fill_normal_rows` for up to ``rows`` rows of ``n`` numbers at a time.

    Made once and passed to every call on rows of that length (e.g. per thread), it saves the
    allocations and the pair counters of each call.
    """

    def __init__(self, rows: int, n: int):
        h = (n + 1) // 2
        r, c = min(rows, max(1, PAIRS_PER_BLOCK // max(h, 1))), min(max(h, 1), PAIRS_PER_BLOCK)
        self.n = n
        self.counters = np.arange(1, h + 1, dtype=np.uint64) * _GAMMA  # (j + 1) gamma, every pair
        self.ints = np.empty((r, c), dtype=np.int32)
        self.word = np.empty((r, c), dtype=np.uint64)
        self.tmp = np.empty((r, c), dtype=np.uint64)
        self.radius = np.empty((r, c), dtype=np.float32)
        self.angle = np.empty((r, c), dtype=np.float32)
        self.wave = np.empty((r, c), dtype=np.float32)


def _pairs(seeds: np.ndarray, j0: int, j1: int, s: NormalScratch) -> tuple[np.ndarray, np.ndarray]:
    """Box-Muller radius and angle [r, j1 - j0] of pairs ``j0 .. j1 - 1`` of rows keyed ``seeds`` [r].

    Pair ``j`` of a row with key ``k`` is the 64-bit word ``w = mix(k + (j + 1) gamma)`` (the
    (j + 1)-th output of SplitMix64 seeded with ``k``; arithmetic mod 2**64). Its top 24 bits give
    ``u = ((w >> 40) + 1) / 2**24`` in (0, 1], its low 24 bits ``v = (w & 0xFFFFFF) / 2**24`` in
    [0, 1); radius ``sqrt(-2 ln u)``, angle ``2 pi v``, both float32.
    """
    r, c = len(seeds), j1 - j0
    w, tmp, ints = s.word[:r, :c], s.tmp[:r, :c], s.ints[:r, :c]
    radius, angle = s.radius[:r, :c], s.angle[:r, :c]
    np.add(s.counters[None, j0:j1], seeds[:, None], out=w)
    for shift, mult in _MIX:
        np.right_shift(w, shift, out=tmp)
        w ^= tmp
        w *= mult
    np.right_shift(w, np.uint64(31), out=tmp)
    w ^= tmp
    np.right_shift(w, np.uint64(40), out=tmp)
    np.copyto(ints, tmp, casting="unsafe")  # < 2**24: exact through int32 (a faster cast than uint64's)
    np.copyto(radius, ints, casting="unsafe")
    radius += np.float32(1.0)
    radius *= _TO_UNIT
    np.log(radius, out=radius)
    radius *= np.float32(-2.0)
    np.sqrt(radius, out=radius)
    w &= _LOW24
    np.copyto(ints, w, casting="unsafe")
    np.copyto(angle, ints, casting="unsafe")
    angle *= _TO_ANGLE
    return radius, angle


def fill_normal_rows(seeds: np.ndarray, out: np.ndarray, scratch: NormalScratch | None = None) -> None:
    """Fill ``out`` [r, n] (float32, C-contiguous rows) with the normals of keys ``seeds`` [r].

    Row layout: with ``h = ceil(n / 2)`` pairs, ``out[:, j] = radius_j cos(angle_j)`` and
    ``out[:, h + j] = radius_j sin(angle_j)`` (the last sine is dropped when n is odd), pairs as in
    :func:`_pairs`. Every element is a function of its key and position alone (computed in
    blocks of at most :data:`PAIRS_PER_BLOCK` pairs, every transcendental on a whole contiguous
    work array, so that every element takes the same numpy code path). ``scratch``: work arrays
    made for rows of length n (made here when None).
    """
    r, n = out.shape
    h = (n + 1) // 2
    if r == 0 or h == 0:
        return
    if scratch is None or scratch.n != n:
        scratch = NormalScratch(r, n)
    seeds = np.asarray(seeds, dtype=np.int64).view(np.uint64)
    rows, step = scratch.word.shape
    for i0 in range(0, r, rows):
        block = out[i0 : i0 + rows]
        for j0 in range(0, h, step):
            j1 = min(h, j0 + step)
            radius, angle = _pairs(seeds[i0 : i0 + rows], j0, j1, scratch)
            wave = scratch.wave[: len(radius), : j1 - j0]
            k = min(n, h + j1) - (h + j0)
            np.cos(angle, out=wave)
            np.multiply(wave, radius, out=block[:, j0:j1])
            np.sin(angle, out=wave)
            np.multiply(wave[:, :k], radius[:, :k], out=block[:, h + j0 : h + j0 + k])


def counter_normal(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, 1) draws, float32 CPU tensor [B, *shape]; row b depends on ``keys[b]`` only.

    Counter-based (:func:`fill_normal_rows` on the flattened row): element ``p`` of row ``b``
    depends on ``(keys[b], p)`` and the row length only.
    """
    shape = tuple(shape)
    seeds = keys.detach().cpu().numpy().astype(np.int64)
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    flat = out.numpy().reshape(len(seeds), math.prod(shape))

    def fill(lo: int, hi: int) -> None:
        fill_normal_rows(seeds[lo:hi], flat[lo:hi])

    for_row_slices(len(seeds), out.numel(), fill)
    return out
