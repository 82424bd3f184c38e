"""The registries of report tables and figures: each declared once, with the files it owns.

A table is a builder ``build(report) -> Built`` registered under a name with the globs of the files
it writes (``owns``, e.g. ``"main*"`` for ``main.*`` and ``main_<family>.*``) and its place in the
report (``order``: ``results.md`` and ``report.tex`` list the tables in that order). A figure is
the same with ``draw(report) -> paths``. :func:`write_report_data` runs every table, then every
figure, of each dataset; the files an earlier report left behind are removed when a registered
glob owns them (:func:`owned_files`). Registration uses the project's one mechanism
(:class:`corruptions.registry.Registry`): a name or an order taken twice is an error, an unknown
name lists the close matches.

Declarations of the built-in tables and figures: :mod:`robustmsa.reports.catalogue`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from corruptions.registry import DuplicateNameError, Registry

from .build import Settings, Variant, file_part, quality_pairs
from .core import Context, SigRecord
from .figures import Drawn, Styles
from .tables import Table

__all__ = ["Built", "DatasetReport", "TableSpec", "FigureSpec", "TABLES", "FIGURES", "register_table",
           "register_figure", "ordered", "build_tables", "draw_figures", "owned_files"]


@dataclass(frozen=True)
class Built:
    """What a table builder returns: its tables (none when its data is absent) and the significance
    records behind their markers, in order."""

    tables: tuple[Table, ...] = ()
    records: tuple[SigRecord, ...] = ()

    @classmethod
    def of(cls, *parts: tuple[Table, Sequence[SigRecord]] | Table | None) -> Built:
        """From ``(table, records)`` pairs, bare tables and Nones (skipped), in order."""
        tables: list[Table] = []
        records: list[SigRecord] = []
        for p in parts:
            if isinstance(p, tuple):
                tables.append(p[0])
                records += p[1]
            elif p is not None:
                tables.append(p)
        return cls(tuple(tables), tuple(records))


@dataclass
class DatasetReport:
    """What the tables and figures of one dataset are made from, and what was built so far:
    ``tables`` by registered name and every significance record, in the registry's order."""

    ctx: Context
    settings: Settings
    variants: Sequence[Variant] | None
    multi: bool  # several datasets: every file name and title carries the dataset
    styles: Styles
    out: Path
    write: Callable[[Path, bytes], None]
    tables: dict[str, tuple[Table, ...]] = field(default_factory=dict)
    records: list[SigRecord] = field(default_factory=list)

    @property
    def suffix(self) -> str:
        """File-name suffix: ``_<dataset>`` with several datasets, else empty."""
        return f"_{file_part(self.ctx.dataset)}" if self.multi else ""

    @property
    def title_suffix(self) -> str:
        """Title suffix: `` (<dataset>)`` with several datasets, else empty."""
        return f" ({self.ctx.dataset})" if self.multi else ""

    @cached_property
    def quality_pairs(self) -> dict[tuple[str, int, str, str], tuple[np.ndarray, np.ndarray]]:
        """(true rho, predicted quality) per model, seed, family and modality; shared by the quality
        table and figure."""
        return quality_pairs(self.ctx)


TableBuilder = Callable[[DatasetReport], Built]
FigureDrawer = Callable[[DatasetReport], list[Drawn]]


@dataclass(frozen=True)
class TableSpec:
    """A declared table: ``build`` makes it, the files matched by the globs ``owns`` are its."""

    name: str
    build: TableBuilder
    owns: tuple[str, ...]
    order: int


@dataclass(frozen=True)
class FigureSpec:
    """A declared figure: ``draw`` writes it, the files matched by the globs ``owns`` are its."""

    name: str
    draw: FigureDrawer
    owns: tuple[str, ...]
    order: int


TABLES: Registry[TableSpec] = Registry("report table")
FIGURES: Registry[FigureSpec] = Registry("report figure")

S = TypeVar("S", TableSpec, FigureSpec)


def _add(registry: Registry[S], spec: S) -> None:
    if spec.name not in registry:  # a taken name: the registry's own error
        clash = next((n for n in registry.names() if registry.get(n).order == spec.order), None)
        if clash is not None:
            raise DuplicateNameError(f"{registry.kind} {spec.name!r}: order {spec.order} is already taken by "
                                     f"{clash!r}")
    registry.register(spec.name, spec)


def register_table(name: str, *, owns: Sequence[str], order: int) -> Callable[[TableBuilder], TableBuilder]:
    """Decorator: ``build`` makes table(s) ``name``, writing the files matched by the globs ``owns``."""
    def deco(build: TableBuilder) -> TableBuilder:
        _add(TABLES, TableSpec(name, build, tuple(owns), order))
        return build

    return deco


def register_figure(name: str, *, owns: Sequence[str], order: int) -> Callable[[FigureDrawer], FigureDrawer]:
    """Decorator: ``draw`` writes figure(s) ``name``, the files matched by the globs ``owns``."""
    def deco(draw: FigureDrawer) -> FigureDrawer:
        _add(FIGURES, FigureSpec(name, draw, tuple(owns), order))
        return draw

    return deco


def ordered(registry: Registry[Any]) -> list[Any]:
    """The declarations of ``registry`` in report order."""
    return sorted((registry.get(n) for n in registry.names()), key=lambda spec: spec.order)


def build_tables(report: DatasetReport) -> list[Table]:
    """Every registered table of one dataset, in order (builders see the tables and records before them)."""
    for spec in ordered(TABLES):
        built = spec.build(report)
        report.tables[spec.name] = built.tables
        report.records += built.records
    return [t for spec in ordered(TABLES) for t in report.tables[spec.name]]


def draw_figures(report: DatasetReport) -> list[Drawn]:
    """Every registered figure of one dataset, in order, with its caption and the files written."""
    return [d for spec in ordered(FIGURES) for d in spec.draw(report)]


def owned_files() -> list[str]:
    """The globs of every file a registered table or figure writes."""
    return [pat for registry in (TABLES, FIGURES) for spec in ordered(registry) for pat in spec.owns]
