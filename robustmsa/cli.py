"""Command line: a thin layer over the library. ``main(argv)`` does the work (tests call it).

    robustmsa run SUITE [key=value ...] [--ray-address ADDR] [--backend ray|local] [--wait]
    robustmsa eval MODEL_SPEC --data DATASET[:PARAMS] [--spectrum SUITE] [key=value ...]
    robustmsa validate SUITE [key=value ...]
    robustmsa ls models|corruptions|datasets|suites
    robustmsa report SUITE [key=value ...] [--allow-partial]
    robustmsa export-corrupted SUITE --out DIR [key=value ...] [--all-splits]
    robustmsa leaderboard FILES... --out DIR
    robustmsa --version

Errors caused by input print ``error: <where>: <what>`` (``<where>`` the file, key, dataset or
argument at fault) and a hint, exit 2; ``--debug`` (before or after the subcommand) shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

from ._version import __version__
from .errors import RobustMSAError

if TYPE_CHECKING:
    from rich.table import Table

    from .plan import PlannedTrial
    from .suite import Suite

__all__ = ["main", "build_parser"]

LS_WHAT = ("models", "corruptions", "datasets", "suites")
_SUITE_HELP = "suite file (YAML), e.g. suites/smoke.yaml; `robustmsa ls suites` lists them"
_OVERRIDES_HELP = "key=value overrides with dotted keys and YAML values, e.g. training.epochs=3 seeds=[0]"


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one error format: ``error: <command>: <message>`` and a ``hint:`` line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\nhint: {self.prog} -h shows the usage\n")


def _suite_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("suite", help=_SUITE_HELP)
    sp.add_argument("overrides", nargs="*", help=_OVERRIDES_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser: ``--debug`` is accepted before and after the subcommand."""
    p = _Parser(prog="robustmsa", description="Robustness evaluation for multimodal sentiment analysis")
    p.add_argument("--version", action="version", version=f"robustmsa {__version__}",
                   help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    common = argparse.ArgumentParser(add_help=False)  # the subcommands' copy leaves the top-level value alone
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks instead of one-line errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser("run", parents=[common], help="run a suite (trains each model once, evaluates the whole spectrum)")
    _suite_args(r)
    r.add_argument("--ray-address", help="join an existing Ray cluster (e.g. 127.0.0.1:6379)")
    r.add_argument("--backend", choices=("ray", "local"), help="override runner.backend")
    r.add_argument("--no-report", action="store_true", help="skip writing the report")
    r.add_argument("--wait", action="store_true",
                   help="if the suite is already running in this tracking store, wait for it (default: refuse)")
    v = sub.add_parser("validate", parents=[common], help="validate a suite and print its expanded grid")
    _suite_args(v)
    v.add_argument("--recalibrate", action="store_true",
                   help="time the models again for the wall-time estimate (default: reuse this machine's last "
                        "calibration, kept for 7 days)")
    ls = sub.add_parser("ls", parents=[common], help="list registered models, corruptions, datasets or suites")
    ls.add_argument("what", choices=LS_WHAT, help="what to list: " + ", ".join(LS_WHAT))
    rp = sub.add_parser("report", parents=[common],
                        help="write tables and figures of a suite from the tracking store")
    _suite_args(rp)
    rp.add_argument("--allow-partial", action="store_true",
                    help="exit 0 even when cells of the suite have no finished trial (the report still says so)")
    e = sub.add_parser("eval", parents=[common],
                       help="evaluate a model that comes with its weights over a suite's spectrum (no training)")
    e.add_argument("model", metavar="MODEL_SPEC",
                   help="run:<mlflow run id> | path/to/model.pt | mmsa:<model>:<checkpoint.pth> | "
                        "module:attribute[@weights.pt] | '{name: ..., params: {...}}' (docs/byo_model.md)")
    e.add_argument("--data", required=True, metavar="DATASET[:PARAMS]",
                   help="dataset name, params as YAML after ':', e.g. synthetic_trimodal or 'mmsa:{path: x.pkl}'")
    e.add_argument("--spectrum", metavar="SUITE", help="suite file or name whose evaluation grid is used "
                                                       "(default: suites/continuous_spectrum.yaml)")
    e.add_argument("--label", help="the model's name in tables (default from the spec)")
    e.add_argument("overrides", nargs="*", help=_OVERRIDES_HELP + " (of the evaluate-only suite)")
    e.add_argument("--backend", choices=("ray", "local"), help="override runner.backend")
    e.add_argument("--no-report", action="store_true", help="skip writing the report")
    _export_parser(sub, common)
    lb = sub.add_parser("leaderboard", parents=[common],
                        help="merge results JSON files (reports' results/*.json) into Markdown, LaTeX and HTML")
    lb.add_argument("files", nargs="+", help="results documents, e.g. reports/*/results/*.json")
    lb.add_argument("--out", required=True, help="output folder for leaderboard.md, .tex and .html")
    return p


def _export_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ex = sub.add_parser("export-corrupted", parents=[common],
                        help="write every grid point of a suite's evaluation spectrum as an MMSA pickle + manifest.json")
    _suite_args(ex)
    ex.add_argument("--out", required=True, help="output folder (one sub-folder per dataset, manifest.json on top)")
    ex.add_argument("--all-splits", action="store_true",
                    help="also write the clean train and valid splits into every file (default: the evaluated split only)")


def _cmd_export_corrupted(args: argparse.Namespace, out: Console) -> int:
    import json

    from .export import export_corrupted
    from .suite import load_suite

    manifest = export_corrupted(load_suite(args.suite, args.overrides), args.out, all_splits=args.all_splits)
    n = sum(len(d["files"]) for d in json.loads(manifest.read_text(encoding="utf-8"))["datasets"])
    out.print(f"{n} files and {manifest}", markup=False, highlight=False)
    return 0


def _cmd_leaderboard(args: argparse.Namespace, out: Console) -> int:
    from .reports.leaderboard import write_leaderboard

    for kind, path in write_leaderboard(args.files, args.out).items():
        out.print(f"{kind:8s} {path}", markup=False, highlight=False)
    return 0


def _cmd_eval(args: argparse.Namespace, out: Console) -> int:
    from .api import data_spec, model_spec, spectrum_file
    from .suite import load_eval_suite, parse_overrides

    overrides = parse_overrides(args.overrides) if args.overrides else {}
    uri = (overrides.get("tracking") or {}).get("uri") or "sqlite:///mlflow.db"
    suite = load_eval_suite(spectrum_file(args.spectrum), model_spec(args.model, uri, args.label),
                            data_spec(args.data), overrides or None)
    args.suite, args.ray_address, args.wait = suite, None, False
    return _cmd_run(args, out)


def _cmd_run(args: argparse.Namespace, out: Console) -> int:
    from .runner import run_suite
    from .suite import Suite, load_suite

    suite = args.suite if isinstance(args.suite, Suite) else load_suite(args.suite, args.overrides)
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
    from .datasets import reuse_loaded
    from .plan import plan_suite
    from .suite import load_suite

    suite = load_suite(args.suite, args.overrides)
    with reuse_loaded():  # planning, the cost and the calibration read the same datasets
        return _print_validation(args, suite, plan_suite(suite), out)


def _print_validation(args: argparse.Namespace, suite: Suite, planned: list[PlannedTrial], out: Console) -> int:
    from .estimate import estimate_wall_time
    from .plan import estimate_cost

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
    wall = estimate_wall_time(suite, planned, recalibrate=getattr(args, "recalibrate", False))
    out.print(f"  estimated wall time: {wall.text()}", markup=False, highlight=False)
    for p in planned:
        out.print(f"  - {p.spec.name}  [dim]{p.trial_id}[/dim]")
    return 0


def _cmd_ls(args: argparse.Namespace, out: Console) -> int:
    if args.what == "models":
        for n in model_names():
            out.print(n)
    elif args.what == "corruptions":
        (table,) = _corruption_tables(split=False)
        width = Console(width=1000).measure(table).maximum
        if not out.is_terminal:  # piped: as wide as the table needs, not the default 80 columns
            out = Console(soft_wrap=True, width=max(out.width, width))
        for t in [table] if width <= out.width else _corruption_tables(split=True):
            out.print(t)
        out.print("rho = 1 is the clean input, rho = 0 the modality absent; the mapping of each family and what "
                  "rho = 0 means: docs/corruptions.md (python -m corruptions.catalogue)", markup=False, highlight=False)
    elif args.what == "datasets":
        for n, text in sorted(declared(PACKAGE / "datasets.py", "register_dataset", 2)):
            out.print(f"{n:18s} {text}", markup=False)
    else:
        root = Path("suites") if Path("suites").is_dir() else Path(__file__).resolve().parents[1] / "suites"
        for f in sorted(root.rglob("*.yaml")):  # suites/*.yaml, then the published protocols (suites/protocols/)
            out.print(str(f))
    return 0


#: this package's folder: ``ls models`` and ``ls datasets`` read their declarations from its source
PACKAGE = Path(__file__).resolve().parent


def declared(path: Path, call: str, n_args: int) -> list[tuple[str, ...]]:
    """The literal first ``n_args`` arguments of every ``call(...)`` in the module at ``path``, read
    from its source without importing it (``@register_model("qa_moe", Config)`` gives ``("qa_moe",)``,
    ``register_dataset("synthetic", "help", loader)`` with ``n_args=2`` gives ``("synthetic", "help")``).

    What ``ls`` prints without importing torch; ``tests/test_cli.py`` checks it against the registries."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == call:
            found.append(tuple(ast.literal_eval(a) for a in node.args[:n_args]))
    return found


def model_names() -> list[str]:
    """Every model ``robustmsa ls models`` lists: the ``@register_model`` names of the package's model
    files, read from their source; with installed plugins (entry-point group ``robustmsa.models``)
    the registry itself, as plugins register on import."""
    from importlib.metadata import entry_points

    if entry_points(group="robustmsa.models"):
        from .models import MODELS, load_plugins

        load_plugins()
        return MODELS.names()
    files = [f for f in sorted((PACKAGE / "models").glob("*.py")) if not f.name.startswith("_")]
    return sorted(name for f in files for (name,) in declared(f, "register_model", 1))


def _corruption_tables(split: bool) -> list[Table]:
    """The corruption catalogue as terminal tables: what each family's parameter is, and its value
    at each reliability; one table, or (``split``, for a narrow terminal) two."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from corruptions.catalogue import CATALOGUE_LEVELS, catalogue_rows

    rows = catalogue_rows()
    levels = [f"rho={rho:g}" for rho in CATALOGUE_LEVELS]
    about = ["version", "level", "modalities", "parameter", "unit"]
    parts = [about, levels] if split else [about + levels]
    titles = ["Corruption families", "Their parameter at each reliability rho"] if split else [
        "Corruption families: the physical parameter at each reliability rho"]
    tables = []
    for title, cols in zip(titles, parts):
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("family", no_wrap=True)
        for col in cols:
            numeric = col in levels or col == "version"
            table.add_column(col.removeprefix("rho=") if col in levels else col, no_wrap=numeric,
                             justify="right" if numeric else "left", overflow="fold")
        for r in rows:
            table.add_row(*(escape(str(r[c])) for c in ("name", *cols)))
        tables.append(table)
    return tables


def _cmd_report(args: argparse.Namespace, out: Console) -> int:
    from .reports import write_report
    from .suite import load_suite

    paths = write_report(load_suite(args.suite, args.overrides))
    note = paths.pop("incomplete", "")
    for k, pth in paths.items():
        out.print(f"{k:8s} {pth}")
    if note and not args.allow_partial:  # the files are written, with the note; the exit code says so too
        Console(stderr=True, soft_wrap=True).print(  # the note itself is on stderr already (write_report)
            "hint: run the suite again to complete it, or pass --allow-partial", markup=False, highlight=False)
        return 1
    return 0 if paths else 1


def _report_error(err: Console, e: Exception) -> int:
    """Print an error as ``error: <where>: <what>`` (and its hint); its exit code (2 for bad input,
    1 for a failure during a run, e.g. a store write)."""
    if _is_unknown_name(e):
        text = f"{e.kind} {e.name!r}: {e.message}"  # type: ignore[attr-defined]
    else:
        text = str(e)
    err.print(f"error: {text}", markup=False, highlight=False)
    hint = getattr(e, "hint", None)
    if hint:
        err.print(f"hint: {hint}", markup=False, highlight=False)
    return int(getattr(e, "exit_code", 2))


def _is_unknown_name(e: BaseException) -> bool:
    """Whether ``e`` is a registry's :class:`~corruptions.registry.UnknownNameError` (an input error).
    Only code that imported the registry can raise one, so the check imports nothing."""
    registry = sys.modules.get("corruptions.registry")
    return registry is not None and isinstance(e, registry.UnknownNameError)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; overrides may follow the options (``run S --backend local seeds=[0]``)."""
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        where = f"{parser.prog} {args.command}" if getattr(args, "command", None) else parser.prog
        parser.exit(2, f"error: {where}: unrecognized argument(s): {' '.join(stray)}\nhint: {where} -h shows the usage\n")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


COMMANDS = {"run": _cmd_run, "eval": _cmd_eval, "validate": _cmd_validate, "ls": _cmd_ls, "report": _cmd_report,
            "export-corrupted": _cmd_export_corrupted, "leaderboard": _cmd_leaderboard}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        args = _parse(build_parser(), argv)
    except SystemExit as e:  # --help, --version and usage errors: argparse has printed them
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        return COMMANDS[args.command](args, out)
    except (RobustMSAError, KeyError) as e:  # input errors; any other KeyError is a bug and raises
        if args.debug or not (isinstance(e, RobustMSAError) or _is_unknown_name(e)):
            raise
        return _report_error(err, e)
    except KeyboardInterrupt:
        err.print("interrupted: completed trials are tracked; run the same command again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
