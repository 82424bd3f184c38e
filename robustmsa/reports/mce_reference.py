"""The fixed mCE reference: a stored late-fusion curve that makes corruption errors comparable across suites.

In-suite mCE divides a model's errors by those of a model of the same report (``report.reference_model``),
so two papers' mCE cannot be compared. A *fixed* reference is a curve stored as data
(``robustmsa/published/mce_references/*.json``, written by ``scripts/make_mce_reference.py``): per
(family, sweep) the levels and, per metric, the mean over the pinned seeds of a pinned model
(late fusion, a pinned configuration and regime), with its provenance. A report uses it
(``report.mce_reference: fixed``, the default) when its dataset's content hash, its evaluated grid
(the results documents' ``protocol.id``) and its corruption versions equal the stored ones; otherwise
it falls back to the in-suite reference and says why in the caption of the robustness table.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..published import MCE_REFERENCE_SCHEMA, load_mce_references
from .core import Context
from .results_json import protocol_fingerprint

__all__ = ["MCE_REFERENCE_SCHEMA_VERSION", "MCE_REFERENCE_CHOICES", "FixedReference", "reference_document",
           "match_facts", "fixed_reference"]

MCE_REFERENCE_SCHEMA_VERSION = "1.0"
MCE_REFERENCE_CHOICES = ("fixed", "suite")


@dataclass(frozen=True)
class FixedReference:
    """A stored reference that matches a report: its file and its curves by (family, sweep)."""

    file: str
    doc: dict[str, Any]

    def describe(self) -> str:
        d, p = self.doc, self.doc["provenance"]
        return (f"{d['model']} ({p['regime']} regime, seeds {', '.join(map(str, p['seeds']))}, mean curve; "
                f"stored reference {self.file}, code {', '.join(p['code_versions']) or 'unknown'})")

    def values(self, family: str, sweep: str, levels: Sequence[float], metric: str) -> list[float] | None:
        """The stored mean values of ``metric`` on one curve at ``levels``; None if the curve or a level is absent."""
        for c in self.doc["curves"]:
            if c["family"] == family and c["sweep"] == sweep and metric in c["metrics"]:
                at = dict(zip(c["levels"], c["metrics"][metric]))
                if all(lv in at for lv in levels):
                    return [float(at[lv]) for lv in levels]
        return None


def match_facts(rows: pd.DataFrame) -> dict[str, Any]:
    """What a stored reference must share with a report's rows: data hash, grid id, corruption versions."""
    hashes = sorted({str(h) for h in rows["data_hash"] if isinstance(h, str) and h}) if "data_hash" in rows else []
    versions = {str(f): str(v) for f, v in zip(rows["family"], rows["corruption_version"]) if isinstance(v, str) and v}
    return {"data_hash": hashes[0] if len(hashes) == 1 else None, "protocol_id": protocol_fingerprint(rows)["id"],
            "corruption_versions": dict(sorted(versions.items()))}


def _curves(rows: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    r = rows[rows["family"] != "clean"]
    for (fam, sweep), g in r.groupby(["family", "sweep"], sort=True):
        mean = g.groupby(["level_index", "metric"], sort=True)["value"].mean()
        levels = g.drop_duplicates("level_index").sort_values("level_index")
        metrics = {str(m): [float(mean[(i, m)]) for i in levels["level_index"]] for m in sorted(set(g["metric"]))}
        out.append({"family": str(fam), "sweep": str(sweep), "levels": [float(x) for x in levels["level"]],
                    "metrics": metrics})
    return out


def reference_document(rows: pd.DataFrame, provenance: dict[str, Any]) -> dict[str, Any]:
    """The stored reference of one model's rows (one dataset, one regime, one row per seed and point):
    per curve the mean over seeds of every metric, the facts a report must match, and ``provenance``
    (code versions, configuration, regime, seeds, suite: given by the caller)."""
    models = sorted(set(rows["model"]))
    datasets = sorted(set(rows["dataset"]))
    if len(models) != 1 or len(datasets) != 1 or len(set(rows["regime"])) != 1:
        raise ValueError(f"a reference is one model on one dataset in one regime; got models {models}, datasets "
                         f"{datasets}, regimes {sorted(set(rows['regime']))}")
    return {"schema": MCE_REFERENCE_SCHEMA, "schema_version": MCE_REFERENCE_SCHEMA_VERSION, "dataset": datasets[0],
            "suite": str(rows["suite"].iloc[0]) if "suite" in rows else "", "model": models[0],
            "match": match_facts(rows), "curves": _curves(rows),
            "provenance": {**provenance, "seeds": sorted(int(s) for s in set(rows["seed"])),
                           "trial_ids": sorted(set(rows["trial_id"]))}}


def _mismatch(doc: dict[str, Any], facts: dict[str, Any]) -> str:
    for key, what in (("protocol_id", "evaluated grid (protocol id)"), ("corruption_versions", "corruption versions")):
        if doc["match"][key] != facts[key]:
            return (f"{doc['file']} has the same data but another {what}: "
                    f"{json.dumps(doc['match'][key], sort_keys=True)} vs {json.dumps(facts[key], sort_keys=True)}")
    return ""


def fixed_reference(ctx: Context, folder: str | None = None) -> tuple[FixedReference | None, str]:
    """The stored reference matching the report's dataset, or None and why not (for the caption)."""
    facts = match_facts(ctx.rows)
    docs = load_mce_references(folder)
    same_data = [d for d in docs if d["match"]["data_hash"] == facts["data_hash"]]
    if not same_data:
        stored = ", ".join(sorted({f"{d['dataset']} ({d['match']['data_hash']})" for d in docs})) or "none"
        return None, (f"no stored reference for this data ({ctx.dataset}, data hash {facts['data_hash']}; "
                      f"stored: {stored})")
    for d in same_data:
        if not _mismatch(d, facts):
            return FixedReference(d["file"], d), ""
    return None, _mismatch(same_data[0], facts)

