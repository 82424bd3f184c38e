"""Orchestration overheads, measured side by side in one run (issue: suites, Ray runner, MLflow).

1. Ray overhead: N trivial tasks through Ray (local cluster already started) vs the same calls in
   a plain loop; ``ray.init`` time reported separately.
2. Parallel speed-up: K real trials one after another in-process vs through Ray with 2 workers.
3. Tracking overhead: a real trial of the main suite (QA-MoE, spectrum regime, MOSI-sized
   benchmark) vs the time to log its outcome to MLflow (SQLite), as a fraction of the trial
   (target < 5 %).

    python bench/bench_runner.py [--trials 4] [--tasks 200]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parents[1]


def _trivial(x: int) -> int:
    return x * x


def _suite(trials: int):
    from robustmsa.suite import load_suite

    seeds = list(range(trials))
    return load_suite(ROOT / "suites" / "smoke.yaml", [
        f"seeds={seeds}", "models=[{name: qa_moe}]", "regimes=[spectrum]", "training.epochs=3",
        "datasets=[{name: synthetic, params: {seed: 0, n_train: 400, n_valid: 100, n_test: 200}}]"])


def bench_ray_overhead(tasks: int) -> dict[str, float]:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    init = time.perf_counter() - t0
    remote = ray.remote(num_cpus=1)(_trivial)
    ray.get([remote.remote(i) for i in range(8)])  # warm the workers
    t0 = time.perf_counter()
    ray.get([remote.remote(i) for i in range(tasks)])
    t_ray = time.perf_counter() - t0
    t0 = time.perf_counter()
    [_trivial(i) for i in range(tasks)]
    t_loop = time.perf_counter() - t0
    ray.shutdown()
    return {"init_s": init, "ray_s": t_ray, "loop_s": t_loop, "per_task_ms": 1000 * (t_ray - t_loop) / tasks}


def bench_parallel(trials: int) -> dict[str, float]:
    import ray

    from robustmsa.plan import plan_suite
    from robustmsa.runner import _execute

    planned = plan_suite(_suite(trials))
    t0 = time.perf_counter()
    seq = [_execute(p, 1) for p in planned]
    t_seq = time.perf_counter() - t0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    remote = ray.remote(num_cpus=1)(_execute)
    t0 = time.perf_counter()
    par = ray.get([remote.remote(p, 1) for p in planned])
    t_par = time.perf_counter() - t0
    ray.shutdown()
    import pandas as pd

    # NaN-aware (Corr is undefined where every modality is missing): DataFrame.equals treats NaN == NaN
    same = all(pd.DataFrame(a.rows).equals(pd.DataFrame(b.rows)) for a, b in zip(seq, par))
    return {"sequential_s": t_seq, "ray_2_workers_s": t_par, "speedup": t_seq / t_par, "identical": same,
            }


def main_trial():
    from robustmsa.plan import plan_suite
    from robustmsa.runner import _execute
    from robustmsa.suite import load_suite

    suite = load_suite(ROOT / "suites" / "continuous_spectrum.yaml", ["seeds=[0]", "models=[{name: qa_moe}]",
                                                                      "regimes=[spectrum]"])
    return _execute(plan_suite(suite)[0], 1)


def bench_tracking(outcome) -> dict[str, float]:
    from robustmsa.tracking import Tracker

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "bench")
            parent = tracker.start_parent("bench", {}, {})
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                tracker.log_trial(parent, outcome, {})
                times.append(time.perf_counter() - t0)
        finally:
            os.chdir(cwd)
    from robustmsa.reports.figures import trial_curve_png
    from robustmsa.tracking import trial_artifacts

    ser = []
    for _ in range(3):
        t0 = time.perf_counter()
        trial_artifacts(outcome, trial_curve_png)
        ser.append(time.perf_counter() - t0)
    log_s, ser_s = sorted(times)[1], sorted(ser)[1]
    trial_s = outcome.info["total_seconds"]  # training + evaluation, without the artifacts
    return {"trial_s": trial_s, "log_s": log_s, "serialise_s": ser_s, "overhead_pct": 100 * log_s / trial_s,
            "total_pct": 100 * (log_s + ser_s) / trial_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=200)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}")
    r = bench_ray_overhead(args.tasks)
    print(f"ray overhead: ray.init {r['init_s']:.1f} s; {args.tasks} trivial tasks {r['ray_s']:.3f} s on Ray vs "
          f"{r['loop_s'] * 1e3:.3f} ms in a loop = {r['per_task_ms']:.2f} ms per task")
    p = bench_parallel(args.trials)
    print(f"parallel: {args.trials} real trials {p['sequential_s']:.1f} s sequential vs {p['ray_2_workers_s']:.1f} s "
          f"on Ray with 2 workers = speed-up {p['speedup']:.2f}x; identical rows: {p['identical']}")
    t = bench_tracking(main_trial())
    print(f"tracking: trial {t['trial_s']:.1f} s (train + evaluate); MLflow logging by the driver {t['log_s']:.2f} s "
          f"= {t['overhead_pct']:.1f} % (target < 5 %); with the artifacts' serialisation in the worker "
          f"({t['serialise_s']:.2f} s): {t['total_pct']:.1f} %")


if __name__ == "__main__":
    main()
