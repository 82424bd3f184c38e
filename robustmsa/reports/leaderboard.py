"""``robustmsa leaderboard FILES... --out DIR``: merge results documents (docs/results_schema.md) from
several runs or groups into one ranking, as Markdown, LaTeX and a static HTML page.

Published numbers (the papers' own values that the results documents carry under ``published``
when their data was a recognised public release) are listed after the ranking, marked as
published, never ranked.

Results are ranked only when they were measured the same way: the same protocol (grid fingerprint),
the same data (content hash) and the same corruption versions; otherwise the merge is refused with a
one-line message naming what differs and the two files.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..errors import RobustMSAError
from .results_json import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION
from .tables import latex_escape

__all__ = ["load_results_file", "check_comparable", "write_leaderboard", "LeaderboardError"]


class LeaderboardError(RobustMSAError):
    """Results that cannot be ranked together (or a file that is not a results document)."""


def load_results_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LeaderboardError(f"{p}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA:
        raise LeaderboardError(f"{p}: not a robustmsa results document (schema {RESULTS_SCHEMA!r})",
                               hint="give the results/*.json files a report writes")
    major = str(doc.get("schema_version", "")).split(".")[0]
    if major != RESULTS_SCHEMA_VERSION.split(".")[0]:
        raise LeaderboardError(f"{p}: schema version {doc.get('schema_version')} is not {RESULTS_SCHEMA_VERSION}")
    return doc


_CHECKS = (("protocol", lambda d: d["protocol"]["id"]), ("data hash", lambda d: d["dataset"]["data_hash"]),
           ("corruption versions", lambda d: json.dumps(d["provenance"]["corruption_versions"], sort_keys=True)),
           ("main metric", lambda d: d["main_metric"]))


def check_comparable(docs: list[tuple[str, dict[str, Any]]]) -> None:
    """Raise :class:`LeaderboardError` naming the first property in which two files differ."""
    first_name, first = docs[0]
    for what, key in _CHECKS:
        for name, d in docs[1:]:
            if key(d) != key(first):
                raise LeaderboardError(f"leaderboard: refusing to rank results of different {what}: {first_name} "
                                       f"({key(first)}) vs {name} ({key(d)})",
                                       hint="rank only results of the same protocol, data and corruption versions")


def _rows(docs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    main = docs[0][1]["main_metric"]
    hib = docs[0][1]["higher_is_better"][main]
    rows = []
    for name, d in docs:
        o = d["overall"]
        rows.append({"model": d["model"]["label"], "regime": d["regime"]["name"], "file": name,
                     "seeds": len(d["seeds"]), "clean": d["clean"].get(main, {}).get("mean"),
                     "audc": o["audc"]["mean"], "audc_std": o["audc"]["std"],
                     "mean_over_levels": o["mean_over_levels"]["mean"],
                     "er": (o.get("effective_robustness") or {}).get("mean"),
                     "code": ", ".join(d["provenance"]["code_versions"])})
    none_last = float("inf")
    rows.sort(key=lambda r: (r["audc"] is None, -(r["audc"] or 0) if hib else (r["audc"] if r["audc"] is not None
                                                                           else none_last), r["model"], r["regime"]))
    for k, r in enumerate(rows, 1):
        r["rank"] = k
    return rows


def _fmt(x: Any, std: Any = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}" + (f" ± {std:.3f}" if std is not None else "")


HEAD = ["rank", "model", "regime", "seeds", "clean", "AUDC", "mean over levels", "ER", "code version"]


def _cells(r: dict[str, Any]) -> list[str]:
    return [str(r["rank"]), r["model"], r["regime"], str(r["seeds"]), _fmt(r["clean"]), _fmt(r["audc"], r["audc_std"]),
            _fmt(r["mean_over_levels"]), _fmt(r["er"]), r["code"]]


def _caption(doc: dict[str, Any]) -> str:
    p = doc["protocol"]
    arrow = "higher" if doc["higher_is_better"][doc["main_metric"]] else "lower"
    return (f"{doc['dataset']['name']} (data {doc['dataset']['data_hash']}), protocol {p['suite']} "
            f"(grid {p['id']}: {', '.join(p['families'])} over {', '.join(p['sweeps'])}), ranked by the AUDC of "
            f"{doc['main_metric']} ({arrow} is better); corruption versions "
            f"{', '.join(f'{k}={v}' for k, v in doc['provenance']['corruption_versions'].items())}")


PUBLISHED_HEAD = ["model", "dataset", "condition", "metrics (as printed)", "source", "caveats"]
PUBLISHED_TITLE = "Published numbers (as printed by the papers; not measured here, not ranked)"


def published_of(docs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The published rows the documents carry (schema 1.1 ``published``), each once, in file order."""
    seen: set[str] = set()
    out = []
    for _, d in docs:
        for r in d.get("published") or []:
            key = json.dumps(r, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out


def _published_cells(r: dict[str, Any]) -> list[str]:
    metrics = ", ".join(f"{k} {v}" for k, v in r["metrics"].items())
    source = f"{r['paper']}, {r['venue']}, arXiv {r['arxiv']}, {r['table']}"
    return [f"{r['model']} (published)", r["dataset"], r["condition"], metrics, source, "; ".join(r["caveats"])]


def _markdown(rows: list[dict[str, Any]], caption: str, pub: list[dict[str, Any]]) -> str:
    lines = ["# Leaderboard", "", caption, "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    if pub:
        lines += ["", f"## {PUBLISHED_TITLE}", "", "| " + " | ".join(PUBLISHED_HEAD) + " |",
                  "|" + "---|" * len(PUBLISHED_HEAD)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _published_cells(r)) + " |" for r in pub]
    return "\n".join(lines) + "\n"


def _latex_published(pub: list[dict[str, Any]]) -> list[str]:
    if not pub:
        return []
    lines = [r"\begin{table}[t]", r"\centering", r"\footnotesize", r"\begin{tabular}{lllp{4cm}p{4cm}p{4cm}}",
             r"\toprule", " & ".join(latex_escape(h) for h in PUBLISHED_HEAD) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in _published_cells(r)) + r" \\" for r in pub]
    return lines + [r"\bottomrule", r"\end{tabular}", f"\\caption{{{latex_escape(PUBLISHED_TITLE)}}}",
                    r"\label{tab:leaderboard_published}", r"\end{table}"]


def _latex(rows: list[dict[str, Any]], caption: str, pub: list[dict[str, Any]]) -> str:
    lines = [r"\begin{table}[t]", r"\centering", r"\footnotesize", r"\begin{tabular}{r" + "l" * 2 + "r" * 5 + "l}",
             r"\toprule", " & ".join(latex_escape(h) for h in HEAD) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in _cells(r)) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{latex_escape(caption)}}}", r"\label{tab:leaderboard}",
              r"\end{table}", *_latex_published(pub)]
    return "\n".join(lines) + "\n"


def _html_table(head: list[str], body: list[list[str]]) -> str:
    e = html.escape
    cells = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr></thead><tbody>\n{cells}\n</tbody></table>\n"


def _html(rows: list[dict[str, Any]], caption: str, pub: list[dict[str, Any]]) -> str:
    e = html.escape
    extra = (f"<h2>{e(PUBLISHED_TITLE)}</h2>\n" + _html_table(PUBLISHED_HEAD, [_published_cells(r) for r in pub])
             if pub else "")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Leaderboard</title>\n<style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ccc;padding:4px 10px;text-align:left}</style></head><body>\n"
            f"<h1>Leaderboard</h1>\n<p>{e(caption)}</p>\n" + _html_table(HEAD, [_cells(r) for r in rows]) + extra
            + "</body></html>\n")


def write_leaderboard(files: list[str | Path], out: str | Path) -> dict[str, Path]:
    """Merge ``files`` (results documents) into ``out``/leaderboard.{md,tex,html}; refuse mixed protocols."""
    if not files:
        raise LeaderboardError("leaderboard: no results files given", hint="robustmsa leaderboard results/*.json --out DIR")
    docs = [(str(f), load_results_file(f)) for f in files]
    check_comparable(docs)
    rows = _rows(docs)
    pub = published_of(docs)
    caption = _caption(docs[0][1])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "leaderboard.md", "latex": out / "leaderboard.tex", "html": out / "leaderboard.html"}
    for kind, text in (("markdown", _markdown(rows, caption, pub)), ("latex", _latex(rows, caption, pub)),
                       ("html", _html(rows, caption, pub))):
        paths[kind].write_text(text, encoding="utf-8")
    return paths
