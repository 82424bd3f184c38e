"""Every table and figure of a report, each declared once: name, the files it owns, its place.

The builders live in :mod:`.build`, :mod:`.references` and :mod:`.figures`; a declaration here
only adapts one to the :class:`~robustmsa.reports.registry.DatasetReport` it is given. A new table
is one more declaration (see docs/reports.md).
"""
from __future__ import annotations

from .build import (
    ablation_table,
    compared,
    cost_table,
    main_table,
    quality_table,
    robustness_tables,
    significance_table,
    specialist_table,
)
from .figures import Drawn, curve_figures, expert_figures, heatmap_figures, quality_figures
from .mce_reference import fixed_reference
from .published import published_table
from .references import fallback_table, oracle_gap_table
from .registry import Built, DatasetReport, register_figure, register_table
from .results_json import dumps, results_documents

__all__: list[str] = []  # declarations only: see TABLES and FIGURES in .registry

# ---------------------------------------------------------------------------- tables


@register_table("main", owns=("main*",), order=10)
def _main(r: DatasetReport) -> Built:
    """``main``, and ``main_<family>`` for each family when there are several."""
    families = r.ctx.families if len(r.ctx.families) > 1 else []
    return Built.of(*(main_table(r.ctx, r.settings, family=f, multi=r.multi) for f in [None, *families]))


@register_table("robustness", owns=("robustness*",), order=20)
def _robustness(r: DatasetReport) -> Built:
    """``robustness`` and ``robustness_by_sweep``; mCE against the stored reference that matches the data,
    grid and corruption versions (``report.mce_reference: fixed``), else against the in-suite one."""
    s = r.settings
    fixed, why = fixed_reference(r.ctx, s.mce_references) if s.mce_reference == "fixed" else (None, "")
    overall, by_sweep, records = robustness_tables(r.ctx, s, r.multi, fixed, why)
    return Built((overall, by_sweep), tuple(records))


@register_table("ablations", owns=("ablations*",), order=30)
def _ablations(r: DatasetReport) -> Built:
    return Built.of(ablation_table(r.ctx, r.settings, r.variants, r.multi))


@register_table("specialists", owns=("specialists*",), order=40)
def _specialists(r: DatasetReport) -> Built:
    return Built.of(specialist_table(r.ctx, r.settings, r.multi))


@register_table("oracle_gap", owns=("oracle_gap*",), order=50)
def _oracle_gap(r: DatasetReport) -> Built:
    s = r.settings
    return Built.of(oracle_gap_table(r.ctx, s.main_metric, compared(r.ctx), s.digits, r.suffix, r.title_suffix))


@register_table("fallback", owns=("fallback*",), order=60)
def _fallback(r: DatasetReport) -> Built:
    s = r.settings
    return Built.of(fallback_table(r.ctx, s.main_metric, compared(r.ctx), s.digits, r.suffix, r.title_suffix))


@register_table("training_cost", owns=("training_cost*",), order=70)
def _training_cost(r: DatasetReport) -> Built:
    return Built.of(cost_table(r.ctx, r.settings, r.multi))


@register_table("quality", owns=("quality*",), order=80)
def _quality(r: DatasetReport) -> Built:
    return Built.of(quality_table(r.ctx, r.settings, r.multi, pairs=r.quality_pairs))


@register_table("significance", owns=("significance*",), order=90)
def _significance(r: DatasetReport) -> Built:
    """The comparisons behind the markers of ``main`` for the main metric (its first column when the
    main metric is not a column of it)."""
    main = r.tables["main"][0]
    keys = {c.key for c in main.columns}
    metric = r.settings.main_metric if r.settings.main_metric in keys else main.columns[0].key
    return Built.of(significance_table(r.records, r.ctx, r.settings, main.name, [metric], r.multi))


@register_table("published", owns=("published*",), order=95)
def _published(r: DatasetReport) -> Built:
    """The papers' own numbers when the data is a recognised public release (never ranked)."""
    return Built.of(published_table(r.ctx, r.suffix, r.title_suffix))


@register_table("results_json", owns=("results/*.json",), order=100)
def _results_json(r: DatasetReport) -> Built:
    """``results/<model>__<regime>__<dataset>.json``: one model's results in the versioned schema of
    docs/results_schema.md (files only, no table)."""
    docs = results_documents(r.ctx, r.settings.main_metric, r.settings.effective_reference)
    if docs:
        (r.out / "results").mkdir(exist_ok=True)
    for name, doc in docs.items():
        r.write(r.out / name, dumps(doc).encode("utf-8"))
    return Built()


# ---------------------------------------------------------------------------- figures


@register_figure("curves", owns=("curves_*",), order=10)
def _curves(r: DatasetReport) -> list[Drawn]:
    return curve_figures(r.ctx, r.settings.main_metric, r.styles, r.out, r.write, r.suffix)


@register_figure("heatmaps", owns=("heatmap_*",), order=20)
def _heatmaps(r: DatasetReport) -> list[Drawn]:
    return heatmap_figures(r.ctx, r.settings.main_metric, r.out, r.write, r.suffix)


@register_figure("quality", owns=("quality_*",), order=30)
def _quality_figures(r: DatasetReport) -> list[Drawn]:
    return quality_figures(r.ctx, r.styles, r.out, r.write, r.suffix, pairs=r.quality_pairs)


@register_figure("experts", owns=("experts_*",), order=40)
def _experts(r: DatasetReport) -> list[Drawn]:
    return expert_figures(r.ctx, r.out, r.write, r.suffix)
