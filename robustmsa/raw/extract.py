"""Corrupt raw clips and extract their features, in parallel, deterministically.

:func:`corrupt_and_extract` is the unit of work: for each clip of a chunk it loads the media of one
modality, applies a raw corruption family at the clip's reliability (randomness from the clip's
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
from typing import Any

from corruptions import family_level, get_family
from corruptions.keys import derive_keys, sample_keys
from corruptions.raw import RawCorruption

from ..errors import DataError
from .clips import ClipCorpus
from .features import Extractor, FeatureRow

__all__ = ["corrupt_and_extract", "extract_rows", "raw_family", "shutdown_pools", "default_workers"]

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


def corrupt_and_extract(
    corpus: ClipCorpus,
    indices: Sequence[int],
    extractor: Extractor,
    family: dict[str, Any] | None = None,
    seed: int = 0,
    rhos: Sequence[float] | None = None,
    stream: int = 0,
) -> list[FeatureRow]:
    """Features of clips ``indices`` of ``corpus``, each corrupted at its ``rhos`` (if ``family``)."""
    # an extractor arrives unpickled (without its lazily loaded tokenizer / model) in every task:
    # reuse this process' live instance of the same identity so those load once per process
    extractor = _LIVE.setdefault(extractor.key(), extractor)
    m = extractor.modality
    if family is None:
        return [extractor.extract(corpus.load(i, m)) for i in indices]
    if rhos is None or len(rhos) != len(indices):
        raise ValueError("corrupt_and_extract needs one rho per clip")
    _, fam = raw_family(family, m)
    keys = derive_keys(seed, sample_keys([corpus.ids[i] for i in indices]), m, fam.name, stream)
    return [extractor.extract(fam.corrupt(corpus.load(i, m), float(rho), key))
            for i, key, rho in zip(indices, keys, rhos)]


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
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
    family: dict[str, Any] | None = None,
    seed: int = 0,
    rhos: Sequence[float] | None = None,
    workers: int = 1,
    chunk_size: int = 16,
    progress: bool | None = None,
    description: str = "extracting",
) -> list[FeatureRow]:
    """:func:`corrupt_and_extract` over ``indices``, chunked over ``workers`` processes."""
    indices = list(indices)
    rhos = None if rhos is None else [float(r) for r in rhos]
    chunk = max(1, min(int(chunk_size), -(-len(indices) // max(1, workers * 2))))
    starts = list(range(0, len(indices), chunk))
    bar = _progress(progress, len(indices), description)
    out: list[FeatureRow] = []
    try:
        if workers <= 1 or len(starts) <= 1:
            for s in starts:
                part = None if rhos is None else rhos[s : s + chunk]
                out += corrupt_and_extract(corpus, indices[s : s + chunk], extractor, family, seed, part)
                if bar is not None:
                    bar.advance(0, len(indices[s : s + chunk]))
        else:
            pool = _pool(int(workers))
            futures = [pool.submit(corrupt_and_extract, corpus, indices[s : s + chunk], extractor, family, seed,
                                   None if rhos is None else rhos[s : s + chunk]) for s in starts]
            for f in futures:  # in submission order: the output order never depends on timing
                rows = f.result()
                out += rows
                if bar is not None:
                    bar.advance(0, len(rows))
    finally:
        if bar is not None:
            bar.stop()
    return out
