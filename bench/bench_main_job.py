"""The main job end to end, where its time goes, both schedulings side by side in one run.

Runs ``suites/continuous_spectrum.yaml`` (Ray local, MLflow SQLite, report included) into a fresh
temporary store once per scheduling, each in its own process (so each pays its own imports):

- ``pool``: the default, long-lived workers (Ray actors, one per slot) that import once and run
  trials one after another, longest trials first;
- ``tasks``: the earlier scheduling, one Ray task per trial in submission order (references first),
  selected with ``ROBUSTMSA_REUSE_WORKERS=0``;
- ``pool-freeing``: the pool, with its workers' malloc left as it is (``ROBUSTMSA_KEEP_FREED_MEMORY=0``:
  large freed blocks go back to the system and are faulted in again on the next allocation).

For each it prints the breakdown: driver imports, planning, Ray start, worker start (process and
imports, per worker), summed training and evaluation time of the trials (each trial's own clock),
the driver's tracking time while trials run, the report, the wall time of the whole process, and
the parallel efficiency = summed trial time / (workers x wall), over the whole process and over the
trial phase alone (first submission to last result). Then whether both gave byte-identical
``rows.csv``. With ``--rounds 2`` the schedulings alternate (tasks, pool, pool, tasks) and each
figure is the median of its rounds.

    python bench/bench_main_job.py [--seeds 0] [--modes tasks,pool] [--rounds 1]

The report phase alone, on a store the main job wrote (its folder: ``mlflow.db`` and ``mlruns/``),
this checkout against another one (e.g. ``git worktree add /tmp/before <commit>``), alternating,
the report in a fresh process each time; prints the wall and CPU seconds (medians) of
``write_report`` alone, after the imports a run's driver has made by then (the report phase of
``robustmsa run``), and of the whole process, and the files whose bytes differ between the two:

    python bench/bench_main_job.py --report-store DIR --baseline /tmp/before [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS = time.perf_counter()  # the child's imports are timed from here
ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "continuous_spectrum.yaml"
#: mode -> (ROBUSTMSA_REUSE_WORKERS, ROBUSTMSA_KEEP_FREED_MEMORY)
MODES = {"pool": ("1", "1"), "tasks": ("0", "1"), "pool-freeing": ("1", "0")}


def child(out: Path, seeds: str | None, result: Path) -> None:
    """One main job in this process; its timings as JSON into ``result``."""
    from rich.console import Console

    from robustmsa.runner import run_suite
    from robustmsa.suite import load_suite

    imports = time.perf_counter() - T_PROCESS
    overrides = [f"tracking.uri=sqlite:///{out / 'mlflow.db'}", f"report.dir={out / 'reports'}"]
    overrides += [f"seeds=[{seeds}]"] if seeds else []
    summary = run_suite(load_suite(SUITE, overrides), console=Console(stderr=True, quiet=True))
    if summary.failed:
        raise SystemExit(f"trials failed: {summary.failed}")
    timings = {**summary.timings, "driver_imports_s": imports, "wall_s": time.perf_counter() - T_PROCESS}
    result.write_text(json.dumps(timings))


def breakdown(t: dict) -> dict[str, float]:
    """The printed figures of one job from its timings."""
    trials, workers = t["trials"], t["workers"]
    summed = sum((x["end_ms"] - x["start_ms"]) / 1000 for x in trials)
    starts = t.get("worker_start_s") or []
    return {
        "workers (trials at once)": workers, "driver imports": t["driver_imports_s"], "planning": t["plan_s"], "Ray start": t["ray_start_s"],
        "worker start, mean per worker": statistics.fmean(starts) if starts else float("nan"),
        "training, summed over trials": sum(x["train_s"] for x in trials),
        "evaluation, summed over trials": sum(x["eval_s"] for x in trials),
        "trial time, summed (worker clocks)": summed,
        "tracking by the driver": t.get("tracking_s", 0.0), "trial phase, wall": t["trials_wall_s"],
        "report": t["report_s"], "wall (whole process)": t["wall_s"],
        "parallel efficiency, whole process (%)": 100 * summed / (workers * t["wall_s"]),
        "parallel efficiency, trial phase (%)": 100 * summed / (workers * t["trials_wall_s"]),
    }


def run_mode(mode: str, seeds: str | None, workdir: Path) -> tuple[dict, bytes]:
    out = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=workdir))
    result = out / "timings.json"
    reuse, keep = MODES[mode]
    env = {**os.environ, "ROBUSTMSA_REUSE_WORKERS": reuse, "ROBUSTMSA_KEEP_FREED_MEMORY": keep,
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    cmd = [sys.executable, __file__, "--child", str(out), "--result", str(result), *(["--seeds", seeds] if seeds else [])]
    subprocess.run(cmd, env=env, check=True, cwd=out)
    rows = (out / "reports" / "continuous_spectrum" / "rows.csv").read_bytes()
    return json.loads(result.read_text()), rows


#: a `robustmsa report` in a fresh process that also times ``write_report`` alone, after the imports
#: a `robustmsa run` driver has made by then (the runner, MLflow): the report phase of a run
_REPORT_CHILD = """
import json, sys, time
w0, c0 = time.perf_counter(), time.process_time()
import mlflow, robustmsa.runner
from robustmsa.reports import write_report
from robustmsa.suite import load_suite
suite = load_suite(sys.argv[1], sys.argv[2:])
w1, c1 = time.perf_counter(), time.process_time()
write_report(suite)
w2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"process_wall": w2 - w0, "process_cpu": c2 - c0, "phase_wall": w2 - w1, "phase_cpu": c2 - c1}))
"""


def _report_once(code: Path, store: Path, out: Path) -> dict[str, float]:
    """The report of the main job with the code in ``code``, in a fresh process: its seconds."""
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    cmd = [sys.executable, "-c", _REPORT_CHILD, str(SUITE), f"tracking.uri=sqlite:///{store / 'mlflow.db'}",
           f"report.dir={out}"]
    # run outside both checkouts: `python -c` puts the working directory first on sys.path
    done = subprocess.run(cmd, env=env, check=True, cwd=out.parent, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_phase(store: Path, baseline: Path, rounds: int) -> None:
    """This checkout's report phase against ``baseline``'s, alternating, on the same store."""
    codes = {"baseline": baseline.resolve(), "this checkout": ROOT}
    times: dict[str, list[dict[str, float]]] = {k: [] for k in codes}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        outs = {k: Path(tmp) / k.replace(" ", "_") for k in codes}
        for r in range(rounds):
            for name in (list(codes) if r % 2 == 0 else list(codes)[::-1]):
                shutil.rmtree(outs[name], ignore_errors=True)
                times[name].append(_report_once(codes[name], store, outs[name]))
                t = times[name][-1]
                print(f"  {name}: write_report {t['phase_wall']:.1f} s wall, {t['phase_cpu']:.1f} s CPU; process "
                      f"{t['process_wall']:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        a, b = (outs[k] / "continuous_spectrum" for k in codes)
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        differ = [str(f) for f in files if not (b / f).is_file() or (a / f).read_bytes() != (b / f).read_bytes()]
        extra = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file() and not (a / p.relative_to(b)).exists())
    keys = ("phase_wall", "phase_cpu", "process_wall", "process_cpu")
    print(f"\n| median of {rounds} | write_report wall s | its CPU s | whole process wall s | its CPU s |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(t[k] for t in ts):.1f}" for k in keys) + " |")
    print(f"\n{len(files)} files; byte-identical except: {', '.join(differ) or 'none'}; only in this checkout: "
          f"{', '.join(extra) or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", help="comma-separated seeds instead of the suite's (e.g. 0 for a quick look)")
    ap.add_argument("--modes", default="tasks,pool", help="schedulings to run, in order: tasks, pool, pool-freeing")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds (each figure: the median)")
    ap.add_argument("--report-store", type=Path, help="time the report phase alone on this store's folder")
    ap.add_argument("--baseline", type=Path, help="with --report-store: the checkout to compare against")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.seeds, args.result)
    if args.report_store:
        if not args.baseline or not (args.baseline / "robustmsa").is_dir():
            raise SystemExit(f"--baseline {args.baseline}: a checkout of robustmsa (with robustmsa/) is required")
        return report_phase(args.report_store, args.baseline, args.rounds)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes or args.rounds < 1:
        raise SystemExit(f"--modes {args.modes!r}: allowed values {', '.join(MODES)}; --rounds >= 1")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"load {os.getloadavg()[0]:.1f} at start; suite {SUITE.name}, seeds {args.seeds or 'as in the suite'}")
    order = [m for r in range(args.rounds) for m in (modes if r % 2 == 0 else modes[::-1])]
    figures: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    rows: dict[str, set[bytes]] = {m: set() for m in modes}
    with tempfile.TemporaryDirectory(prefix="bench-main-job-") as tmp:
        for mode in order:
            timings, data = run_mode(mode, args.seeds, Path(tmp))
            figures[mode].append(breakdown(timings))
            rows[mode].add(data)
            print(f"  {mode}: wall {timings['wall_s']:.1f} s, load {os.getloadavg()[0]:.1f} after", flush=True)
    names = list(figures[modes[0]][0])
    print(f"\n| seconds (median of {args.rounds}) | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{statistics.median(f[name] for f in figures[m]):.1f}" for m in modes) + " |")
    every = set().union(*rows.values())
    print(f"\nrows.csv byte-identical across schedulings and rounds: {len(every) == 1}")


if __name__ == "__main__":
    main()
