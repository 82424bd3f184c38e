"""The tables of a report, each built from a :class:`~robustmsa.reports.core.Context`.

- ``main``: models x conditions (clean, each single-modality sweep, the joint sweep), standard
  metrics; ``main_<family>``: the same for one corruption family;
- ``robustness`` / ``robustness_by_sweep``: AUDC, drop, worst case, effective robustness,
  relative robustness and mean corruption error of the main metric;
- ``ablations``: variants of one base model against the unablated one;
- ``specialists``: one checkpoint (spectrum regime) against specialists at their conditions;
- ``training_cost``: training and evaluation seconds per protocol;
- ``quality``: rank and linear correlation of the predicted quality with the true reliability;
- ``significance``: every comparison behind the markers of ``main`` for the main metric.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ..metrics import METRIC_INFO, metric_keys
from ..robustness import corruption_error, effective_robustness, relative_robustness, summarise_curve
from ..suite import Condition
from .core import Context, Entity, SigRecord, add_significance, condition_text
from .references import FLOOR_NOTE, reference_rows
from .tables import Cell, Column, Provenance, Row, Table, fmt_number, mark_extremes

__all__ = ["Settings", "Variant", "main_table", "robustness_tables", "ablation_table", "specialist_table",
           "cost_table", "quality_table", "significance_table", "metric_columns", "DEFAULT_METRICS"]

DEFAULT_METRICS = {"mosi": ["mae", "corr", "acc7", "has0_acc2", "non0_acc2", "has0_f1", "non0_f1"],
                   "sims": ["mae", "corr", "acc2", "acc3", "acc5", "f1"],
                   "classification": ["weighted_f1", "accuracy", "macro_f1"]}
#: the main metric of a dataset whose family lacks the suite's (e.g. MAE on a classification dataset):
#: tables and curves of classification datasets use weighted F1
FAMILY_MAIN_METRIC = {"mosi": "mae", "sims": "mae", "classification": "weighted_f1"}
"""The columns papers print (MOSI: no Acc-5/Acc-3, which the suite's ``metrics`` can add); Acc-2 and
F1 variants side by side."""
MODALITIES = ("text", "audio", "vision")


@dataclass(frozen=True)
class Settings:
    main_metric: str = "mae"
    metrics: tuple[str, ...] | None = None
    reference_model: str | None = None
    effective_reference: str = "late_fusion"
    digits: int = 3
    alpha: float = 0.05
    seed_test: str = "ttest"
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    provenance_in_caption: bool = True
    mce_reference: str = "fixed"  # "fixed": the stored reference when it matches, else the in-suite one; "suite"
    mce_references: str | None = None  # folder of stored references (None: the ones shipped with robustmsa)


@dataclass(frozen=True)
class Variant:
    """A model entry of the suite: its label, registry name and config overrides."""

    label: str
    model_name: str
    overrides: str = ""  # JSON, "" = none


def settings_for_family(s: Settings, family: str) -> Settings:
    """``s`` with the family's main metric when the suite's is not one of the family's metrics."""
    if s.main_metric in metric_keys(family):
        return s
    return dataclasses.replace(s, main_metric=FAMILY_MAIN_METRIC[family])


def _dir(metric: str) -> str:
    return "up" if METRIC_INFO[metric].higher_is_better else "down"


def _arrow(metric: str) -> str:
    return "↑" if METRIC_INFO[metric].higher_is_better else "↓"


def metric_columns(metrics: Sequence[str]) -> list[Column]:
    """Metric columns; Acc-2 and F1 variants grouped under their metric and named Has0/Non0."""
    out = []
    for k in metrics:
        if k.startswith(("has0_", "non0_")):
            variant, base = k.split("_", 1)
            out.append(Column(k, variant.capitalize(), _dir(k), group="Acc-2" if base == "acc2" else "F1"))
        else:
            out.append(Column(k, METRIC_INFO[k].label, _dir(k)))
    return out


def _metrics(ctx: Context, s: Settings) -> list[str]:
    allowed = metric_keys(ctx.family)
    chosen = [k for k in (s.metrics or DEFAULT_METRICS[ctx.family]) if k in allowed]
    group = {k: (k.split("_", 1)[1] if k.startswith(("has0_", "non0_")) else k) for k in chosen}
    first = {g: i for i, g in reversed(list(enumerate(group[k] for k in chosen)))}
    return sorted(chosen, key=lambda k: first[group[k]])  # grouped variants side by side


def _seeds_text(entities: Sequence[Entity]) -> str:
    seeds = sorted({s for e in entities for s, _ in e.trials})
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"


def _marks_text(ctx: Context, bootstrap: bool, what: str = "the best of its column") -> str:
    test = "paired t-test" if ctx.seed_test == "ttest" else "Wilcoxon signed-rank test"
    boot = bootstrap and ctx.has_bootstrap
    text = f"{'†/‡' if boot else '†'}: significantly different from {what} (p < {ctx.alpha:g}, Holm-corrected over " \
           f"the comparisons in the column) by a {test} over seeds"
    if boot:
        text += (f" / by a paired bootstrap over test samples from the stored predictions "
                 f"(B = {ctx.replicates}, seed {ctx.bootstrap_seed})")
    return text + "."


def _prov(ctx: Context, rows: Sequence[Row]) -> Provenance:
    return ctx.data.provenance({t for r in rows for t in r.trial_ids})


def file_part(name: str) -> str:
    """``name`` usable in a file name (a dataset like ``MOSI/aligned_50``): runs of other characters
    than letters, digits, ``.``, ``_`` and ``-`` become ``-``."""
    return re.sub(r"[^\w.-]+", "-", name)


def _suffix(ctx: Context, multi: bool) -> tuple[str, str]:
    return (f"_{file_part(ctx.dataset)}", f" ({ctx.dataset})") if multi else ("", "")


ACC_NOTE = ("Acc-2 and F1: Has0 = negative vs non-negative over all samples, Non0 = negative vs positive "
            "with samples labelled 0 dropped (weighted F1).")
CLASS_NOTE = ("Weighted F1: the per-class F1 averaged with the class supports as weights; Macro F1: their "
              "unweighted mean; Accuracy: the share of samples whose class is right.")


def _acc_note(ctx: Context) -> str:
    """The caption's note on the metric columns of the dataset's metric family."""
    return CLASS_NOTE if ctx.family == "classification" else ACC_NOTE


# ---------------------------------------------------------------------------- main results


def compared(ctx: Context) -> list[Entity]:
    return [e for e in ctx.entities if e.regime_kind != "specialist"]


def main_table(ctx: Context, s: Settings, family: str | None = None, multi: bool = False,
               ) -> tuple[Table, list[SigRecord]]:
    """Models x conditions: clean, then the AUDC of each sweep averaged over families (or ``family``)."""
    ents = compared(ctx)
    metrics = _metrics(ctx, s)
    fams = [family] if family else ctx.families
    groups: list[tuple[str, list[str] | None, list[str] | None]] = [("clean", None, None)]
    for sw in ctx.sweeps:  # each sweep averages the families that have it (a raw audio family: audio only)
        have = [f for f in fams if any((f, sw) in ctx.curves.get(t, {}) for e in ents for _, t in e.trials)]
        if have:
            groups.append((f"{sw} sweep" if sw != "joint" else "joint sweep", have, [sw]))
    rows, recipes = [], {}
    refs = reference_rows(ctx, metrics, groups)
    for gname, gf, gs in groups:
        for e in ents:
            rec = ctx.recipe(e, gf, gs)
            cells = {m: ctx.cell(rec, m) for m in metrics}
            rows.append(Row(e.label, cells, gname, e.trial_ids))
            recipes.update({(gname, e.label, m): (rec, m) for m in metrics})  # per group: one row per group
        rows += [r for r in refs if r.group == gname]  # the references after each group's models
    floor = ""
    if ctx.data.ceiling and "mae" in ctx.data.ceiling:
        floor = " " + FLOOR_NOTE.format(mae=fmt_number(float(ctx.data.ceiling["mae"]), s.digits))
    ref_text = (" Reference rows (in italics, not ranked, never marked best): oracle (observable), the best prediction from what each "
                "corrupted input still contains; linear probe, ridge on mean-pooled features." if refs else "")
    suffix, tsuffix = _suffix(ctx, multi)
    name = f"main_{family}{suffix}" if family else f"main{suffix}"
    fam_text = f"the {family} family" if family else f"the corruption families ({', '.join(fams)})"
    caption = (f"Clean test metrics and, for each corruption sweep, the normalised area under its degradation "
               f"curve (AUDC: the mean metric over reliability ρ from 1 to 0) for {fam_text}, averaged over the families "
               f"that apply to the sweep; a sweep degrades one modality (the others clean) or all three (joint). Mean ± std over {_seeds_text(ents)}. ↑/↓: higher/"
               f"lower is better. {_acc_note(ctx)} Best per column and condition in bold, second underlined. "
               f"{_marks_text(ctx, True, 'the best of its column and condition')} n/a: undefined (e.g. Corr of "
               f"constant predictions).{ref_text}{floor}")
    title = f"Main results{' — ' + family if family else ''}{tsuffix}"
    t = Table(name, title, caption, metric_columns(metrics), rows, _prov(ctx, rows), digits=s.digits)
    records = add_significance(t, ctx, recipes)
    mark_extremes(t)
    return t, records


# ---------------------------------------------------------------------------- robustness


def _error(values: Sequence[float], metric: str) -> list[float]:
    hib = METRIC_INFO[metric].higher_is_better
    return [1.0 - v if hib else v for v in values]


def _find(ents: Sequence[Entity], label: str, like: Entity) -> Entity | None:
    for e in ents:
        if e.model == label and e.regime == like.regime and e.condition == like.condition:
            return e
    return None


def _ce_errors(fixed: Any, ref_curve: tuple | None, c: tuple, f: str, sw: str, m: str) -> tuple | None:
    """(model errors, reference errors) over the non-clean levels of one curve, or None without a
    reference on the same levels; the reference is the fixed one when given, else ``ref_curve``."""
    keep = [i for i, lv in enumerate(c[0]) if lv != 1.0]
    ref = fixed.values(f, sw, c[0], m) if fixed is not None else (
        ref_curve[1] if ref_curve and ref_curve[0] == c[0] else None)
    if ref is None:
        return None
    return _error([c[1][i] for i in keep], m), _error([ref[i] for i in keep], m)


def _curve_stats(ctx: Context, s: Settings, ents: list[Entity], sweeps: Sequence[str], fixed: Any = None) -> dict:
    """entity label -> seed -> name -> value, aggregated over the curves of ``sweeps``; mCE against
    ``fixed`` (a stored reference) when given, else against ``s.reference_model``."""
    m = s.main_metric
    hib = METRIC_INFO[m].higher_is_better
    curves = [(f, sw) for sw in sweeps for f in ctx.families]

    def curve(tid: str, f: str, sw: str) -> tuple[tuple[float, ...], list[float]] | None:
        c = ctx.curves.get(tid, {}).get((f, sw))
        if c is None:
            return None
        return c[1], [ctx.values.get((tid, f, sw, i, m), math.nan) for i in c[0]]

    audcs: dict[tuple[int, str, str], dict[str, float]] = {}
    out: dict[str, dict[int, dict[str, float]]] = {}
    for e in ents:
        ref_er = _find(ents, s.effective_reference, e)
        ref_ce = _find(ents, s.reference_model, e) if s.reference_model else None
        for seed, tid in e.trials:
            summ, ers, errs, ref_errs = [], [], {}, {}
            for f, sw in curves:
                c = curve(tid, f, sw)
                if c is None:
                    continue
                summ.append(summarise_curve(c[0], c[1], hib))
                audcs.setdefault((seed, f, sw), {})[e.label] = summ[-1]["audc"]
                rt = ref_er.seeds.get(seed) if ref_er else None
                rc = curve(rt, f, sw) if rt else None
                ers.append(effective_robustness(c[0], c[1], rc[1], hib) if rc and rc[0] == c[0] else math.nan)
                ct = ref_ce.seeds.get(seed) if ref_ce else None
                pair = _ce_errors(fixed, curve(ct, f, sw) if ct else None, c, f, sw, m)
                if pair:
                    errs[f"{f}/{sw}"], ref_errs[f"{f}/{sw}"] = pair
            if not summ:
                continue
            worst = [x["worst"] for x in summ]
            out.setdefault(e.label, {})[seed] = {
                "clean": summ[0]["clean"], "audc": float(np.mean([x["audc"] for x in summ])),
                "drop": float(np.mean([x["drop"] for x in summ])),
                "worst": float(np.min(worst) if hib else np.max(worst)),
                "er": float(np.mean(ers)) if ref_er else math.nan,
                "mce": _mce(errs, ref_errs) if ref_ce or fixed is not None else math.nan,
            }
    rr: dict[tuple[str, int], list[float]] = {}
    for (seed, _, _), by_label in sorted(audcs.items()):
        for label, v in relative_robustness(by_label, hib).items():
            rr.setdefault((label, seed), []).append(v)
    for label, by_seed in out.items():
        for seed, d in by_seed.items():
            d["rr"] = float(np.mean(rr[(label, seed)])) if len(ents) > 1 else math.nan
    return out


def _mce(errs: dict[str, list[float]], ref: dict[str, list[float]]) -> float:
    if not errs or any(not np.all(np.isfinite(v)) or not v for v in [*errs.values(), *ref.values()]):
        return math.nan
    return corruption_error(errs, ref)["mce"]


def _robustness_columns(s: Settings, has_er: bool, has_ce: bool) -> list[Column]:
    m = s.main_metric
    label = METRIC_INFO[m].label
    cols = [Column("clean", "Clean", _dir(m), group=label), Column("audc", "AUDC", _dir(m), group=label),
            Column("drop", "Drop", "down", group=label), Column("worst", "Worst", _dir(m), group=label)]
    if has_er:
        cols.append(Column("er", "ER", "up"))
    cols.append(Column("rr", "RR", "up"))
    if has_ce:
        cols.append(Column("mce", "mCE", "down"))
    return cols


def _ce_text(s: Settings, has_ce: bool, fixed: Any, why: str) -> str:
    """The mCE sentence of the robustness captions: which reference, or why there is none."""
    m = s.main_metric
    how = (f"the sum of the errors over the non-clean levels divided by the reference's (ImageNet-C), error = "
           f"{'1 − ' if METRIC_INFO[m].higher_is_better else ''}{METRIC_INFO[m].label}; < 1 is better than the "
           f"reference. ")
    if fixed is not None:
        return f"mCE: mean over curves of the corruption error against the fixed reference {fixed.describe()}, {how}"
    fell = (f"Fixed mCE reference not used: {why}. " if s.mce_reference == "fixed" and why else "")
    if has_ce:
        return (f"{fell}mCE: mean over curves of the corruption error against {s.reference_model} (same regime and "
                f"seed, in-suite reference), {how}")
    if s.reference_model:
        return f"{fell}mCE omitted: the reference model {s.reference_model} (report.reference_model) is not in the report. "
    return f"{fell}mCE omitted: no reference model named in the suite (report.reference_model). "


def robustness_tables(ctx: Context, s: Settings, multi: bool = False, fixed: Any = None,
                      fixed_why: str = "") -> tuple[Table, Table, list[SigRecord]]:
    """``robustness`` and ``robustness_by_sweep``; mCE against ``fixed`` (a matching stored reference,
    :mod:`.mce_reference`) when given, else the in-suite ``report.reference_model`` (``fixed_why``:
    why no stored reference was used)."""
    ents = compared(ctx)
    m = s.main_metric
    has_er = any(e.model == s.effective_reference for e in ents)
    has_ce = fixed is not None or (bool(s.reference_model) and any(e.model == s.reference_model for e in ents))
    cols = _robustness_columns(s, has_er, has_ce)
    er_text = (f"ER: effective robustness against {s.effective_reference} trained in the same regime with the same "
               f"seed: the sum over levels of the model's change from clean minus the reference's (MultiBench), oriented "
               f"so that > 0 means it degrades less; mean over curves. "
               if has_er else f"ER omitted: the late-fusion reference {s.effective_reference} "
               f"(report.effective_reference) is not in the report. ")
    ce_text = _ce_text(s, has_ce, fixed, fixed_why)
    base = (f"Robustness of {METRIC_INFO[m].label} ({_arrow(m)}) over the degradation curves of every corruption family "
            f"({', '.join(ctx.families)}). Clean: on clean inputs. AUDC: normalised area under the curve, mean over "
            f"curves. Drop: AUDC minus clean, oriented so that > 0 means degradation. Worst: the worst value on any "
            f"curve. {er_text}RR: relative robustness, AUDC min-max normalised across the compared models per curve "
            f"(1 = most robust), mean over curves. {ce_text}Mean ± std over {_seeds_text(ents)}; best in bold, second "
            f"underlined. {_marks_text(ctx, False)}")
    suffix, tsuffix = _suffix(ctx, multi)
    stats_all = _curve_stats(ctx, s, ents, ctx.sweeps, fixed)
    in_suite = fixed is None
    rows = [Row(e.label, _robust_cells(stats_all.get(e.label, {}), cols, e, s, in_suite), "", e.trial_ids)
            for e in ents]
    overall = Table(f"robustness{suffix}", f"Robustness summary{tsuffix}", base + " Curves: every sweep "
                    f"({', '.join(ctx.sweeps)}).", cols, rows, _prov(ctx, rows), digits=s.digits)
    rows = []
    for sw in ctx.sweeps:
        st = _curve_stats(ctx, s, ents, [sw], fixed)
        rows += [Row(e.label, _robust_cells(st.get(e.label, {}), cols, e, s, in_suite), f"{sw} sweep", e.trial_ids)
                 for e in ents]
    by_sweep = Table(f"robustness_by_sweep{suffix}", f"Robustness summary per sweep{tsuffix}",
                     base + " One group of rows per sweep.", cols, rows, _prov(ctx, rows), digits=s.digits)
    recs = add_significance(overall, ctx) + add_significance(by_sweep, ctx)
    mark_extremes(overall)
    mark_extremes(by_sweep)
    return overall, by_sweep, recs


def _robust_cells(by_seed: dict[int, dict[str, float]], cols: list[Column], e: Entity, s: Settings,
                  in_suite_ce: bool = True) -> dict[str, Cell]:
    """The cells of one entity; the references' own ER (0) and in-suite mCE (1) hold by definition and
    are shown as 'reference', out of the ranking (against a fixed reference every model is measured)."""
    cells = {c.key: Cell.of({seed: d[c.key] for seed, d in by_seed.items()}) for c in cols} if by_seed else {}
    refs = (("er", s.effective_reference), ("mce", s.reference_model)) if in_suite_ce else (
        ("er", s.effective_reference),)
    for key, ref in refs:
        if key in cells and e.model == ref:
            cells[key] = Cell(text="reference")
    return cells


# ---------------------------------------------------------------------------- ablations


def ablation_groups(ctx: Context, variants: Sequence[Variant] | None) -> list[tuple[str, str, list[str]]]:
    """(model_name, base label, variant labels in suite order) for every base model with >= 2 entries."""
    ents = compared(ctx)
    present = {e.model for e in ents}
    if variants is None:
        variants = [Variant(e.model, e.model_name) for e in ents]
    seen: dict[str, list[Variant]] = {}
    for v in variants:
        if v.label in present and v.label not in [x.label for x in seen.get(v.model_name, [])]:
            seen.setdefault(v.model_name, []).append(v)
    out = []
    for name, vs in seen.items():
        if len(vs) < 2:
            continue
        base = next((v for v in vs if not v.overrides or v.overrides == "{}"), None)
        base = base or next((v for v in vs if v.label == name), vs[0])
        out.append((name, base.label, [base.label] + [v.label for v in vs if v is not base]))
    return out


def _config_of(ctx: Context, label: str) -> dict[str, str]:
    t = ctx.data.trials
    sel = t[(t["model"] == label) & (t["dataset"] == ctx.dataset)]
    return json.loads(sel["config"].iloc[0]) if len(sel) and isinstance(sel["config"].iloc[0], str) else {}


def _changes(ctx: Context, base: str, label: str, variants: Sequence[Variant] | None) -> str:
    if label == base:
        return "full model"
    a, b = _config_of(ctx, base), _config_of(ctx, label)
    diff = [f"{k}={b[k]}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k in b]
    if not diff and variants:
        v = next((v for v in variants if v.label == label), None)
        if v and v.overrides:
            diff = [f"{k}={val}" for k, val in sorted(json.loads(v.overrides).items())]
    return ", ".join(diff) or "same config"


def ablation_table(ctx: Context, s: Settings, variants: Sequence[Variant] | None = None, multi: bool = False,
                   ) -> tuple[Table, list[SigRecord]] | None:
    """Variants of a base model against the unablated one, on the main metric, per regime."""
    groups = ablation_groups(ctx, variants)
    if not groups:
        return None
    m = s.main_metric
    ents = compared(ctx)
    cols = [Column("changes", "Changes")]
    cols += [Column("clean", "Clean", _dir(m), group=METRIC_INFO[m].label)]
    cols += [Column(sw, sw, _dir(m), group=METRIC_INFO[m].label) for sw in ctx.sweeps]
    cols += [Column("all", "All", _dir(m), group=METRIC_INFO[m].label), Column("delta", "Δ All"),
             Column("train", "Train s/trial", digits=1)]
    rows, recipes, bases = [], {}, {}
    train = _train_seconds(ctx)
    for name, base, labels in groups:
        regimes = [e.regime for e in ents if e.model == base]
        for regime in regimes:
            group = f"{name} ({regime})"
            base_e = next(e for e in ents if e.model == base and e.regime == regime and not e.condition)
            bases[group] = f"{base} ({regime})"
            base_all = ctx.seed_values(ctx.recipe(base_e, ctx.families, ctx.sweeps), m)
            for label in labels:
                e = next((x for x in ents if x.model == label and x.regime == regime and not x.condition), None)
                if e is None:
                    continue
                cells = {"changes": Cell(text=_changes(ctx, base, label, variants))}
                for key, fams, sws in [("clean", None, None), *[(sw, ctx.families, [sw]) for sw in ctx.sweeps],
                                       ("all", ctx.families, ctx.sweeps)]:
                    rec = ctx.recipe(e, fams, sws)
                    cells[key] = ctx.cell(rec, m)
                    recipes[(e.label, key)] = (rec, m)
                all_v = cells["all"].seeds
                cells["delta"] = Cell.of({sd: all_v[sd] - base_all[sd] for sd in all_v if sd in base_all})
                cells["train"] = Cell.of({sd: train.get(tid, math.nan) for sd, tid in e.trials})
                rows.append(Row(e.label, cells, group, e.trial_ids))
    suffix, tsuffix = _suffix(ctx, multi)
    caption = (f"Ablations: variants of one model (Changes: config keys that differ from the full model) on "
               f"{METRIC_INFO[m].label} ({_arrow(m)}): clean, AUDC of each sweep averaged over the corruption families "
               f"({', '.join(ctx.families)}), All = mean over every curve, Δ All = All minus the full model's, paired "
               f"by seed; training cost in seconds per trial. Mean ± std over {_seeds_text(ents)}; best in bold, "
               f"second underlined. {_marks_text(ctx, True, 'the full model')}")
    t = Table(f"ablations{suffix}", f"Ablations{tsuffix}", caption, cols, rows, _prov(ctx, rows),
              row_header="Variant (regime)", digits=s.digits)

    def ref(group: str, cands: list[Row]) -> Row | None:
        return next((r for r in cands if r.label == bases.get(group)), None)

    recs = add_significance(t, ctx, recipes, reference=ref)
    mark_extremes(t)
    return t, recs


def _train_seconds(ctx: Context) -> dict[str, float]:
    t = ctx.data.trials
    return {str(k): float(v) for k, v in zip(t["trial_id"], t["train_seconds"])}


# ---------------------------------------------------------------------------- specialists


def specialist_table(ctx: Context, s: Settings, multi: bool = False) -> tuple[Table, list[SigRecord]] | None:
    """One checkpoint (every spectrum regime of the model) against the specialist trained at each
    condition, evaluated at that condition's grid point; all metrics."""
    specs = [e for e in ctx.entities if e.regime_kind == "specialist"]
    ones = [e for e in ctx.entities if e.regime_kind == "spectrum" and not e.condition]
    if not specs or not ones:
        return None
    metrics = _metrics(ctx, s)
    rows, recipes, skipped = [], {}, []
    for sp in specs:
        c = Condition.from_json(sp.condition)
        fam, sw, level = c.family.name, c.sweep, float(c.level)
        group = f"{sp.model} at {condition_text(sp.condition)}"
        peers = [e for e in ones if e.model == sp.model]
        rec_sp = ctx.point_recipe(sp, fam, sw, level)
        if not peers or not rec_sp:
            skipped.append(group)
            continue
        for e, rec in [(sp, rec_sp), *[(p, ctx.point_recipe(p, fam, sw, level)) for p in peers]]:
            label = f"{e.model} ({e.regime})"
            rows.append(Row(label, {m: ctx.cell(rec, m) for m in metrics}, group, e.trial_ids))
            recipes.update({(group, label, m): (rec, m) for m in metrics})  # a label repeats across groups
    if not rows:
        return None
    suffix, tsuffix = _suffix(ctx, multi)
    caption = (f"One checkpoint for all against specialists: for each specialist condition (family:sweep=level), "
               f"the specialist trained at that condition and the model's spectrum checkpoint, both evaluated at that "
               f"grid point. Mean ± std over {_seeds_text(specs + ones)}. {_acc_note(ctx)} Best per column and condition in "
               f"bold. {_marks_text(ctx, True, 'the best of its column and condition')} Training cost: see the "
               f"training-cost table.")
    t = Table(f"specialists{suffix}", f"One checkpoint vs specialists{tsuffix}", caption, metric_columns(metrics),
              rows, _prov(ctx, rows), row_header="Protocol", digits=s.digits)
    if skipped:
        t.notes.append(f"Conditions not on the evaluation grid or without a spectrum checkpoint: {', '.join(skipped)}.")
    recs = add_significance(t, ctx, recipes)
    mark_extremes(t)
    return t, recs


# ---------------------------------------------------------------------------- training cost


def cost_table(ctx: Context, s: Settings, multi: bool = False) -> Table | None:
    """Trials, total and per-trial training seconds, evaluation seconds and parameters per protocol."""
    t = ctx.data.trials
    t = t[t["dataset"] == ctx.dataset]
    if t["train_seconds"].isna().all():
        return None
    cols = [Column("kind", "Protocol"), Column("trials", "Trials", digits=0, std=False),
            Column("train_total", "Train total (s)", digits=1, std=False),
            Column("train", "Train s/trial", digits=1), Column("eval", "Eval s/trial", digits=1),
            Column("params", "Parameters", digits=0, std=False)]
    rows = []
    keys = sorted({(m, r, k) for m, r, k in zip(t["model"], t["regime"], t["regime_kind"])},
                  key=lambda x: ctx.data.order_key(x[0], x[1]))
    for model, regime, kind in keys:
        g = t[(t["model"] == model) & (t["regime"] == regime)].sort_values(["condition", "seed"], kind="mergesort")
        tr = g["train_seconds"].to_numpy(np.float64)
        cells = {"kind": Cell(text={"spectrum": "one checkpoint", "specialist": "specialists",
                                    "clean": "clean training"}.get(kind, kind)),
                 "trials": Cell.of(float(len(g))),
                 "train_total": Cell.of(float(np.sum(tr))),
                 "train": Cell.of(dict(enumerate(tr.tolist()))),
                 "eval": Cell.of(dict(enumerate(g["eval_seconds"].to_numpy(np.float64).tolist()))),
                 "params": Cell.of(float(g["n_params"].iloc[0]))}
        rows.append(Row(f"{model} ({regime})", cells, "", tuple(g["trial_id"])))
    suffix, tsuffix = _suffix(ctx, multi)
    caption = ("Training cost of each protocol: trials run (specialists: one per condition and seed), total and "
               "per-trial training wall-clock seconds (mean ± std over the trials), evaluation seconds per trial over "
               "the whole grid, and trainable parameters. Read from the tracked runs' info/* metrics; wall-clock "
               "times depend on the machine.")
    return Table(f"training_cost{suffix}", f"Training cost{tsuffix}", caption, cols, rows, _prov(ctx, rows),
                 digits=1)


# ---------------------------------------------------------------------------- quality estimates


def quality_pairs(ctx: Context) -> dict[tuple[str, int, str, str], tuple[np.ndarray, np.ndarray]]:
    """(entity label, seed, family, modality) -> (true rho, predicted quality) over every sample of
    every grid point of that family (the clean point included)."""
    p = ctx.data.predictions
    if p is None or not any(f"quality_{m}" in p for m in MODALITIES):
        return {}
    r = ctx.rows.drop_duplicates(["trial_id", "family", "sweep", "level_index"])
    rho = {(t, f, s, int(i)): (a, b, c) for t, f, s, i, a, b, c in
           zip(r["trial_id"], r["family"], r["sweep"], r["level_index"], r["rho_text"], r["rho_audio"], r["rho_vision"])}
    out: dict[tuple[str, int, str, str], tuple[list, list]] = {}
    for e in compared(ctx):
        for seed, tid in e.trials:
            sub = p[p["trial_id"] == tid]
            if sub.empty or sub[[f"quality_{m}" for m in MODALITIES if f"quality_{m}" in sub]].isna().all().all():
                continue
            for (f, sw, i), g in sub.groupby(["family", "sweep", "level_index"], sort=True):
                if f == "clean" or (tid, f, sw, int(i)) not in rho:
                    continue
                for j, m in enumerate(MODALITIES):
                    if f"quality_{m}" not in g:
                        continue
                    q = g[f"quality_{m}"].to_numpy(np.float64)
                    acc = out.setdefault((e.label, seed, f, m), ([], []))
                    acc[0].append(np.full(q.size, rho[(tid, f, sw, int(i))][j]))
                    acc[1].append(q)
    return {k: (np.concatenate(a), np.concatenate(b)) for k, (a, b) in sorted(out.items())}


PRESENCE_BOUND = "present/absent detector (bound)"


def _presence_bound(pairs: dict, family: str, mods: Sequence[str]) -> dict[str, Cell] | None:
    """Cells of the present/absent detector for ``family`` (one that only removes modalities): on a
    (model, seed) whose quality is exactly 0 where a modality is absent and positive elsewhere, the
    correlation of ρ with presence (the same for every model: the draws are keyed), else None."""
    cells: dict[str, Cell] = {}
    for m in mods:
        found = None
        for k, (rho, q) in pairs.items():
            if k[2] != family or k[3] != m:
                continue
            ok = np.isfinite(q)
            absent = ok & (q == 0)
            # only a family whose points are present-or-absent: rho 1 -> all present, rho 0 -> all absent
            if not absent.any() or absent[rho >= 1.0].any() or (~absent[ok & (rho <= 0.0)]).any():
                continue
            found = (rho[ok], (~absent[ok]).astype(np.float64))
            break
        if found is None:
            return None
        for kind in ("spearman", "pearson"):
            cells[f"{kind}_{m}"] = Cell.of({0: _corr(kind, *found)})
    return cells


def _corr(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float((stats.spearmanr if kind == "spearman" else stats.pearsonr)(x, y)[0])


def quality_table(ctx: Context, s: Settings, multi: bool = False,
                  pairs: dict | None = None) -> Table | None:
    pairs = quality_pairs(ctx) if pairs is None else pairs
    if not pairs:
        return None
    mods = [m for m in MODALITIES if any(k[3] == m for k in pairs)]
    cols = [Column(f"{kind}_{m}", m, "up", group="Spearman" if kind == "spearman" else "Pearson")
            for kind in ("spearman", "pearson") for m in mods]
    labels = [e.label for e in compared(ctx) if any(k[0] == e.label for k in pairs)]
    ents = {e.label: e for e in compared(ctx)}
    fams = sorted({k[2] for k in pairs})
    rows = []
    for f in fams:
        for label in labels:
            cells = {}
            for kind in ("spearman", "pearson"):
                for m in mods:
                    vals = {k[1]: _corr(kind, *v) for k, v in pairs.items() if k[0] == label and k[2] == f and k[3] == m}
                    cells[f"{kind}_{m}"] = Cell.of(vals) if vals else Cell(text="")
            rows.append(Row(label, cells, f"{f} family", ents[label].trial_ids))
        bound = _presence_bound(pairs, f, mods) if f == "missing" else None
        if bound is not None:
            rows.append(Row(PRESENCE_BOUND, bound, f"{f} family", compare=False))
    suffix, tsuffix = _suffix(ctx, multi)
    caption = ("Quality estimates against the true reliability: per corruption family and modality, the Spearman "
               "and Pearson correlation between the model's predicted quality of the modality for every test sample "
               "and the reliability ρ applied to that modality, pooled over every grid point of the family; mean ± std "
               "over seeds. Higher is better; best in bold, second underlined."
               + (f" {PRESENCE_BOUND}: the correlation reached by a quality that is 1 for a present and 0 for an "
                  "absent modality, on the same samples (absence read from the models' own zero quality): the "
                  "best an estimate can do in expectation when a family only removes modalities, since a present "
                  "modality carries no trace of ρ." if any(
                      r.label == PRESENCE_BOUND for r in rows) else ""))
    t = Table(f"quality{suffix}", f"Quality estimates{tsuffix}", caption, cols, rows, _prov(ctx, rows),
              digits=s.digits)
    mark_extremes(t)
    return t


# ---------------------------------------------------------------------------- significance


def significance_table(records: Sequence[SigRecord], ctx: Context, s: Settings, table: str,
                       columns: Sequence[str], multi: bool = False) -> Table | None:
    """The comparisons behind the markers of ``table`` for ``columns`` (the main metric)."""
    recs = [r for r in records if r.table == table and r.column in columns]
    if not recs:
        return None
    d = s.digits
    cols = [Column(k, label, std=False) for k, label in [
        ("reference", "vs"), ("diff", "Δ"), ("ci", "95% CI"), ("p_seed", "p"), ("p_seed_holm", "p Holm"),
        ("boot_ci", "95% CI boot."), ("p_boot", "p boot."), ("p_boot_holm", "p Holm boot.")]]

    def num(x: float, digits: int = d) -> Cell:
        return Cell.of(x, digits=digits) if math.isfinite(x) else Cell(text="n/a")

    def ci(lo: float, hi: float) -> Cell:
        return Cell(text=f"[{fmt_number(lo, d)}, {fmt_number(hi, d)}]" if math.isfinite(lo) else "n/a")

    rows = []
    for r in recs:
        p_seed = r.p_ttest if ctx.seed_test == "ttest" else r.p_wilcoxon
        cells = {"reference": Cell(text=r.reference), "diff": num(r.diff), "ci": ci(r.ci_low, r.ci_high),
                 "p_seed": num(p_seed, 3), "p_seed_holm": num(r.p_seed_holm, 3),
                 "boot_ci": ci(r.boot_low, r.boot_high), "p_boot": num(r.p_boot, 3),
                 "p_boot_holm": num(r.p_boot_holm, 3)}
        rows.append(Row(r.row, cells, f"{r.group}: {METRIC_INFO[r.column].label}" if r.column in METRIC_INFO
                        else f"{r.group}: {r.column}", r.trial_ids))
    suffix, tsuffix = _suffix(ctx, multi)
    test = "t-test" if ctx.seed_test == "ttest" else "Wilcoxon signed-rank test"
    caption = (f"Paired comparisons behind the markers of the main table for "
               f"{', '.join(METRIC_INFO[c].label for c in columns)}: each model against the best of its condition "
               f"(vs). Δ = model − best, mean over the common seeds, with its Student-t 95% CI; p: paired {test} over "
               f"seeds; boot.: paired bootstrap over test samples (B = {ctx.replicates}, seed {ctx.bootstrap_seed}), "
               f"percentile 95% CI of Δ and two-sided p; Holm: corrected over the comparisons of the column and "
               f"condition.")
    return Table(f"significance{suffix}", f"Significance{tsuffix}", caption, cols, rows, _prov(ctx, rows),
                 digits=d)
