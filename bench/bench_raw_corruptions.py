"""Throughput of the raw-level corruption families, wrapper versus the library called directly.

Per family, one process pinned to one core (``sched_setaffinity``, torch/OpenCV/BLAS threads 1):

* audio: 100 clips of 3 s at 16 kHz; frames: 50 clips of 16 RGB frames 112 x 112; text: 1000 sentences
* ``wrapper``: ``family(x, rho, key)`` per clip (parameter draw from the key + application)
* ``direct``: the library called with the same fixed parameters (see the ``path`` column). Where the
  library can draw the randomness itself it does (``AddGaussianSNR``, ``GaussNoise``: their global
  RNG paths); per-clip parameters the library cannot express with its ranges (chunk order, cell
  order, motion angle) are drawn before the timer. Text families have no library: ``direct`` is
  the family's ``apply`` with parameters drawn before the timer.

Median CPU time (``time.process_time``) of ``--repeats`` interleaved runs after a warm-up;
overhead = wrapper time / direct time - 1. Run:
``python bench/bench_raw_corruptions.py [--repeats 5] [--rho 0.5] [--quick]``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from audiomentations import AddGaussianSNR, ClippingDistortion, LowPassFilter, TimeMask  # noqa: E402

import corruptions.raw  # noqa: E402,F401
from corruptions._families import FAMILIES  # noqa: E402
from corruptions.keys import derive_keys, sample_keys  # noqa: E402
from corruptions.raw import AudioClip  # noqa: E402
from corruptions.raw.audio_dropout import silenced_runs  # noqa: E402
from corruptions.raw.frame_occlusion import cell_holes, n_occluded  # noqa: E402

__all__ = ["make_inputs", "direct_runner", "bench_family", "main"]

Direct = Callable[[Any, float, Any], Any]
_WORDS = "i really think that the movie was good bad great awful long boring funny plot acting ending".split()


def make_inputs(modality: str, quick: bool = False) -> list[Any]:
    """Synthetic clips of the benchmark sizes, from a private generator."""
    rng = np.random.Generator(np.random.PCG64(0))
    if modality == "audio":
        sr, n = 16000, 48000
        t = np.arange(n) / sr
        return [AudioClip((0.2 * np.sin(2 * np.pi * rng.uniform(100, 250) * t)
                           + 0.01 * rng.standard_normal(n)).astype(np.float32), sr)
                for _ in range(10 if quick else 100)]
    if modality == "vision":
        return [rng.integers(0, 256, (16, 112, 112, 3), dtype=np.uint8) for _ in range(5 if quick else 50)]
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(6, 20)))) for _ in range(100 if quick else 1000)]


def direct_runner(fam: Any, items: Sequence[Any], rho: float, keys: Sequence[torch.Tensor],
                  native: bool = False) -> tuple[str, Direct]:
    """``(description, fn(x, rho, per_clip_params))`` calling the library directly.

    ``native`` (occlusion only): the library's public call with the same hole count and size,
    drawing the hole positions itself, instead of ``apply`` with the family's holes.
    """
    name, p = fam.name, fam.parameter(rho)
    if native and name == "frame_occlusion":
        g, (h, w) = fam.grid, items[0].shape[1:3]
        m = max(1, n_occluded(rho, g * g))
        t = A.CoarseDropout(num_holes_range=(m, m), hole_height_range=(h // g, h // g),
                            hole_width_range=(w // g, w // g), fill=fam.fill, p=1.0)
        return "CoarseDropout(m holes of cell size)(images), own draws", lambda x, r, q: t(images=x)["images"]
    if name == "audio_noise":
        t = AddGaussianSNR(min_snr_db=p, max_snr_db=p, p=1.0)
        return "AddGaussianSNR(snr, snr)(x) [global np RNG]", lambda x, r, q: t(x.samples, x.sample_rate)
    if name == "audio_lowpass":
        t = LowPassFilter(min_cutoff_freq=p, max_cutoff_freq=p, min_rolloff=fam.rolloff,
                          max_rolloff=fam.rolloff, zero_phase=True, p=1.0)
        return "LowPassFilter(c, c, zero_phase)(x)", lambda x, r, q: t(x.samples, x.sample_rate)
    if name == "audio_clipping":
        t = ClippingDistortion(min_percentile_threshold=int(p), max_percentile_threshold=int(p), p=1.0)
        return "ClippingDistortion(p, p)(x)", lambda x, r, q: t(x.samples, x.sample_rate)
    if name == "audio_dropout":
        mask = TimeMask(min_band_part=0.0, max_band_part=1.0, fade_duration=0.0, p=1.0)

        def dropout(x: AudioClip, r: float, runs: list[tuple[int, int]]) -> np.ndarray:
            y = x.samples
            for t0, t in runs:
                mask.parameters = {"should_apply": True, "t": t, "t0": t0}
                mask.freeze_parameters()
                y = mask(y, x.sample_rate)
            return y
        return "TimeMask frozen (t, t0) per run", dropout
    if name == "frame_noise":
        t = A.GaussNoise(std_range=(p, p), p=1.0)
        return "GaussNoise(s, s)(image) per frame [cv2 RNG]", \
            lambda x, r, q: np.stack([t(image=f)["image"] for f in x])
    if name == "frame_occlusion":
        t = A.CoarseDropout(fill=fam.fill, p=1.0)
        return "CoarseDropout.apply_to_images(holes)", lambda x, r, q: t.apply_to_images(x, holes=q, seed=0)
    fixed: dict[str, Callable[[], A.BasicTransform]] = {
        "frame_blur": lambda: A.GaussianBlur(sigma_limit=(p, p), blur_limit=0, p=1.0),
        "frame_compression": lambda: A.ImageCompression(quality_range=(int(p), int(p)), p=1.0),
        "frame_downscale": lambda: A.Downscale(scale_range=(p, p), p=1.0, interpolation_pair={
            "downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}),
    }
    if name in fixed:
        t = fixed[name]()
        return f"{type(t).__name__}(fixed range)(images)", lambda x, r, q: t(images=x)["images"]
    if name == "frame_motion_blur":
        return "MotionBlur(fixed L, angle)(images), built per clip", lambda x, r, q: q(images=x)["images"]
    return "no library: family.apply(params)", fam.apply


def _direct_params(fam: Any, items: Sequence[Any], rho: float, keys: Sequence[torch.Tensor]) -> list[Any]:
    """Per-clip inputs of the direct path, prepared before the timer."""
    if fam.name == "audio_dropout":
        return [silenced_runs(fam.sample(k, x)["rank"], rho, fam.chunk_length(x.sample_rate),
                              len(x.samples)) for x, k in zip(items, keys)]
    if fam.name == "frame_occlusion":
        m = n_occluded(rho, fam.grid**2)
        return [cell_holes(fam.sample(k, x)["order"], fam.grid, *x.shape[1:3])[:m] for x, k in zip(items, keys)]
    if fam.name == "frame_motion_blur":
        length = int(fam.parameter(rho))
        return [A.MotionBlur(blur_limit=(length, length), angle_range=(a, a), direction_range=(0.0, 0.0),
                             allow_shifted=False, p=1.0)
                for a in (fam.sample(k, x)["angle"] for x, k in zip(items, keys))]
    if fam.modality == "text":
        return [fam.sample(k, x) for x, k in zip(items, keys)]
    return [None] * len(items)


def _median_times(fns: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Median CPU time of each function (``process_time``: per-core cost, robust to other processes
    on the machine); one warm-up call each, then the repeats interleaved."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            start = time.process_time()
            fn()
            ts.append(time.process_time() - start)
    return [statistics.median(ts) for ts in times]


def bench_family(name: str, rho: float, repeats: int, quick: bool = False, native: bool = False) -> dict[str, Any]:
    """One row: clips/s through the wrapper and directly, and the wrapper overhead in percent."""
    fam = FAMILIES.get(name)()
    items = make_inputs(fam.modality, quick)
    keys = list(derive_keys(0, sample_keys([f"clip{i}" for i in range(len(items))]), fam.modality, name))
    path, direct = direct_runner(fam, items, rho, keys, native)
    prepared = _direct_params(fam, items, rho, keys)
    t_wrap, t_direct = _median_times([lambda: [fam(x, rho, k) for x, k in zip(items, keys)],
                                      lambda: [direct(x, rho, q) for x, q in zip(items, prepared)]], repeats)
    return {"family": name, "modality": fam.modality, "clips": len(items), "path": path,
            "wrapper_clips_s": len(items) / t_wrap, "direct_clips_s": len(items) / t_direct,
            "overhead_pct": 100.0 * (t_wrap / t_direct - 1.0)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rho", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="10x fewer clips (smoke run)")
    parser.add_argument("--families", nargs="*", default=None)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    names = args.families or [n for n in FAMILIES.names() if FAMILIES.get(n).level == "raw"]
    print(f"rho = {args.rho}, median CPU time of {args.repeats} repeats, one core\n")
    print("| family | clips | wrapper clips/s | direct clips/s | overhead | direct path |")
    print("|---|---:|---:|---:|---:|---|")
    rows = [(n, False) for n in names] + [("frame_occlusion", True)] * ("frame_occlusion" in names)
    for name, native in rows:
        r = bench_family(name, args.rho, args.repeats, args.quick, native)
        print(f"| {r['family']} | {r['clips']} | {r['wrapper_clips_s']:.1f} | {r['direct_clips_s']:.1f} "
              f"| {r['overhead_pct']:+.1f} % | {r['path']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
