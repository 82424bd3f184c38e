"""Command line: a thin layer over the library. ``main(argv)`` does the work (tests call it).

    robustmsa run SUITE [key=value ...] [--ray-address ADDR] [--backend ray|local] [--wait]
    robustmsa validate SUITE [key=value ...]
    robustmsa ls models|corruptions|datasets|suites
    robustmsa report SUITE [key=value ...]

Errors caused by input print one line and a hint (exit 2); ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from corruptions.registry import UnknownNameError

from .errors import RobustMSAError

__all__ = ["main"]

LS_WHAT = ("models", "corruptions", "datasets", "suites")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robustmsa", description="Robustness evaluation for multimodal sentiment analysis")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a suite (trains each model once, evaluates the whole spectrum)")
    r.add_argument("suite")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.epochs=3 seeds=[0]")
    r.add_argument("--ray-address", help="join an existing Ray cluster (e.g. 127.0.0.1:6379)")
    r.add_argument("--backend", choices=("ray", "local"), help="override runner.backend")
    r.add_argument("--no-report", action="store_true", help="skip writing the report")
    r.add_argument("--wait", action="store_true",
                   help="if the suite is already running in this tracking store, wait for it (default: refuse)")
    v = sub.add_parser("validate", help="validate a suite and print its expanded grid")
    v.add_argument("suite")
    v.add_argument("overrides", nargs="*")
    ls = sub.add_parser("ls", help="list registered models, corruptions, datasets or suites")
    ls.add_argument("what", choices=LS_WHAT)
    rp = sub.add_parser("report", help="write tables and figures of a suite from the tracking store")
    rp.add_argument("suite")
    rp.add_argument("overrides", nargs="*")
    return p


def _cmd_run(args: argparse.Namespace, out: Console) -> int:
    from .runner import run_suite
    from .suite import load_suite

    suite = load_suite(args.suite, args.overrides)
    s = run_suite(suite, ray_address=args.ray_address, backend=args.backend, make_report=not args.no_report,
                  wait=args.wait)
    out.print(f"\n[bold]{s.suite}[/bold]: {len(s.completed)} trials run, {s.skipped} reused, "
              f"{len(s.failed)} failed in {s.seconds:.0f} s")
    for name, err in s.failed.items():
        out.print(f"  [red]FAILED[/red] {name}: {err}")
    for k, pth in s.report_paths.items():
        out.print(f"  {k:8s} {pth}")
    uri = s.tracking_uri
    out.print(f"  mlflow   experiment '{s.experiment}' in {uri}"
              + (f" — open with: mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else ""))
    return 1 if s.failed else 0


def _cmd_validate(args: argparse.Namespace, out: Console) -> int:
    from .plan import estimate_cost, plan_suite
    from .suite import load_suite

    suite = load_suite(args.suite, args.overrides)
    planned = plan_suite(suite)
    ev = suite.evaluation
    cost = estimate_cost(suite, planned)
    out.print(f"{args.suite}: suite '{suite.name}' v{suite.version} is valid")
    n_ref = sum(p.spec.is_reference for p in planned)
    refs = f", plus {n_ref} reference trial(s) (oracle, linear probes)" if n_ref else ""
    out.print(f"  trials: {len(planned) - n_ref} = {len(suite.datasets)} dataset(s) x {len(suite.models)} model(s) x "
              f"regimes/conditions x {len(suite.seeds)} seed(s){refs}")
    out.print(f"  evaluation points per trial: {cost.grid_points} ({len(ev.families)} families x the sweeps each "
              f"supports of ({', '.join(ev.sweeps)}) x {len(ev.levels)} levels)")
    out.print(f"  estimated cost: at most {cost.sample_passes:,} sample passes (epochs x train x 2 for training and "
              f"validation, grid points x test for evaluation)")
    for p in planned:
        out.print(f"  - {p.spec.name}  [dim]{p.trial_id}[/dim]")
    return 0


def _cmd_ls(args: argparse.Namespace, out: Console) -> int:
    if args.what == "models":
        from .models import MODELS

        for n in MODELS.names():
            out.print(n)
    elif args.what == "corruptions":
        from corruptions.catalogue import catalogue_markdown

        out.print(catalogue_markdown(), markup=False)
    elif args.what == "datasets":
        from .datasets import DATASETS

        for n in DATASETS.names():
            out.print(f"{n:18s} {DATASETS.get(n).help}", markup=False)
    else:
        root = Path("suites") if Path("suites").is_dir() else Path(__file__).resolve().parents[1] / "suites"
        for f in sorted(root.glob("*.yaml")):
            out.print(str(f))
    return 0


def _cmd_report(args: argparse.Namespace, out: Console) -> int:
    from .reports import write_report
    from .suite import load_suite

    paths = write_report(load_suite(args.suite, args.overrides))
    for k, pth in paths.items():
        out.print(f"{k:8s} {pth}")
    return 0 if paths else 1


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        return {"run": _cmd_run, "validate": _cmd_validate, "ls": _cmd_ls, "report": _cmd_report}[args.command](
            args, out)
    except RobustMSAError as e:
        if args.debug:
            raise
        err.print(f"error: {e}", markup=False, highlight=False)
        if e.hint:
            err.print(f"hint: {e.hint}", markup=False, highlight=False)
        return e.exit_code
    except UnknownNameError as e:  # a registry lookup by name; any other KeyError is a bug and raises
        if args.debug:
            raise
        err.print(f"error: {e}", markup=False, highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: completed trials are tracked; run the same command again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
