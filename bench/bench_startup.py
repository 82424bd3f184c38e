"""Startup of the CLI: wall time of short commands as fresh processes, next to a bare interpreter.

Timed side by side, in alternating rounds after one untimed warm-up round (which also fills the
synthetic dataset cache), medians printed: ``python -c pass`` (the interpreter's own startup),
``robustmsa --version``, ``robustmsa ls models``, ``robustmsa ls datasets`` and ``robustmsa
validate suites/continuous_spectrum.yaml`` (which plans the suite: it loads the dataset for its
hash and calibrates the wall time on a few training steps of each model). Each command runs as
``python -m robustmsa.cli ...`` with the checkout on ``PYTHONPATH``, from the checkout's folder.
``--against DIR`` times another checkout (e.g. an older commit unpacked with ``git archive``) in
the same rounds and prints its medians and the ratio DIR / this checkout.

    python bench/bench_startup.py [--rounds 5] [--against /tmp/base] [--no-validate]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "robustmsa --version": ["-m", "robustmsa.cli", "--version"],
    "robustmsa ls models": ["-m", "robustmsa.cli", "ls", "models"],
    "robustmsa ls datasets": ["-m", "robustmsa.cli", "ls", "datasets"],
    "robustmsa validate continuous_spectrum": ["-m", "robustmsa.cli", "validate", "suites/continuous_spectrum.yaml"],
}


def timed(tree: Path, args: list[str]) -> float:
    """Seconds of ``python ARGS`` run from ``tree`` with ``tree`` on PYTHONPATH (it must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_ALBUMENTATIONS_UPDATE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} in {tree} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def measure(trees: list[Path], commands: dict[str, list[str]], rounds: int) -> dict[tuple[str, Path], list[float]]:
    """Every command in every tree once per round (round 0 untimed), alternating the trees' order."""
    times: dict[tuple[str, Path], list[float]] = {(c, t): [] for c in commands for t in trees}
    for r in range(rounds + 1):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, args in commands.items():
            for tree in order:
                s = timed(tree, args)
                if r:
                    times[(name, tree)].append(s)
        print(f"round {r}/{rounds} done{' (warm-up)' if r == 0 else ''}", file=sys.stderr, flush=True)
    return times


def table(times: dict[tuple[str, Path], list[float]], commands: list[str], trees: list[Path]) -> list[str]:
    """Medians in s, each minus the bare interpreter's median, and (two trees) the ratio other / this."""
    med = {k: statistics.median(v) for k, v in times.items()}
    head = f"{'command':40s} {'median s':>9s} {'- python':>9s}"
    head += f" {'against s':>10s} {'ratio':>6s}" if len(trees) > 1 else ""
    lines = [head]
    for c in commands:
        this = med[(c, trees[0])]
        line = f"{c:40s} {this:9.2f} {this - med[('python -c pass', trees[0])]:9.2f}"
        if len(trees) > 1:
            other = med[(c, trees[1])]
            line += f" {other:10.2f} {other / this:6.1f}"
        lines.append(line)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    ap.add_argument("--against", type=Path, help="another checkout timed in the same rounds (e.g. the base commit)")
    ap.add_argument("--no-validate", action="store_true", help="leave out validate (the slowest command)")
    args = ap.parse_args()
    commands = {k: v for k, v in COMMANDS.items() if not (args.no_validate and "validate" in k)}
    trees = [ROOT, *([args.against.resolve()] if args.against else [])]
    times = measure(trees, commands, args.rounds)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.rounds} rounds, medians; "
          f"this checkout {ROOT}" + (f", against {trees[1]}" if args.against else ""))
    print("\n".join(table(times, list(commands), trees)))


if __name__ == "__main__":
    main()
