"""Frozen corrupted test sets: every grid point of a suite's evaluation spectrum as an MMSA pickle.

``export_corrupted(suite, out)`` writes, for each dataset of the suite and each point of its
evaluation grid (family x sweep x level, as :func:`robustmsa.evaluation.build_grid` expands it),
the evaluated split exactly as a trial feeds it to the model at that point: the corrupters are
fitted on the training split and drawn with ``evaluation.seed`` through the same
:class:`~robustmsa.corruption_context.CorruptionContext` a trial uses, and each point is
``prepared.at(point)`` as in :func:`robustmsa.evaluation.grid_results`. A ``manifest.json`` names
every file with its family (and version), sweep, reliability and physical parameter per modality,
the key seed and the sha256 of the file. Layout and keys: docs/export.md.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corruptions import FAMILIES, GridPoint, ReliabilityPoint
from corruptions.keys import MODALITIES

from .corruption_context import CorruptionContext
from .data.batch import Batch, split_to_batch
from .data.dataset import MSADataset, Split
from .data.mmsa import categorical_layout, file_sha256, mmsa_split_payload, write_mmsa_payload
from .datasets import load_dataset
from .evaluation import build_grid
from .plan import code_version, corruption_versions
from .suite import DatasetSpec, Suite

__all__ = ["export_corrupted", "corrupted_points", "batch_to_split", "EXPORT_FORMAT", "EXPORT_VERSION",
           "ExportedPoint"]

EXPORT_FORMAT = "robustmsa-frozen-test-set"
EXPORT_VERSION = 1
CLEAN = GridPoint(family="clean", sweep="clean", index=0, level=1.0, point=ReliabilityPoint())


@dataclass(frozen=True)
class ExportedPoint:
    """One grid point and the batch robustmsa's evaluation feeds the model there."""

    grid: GridPoint
    batch: Batch


def _file_part(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name)


def corrupted_points(dataset: MSADataset, suite: Suite, dataset_name: str = "") -> Iterator[ExportedPoint]:
    """Every point of ``suite``'s evaluation grid on ``dataset``'s evaluated split, corrupted as a trial
    evaluates it (the clean point once, first)."""
    ev = suite.evaluation
    ctx = CorruptionContext(split_to_batch(dataset["train"]).modalities(), raw=getattr(dataset, "raw", None),
                            dataset=dataset_name)
    data = split_to_batch(dataset[ev.split])
    yield ExportedPoint(CLEAN, data)
    by_family: dict[str, list[GridPoint]] = {}
    for g in build_grid(ev, qmc_seed=ev.seed):
        by_family.setdefault(g.family, []).append(g)
    for f in ev.families:
        prepared = ctx.prepared(f, ev.seed, data, ev.split)
        for g in by_family.get(f.name, []):
            if not g.point.is_clean:
                yield ExportedPoint(g, data.with_modalities(prepared.at(g.point)))


def batch_to_split(batch: Batch, source: Split) -> Split:
    """A :class:`Split` with the features and token ids of ``batch`` and the layout (masks, labels,
    ids, clues) of ``source``: the clean valid lengths, so that MMSA's loaders see the sequences
    they expect; the masks robustmsa feeds go beside them (:func:`_extra_keys`)."""
    return Split(text=batch.text.numpy(), text_mask=source.text_mask, audio=batch.audio.numpy(),
                 audio_mask=source.audio_mask, vision=batch.vision.numpy(), vision_mask=source.vision_mask,
                 labels=source.labels, ids=source.ids,
                 text_ids=None if batch.text_ids is None else batch.text_ids.numpy(),
                 unimodal_labels=source.unimodal_labels, clues=source.clues, raw_text=source.raw_text)


def _extra_keys(batch: Batch) -> dict[str, np.ndarray]:
    """What robustmsa's models see besides the MMSA keys: the masks after corruption and the missing flags."""
    out = {f"{m}_mask": getattr(batch, f"{m}_mask").numpy().astype(bool) for m in MODALITIES}
    out["missing"] = batch.missing.numpy().astype(bool)
    return out


def _payload(point: ExportedPoint, dataset: MSADataset, split: str, all_splits: bool) -> dict[str, Any]:
    test = {**mmsa_split_payload(split, batch_to_split(point.batch, dataset[split])), **_extra_keys(point.batch)}
    if not all_splits:
        return categorical_layout({split: test}, dataset)
    others = {s: mmsa_split_payload(s, dataset[s]) for s in ("train", "valid", "test") if s != split}
    return categorical_layout({**others, split: test}, dataset)


def _entry(suite: Suite, g: GridPoint, rel: str, sha: str) -> dict[str, Any]:
    """The manifest line of one file."""
    ref = next((f for f in suite.evaluation.families if f.name == g.family), None)
    fam = FAMILIES.get(ref.name)(**ref.params) if ref else None
    return {
        "file": rel, "sha256": sha, "family": g.family, "family_spec": ref.spec() if ref else None,
        "family_version": fam.version if fam else None, "sweep": g.sweep, "level_index": g.index,
        "level": float(g.level), "rho": {m: float(g.point.of(m)) for m in MODALITIES},
        "parameter_name": str(fam.parameter_name) if fam else None,
        "parameter_unit": str(fam.parameter_unit) if fam else None,
        "parameter": {m: float(fam.parameter(g.point.of(m))) for m in MODALITIES} if fam else None,
        "key_seed": suite.evaluation.seed,
    }


def _file_name(g: GridPoint) -> str:
    return "clean.pkl" if g.family == "clean" else f"{g.family}__{_file_part(g.sweep)}__{g.index:03d}.pkl"


def _export_dataset(suite: Suite, spec: DatasetSpec, out: Path, all_splits: bool) -> dict[str, Any]:
    dataset = load_dataset(spec.name, spec.params)
    folder = _file_part(spec.display)
    (out / folder).mkdir(parents=True, exist_ok=True)
    split = suite.evaluation.split
    files = []
    for point in corrupted_points(dataset, suite, spec.name):
        path = out / folder / _file_name(point.grid)
        write_mmsa_payload(_payload(point, dataset, split, all_splits), path)
        files.append(_entry(suite, point.grid, f"{folder}/{path.name}", file_sha256(path)))
    return {"dataset": spec.display, "dataset_spec": spec.model_dump(mode="json"),
            "data_hash": dataset.content_hash(), "metric_family": dataset.metric_family, "files": files}


def export_corrupted(suite: Suite, out: str | Path, all_splits: bool = False) -> Path:
    """Write every grid point of ``suite``'s evaluation spectrum (each dataset) under ``out`` as an MMSA
    pickle, and ``out/manifest.json``; returns the manifest's path. ``all_splits``: write the clean
    training and validation splits into every file too (for loaders that open all three)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ev = suite.evaluation
    manifest = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "suite": suite.name,
        "suite_version": suite.version, "code_version": code_version(),
        "split": ev.split, "splits_written": ["train", "valid", "test"] if all_splits else [ev.split],
        "key_seed": ev.seed,
        "corruption_versions": corruption_versions(sorted({m.name for f in ev.families for m in f.members()})),
        "evaluation": ev.model_dump(mode="json"),
        "datasets": [_export_dataset(suite, d, out, all_splits) for d in suite.datasets],
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
