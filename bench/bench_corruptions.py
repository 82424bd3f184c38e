"""Benchmark of the feature-level corruption families on a MOSI-sized test set.

686 samples, text 50x768, audio 50x5, vision 50x20, all-valid masks (generated here with a local
generator). One grid point: rho = 0.5 on all three modalities. For each feature family it times

- ``copy``: a plain ``clone()`` of the same data (features, masks, flags, ids);
- ``prepare``: ``Corrupter.prepare`` (one ``sample`` per modality: all the random draws);
- ``at``: ``Prepared.at`` alone (the state reused across levels, as in a grid evaluation);
- ``numpy``: a per-sample numpy loop written the way reference tools do it (per sample: seed the
  numpy RNG, draw a mask or noise, multiply), with the same maths.

and reports copy/at, copy/(prepare+at) (target >= 0.30) and numpy/at, numpy/(prepare+at)
(target >= 20x). Times are medians of ``--repeats`` runs after one warm-up.

    python bench/bench_corruptions.py [--repeats 7] [--write BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from corruptions import FAMILIES, MODALITIES, ModalityBatch, ReliabilityPoint, make_corrupter, sample_keys

N, T = 686, 50
DIMS = {"text": 768, "audio": 5, "vision": 20}
RHO = 0.5
COPY_TARGET, SPEEDUP_TARGET = 0.30, 20.0


def make_data(seed: int = 0) -> dict[str, ModalityBatch]:
    """MOSI-sized test split; text with [CLS] ... [SEP] ids; all masks valid."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in MODALITIES:
        ids = None
        if m == "text":
            ids = torch.randint(1000, 30000, (N, T), generator=g)
            ids[:, 0], ids[:, -1] = 101, 102
        out[m] = ModalityBatch(
            torch.randn(N, T, DIMS[m], generator=g), torch.ones(N, T, dtype=torch.bool),
            torch.zeros(N, dtype=torch.bool), ids,
        )
    return out


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per callable over ``repeats`` rounds after one warm-up round.

    The callables are interleaved within each round, so that load from other processes on the
    machine falls on all of them alike and the ratios stay meaningful.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for round_ in range(repeats + 1):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_ > 0:
                times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def clone_all(data: dict[str, ModalityBatch]) -> list[ModalityBatch]:
    return [
        ModalityBatch(d.features.clone(), d.mask.clone(), d.missing.clone(), None if d.ids is None else d.ids.clone())
        for d in data.values()
    ]


# ----------------------------------------------------------------------------- numpy references


def _ref_missing(x: np.ndarray, ids: np.ndarray | None, key: int, stats) -> np.ndarray:
    np.random.seed(key)
    return x * np.float32(np.random.rand() < RHO)


def _ref_drop(x: np.ndarray, ids: np.ndarray | None, key: int, stats) -> np.ndarray:
    np.random.seed(key)
    keep = np.random.rand(x.shape[0]) > 1 - RHO
    if ids is not None:
        keep[0] = keep[-1] = True
        ids = np.where(keep, ids, 100)
    return x * keep[:, None].astype(np.float32)


def _ref_noise(x: np.ndarray, ids: np.ndarray | None, key: int, stats) -> np.ndarray:
    mean, std = stats
    np.random.seed(key)
    z = np.random.randn(*x.shape).astype(np.float32)
    return mean + np.float32(RHO**0.5) * (x - mean) + np.float32((1 - RHO) ** 0.5) * std * z


def _ref_blur(x: np.ndarray, ids: np.ndarray | None, key: int, stats) -> np.ndarray:
    return gaussian_filter1d(x, sigma=2.0 * (1 - RHO) / RHO, axis=0, mode="nearest")


def _ref_compose(x: np.ndarray, ids: np.ndarray | None, key: int, stats) -> np.ndarray:
    return _ref_drop(_ref_noise(x, ids, key, stats), ids, key, stats)


REFERENCES = {
    "missing": _ref_missing, "drop": _ref_drop, "noise": _ref_noise, "blur": _ref_blur, "compose": _ref_compose,
}


def numpy_loop(name: str, arrays: dict, keys: np.ndarray) -> None:
    """Per modality, per sample: seed numpy, draw, multiply (global RNG: reference tools' way)."""
    state = np.random.get_state()
    try:
        for x, ids, stats in arrays.values():
            out = np.empty_like(x)
            for b in range(x.shape[0]):
                out[b] = REFERENCES[name](x[b], None if ids is None else ids[b], int(keys[b]) % (1 << 32), stats)
    finally:
        np.random.set_state(state)


# ----------------------------------------------------------------------------- measurement


def measure(name: str, data: dict[str, ModalityBatch], keys: torch.Tensor, repeats: int) -> dict[str, float]:
    corrupter = make_corrupter(name, seed=0, train=data)
    point = ReliabilityPoint.joint(RHO)
    prepared = corrupter.prepare(data, keys)
    fns: dict[str, Callable[[], object]] = {
        "copy": lambda: clone_all(data),
        "prepare": lambda: corrupter.prepare(data, keys),
        "at": lambda: prepared.at(point),
        "total": lambda: corrupter.prepare(data, keys).at(point),
    }
    if name in REFERENCES:
        arrays = {}
        for m, d in data.items():
            x = d.features.numpy()
            stats = (x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0))
            arrays[m] = (x, None if d.ids is None else d.ids.numpy(), stats)
        np_keys = keys.numpy()
        fns["numpy"] = lambda: numpy_loop(name, arrays, np_keys)
    return timed(fns, repeats)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({torch.get_num_threads()} torch threads), {model}, torch {torch.__version__}"


def load_average() -> str:
    """The 1-minute load average (other processes competing for the cores), or '?'."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def ratios(row: dict[str, float]) -> dict[str, float]:
    out = {"copy/at": row["copy"] / row["at"], "copy/(prepare+at)": row["copy"] / row["total"]}
    if "numpy" in row:
        out["numpy/at"] = row["numpy"] / row["at"]
        out["numpy/(prepare+at)"] = row["numpy"] / row["total"]
    return out


def print_table(results: dict[str, dict[str, float]]) -> None:
    head = f"{'family':<10}{'copy ms':>9}{'prepare':>9}{'at':>9}{'p+at':>9}{'numpy':>9}"
    head += f"{'copy/at':>9}{'copy/p+at':>11}{'np/at':>9}{'np/p+at':>9}"
    print(head)
    for name, row in results.items():
        r = ratios(row)
        ms = [row[k] * 1e3 for k in ("copy", "prepare", "at", "total")] + [row.get("numpy", float("nan")) * 1e3]
        print(
            f"{name:<10}" + "".join(f"{v:9.1f}" for v in ms)
            + f"{r['copy/at']:9.2f}{r['copy/(prepare+at)']:11.2f}"
            + f"{r.get('numpy/at', float('nan')):9.1f}{r.get('numpy/(prepare+at)', float('nan')):9.1f}"
        )


def markdown_rows(results: dict[str, dict[str, float]], load: str) -> list[str]:
    """One row per (family, ratio) for BENCHMARKS.md: script | machine | date | measured | ratio | target | met."""
    date = datetime.date.today().isoformat()
    where = f"{machine()}, load average {load} at start"
    lines = []
    for name, row in results.items():
        times = ", ".join(f"{k} {row[k] * 1e3:.1f} ms" for k in ("copy", "prepare", "at", "total", "numpy") if k in row)
        for label, value in ratios(row).items():
            target = COPY_TARGET if label.startswith("copy") else SPEEDUP_TARGET
            met = "yes" if value >= target else "NO"
            lines.append(
                f"| bench/bench_corruptions.py | {where} | {date} | {name}, rho=0.5 on 3 modalities, MOSI test size "
                f"({times}) | {label} = {value:.2f} | >= {target:g} | {met} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--families", nargs="*", default=None, help="feature families (default: all)")
    parser.add_argument("--write", type=Path, default=None, help="append Markdown rows to this file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = args.families or [n for n in FAMILIES.names() if FAMILIES.get(n).level == "feature"]
    data = make_data()
    keys = torch.from_numpy(sample_keys([f"mosi_test_{i}" for i in range(N)]))
    load = load_average()
    print(f"{machine()}; load average at start {load}")
    results = {name: measure(name, data, keys, args.repeats) for name in names}
    print_table(results)
    rows = markdown_rows(results, load)
    print("\n".join(rows))
    if args.write is not None:
        with args.write.open("a", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
