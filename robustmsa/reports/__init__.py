"""Reports for publications, rendered from the tracking store alone (never from a run's memory).

``write_report(suite)`` reads the suite's finished trials back from MLflow (any tracking URI) and
writes into ``<report.dir>/<suite>/`` tables as LaTeX (booktabs), Markdown and CSV with the same
content, figures as PNG and PDF, a combined ``results.md``, a standalone ``report.tex`` that
compiles every table and figure, ``rows.csv`` and ``provenance.json``; see docs/reports.md.
:func:`write_report_data` does the same from a :class:`ReportData` (e.g. built from the tidy
tables the runs logged with :func:`from_frames`). The same runs always give byte-identical files.
The tables and figures are those of the registry (:mod:`.registry`), each declared once in
:mod:`.catalogue`.
"""
from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from ..datasets import reuse_loaded
from ..errors import RobustMSAError
from ..metrics import METRIC_INFO
from ..plan import expand_trials, plan_suite
from ..tracking import Tracker
from . import catalogue  # noqa: F401  (registers the tables and figures)
from .build import Settings, Variant, settings_for_family
from .core import Context, SigRecord
from .figures import Drawn, Styles
from .load import NothingToReport, ReportData, Selection, from_frames, load_from_tracking
from .published import dataset_releases
from .registry import DatasetReport, build_tables, draw_figures, owned_files
from .tables import Table, latex_escape, to_csv, to_latex, to_markdown

__all__ = ["write_report", "write_report_data", "collect_rows", "load_from_tracking", "from_frames", "ReportData",
           "Selection", "Settings", "Variant", "settings_of", "suite_cells", "incomplete_note"]

FRAME_FILES = ("significance_all.csv", "rows.csv", "provenance.json", "results.md", "report.tex")
"""The files every report writes around its tables and figures (those are in the registry)."""
OWNED_EXT = (".tex", ".md", ".csv", ".png", ".pdf", ".json")


def settings_of(spec: Any, suite_metrics: Sequence[str] | None = None) -> Settings:
    """Settings from a suite's ``report`` section and its top-level ``metrics`` (the metric columns)."""
    metrics = suite_metrics
    return Settings(main_metric=spec.main_metric, metrics=tuple(metrics) if metrics else None,
                    reference_model=spec.reference_model, effective_reference=spec.effective_reference,
                    digits=spec.digits, alpha=spec.alpha, seed_test=spec.seed_test, bootstrap=spec.bootstrap,
                    bootstrap_seed=spec.bootstrap_seed, provenance_in_caption=spec.provenance_in_caption,
                    mce_reference=spec.mce_reference)


def _check_references(suite: Any, console: Console) -> None:
    """A reference model that is not in the suite (e.g. ``models=[...]`` overridden) only drops the
    columns that need it; say so."""
    labels = [m.display for m in suite.models]
    for key in ("reference_model", "effective_reference"):
        ref = getattr(suite.report, key)
        if ref and ref not in labels:
            console.print(f"[yellow]report.{key} {ref!r} is not a model of the suite (models: {', '.join(labels)}); "
                          f"the columns that compare with it are left out[/yellow]")


def collect_rows(suite: Any) -> pd.DataFrame:
    """All rows of the suite's completed trials, read back from the tracking store."""
    try:
        return _load(suite, Console(stderr=True, quiet=True), None, predictions=False)[0].rows
    except NothingToReport:
        return pd.DataFrame()


def _cell(t: Any) -> tuple:
    return (t.dataset.display, t.model.display, t.regime.name,
            json.dumps(t.condition.spec(), sort_keys=True) if t.condition else "", t.seed)


def suite_cells(suite: Any) -> set[tuple]:
    """The (dataset, model, regime, condition, seed) cells of the suite as defined now (no data loaded)."""
    return {_cell(t) for t in expand_trials(suite)}


#: how a missing cell's latest unfinished run is named in the note (no run at all: "not run")
_UNFINISHED = {"FAILED": "failed", "RUNNING": "running or interrupted", "KILLED": "killed"}
NOTE_LIST_MAX = 20  # cells named in the note; provenance.json lists them all


def incomplete_note(suite: Any, missing: Sequence[tuple], ids: dict[tuple, str],
                    unfinished: dict[str, str]) -> tuple[str, list[str]]:
    """The note of a report that lacks ``missing`` cells of ``suite`` (``""`` when none) and every
    missing cell as ``name: status``. ``ids``: cell -> trial identity as planned now (empty when the
    data is not on this machine); ``unfinished``: trial identity -> status of its unfinished run."""
    if not missing:
        return "", []
    names = {_cell(t): t.name for t in expand_trials(suite)}
    listed = [f"{names.get(c, '/'.join(map(str, c)))}: {_UNFINISHED.get(unfinished.get(ids.get(c, '')), 'not run')}"
              for c in sorted(missing, key=lambda c: names.get(c, ""))]
    shown = "; ".join(listed[:NOTE_LIST_MAX]) + (f"; and {len(listed) - NOTE_LIST_MAX} more" if len(listed) > NOTE_LIST_MAX
                                                else "")
    return f"incomplete: {len(missing)} of {len(names)} cells missing ({shown})", listed


def _load(suite: Any, console: Console, planned: Sequence[Any] | None,
          predictions: bool = True) -> tuple[ReportData, list[str], list[str]]:
    """The suite's trials from the store, the identities that differ from the suite as defined now
    (``planned``: its plan, else planned here), and the cells of the suite without a finished trial
    (``name: status``; also in ``data.incomplete``). The cells are the planned ones (a
    classification dataset has no reference trial to wait for)."""
    try:
        ids = {_cell(p.spec): p.trial_id for p in (planned if planned is not None else plan_suite(suite))}
        cells = set(ids)
    except RobustMSAError as e:  # data not on this machine: every cell's latest finished trial
        console.print(f"[yellow]cannot plan the suite ({e}); reporting each cell's latest finished trial[/yellow]")
        ids, cells = {}, suite_cells(suite)
    planned = set(ids.values())
    selection = Selection(suite=suite.name, cells=cells, prefer=planned,
                          model_order=[m.display for m in suite.models], regime_order=[r.name for r in suite.regimes])
    data = load_from_tracking(suite.tracking.uri, suite.experiment, selection, predictions=predictions)
    listed: list[str] = []
    if data.missing:
        tracker = Tracker.existing(suite.tracking.uri, suite.experiment)
        unfinished = tracker.unfinished_trial_runs(suite.name) if tracker else {}
        data.incomplete, listed = incomplete_note(suite, data.missing, ids, unfinished)
        console.print(data.incomplete, style="yellow", markup=False, highlight=False, soft_wrap=True)
    other = sorted(set(data.trials["trial_id"]) - planned) if planned else []
    if other:
        console.print(f"[yellow]{len(other)} cell(s) reported from trials of an earlier definition of the suite "
                      f"(their identity differs from a run now): {', '.join(other)}[/yellow]")
    return data, other, listed


def write_report(suite: Any, console: Console | None = None, planned: Sequence[Any] | None = None) -> dict[str, str]:
    """Write the report of ``suite`` into ``<report.dir>/<suite name>/``; return the main paths, and
    under ``"incomplete"`` the note naming the cells of the suite that have no finished trial (the
    tables and ``results.md`` carry it too; absent when the report is complete). ``planned``: the
    suite's plan when the caller has it (a run), so its data is not loaded again to plan it."""
    console = console or Console(stderr=True)
    _check_references(suite, console)
    with reuse_loaded():  # planning and the release recognition read the same datasets: load each once
        try:
            data, other, missing = _load(suite, console, planned)
        except NothingToReport as e:
            console.print(f"[yellow]no completed trials to report yet ({e})[/yellow]")
            return {}
        data.releases = dataset_releases(suite.datasets, console)
    data.suite_version = str(suite.version)
    variants = [Variant(m.display, m.name, json.dumps(m.overrides, sort_keys=True) if m.overrides else "")
                for m in suite.models]
    extra = {"source": str(suite.source), "tracking_uri": suite.tracking.uri, "experiment": suite.experiment}
    if other:
        extra["trials_of_an_earlier_suite_definition"] = " ".join(other)
    if missing:
        extra["missing_cells"] = "; ".join(missing)
    paths = write_report_data(data, Path(suite.report.dir) / suite.name, settings_of(suite.report, suite.metrics),
                              variants=variants, extra=extra)
    return {**paths, "incomplete": data.incomplete} if data.incomplete else paths


# ---------------------------------------------------------------------------- writing


class _Writer:
    def __init__(self, out: Path):
        self.out = out
        self.written: list[Path] = []

    def __call__(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.written.append(path)

    def text(self, name: str, text: str) -> Path:
        path = self.out / name
        self(path, text.encode("utf-8"))
        return path

    def cleanup(self, keep_figures: bool = False) -> None:
        """Remove files of an earlier report that this one did not write (e.g. a table whose data is gone);
        globs match the path relative to the report folder (``results/*.json``)."""
        keep = {p.relative_to(self.out).as_posix() for p in self.written}
        owned = [*owned_files(), *FRAME_FILES]
        for p in sorted(x for x in self.out.rglob("*") if x.is_file()):
            rel = p.relative_to(self.out).as_posix()
            if keep_figures and p.suffix in (".png", ".pdf"):
                continue
            if rel not in keep and p.suffix in OWNED_EXT and any(fnmatch.fnmatch(rel, pat) for pat in owned):
                p.unlink()


def write_report_data(data: ReportData, out: Path, settings: Settings | None = None,
                      variants: Sequence[Variant] | None = None, extra: dict[str, str] | None = None,
                      figures: bool = True) -> dict[str, str]:
    """Every registered table (and, unless ``figures`` is False, every figure) of ``data`` into
    ``out``; returns the main paths."""
    s = settings or Settings()
    if s.main_metric not in METRIC_INFO:
        raise RobustMSAError(f"unknown main metric {s.main_metric!r}; allowed: {', '.join(METRIC_INFO)}")
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(out)
    tables, records, drawn = _build(data, s, variants, w, figures)
    for t in tables:
        w.text(f"{t.name}.tex", to_latex(t, s.provenance_in_caption))
        w.text(f"{t.name}.md", to_markdown(t))
        w.text(f"{t.name}.csv", to_csv(t))
    prov = data.provenance()
    w.text("significance_all.csv", _records_csv(records, data.incomplete))
    every = data.rows if data.references is None else pd.concat([data.rows, data.references], ignore_index=True)
    w.text("rows.csv", every.to_csv(index=False))  # the reference predictors' rows too (regime_kind reference)
    w.text("provenance.json", json.dumps({**prov.as_dict(), **(extra or {})}, indent=2, sort_keys=True) + "\n")
    results = w.text("results.md", _results_md(data, tables, drawn, extra or {}))
    latex = w.text("report.tex", _report_tex(data, tables, drawn))
    w.cleanup(keep_figures=not figures)
    return {"table": str(results), "latex": str(latex), "rows": str(out / "rows.csv"),
            "figures": ", ".join(str(p) for d in drawn for p in d.paths if p.suffix == ".png")}


def _build(data: ReportData, s: Settings, variants: Sequence[Variant] | None, w: _Writer,
           figures: bool) -> tuple[list[Table], list[SigRecord], list[Drawn]]:
    """The tables, significance records and (written) figures of every dataset, dataset by dataset."""
    datasets = sorted(set(data.rows["dataset"]))
    styles = Styles(data.model_order + sorted(set(data.rows["model"])),
                    data.regime_order + sorted(set(data.rows["regime"])))
    tables: list[Table] = []
    records: list[SigRecord] = []
    drawn: list[Drawn] = []
    for ds in datasets:
        ctx = Context(data, ds, replicates=s.bootstrap, bootstrap_seed=s.bootstrap_seed, seed_test=s.seed_test,
                      alpha=s.alpha)
        report = DatasetReport(ctx, settings_for_family(s, ctx.family), variants, len(datasets) > 1, styles, w.out, w)
        tables += build_tables(report)
        records += report.records
        if figures:
            drawn += draw_figures(report)
    return tables, records, drawn


def _records_csv(records: Sequence[SigRecord], incomplete: str = "") -> str:
    frame = pd.DataFrame([vars(r) for r in records], columns=list(SigRecord.__dataclass_fields__))
    frame["incomplete"] = incomplete  # the note of a report that lacks cells of its suite, on every line
    return frame.to_csv(index=False, float_format=None)


def _results_md(data: ReportData, tables: Sequence[Table], figures: Sequence[Drawn], extra: dict[str, str]) -> str:
    prov = data.provenance()
    lines = [f"# {data.suite}: robustness report", ""]
    lines += [f"**{data.incomplete}**", ""] if data.incomplete else []
    lines += [f"- {k}: {v}" for k, v in prov.lines()]
    lines += [f"- {k.replace('_', ' ')}: `{v}`" for k, v in sorted(extra.items())]
    lines += ["", "Every table is also in LaTeX (`<name>.tex`, booktabs) and CSV (`<name>.csv`) beside this file; "
              "`report.tex` compiles them all. See docs/reports.md.", ""]
    for t in tables:
        lines.append(to_markdown(t, level=2, provenance=False))
    if figures:
        lines += ["## Figures", ""]
    for k, d in enumerate(figures, 1):
        png = next((p for p in d.paths if p.suffix == ".png"), None)
        if png is not None:
            lines += [f"![Figure {k}: {d.stem}]({png.name})", "", f"*Figure {k} (`{d.stem}`).* {d.caption}", ""]
    return "\n".join(lines)


def _report_tex(data: ReportData, tables: Sequence[Table], figures: Sequence[Drawn]) -> str:
    prov = data.provenance()
    lines = ["% Standalone preview of every table and figure of this report: pdflatex report.tex",
             r"\documentclass[twocolumn]{article}", r"\usepackage[margin=1.8cm]{geometry}", r"\usepackage{booktabs}",
             r"\usepackage{graphicx}", r"\begin{document}",
             f"\\title{{{latex_escape(data.suite)}: robustness report}}", r"\author{robustmsa}",
             f"\\date{{{latex_escape(prov.date)}}}", r"\maketitle"]
    facts = [(k, v.split(":")[0] if k == "trials" else v) for k, v in prov.lines()]  # ids: in provenance.json
    lines += [r"\noindent " + r" \\ ".join(f"{latex_escape(k)}: {latex_escape(str(v))}" for k, v in facts),
              r"\listoftables", r"\listoffigures", r"\clearpage"]  # page 1: what the report holds
    for t in tables:
        lines += [f"\\input{{{t.name}.tex}}", r"\clearpage"]
    for d in figures:
        pdf = next((p for p in d.paths if p.suffix == ".pdf"), None)
        if pdf is not None:
            lines += [r"\begin{figure*}[t]", r"\centering", f"\\includegraphics[width=\\textwidth]{{{pdf.name}}}",
                      f"\\caption[{latex_escape(d.title or d.stem)}]{{{latex_escape(d.caption)}}}\\label{{fig:{d.stem}}}", r"\end{figure*}",
                      r"\clearpage"]
    lines += [r"\end{document}", ""]
    return "\n".join(lines)
