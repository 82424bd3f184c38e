"""One table model, rendered to LaTeX (booktabs), Markdown and CSV with the same content.

A :class:`Table` holds rows of :class:`Cell` objects. A numeric cell keeps its value per seed;
the table shows mean ± std over seeds (sample std, ddof 1; no std with one seed) and ``n/a`` where
a value is undefined. :func:`mark_extremes` puts ``best``/``second`` on the cells of each column
(within each row group) by the column's direction, comparing the values as displayed, so ties
at the shown precision are all marked. Markers (``†``, ``‡``) are explained in the caption.
Rendering is a pure function of the table: the same table always gives the same bytes.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "Cell",
    "Column",
    "Row",
    "Table",
    "Provenance",
    "fmt_number",
    "latex_escape",
    "markdown_escape",
    "mark_extremes",
    "to_csv",
    "to_latex",
    "to_markdown",
]

Direction = Literal["up", "down"] | None
MARK_LATEX = {"†": r"\dagger", "‡": r"\ddagger", "*": r"\ast"}


@dataclass(frozen=True)
class Provenance:
    """Where the numbers of a table come from."""

    suite: str
    suite_version: str
    trial_ids: tuple[str, ...]
    data_hashes: tuple[str, ...]
    code_versions: tuple[str, ...]
    corruption_versions: tuple[str, ...]
    date: str
    incomplete: str = ""  # the note of a report that lacks cells of its suite ("" when complete)

    def short(self) -> str:
        """One sentence for captions (hashes shortened)."""
        data = ", ".join(h[:10] for h in self.data_hashes) or "unknown"
        return (f"Suite {self.suite} v{self.suite_version}, {len(self.trial_ids)} trials, "
                f"code {', '.join(self.code_versions) or 'unknown'}, data {data}, "
                f"corruptions {', '.join(self.corruption_versions) or 'none'}, {self.date[:10]}.")

    def lines(self) -> list[tuple[str, str]]:
        return [*([("incomplete", self.incomplete.removeprefix("incomplete: "))] if self.incomplete else []),
                ("suite", f"{self.suite} (version {self.suite_version})"),
                ("date", self.date),
                ("code version", ", ".join(self.code_versions) or "unknown"),
                ("data hash", ", ".join(self.data_hashes) or "unknown"),
                ("corruption versions", ", ".join(self.corruption_versions) or "none"),
                ("trials", f"{len(self.trial_ids)}: {' '.join(self.trial_ids)}")]

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "suite_version": self.suite_version, "date": self.date,
                "code_versions": list(self.code_versions), "data_hashes": list(self.data_hashes),
                "corruption_versions": list(self.corruption_versions), "trial_ids": list(self.trial_ids),
                **({"incomplete": self.incomplete} if self.incomplete else {})}


@dataclass
class Cell:
    """A numeric cell (values per seed) or a text cell."""

    seeds: dict[int, float] = field(default_factory=dict)
    text: str | None = None
    emphasis: str = ""  # "", "best" or "second"
    marks: str = ""
    digits: int | None = None  # overrides the table's digits

    @classmethod
    def of(cls, values: dict[int, float] | float, **kw: Any) -> Cell:
        if isinstance(values, dict):
            return cls(seeds={int(s): float(v) for s, v in sorted(values.items())}, **kw)
        return cls(seeds={0: float(values)}, **kw)

    @property
    def numeric(self) -> bool:
        return self.text is None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> float:
        if not self.seeds:
            return float("nan")
        v = np.array([self.seeds[s] for s in sorted(self.seeds)], dtype=np.float64)
        return float(np.mean(v)) if np.all(np.isfinite(v)) else float("nan")

    @property
    def std(self) -> float:
        v = np.array([self.seeds[s] for s in sorted(self.seeds)], dtype=np.float64)
        if v.size < 2 or not np.all(np.isfinite(v)):
            return float("nan")
        return float(np.std(v, ddof=1))


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    direction: Direction = None
    group: str = ""  # a spanning header over consecutive columns (LaTeX), a label prefix elsewhere
    digits: int | None = None
    std: bool = True  # show ± std

    @property
    def arrow(self) -> str:
        return {"up": "↑", "down": "↓"}.get(self.direction or "", "")

    def flat_label(self) -> str:
        base = f"{self.group} ({self.label})" if self.group else self.label
        return f"{base} {self.arrow}".rstrip()


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]
    group: str = ""
    trial_ids: tuple[str, ...] = ()
    compare: bool = True  # False: shown but never marked best/second nor tested (e.g. a ceiling)


@dataclass
class Table:
    name: str
    title: str
    caption: str
    columns: list[Column]
    rows: list[Row]
    provenance: Provenance
    row_header: str = "Model (regime)"
    digits: int = 3
    notes: list[str] = field(default_factory=list)
    emphasis_axis: Literal["column", "row"] = "column"

    def digits_of(self, column: Column, cell: Cell) -> int:
        return cell.digits if cell.digits is not None else column.digits if column.digits is not None else self.digits

    def groups(self) -> list[str]:
        out: list[str] = []
        for r in self.rows:
            if r.group not in out:
                out.append(r.group)
        return out


# ---------------------------------------------------------------------------- formatting


def fmt_number(x: float, digits: int) -> str:
    """Fixed-point with ``digits`` decimals; never ``-0.000``; ``n/a`` for nan/inf."""
    if not math.isfinite(x):
        return "n/a"
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _shown(table: Table, col: Column, cell: Cell) -> str:
    """The plain text of a numeric cell: ``mean ± std`` (or the mean alone)."""
    if not cell.numeric:
        return cell.text or ""
    d = table.digits_of(col, cell)
    m = fmt_number(cell.mean, d)
    if col.std and m != "n/a" and math.isfinite(cell.std):
        return f"{m} ± {fmt_number(cell.std, d)}"
    return m


def mark_extremes(table: Table) -> None:
    """Set ``best``/``second`` on the numeric cells by direction, per column and row group (or per
    row with ``emphasis_axis="row"``), comparing means rounded as displayed; ties share the mark.
    Nothing is marked where fewer than two finite values compete."""
    for r in table.rows:
        for c in r.cells.values():
            c.emphasis = ""
    units: list[list[tuple[Column, Cell]]] = []
    if table.emphasis_axis == "row":
        for r in table.rows:
            if r.compare:
                dirs = {c.direction for c in table.columns if c.key in r.cells and c.direction}
                if len(dirs) == 1:
                    units.append([(c, r.cells[c.key]) for c in table.columns if c.key in r.cells and c.direction])
    else:
        for g in table.groups():
            rows = [r for r in table.rows if r.group == g and r.compare]
            for col in table.columns:
                if col.direction:
                    units.append([(col, r.cells[col.key]) for r in rows if col.key in r.cells])
    for unit in units:
        _mark_unit(table, unit)


def _mark_unit(table: Table, unit: list[tuple[Column, Cell]]) -> None:
    scored = []
    for col, cell in unit:
        if cell.numeric and math.isfinite(cell.mean):
            shown = float(fmt_number(cell.mean, table.digits_of(col, cell)))
            scored.append((shown if col.direction == "up" else -shown, cell))
    if len(scored) < 2:
        return
    levels = sorted({s for s, _ in scored}, reverse=True)
    for s, cell in scored:
        if s == levels[0]:
            cell.emphasis = "best"
        elif len(levels) > 1 and s == levels[1]:
            cell.emphasis = "second"


# ---------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", "ρ": r"$\rho$", "†": r"$^\dagger$",
                  "‡": r"$^\ddagger$", "Δ": r"$\Delta$", "σ": r"$\sigma$", "≤": r"$\leq$", "≥": r"$\geq$",
                  "×": r"$\times$", "−": "--", "—": "---", "–": "--", "Σ": r"$\Sigma$", "<": r"\textless{}", ">": r"\textgreater{}",
                  "|": r"\textbar{}"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX document (special characters and the few symbols the report uses)."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    if not out.isascii():
        bad = sorted({ch for ch in out if not ch.isascii()})
        raise ValueError(f"no LaTeX form for characters {bad} in {text!r}")
    return out


def _latex_cell(table: Table, col: Column, cell: Cell) -> str:
    if not cell.numeric:
        return latex_escape(cell.text or "")
    d = table.digits_of(col, cell)
    m = fmt_number(cell.mean, d)
    if m == "n/a":
        body = "n/a"
    else:
        body = m
        if col.std and math.isfinite(cell.std):
            body = f"{body}_{{\\pm {fmt_number(cell.std, d)}}}"
        body = f"${body}$"
        if cell.emphasis == "best":
            body = f"{{\\boldmath{body}}}"
        elif cell.emphasis == "second":
            body = f"\\underline{{{body}}}"
    if cell.marks:
        body += "$^{" + "".join(MARK_LATEX.get(ch, ch) for ch in cell.marks) + "}$"
    return body


def _latex_header(table: Table) -> list[str]:
    cols = table.columns
    lines = []
    if any(c.group for c in cols):
        spans: list[tuple[str, int]] = []
        for c in cols:
            if spans and spans[-1][0] == c.group:
                spans[-1] = (c.group, spans[-1][1] + 1)
            else:
                spans.append((c.group, 1))
        top, rules, at = [""], [], 2
        for g, k in spans:
            if g:
                top.append(f"\\multicolumn{{{k}}}{{c}}{{{latex_escape(g)}}}")
                rules.append(f"\\cmidrule(lr){{{at}-{at + k - 1}}}")
            else:
                top += [""] * k
            at += k
        lines.append(" & ".join(top) + r" \\")
        lines.append(" ".join(rules))
    sub = [latex_escape(table.row_header)]
    for c in cols:
        sub.append(latex_escape(f"{c.label} {c.arrow}".rstrip()))
    lines.append(" & ".join(sub) + r" \\")
    return lines


def to_latex(table: Table, provenance_in_caption: bool = True) -> str:
    """A complete ``table`` float (``table*``, spanning both columns, beyond three data columns) with booktabs rules,
    caption, label and the full provenance as comments above it. Needs ``\\usepackage{booktabs}``."""
    env = "table*" if len(table.columns) > 3 else "table"
    ncol = len(table.columns) + 1
    caption = table.caption + (" " + table.provenance.short() if provenance_in_caption else "")
    note = table.provenance.incomplete  # visible in the caption whatever provenance_in_caption says
    caption_tex = latex_escape(caption) + (f" \\textbf{{{latex_escape(note[:1].upper() + note[1:])}.}}" if note else "")
    out = [f"% robustmsa report table '{table.name}': {table.title}"]
    out += [f"% {k}: {v}" for k, v in table.provenance.lines()]
    out += [f"\\begin{{{env}}}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}",
            f"\\caption[{latex_escape(table.title)}]{{{latex_escape(table.title)}. {caption_tex}}}",
            f"\\label{{tab:{_label(table.provenance.suite)}-{_label(table.name)}}}",
            f"\\begin{{tabular}}{{l{''.join('l' if _is_text(table, c) else 'r' for c in table.columns)}}}",
            r"\toprule"]
    out += _latex_header(table)
    out.append(r"\midrule")
    groups = table.groups()
    for gi, g in enumerate(groups):
        if g:
            if gi:
                out.append(r"\midrule")
            out.append(f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{latex_escape(g)}}}}} \\\\")
        for r in (r for r in table.rows if r.group == g):
            cells = [latex_escape(r.label) if r.compare else f"\\textit{{{latex_escape(r.label)}}}"]  # references: italic
            cells += [_latex_cell(table, c, r.cells[c.key]) if c.key in r.cells else "" for c in table.columns]
            out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", f"\\end{{{env}}}", ""]
    return "\n".join(out)


def _label(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()


# ---------------------------------------------------------------------------- Markdown


def markdown_escape(text: str) -> str:
    """Text safe inside a Markdown table cell (pipes, emphasis characters and HTML)."""
    out = str(text).replace("\\", "\\\\")
    for ch in "|*`":
        out = out.replace(ch, "\\" + ch)
    return out.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _md_cell(table: Table, col: Column, cell: Cell) -> str:
    body = markdown_escape(_shown(table, col, cell))
    if cell.numeric and body != "n/a":
        if cell.emphasis == "best":
            body = f"**{body}**"
        elif cell.emphasis == "second":
            body = f"<u>{body}</u>"
    return body + cell.marks


def _is_text(table: Table, col: Column) -> bool:
    cells = [r.cells[col.key] for r in table.rows if col.key in r.cells]
    return bool(cells) and all(not c.numeric for c in cells)


def to_markdown(table: Table, level: int = 3, provenance: bool = True) -> str:
    """Heading, caption, a pipe table (row groups as bold rows) and the provenance below."""
    head = [markdown_escape(table.row_header)] + [markdown_escape(c.flat_label()) for c in table.columns]
    align = [":---" if _is_text(table, c) else "---:" for c in table.columns]
    lines = [f"{'#' * level} {table.title}", "", table.caption, ""]
    if table.provenance.incomplete:
        lines += [f"**{markdown_escape(table.provenance.incomplete)}**", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join([":---", *align]) + "|"]
    for g in table.groups():
        if g:
            lines.append("| " + " | ".join([f"**{markdown_escape(g)}**"] + [""] * len(table.columns)) + " |")
        for r in (r for r in table.rows if r.group == g):
            cells = [markdown_escape(r.label) if r.compare else f"*{markdown_escape(r.label)}*"]  # references: italic
            cells += [_md_cell(table, c, r.cells[c.key]) if c.key in r.cells else "" for c in table.columns]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"_{n}_" for n in table.notes] + ([""] if table.notes else [])
    if provenance:
        lines.append("<sub>" + "; ".join(f"{k}: {markdown_escape(v)}" for k, v in table.provenance.lines())
                     + "</sub>")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CSV

CSV_COLUMNS = ["table", "group", "row", "column", "column_label", "direction", "mean", "std", "n_seeds",
               "seeds", "display", "emphasis", "marks", "trial_ids", "suite", "suite_version", "code_version",
               "data_hash", "corruption_versions", "date", "incomplete"]


def _num(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ""


def to_csv(table: Table) -> str:
    """Long form: one line per cell, full-precision mean/std and the per-seed values, the displayed
    text, its emphasis and markers, the trial identities behind the row, and the provenance."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    p = table.provenance
    prov = [p.suite, p.suite_version, ";".join(p.code_versions), ";".join(p.data_hashes),
            ";".join(p.corruption_versions), p.date, p.incomplete]
    for r in table.rows:
        for c in table.columns:
            cell = r.cells.get(c.key)
            if cell is None:
                continue
            seeds = json.dumps({str(s): (v if math.isfinite(v) else None) for s, v in sorted(cell.seeds.items())})
            mean, std = (_num(cell.mean), _num(cell.std)) if cell.numeric else ("", "")
            w.writerow([table.name, r.group, r.label, c.key, c.flat_label(), c.direction or "", mean, std,
                        cell.n if cell.numeric else "", seeds if cell.numeric else "", _shown(table, c, cell),
                        cell.emphasis, cell.marks, ";".join(r.trial_ids), *prov])
    return buf.getvalue()
