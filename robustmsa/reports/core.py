"""Shared machinery of the tables: compared entities, cell recipes, lookups and significance.

An *entity* is one table row: a (dataset, model, regime, condition) with one trial per seed. A
numeric cell of a metric table is defined by a *recipe*: per seed, a tuple of :class:`Term`
(one curve of one trial: family, sweep, level indices); the seed's value is the mean over the
terms (in their sorted order) of each term's area under the curve (:func:`robustmsa.robustness.audc`,
which is the value itself for a single point); the cell shows mean ± std over seeds. The same
recipe evaluated on bootstrap replicates of the per-sample predictions gives the paired bootstrap.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from corruptions.grids import CURVE_SWEEPS, is_curve_sweep

from ..robustness import audc
from ..suite import Condition
from .load import ReportData, metric_family_of
from .stats import bootstrap_compare, holm, mean_ci, resample_counts, seed_test, weighted_metrics_many
from .tables import Cell, Row, Table

__all__ = ["Entity", "Term", "Recipe", "Context", "SigRecord", "add_significance", "is_curve_sweep",
           "sweep_rank", "condition_text", "CURVE_SWEEPS"]

def sweep_rank(sweep: str) -> tuple[int, str]:
    return (CURVE_SWEEPS.index(sweep) if sweep in CURVE_SWEEPS else len(CURVE_SWEEPS), sweep)


def condition_text(condition: str) -> str:
    """``{"family": "noise", "sweep": "audio", "level": 0.2}`` -> ``noise:audio=0.2``."""
    c = Condition.from_json(condition)
    return c.label if c else ""


@dataclass(frozen=True)
class Entity:
    dataset: str
    model: str
    model_name: str
    regime: str
    regime_kind: str
    condition: str
    trials: tuple[tuple[int, str], ...]  # (seed, trial_id), ascending seed

    @property
    def label(self) -> str:
        cond = condition_text(self.condition)
        return f"{self.model} ({self.regime}{' ' + cond if cond else ''})"

    @property
    def seeds(self) -> dict[int, str]:
        return dict(self.trials)

    @property
    def trial_ids(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.trials)


@dataclass(frozen=True)
class Term:
    trial_id: str
    family: str
    sweep: str
    indices: tuple[int, ...]
    levels: tuple[float, ...]


Recipe = dict[int, tuple[Term, ...]]


@dataclass
class SigRecord:
    """One comparison of a cell against the reference cell of its column."""

    table: str
    group: str
    column: str
    row: str
    reference: str
    diff: float  # mean over seeds of (row - reference), paired by seed
    ci_low: float
    ci_high: float
    p_ttest: float
    p_wilcoxon: float
    p_seed_holm: float = float("nan")
    boot_diff: float = float("nan")
    boot_low: float = float("nan")
    boot_high: float = float("nan")
    p_boot: float = float("nan")
    p_boot_holm: float = float("nan")
    trial_ids: tuple[str, ...] = ()


@dataclass
class Context:
    """Lookups over one dataset's rows and predictions, and the report settings."""

    data: ReportData
    dataset: str
    replicates: int = 1000
    bootstrap_seed: int = 0
    seed_test: str = "ttest"
    alpha: float = 0.05

    @cached_property
    def rows(self) -> pd.DataFrame:
        return self.data.rows[self.data.rows["dataset"] == self.dataset]

    @cached_property
    def reference_curves(self) -> dict[tuple[str, str, str, str], tuple[np.ndarray, np.ndarray]]:
        """(reference name, family, sweep, metric) -> (levels, values) of the reference predictors'
        rows of this dataset, in level-index order."""
        r = self.data.references
        if r is None:
            return {}
        r = r[r["dataset"] == self.dataset]
        out = {}
        for key, g in r.groupby(["model", "family", "sweep", "metric"], sort=False):
            g = g.sort_values("level_index", kind="mergesort")
            out[tuple(str(k) for k in key)] = (g["level"].to_numpy(float), g["value"].to_numpy(float))
        return out

    @cached_property
    def family(self) -> str:
        return metric_family_of(self.rows)

    @cached_property
    def values(self) -> dict[tuple[str, str, str, int, str], float]:
        r = self.rows
        return {k: float(v) for k, v in zip(zip(r["trial_id"], r["family"], r["sweep"], r["level_index"], r["metric"]),
                                             r["value"])}

    @cached_property
    def entities(self) -> list[Entity]:
        trials = self.data.trials
        t = trials[trials["dataset"] == self.dataset]
        out = []
        for key, g in t.groupby(["model", "model_name", "regime", "regime_kind", "condition"], sort=True):
            model, model_name, regime, kind, cond = key
            pairs = tuple(sorted((int(s), str(tid)) for s, tid in zip(g["seed"], g["trial_id"])))
            out.append(Entity(self.dataset, model, model_name, regime, kind, cond, pairs))
        return sorted(out, key=lambda e: (*self.data.order_key(e.model, e.regime), e.condition))

    @cached_property
    def curves(self) -> dict[str, dict[tuple[str, str], tuple[tuple[int, ...], tuple[float, ...]]]]:
        """trial -> (family, sweep) -> (level indices, levels) of every curve sweep."""
        out: dict[str, dict] = {}
        r = self.rows.drop_duplicates(["trial_id", "family", "sweep", "level_index"])
        r = r[(r["family"] != "clean") & r["sweep"].map(is_curve_sweep)]
        for (tid, fam, sw), g in r.groupby(["trial_id", "family", "sweep"], sort=True):
            g = g.sort_values("level_index", kind="mergesort")
            out.setdefault(tid, {})[(fam, sw)] = (tuple(int(i) for i in g["level_index"]),
                                                  tuple(float(x) for x in g["level"]))
        return out

    @cached_property
    def clean_points(self) -> dict[str, Term]:
        """trial -> its clean point (every rho 1): the 'clean' family first, else the first sweep."""
        out: dict[str, Term] = {}
        r = self.rows.drop_duplicates(["trial_id", "family", "sweep", "level_index"])
        r = r[(r["rho_text"] == 1.0) & (r["rho_audio"] == 1.0) & (r["rho_vision"] == 1.0)]
        r = r.assign(_c=(r["family"] != "clean").astype(int)).sort_values(
            ["trial_id", "_c", "family", "sweep", "level_index"], kind="mergesort")
        for tid, f, s, i, lv in zip(r["trial_id"], r["family"], r["sweep"], r["level_index"], r["level"]):
            out.setdefault(tid, Term(tid, f, s, (int(i),), (float(lv),)))
        return out

    @cached_property
    def families(self) -> list[str]:
        return sorted({f for c in self.curves.values() for f, _ in c})

    @cached_property
    def sweeps(self) -> list[str]:
        return sorted({s for c in self.curves.values() for _, s in c}, key=sweep_rank)

    # ------------------------------------------------------------------ recipes
    def term(self, trial_id: str, family: str, sweep: str) -> Term | None:
        c = self.curves.get(trial_id, {}).get((family, sweep))
        return Term(trial_id, family, sweep, *c) if c else None

    def recipe(self, entity: Entity, families: Sequence[str] | None, sweeps: Sequence[str] | None) -> Recipe:
        """``families``/``sweeps`` None: the clean point; else the curves of those families and sweeps."""
        out: Recipe = {}
        for seed, tid in entity.trials:
            if families is None:
                term = self.clean_points.get(tid)
                out[seed] = (term,) if term else ()
            else:
                terms = [self.term(tid, f, s) for s in sweeps or () for f in sorted(families)]
                out[seed] = tuple(t for t in terms if t is not None) if all(terms) else ()
        return out

    def point_recipe(self, entity: Entity, family: str, sweep: str, level: float) -> Recipe:
        """The single grid point (family, sweep, level) of each trial of ``entity``."""
        out: Recipe = {}
        for seed, tid in entity.trials:
            c = self.curves.get(tid, {}).get((family, sweep))
            if c is None:
                continue
            hit = [i for i, lv in zip(*c) if math.isclose(lv, level, rel_tol=0, abs_tol=1e-9)]
            if hit:
                out[seed] = (Term(tid, family, sweep, (hit[0],), (float(level),)),)
        return out

    def seed_values(self, recipe: Recipe, metric: str) -> dict[int, float]:
        """Per seed: mean over the terms of the AUDC of ``metric`` (a term's value if it has one point)."""
        out = {}
        for seed, terms in sorted(recipe.items()):
            if not terms:
                out[seed] = float("nan")
                continue
            areas = []
            for t in terms:
                vals = [self.values.get((t.trial_id, t.family, t.sweep, i, metric), float("nan")) for i in t.indices]
                areas.append(audc(t.levels, vals))
            out[seed] = float(np.mean(areas))
        return out

    def cell(self, recipe: Recipe, metric: str) -> Cell:
        return Cell.of(self.seed_values(recipe, metric)) if recipe else Cell(text="")

    # ------------------------------------------------------------------ bootstrap
    @cached_property
    def _predictions(self) -> dict[tuple[str, str, str, int], tuple[np.ndarray, np.ndarray]] | None:
        p = self.data.predictions
        if p is None:
            return None
        tids = {t for e in self.entities for _, t in e.trials}
        p = p[p["trial_id"].isin(tids)]
        if p.empty:
            return None
        out = {}
        ref_ids: np.ndarray | None = None
        order: dict[str, int] = {}
        for key, g in p.groupby(["trial_id", "family", "sweep", "level_index"], sort=True):
            ids = g["sample_id"].to_numpy()
            if ref_ids is None:
                ref_ids = ids
                order = {s: i for i, s in enumerate(ids)}
            pred, label = g["pred"].to_numpy(np.float64), g["label"].to_numpy(np.float64)
            if not np.array_equal(ids, ref_ids):
                if set(ids) != set(order) or len(ids) != len(ref_ids):
                    return None  # different samples: no paired bootstrap
                perm = np.argsort([order[s] for s in ids], kind="stable")
                pred, label = pred[perm], label[perm]
            out[(str(key[0]), str(key[1]), str(key[2]), int(key[3]))] = (pred, label)
        return out

    @property
    def has_bootstrap(self) -> bool:
        return self.replicates > 0 and self._predictions is not None

    @cached_property
    def _weights(self) -> np.ndarray:
        n = len(next(iter(self._predictions.values()))[0])  # type: ignore[union-attr]
        return resample_counts(n, self.replicates, self.bootstrap_seed)

    @cached_property
    def _replicates(self) -> dict[tuple[str, str, str, int], dict[str, np.ndarray]]:
        """Every metric of every predicted point on every bootstrap replicate, computed at once."""
        preds = self._predictions or {}
        keys = list(preds)
        return dict(zip(keys, weighted_metrics_many([preds[k] for k in keys], self.family, self._weights)))

    def _point_replicates(self, trial: str, family: str, sweep: str, index: int) -> dict[str, np.ndarray] | None:
        return self._replicates.get((trial, family, sweep, index))

    def replicate_values(self, recipe: Recipe, metric: str) -> np.ndarray | None:
        """The recipe's statistic (mean over seeds) on every bootstrap replicate, or None."""
        per_seed = []
        for _, terms in sorted(recipe.items()):
            if not terms:
                return None
            areas = []
            for t in terms:
                coef = _audc_weights(t.levels)
                acc = np.zeros(self.replicates)
                for c, i in zip(coef, t.indices):
                    m = self._point_replicates(t.trial_id, t.family, t.sweep, i)
                    if m is None:
                        return None
                    acc = acc + c * m[metric]
                areas.append(acc)
            per_seed.append(np.mean(areas, axis=0))
        return np.mean(per_seed, axis=0) if per_seed else None


@functools.lru_cache(maxsize=256)
def _audc_weights(levels: tuple[float, ...]) -> list[float]:
    """The weight of each point's value in the AUDC over ``levels`` (the AUDC of each unit vector)."""
    return [audc(levels, np.eye(len(levels))[j]) for j in range(len(levels))]


def add_significance(table: Table, ctx: Context, recipes: dict[tuple[str, str], tuple[Recipe, str]] | None = None,
                     reference: Callable[[str, list[Row]], Row | None] | None = None) -> list[SigRecord]:
    """Test every compared cell against the reference cell of its column (per row group): the best
    mean by the column's direction unless ``reference`` names a row. Seed test (t-test or Wilcoxon,
    as configured) and, where ``recipes[(row group, row label, column key)]`` (or, for labels unique in
    the table, ``recipes[(row label, column key)]``) ``= (recipe, metric)`` and per-sample
    predictions exist, a paired bootstrap. Holm correction per column and group; a significant
    seed test marks the cell with ``†``, a significant bootstrap with ``‡``."""
    records: list[SigRecord] = []
    for g in table.groups():
        rows = [r for r in table.rows if r.group == g and r.compare]
        for col in table.columns:
            if not col.direction:
                continue
            cands = [r for r in rows if col.key in r.cells and r.cells[col.key].numeric
                     and math.isfinite(r.cells[col.key].mean)]
            if len(cands) < 2:
                continue
            ref = reference(g, cands) if reference else None
            if ref is None or ref not in cands:
                sign = 1.0 if col.direction == "up" else -1.0
                ref = max(cands, key=lambda r: (sign * r.cells[col.key].mean, -cands.index(r)))
            recs = []
            for r in cands:
                if r is ref:
                    continue
                a, b = r.cells[col.key].seeds, ref.cells[col.key].seeds
                common = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
                d = [a[s] - b[s] for s in common]
                lo, hi = mean_ci(d)
                rec = SigRecord(table.name, g, col.key, r.label, ref.label,
                                float(np.mean(d)) if d else float("nan"), lo, hi,
                                seed_test(a, b, "ttest"), seed_test(a, b, "wilcoxon"),
                                trial_ids=tuple(sorted(set(r.trial_ids) | set(ref.trial_ids))))
                ka = recipes.get((g, r.label, col.key), recipes.get((r.label, col.key))) if recipes else None
                kb = recipes.get((g, ref.label, col.key), recipes.get((ref.label, col.key))) if recipes else None
                if ka is not None and kb is not None and ctx.has_bootstrap:
                    (ra, metric), (rb, _) = ka, kb
                    xa, xb = ctx.replicate_values(ra, metric), ctx.replicate_values(rb, metric)
                    if xa is not None and xb is not None:
                        bc = bootstrap_compare(xa, xb)
                        rec.boot_diff = float(np.mean(xa - xb))
                        rec.boot_low, rec.boot_high, rec.p_boot = bc["ci_low"], bc["ci_high"], bc["p"]
                recs.append((r, rec))
            ps = holm([rec.p_ttest if ctx.seed_test == "ttest" else rec.p_wilcoxon for _, rec in recs])
            pb = holm([rec.p_boot for _, rec in recs])
            for (r, rec), p1, p2 in zip(recs, ps, pb):
                rec.p_seed_holm, rec.p_boot_holm = p1, p2
                cell = r.cells[col.key]
                cell.marks = ("†" if p1 < ctx.alpha else "") + ("‡" if p2 < ctx.alpha else "")
                records.append(rec)
    return records

