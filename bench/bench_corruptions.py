"""Benchmark of the feature-level corruption families on a MOSI-sized test set.

686 samples, text 50x768, audio 50x5, vision 50x20, all-valid masks (the worst case: every
element is corrupted; generated here with a local generator). One grid point: rho = 0.5 on all
three modalities. For each feature family it times

- ``copy``: a plain ``clone()`` of the same data (features, masks, flags, ids);
- ``point``: ``Corrupter.corrupt(data, keys, point)``, corrupting the data at one grid point in one
  go (draws included). Target: ``copy/point >= 0.5`` for every family, at one and at two torch
  threads (run the script once with ``--threads 1`` and once with ``--threads 2``);
- ``prepare``: ``Corrupter.prepare`` (every random draw, kept as a state for a whole grid);
- ``at``: ``Prepared.at`` alone (what each further level of a grid costs);
- ``steps``: the reference tools' way, after MultiBench ``robustness/timeseries_robust.py``: one
  copy of the data, then a Python loop over samples and time steps drawing from the global numpy
  RNG (reseeded per sample, so that each sample's draws are reproducible as ours are) and writing
  each time step (``x[t] = ...``); the same maths as the family (``steps/point``: a retired
  target, printed for comparison only);
- ``vector``: a stricter reference than the tools: a loop over samples only, each sample done
  with whole-array numpy operations (seed, draw, multiply);
- the floor row: allocating every modality's output and filling it with ``normal_`` from one
  generator (no keys, no mixing): the least any family that draws a standard normal per element
  costs, so its copy/point bounds ``noise`` and ``compose`` (``--no-floor`` skips it).

Times are medians of ``--repeats`` interleaved rounds after one warm-up; torch's default number of
threads unless ``--threads`` is given (the keyed draws use them, see ``corruptions.keys``).

    python bench/bench_corruptions.py [--repeats 7] [--threads N] [--write BENCHMARKS.md]
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
COPY_TARGET = 0.5  # copy/point, at 1 and at 2 torch threads


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
# Both references corrupt one sample x [T, D] (with its token ids for text) given its 32-bit key
# and the training statistics; they return the corrupted sample.

A, B = np.float32(RHO**0.5), np.float32((1 - RHO) ** 0.5)
SIGMA = 2.0 * (1 - RHO) / RHO  # the blur family's sigma in frames at RHO
RADIUS = int(4.0 * SIGMA + 0.5)
KERNEL = np.exp(-0.5 * (np.arange(-RADIUS, RADIUS + 1) / SIGMA) ** 2).astype(np.float32)
KERNEL /= KERNEL.sum()


def _vector_missing(x, ids, key, stats):
    np.random.seed(key)
    return x * np.float32(np.random.rand() < RHO)


def _vector_drop(x, ids, key, stats):
    np.random.seed(key)
    keep = np.random.rand(x.shape[0]) < RHO
    if ids is not None:
        keep[0] = keep[-1] = True
        ids = np.where(keep, ids, 100)
    return x * keep[:, None].astype(np.float32)


def _vector_noise(x, ids, key, stats):
    mean, std = stats
    np.random.seed(key)
    z = np.random.randn(*x.shape).astype(np.float32)
    return mean + A * (x - mean) + B * std * z


def _vector_blur(x, ids, key, stats):
    return gaussian_filter1d(x, sigma=SIGMA, axis=0, mode="nearest", truncate=4.0)


def _vector_compose(x, ids, key, stats):
    return _vector_drop(_vector_noise(x, ids, key, stats), ids, key, stats)


def _steps_missing(x, ids, key, stats):
    np.random.seed(key)
    if np.random.random_sample() >= RHO:
        for t in range(len(x)):
            x[t] = np.zeros(x[t].shape)
    return x


def _steps_drop(x, ids, key, stats):
    np.random.seed(key)
    for t in range(len(x)):
        if np.random.random_sample() >= RHO and (ids is None or 0 < t < len(x) - 1):
            x[t] = np.zeros(x[t].shape)
            if ids is not None:
                ids[t] = 100
    return x


def _steps_noise(x, ids, key, stats):
    mean, std = stats
    np.random.seed(key)
    for t in range(len(x)):
        x[t] = mean + A * (x[t] - mean) + B * std * np.random.normal(0.0, 1.0, x[t].shape)
    return x


def _steps_blur(x, ids, key, stats):
    src = x.copy()
    last = len(x) - 1
    for t in range(len(x)):
        window = np.clip(np.arange(t - RADIUS, t + RADIUS + 1), 0, last)
        x[t] = KERNEL @ src[window]
    return x


def _steps_compose(x, ids, key, stats):
    return _steps_drop(_steps_noise(x, ids, key, stats), ids, key, stats)


REFERENCES = {
    "vector": {"missing": _vector_missing, "drop": _vector_drop, "noise": _vector_noise, "blur": _vector_blur,
               "compose": _vector_compose},
    "steps": {"missing": _steps_missing, "drop": _steps_drop, "noise": _steps_noise, "blur": _steps_blur,
              "compose": _steps_compose},
}


def reference_loop(kind: str, name: str, arrays: dict, keys: np.ndarray) -> None:
    """Per modality, per sample, the ``kind`` reference (global numpy RNG; its state is restored)."""
    fn = REFERENCES[kind][name]
    state = np.random.get_state()
    try:
        for x, ids, stats in arrays.values():
            if kind == "steps":  # the tools copy the whole set once, then write in place
                x, ids = x.copy(), None if ids is None else ids.copy()
                for b in range(x.shape[0]):
                    fn(x[b], None if ids is None else ids[b], int(keys[b]) % (1 << 32), stats)
            else:
                out = np.empty_like(x)
                for b in range(x.shape[0]):
                    out[b] = fn(x[b], None if ids is None else ids[b], int(keys[b]) % (1 << 32), stats)
    finally:
        np.random.set_state(state)


# ----------------------------------------------------------------------------- measurement


def measure(name: str, data: dict[str, ModalityBatch], keys: torch.Tensor, repeats: int,
            references: bool = True) -> dict[str, float]:
    corrupter = make_corrupter(name, seed=0, train=data)
    point = ReliabilityPoint.joint(RHO)
    prepared = corrupter.prepare(data, keys)
    fns: dict[str, Callable[[], object]] = {
        "copy": lambda: clone_all(data),
        "point": lambda: corrupter.corrupt(data, keys, point),
        "prepare": lambda: corrupter.prepare(data, keys),
        "at": lambda: prepared.at(point),
    }
    if references and name in REFERENCES["steps"]:
        arrays = {}
        for m, d in data.items():
            x = d.features.numpy()
            stats = (x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0))
            arrays[m] = (x, None if d.ids is None else d.ids.numpy(), stats)
        np_keys = keys.numpy()
        fns["steps"] = lambda: reference_loop("steps", name, arrays, np_keys)
        fns["vector"] = lambda: reference_loop("vector", name, arrays, np_keys)
    row = timed(fns, repeats)
    row["prepare+at"] = row["prepare"] + row["at"]
    return row


#: the row of :func:`measure_floor`
FLOOR = "normal draw only (floor)"


def measure_floor(data: dict[str, ModalityBatch], repeats: int) -> dict[str, float]:
    """What any family that draws one standard normal per element costs at least: allocate the
    output of every modality and fill it with ``normal_`` from one generator (no keys, no mixing),
    timed in the same interleaved rounds as a copy. Its copy/point bounds what ``noise`` and
    ``compose`` can reach with torch's generator."""
    g = torch.Generator().manual_seed(0)

    def draw() -> list[torch.Tensor]:
        return [torch.empty_like(d.features).normal_(generator=g) for d in data.values()]

    return timed({"copy": lambda: clone_all(data), "point": draw}, repeats)


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
    out = {"copy/point": row["copy"] / row["point"],
           "copy/(prepare+at)": row["copy"] / row.get("prepare+at", float("nan"))}
    if "steps" in row:
        out["steps/point"] = row["steps"] / row["point"]
        out["vector/point"] = row["vector"] / row["point"]
    return out


TIMES = ("copy", "point", "prepare", "at", "steps", "vector")


def print_table(results: dict[str, dict[str, float]]) -> None:
    names = ("copy/point", "copy/(prepare+at)", "steps/point", "vector/point")
    head = f"{'family':<10}" + "".join(f"{k + ' ms':>12}" for k in TIMES)
    print(head + "".join(f"{k:>19}" for k in names) + f"{'met':>6}")
    for name, row in results.items():
        r = ratios(row)
        print(
            f"{name:<10}" + "".join(f"{row.get(k, float('nan')) * 1e3:12.1f}" for k in TIMES)
            + "".join(f"{r.get(k, float('nan')):19.2f}" for k in names)
            + f"{'yes' if r['copy/point'] >= COPY_TARGET else 'NO':>6}"
        )


def markdown_rows(results: dict[str, dict[str, float]]) -> list[str]:
    """One row per family for BENCHMARKS.md: family | times | copy/point | ... | met (copy/point >= 0.5)."""
    lines = []
    for name, row in results.items():
        r = ratios(row)
        times = " | ".join(f"{row[k] * 1e3:.1f}" if k in row else "" for k in TIMES)
        met = "yes" if r["copy/point"] >= COPY_TARGET else "NO"
        met = f"(bound: {met})" if name == FLOOR else met
        refs = f"{r['steps/point']:.1f} | {r['vector/point']:.1f}" if "steps/point" in r else " | "
        both = f"{r['copy/(prepare+at)']:.2f}" if "prepare+at" in row else ""
        lines.append(f"| {name} | {times} | {r['copy/point']:.2f} | {both} | {refs} | {met} |")
    return lines


def markdown_header(load: str) -> list[str]:
    date = datetime.date.today().isoformat()
    return [
        f"Machine: {machine()}, load average {load} at start, {date}. Times in ms (medians).",
        "",
        f"| family | copy | point | prepare | at | steps | vector | copy/point | copy/(prepare+at) "
        f"| steps/point (retired) | vector/point | met (copy/point >= {COPY_TARGET}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--families", nargs="*", default=None, help="feature families (default: all)")
    parser.add_argument("--no-references", action="store_true", help="skip the (slow) numpy references")
    parser.add_argument("--write", type=Path, default=None, help="append Markdown rows to this file")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor row (allocate and draw one normal per element, nothing else)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = args.families or [n for n in FAMILIES.names() if FAMILIES.get(n).level == "feature"]
    data = make_data()
    keys = torch.from_numpy(sample_keys([f"mosi_test_{i}" for i in range(N)]))
    load = load_average()
    print(f"{machine()}; load average at start {load}")
    results = {name: measure(name, data, keys, args.repeats, not args.no_references) for name in names}
    if not args.no_floor:
        results[FLOOR] = measure_floor(data, args.repeats)
    print_table(results)
    rows = markdown_header(load) + markdown_rows(results)
    print("\n".join(rows))
    if args.write is not None:
        with args.write.open("a", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
