"""Published numbers beside a report: the papers' own values, shown apart from the measured rows.

When a suite's dataset is a recognised public release (:func:`robustmsa.data.mmsa.recognise_release`:
split sizes and MMSA sample ids, or a file hash listed in the table) and the shipped table
(:mod:`robustmsa.published`) has rows for that release under the suite's name, the report gets a
``published`` table: the values exactly as printed, with paper, table, condition and caveats. It is
never merged with the measured tables, never ranked and never marked best; the results documents
carry the same rows under ``published`` (each with ``published: true``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console

from ..data.mmsa import recognise_release
from ..datasets import load_dataset
from ..errors import RobustMSAError
from ..published import PublishedRow, load_published
from .core import Context
from .tables import Cell, Column, Row, Table

__all__ = ["dataset_releases", "published_rows", "published_table"]

#: dataset loaders whose files can be a public MMSA release
RELEASE_LOADERS = ("mmsa",)


def dataset_releases(datasets: Sequence[Any], console: Console | None = None) -> dict[str, str]:
    """Display name -> release, for the suite's datasets (``DatasetSpec``) that are a public release.

    Only MMSA pickles are read (the file once more: its sizes and ids); a file not on this machine
    is skipped with a note, so the report shows no published numbers for it."""
    table = load_published()
    out = {}
    for spec in datasets:
        if spec.name not in RELEASE_LOADERS:
            continue
        try:
            release = recognise_release(load_dataset(spec.name, spec.params), table.known_hashes())
        except RobustMSAError as e:
            if console is not None:
                console.print(f"[yellow]{spec.display}: not checked for a public release ({e})[/yellow]")
            continue
        if release is not None:
            out[spec.display] = release
    return out


def published_rows(ctx: Context) -> list[PublishedRow]:
    """The published rows for the report's dataset and suite ([] when its data is no public release)."""
    return load_published().rows_for(ctx.data.releases.get(ctx.dataset), ctx.data.suite)


def _metric_columns(rows: Sequence[PublishedRow]) -> list[Column]:
    names: list[str] = []
    for r in rows:
        names += [m for m, _ in r.metrics if m not in names]
    return [Column(m, m) for m in names]


def published_table(ctx: Context, suffix: str = "", title_suffix: str = "") -> Table | None:
    """The ``published`` table of one dataset, or None when there is nothing to show."""
    rows = published_rows(ctx)
    if not rows:
        return None
    cols = [*_metric_columns(rows), Column("table", "Source table")]
    out = [Row(f"{r.model} [{k}]", {**{m: Cell(text=v) for m, v in r.metrics}, "table": Cell(text=r.table)},
               r.condition, compare=False) for k, r in enumerate(rows, 1)]
    release = ctx.data.releases[ctx.dataset]
    notes = "; ".join(f"[{k}] {r.paper}, {r.venue}, arXiv {r.arxiv}; {r.where}; caveats: {'; '.join(r.caveats)}"
                      for k, r in enumerate(rows, 1))
    caption = (f"Published numbers on {release} under this protocol ({ctx.data.suite}), exactly as printed "
               f"(percentages as in the papers): not measured here, not ranked, never compared cell by cell with the "
               f"measured tables (other features, checkpoint selection and masks; docs/protocols.md). "
               f"The data ({ctx.dataset}) was recognised as the public {release} release. Sources: {notes}.")
    return Table(f"published{suffix}", f"Published numbers (not measured here){title_suffix}", caption, cols, out,
                 ctx.data.provenance([]), row_header="Model [source]")
