"""Startup of the CLI: wall time of short commands as fresh processes, next to a bare interpreter.

Timed side by side, in alternating rounds after one untimed warm-up round (which also fills the
synthetic dataset cache), medians printed: ``python -c pass`` (the interpreter's own startup),
``python -c 'import torch'`` (the floor of anything that runs model code), ``robustmsa
--version``, ``robustmsa ls models``, ``robustmsa ls datasets``, ``robustmsa validate
suites/continuous_spectrum.yaml`` (which plans the suite from the dataset's summary and reuses this
machine's last calibration of the wall time, made by the warm-up round) and ``validate
--recalibrate`` (which times a few training steps of each model again). Each command runs as
``python -m robustmsa.cli ...`` with the checkout on ``PYTHONPATH``, from the checkout's folder.
``--against DIR`` times another checkout (e.g. an older commit unpacked with ``git archive``) in
the same rounds and prints its medians and the ratio DIR / this checkout.

    python bench/bench_startup.py [--rounds 5] [--against /tmp/base] [--only short|validate]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import torch'": ["-c", "import torch"],
    "robustmsa --version": ["-m", "robustmsa.cli", "--version"],
    "robustmsa ls models": ["-m", "robustmsa.cli", "ls", "models"],
    "robustmsa ls datasets": ["-m", "robustmsa.cli", "ls", "datasets"],
    "robustmsa validate continuous_spectrum": ["-m", "robustmsa.cli", "validate", "suites/continuous_spectrum.yaml"],
    "robustmsa validate --recalibrate": ["-m", "robustmsa.cli", "validate", "suites/continuous_spectrum.yaml",
                                         "--recalibrate"],
}
#: commands an older checkout may not have (timed in this checkout only)
NEW = {"robustmsa validate --recalibrate"}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(tree: Path, args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s: user + system) of ``python ARGS`` run from ``tree`` with ``tree`` on PYTHONPATH
    (it must succeed). CPU time counts what the command computes, less the waiting of a loaded machine."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_ALBUMENTATIONS_UPDATE": "1"}
    c0, t0 = _child_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} in {tree} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds, cpu


Times = dict[tuple[str, Path], list[tuple[float, float]]]


def measure(trees: list[Path], commands: dict[str, list[str]], rounds: int) -> Times:
    """Every command in every tree once per round (round 0 untimed), alternating the trees' order."""
    times: Times = {(c, t): [] for c in commands for t in (trees[:1] if c in NEW else trees)}
    for r in range(rounds + 1):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, args in commands.items():
            for tree in order if name not in NEW else trees[:1]:
                wall_cpu = timed(tree, args)
                if r:
                    times[(name, tree)].append(wall_cpu)
        print(f"round {r}/{rounds} done{' (warm-up)' if r == 0 else ''}", file=sys.stderr, flush=True)
    return times


def table(times: Times, commands: list[str], trees: list[Path]) -> list[str]:
    """Median wall and CPU seconds, wall minus the bare interpreter's, and (two trees) the other
    checkout's medians with the ratios other / this."""
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    head = f"{'command':40s} {'wall s':>7s} {'- python':>8s} {'CPU s':>6s}"
    head += f" | {'against wall':>12s} {'CPU':>6s} {'ratio wall':>10s} {'CPU':>5s}" if len(trees) > 1 else ""
    lines = [head]
    for c in commands:
        this, other = (c, trees[0]), (c, trees[-1])
        line = f"{c:40s} {wall[this]:7.2f} {wall[this] - wall[('python -c pass', trees[0])]:8.2f} {cpu[this]:6.2f}"
        if len(trees) > 1 and other in times:
            line += (f" | {wall[other]:12.2f} {cpu[other]:6.2f} {wall[other] / wall[this]:10.1f} "
                     f"{cpu[other] / cpu[this]:5.1f}")
        lines.append(line)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    ap.add_argument("--against", type=Path, help="another checkout timed in the same rounds (e.g. the base commit)")
    ap.add_argument("--only", choices=("short", "validate"), help="only the short commands, or only validate "
                                                                   "(the slowest; python -c pass is always timed)")
    args = ap.parse_args()
    commands = {k: v for k, v in COMMANDS.items()
                if k == "python -c pass" or args.only is None or (args.only == "validate") == ("validate" in k)}
    trees = [ROOT, *([args.against.resolve()] if args.against else [])]
    times = measure(trees, commands, args.rounds)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.rounds} rounds, medians; "
          f"this checkout {ROOT}" + (f", against {trees[1]}" if args.against else ""))
    print("\n".join(table(times, list(commands), trees)))


if __name__ == "__main__":
    main()
