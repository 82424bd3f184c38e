"""Corrupt raw clips and extract their features, in parallel, deterministically.

:func:`corrupt_and_extract` is the unit of work: for each clip of a chunk it loads the media of one
modality, applies a raw corruption family at the clip's reliability (a :class:`ClipCorruption`:
``family.corrupt(clip, rho, key)`` (randomness from the clip's
key: ``derive_keys(seed, sample_keys([id]), modality, family, stream)``, exactly the keys of the
feature-level :class:`corruptions.Corrupter`), and runs the extractor. It is a pure function of
its arguments, so the result does not depend on the chunking or on the number of processes.

:func:`extract_rows` spreads the clips over ``workers`` processes (a ``spawn`` process pool, kept
alive and reused, chunks of at most ``chunk_size`` clips, BLAS/OpenCV threads 1 in the workers),
or runs them in this process when ``workers <= 1``; it shows a rich progress bar on a terminal.
Workers read the media themselves (corpora pickle as paths).
"""
from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from corruptions import family_level, get_family
from corruptions.keys import derive_keys, sample_keys
from corruptions.raw import RawCorruption

from ..errors import DataError
from .clips import ClipCorpus
from .features import Extractor, FeatureRow

__all__ = ["ClipCorruption", "corrupt_and_extract", "extract_rows", "raw_family", "shutdown_pools", "default_workers"]

_POOLS: dict[int, ProcessPoolExecutor] = {}
_LIVE: dict[str, Extractor] = {}


def default_workers() -> int:
    """``$ROBUSTMSA_RAW_WORKERS`` or 1 (trials already run in parallel, one core each)."""
    try:
        return max(1, int(os.environ.get("ROBUSTMSA_RAW_WORKERS", "1")))
    except ValueError:
        return 1


def raw_family(spec: str | dict[str, Any], modality: str | None = None) -> tuple[dict[str, Any], RawCorruption]:
    """(normalised spec ``{"name": ..., **params}``, family instance); checks level and modality."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise DataError(f"a corruption family given as a dict needs a 'name' key, got {sorted(spec)}")
    level = family_level(spec["name"])
    if level != "raw":
        raise DataError(f"corruption family {spec['name']!r} is {level}-level, not raw-level")
    family = get_family(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    if modality is not None and modality not in family.modalities:
        raise DataError(f"raw family {spec['name']!r} corrupts {family.modality} only, not {modality}")
    return spec, family


@dataclass(frozen=True)
class ClipCorruption:
    """What happens to each clip of a chunk before extraction: raw ``family`` (``{"name": ...,
    **params}``) at ``rhos[i]`` for clip ``i``, keys ``derive_keys(seed, sample_keys(ids),
    modality, family, stream)``. Pickles as plain data (it travels to the worker processes)."""

    family: dict[str, Any]
    seed: int
    rhos: tuple[float, ...]
    stream: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rhos", tuple(float(r) for r in self.rhos))

    def part(self, start: int, stop: int) -> ClipCorruption:
        """The corruption of clips ``start .. stop - 1`` of the chunk."""
        return replace(self, rhos=self.rhos[start:stop])


def corrupt_and_extract(
    corpus: ClipCorpus,
    indices: Sequence[int],
    extractor: Extractor,
    corruption: ClipCorruption | None = None,
) -> list[FeatureRow]:
    """Features of clips ``indices`` of ``corpus``, each corrupted at its rho (if ``corruption``)."""
    # an extractor arrives unpickled (without its lazily loaded tokenizer / model) in every task:
    # reuse this process' live instance of the same identity so those load once per process
    extractor = _LIVE.setdefault(extractor.key(), extractor)
    m = extractor.modality
    if corruption is None:
        return [extractor.extract(corpus.load(i, m)) for i in indices]
    if len(corruption.rhos) != len(indices):
        raise ValueError("corrupt_and_extract needs one rho per clip")
    _, fam = raw_family(corruption.family, m)
    ids = sample_keys([corpus.ids[i] for i in indices])
    keys = derive_keys(corruption.seed, ids, m, fam.name, corruption.stream)
    return [extractor.extract(fam.corrupt(corpus.load(i, m), rho, key))
            for i, key, rho in zip(indices, keys, corruption.rhos)]


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import cv2

    cv2.setNumThreads(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _POOLS:
        import multiprocessing

        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_init_worker)
    return _POOLS[workers]


def shutdown_pools() -> None:
    """Stop the worker processes (also done at interpreter exit)."""
    for pool in _POOLS.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOLS.clear()


atexit.register(shutdown_pools)


def _progress(enabled: bool | None, total: int, description: str) -> Any:
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show or total == 0:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    bar.start()
    bar.add_task(description, total=total)
    return bar


def extract_rows(
    corpus: ClipCorpus,
    indices: Sequence[int],
    extractor: Extractor,
    corruption: ClipCorruption | None = None,
    workers: int = 1,
    chunk_size: int = 16,
    progress: bool | None = None,
    description: str = "extracting",
) -> list[FeatureRow]:
    """:func:`corrupt_and_extract` over ``indices``, chunked over ``workers`` processes."""
    indices = list(indices)
    chunk = max(1, min(int(chunk_size), -(-len(indices) // max(1, workers * 2))))
    tasks = [(indices[s : s + chunk], None if corruption is None else corruption.part(s, s + chunk))
             for s in range(0, len(indices), chunk)]
    bar = _progress(progress, len(indices), description)
    out: list[FeatureRow] = []
    try:
        if workers <= 1 or len(tasks) <= 1:
            results: Any = (corrupt_and_extract(corpus, part, extractor, c) for part, c in tasks)
        else:
            pool = _pool(int(workers))
            futures = [pool.submit(corrupt_and_extract, corpus, part, extractor, c) for part, c in tasks]
            results = (f.result() for f in futures)  # in submission order: never depends on timing
        for rows in results:
            out += rows
            if bar is not None:
                bar.advance(0, len(rows))
    finally:
        if bar is not None:
            bar.stop()
    return out
