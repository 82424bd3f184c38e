"""Throughput of the raw-media path: clips per second for feature extraction, clean and corrupted.

Clips are those of the embedded raw benchmark (``synthetic_raw``: 2 s of 16 kHz audio, 12 RGB
frames of 64 x 64, one transcript), generated into a temporary cache (or ``--cache``). Per modality
and for the whole clip (all three modalities):

* ``clean``: load the media and extract features (``corrupt_and_extract`` without a family);
* ``corrupted``: the same with a raw family at ``--rho`` (key draw + corruption + extraction);
  the family per modality is ``--audio``, ``--vision``, ``--text``;
* ``ratio`` = corrupted time / clean time.

Single-core numbers: this process pinned to one core (``sched_setaffinity`` where available), BLAS
and OpenCV threads 1, median over ``--repeats`` runs after a warm-up, CPU time
(``time.process_time``). The parallel row runs ``extract_rows`` with ``--workers`` processes
(wall time, after the pool has started) and divides by the worker count for clips/s per core.
Run: ``python bench/bench_raw_extraction.py [--clips 80] [--repeats 3] [--workers 2]``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["main", "time_run"]


def time_run(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.process_time) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=80, help="clips timed per run (from the test split)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rho", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2, help="processes of the parallel row (0: skip it)")
    p.add_argument("--audio", default="audio_noise")
    p.add_argument("--vision", default="frame_blur")
    p.add_argument("--text", default="text_typos")
    p.add_argument("--cache", help="cache folder for the generated clips (default: a temporary folder)")
    return p.parse_args(argv)


def _serial_table(ds: Any, idx: list[int], families: dict[str, str], args: argparse.Namespace) -> None:
    """One core: clean and corrupted clips/s per modality, and for the whole clip."""
    from robustmsa.media import ClipCorruption, corrupt_and_extract

    corpus = ds.raw.corpora["test"]
    rows: list[tuple[str, float, float]] = []
    clean_all = corrupted_all = 0.0
    for m in ("audio", "vision", "text"):
        ext = ds.raw.extractors[m]
        corruption = ClipCorruption({"name": families[m]}, 1234, [args.rho] * len(idx))
        clean = time_run(lambda ext=ext: corrupt_and_extract(corpus, idx, ext), args.repeats)
        corr = time_run(lambda ext=ext, c=corruption: corrupt_and_extract(corpus, idx, ext, c), args.repeats)
        rows.append((f"{m} ({families[m]})", clean, corr))
        clean_all += clean
        corrupted_all += corr
    rows.append(("whole clip (3 modalities)", clean_all, corrupted_all))
    print(f"\n{args.clips} clips, rho = {args.rho}, one core, median of {args.repeats} (CPU time)\n")
    print(f"| {'modality (family)':32s} | clean clips/s | corrupted clips/s | ratio corrupted/clean |")
    print(f"|{'-' * 34}|---------------|-------------------|-----------------------|")
    for name, clean, corr in rows:
        print(f"| {name:32s} | {args.clips / clean:13.1f} | {args.clips / corr:17.1f} | {corr / clean:21.2f} |")


def _parallel_row(ds: Any, idx: list[int], family: str, args: argparse.Namespace) -> None:
    """Vision through ``extract_rows`` with ``args.workers`` processes (wall time)."""
    from robustmsa.media import ClipCorruption, extract_rows, shutdown_pools

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    corpus, ext = ds.raw.corpora["test"], ds.raw.extractors["vision"]

    def par(corruption: ClipCorruption | None) -> None:
        extract_rows(corpus, idx, ext, corruption, workers=args.workers, progress=False)

    try:
        clean = time_run(lambda: par(None), args.repeats, time.perf_counter)
        corr = time_run(lambda: par(ClipCorruption({"name": family}, 1234, [args.rho] * len(idx))), args.repeats,
                        time.perf_counter)
    finally:
        shutdown_pools()
    w = args.workers
    print(f"\nvision with {w} worker processes (wall time): clean {args.clips / clean:.1f} clips/s "
          f"({args.clips / clean / w:.1f} per core), corrupted {args.clips / corr:.1f} clips/s "
          f"({args.clips / corr / w:.1f} per core), ratio {corr / clean:.2f}")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    tmp = None
    if args.cache:
        os.environ["ROBUSTMSA_CACHE"] = args.cache
    elif "ROBUSTMSA_CACHE" not in os.environ:
        tmp = tempfile.TemporaryDirectory(prefix="bench-raw-")
        os.environ["ROBUSTMSA_CACHE"] = tmp.name
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2

    cv2.setNumThreads(1)
    from robustmsa.media import load_synthetic_raw

    n_test = max(args.clips, 16)
    t0 = time.perf_counter()
    ds = load_synthetic_raw(seed=0, n_train=16, n_valid=16, n_test=n_test, cache=False, workers=1)
    print(f"setup (generate {16 + 16 + n_test} clips, extract clean features): {time.perf_counter() - t0:.1f} s")
    idx = list(range(args.clips))
    families = {"audio": args.audio, "vision": args.vision, "text": args.text}
    _serial_table(ds, idx, families, args)
    if args.workers > 1:
        _parallel_row(ds, idx, families["vision"], args)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
