"""Datasets by name: the embedded synthetic presets, MMSA-format pickles and raw-media clips.

Each dataset is declared once, with its loader and its help text (:func:`register_dataset`).
This module sits above both :mod:`robustmsa.data` (feature datasets) and :mod:`robustmsa.media`
(raw-media datasets); loaders import their modules when called, so listing the datasets stays cheap.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from corruptions.registry import Registry

from .data.dataset import MSADataset
from .errors import DataError, RobustMSAError

__all__ = ["DATASETS", "DatasetEntry", "DatasetSummary", "register_dataset", "load_dataset", "summarise_dataset",
           "remember_dataset", "reuse_loaded"]

Loader = Callable[..., MSADataset]


@dataclass(frozen=True)
class DatasetSummary:
    """What planning needs of a dataset: its content hash, split sizes, metric family and classes."""

    content_hash: str
    sizes: dict[str, int]
    metric_family: str
    num_classes: int = 0

    @classmethod
    def of(cls, dataset: MSADataset) -> DatasetSummary:
        return cls(dataset.content_hash(), {name: len(split) for name, split in dataset.splits.items()},
                   dataset.metric_family, dataset.num_classes)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: ``load(**params)`` builds it; ``help`` is its one-line description;
    ``summary(**params)``, where given, returns its :class:`DatasetSummary` without loading the
    arrays, or None when it cannot (then the dataset is loaded)."""

    name: str
    load: Loader
    help: str
    summary: Callable[..., DatasetSummary | None] | None = None


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, help: str, loader: Loader,
                     summary: Callable[..., DatasetSummary | None] | None = None) -> Loader:
    """Register ``loader`` as dataset ``name`` with its ``help`` text (a collision is an error)."""
    DATASETS.register(name, DatasetEntry(name, loader, help, summary))
    return loader


#: the datasets loaded inside :func:`reuse_loaded`, by (name, params); None outside it
_REUSED: dict[str, MSADataset] | None = None


@contextlib.contextmanager
def reuse_loaded() -> Iterator[None]:
    """Inside the block, :func:`load_dataset` loads each (name, params) once and returns that same
    object again: for code that only reads the datasets, e.g. ``robustmsa validate`` (planning, the
    cost and the calibration of the wall time read each dataset three or more times)."""
    global _REUSED
    before, _REUSED = _REUSED, ({} if _REUSED is None else _REUSED)
    try:
        yield
    finally:
        _REUSED = before


def load_dataset(name: str, params: dict[str, Any] | None = None) -> MSADataset:
    """Load dataset ``name`` (registry) with ``params``; unknown names list the close matches.
    Inside :func:`reuse_loaded` a dataset loaded before is returned again.

    ``params.label``, for any dataset, is its name in report tables (``DatasetSpec.display``), not a
    loader argument: it is kept in ``info["label"]``. Every input error starts with ``dataset '<name>': ``
    (the CLI's ``error: <where>:``).
    """
    key = json.dumps([name, params or {}], sort_keys=True, default=str)
    if _REUSED is not None and key in _REUSED:
        return _REUSED[key]
    dataset = _call(name, params, DATASETS.get(name).load)
    if (params or {}).get("label") is not None:
        dataset.info["label"] = str(params["label"])
    if _REUSED is not None:
        _REUSED[key] = dataset
    return dataset


def summarise_dataset(name: str, params: dict[str, Any] | None = None) -> DatasetSummary:
    """The :class:`DatasetSummary` of dataset ``name`` with ``params``: from its entry's ``summary``
    where that can answer without loading (the embedded benchmark's cache entry), else from the
    loaded dataset (:func:`load_dataset`, so a bad input fails the same way)."""
    key = json.dumps([name, params or {}], sort_keys=True, default=str)
    entry = DATASETS.get(name)
    if entry.summary is not None and (_REUSED is None or key not in _REUSED):
        found = _call(name, params, entry.summary)
        if found is not None:
            return found
    return DatasetSummary.of(load_dataset(name, params))


def _call(name: str, params: dict[str, Any] | None, fn: Callable[..., Any]) -> Any:
    """``fn(**params)`` without ``label``; every input error starts with ``dataset '<name>': ``."""
    where = f"dataset {name!r}"
    try:
        return fn(**{k: v for k, v in (params or {}).items() if k != "label"})
    except TypeError as e:
        raise DataError(f"{where}: bad params {sorted(params or {})}: {e}") from None
    except RobustMSAError as e:
        if str(e).startswith(f"{where}:"):
            raise
        raise type(e)(f"{where}: {str(e).removeprefix(f'{name}: ')}", hint=e.hint) from e


def _synthetic(preset: str) -> Loader:
    def load(seed: int = 0, **params: Any) -> MSADataset:
        from .data.synthetic import load_synthetic

        return load_synthetic(preset, seed=seed, **params)

    return load


def _synthetic_summary(preset: str) -> Callable[..., DatasetSummary | None]:
    def summary(seed: int = 0, **params: Any) -> DatasetSummary | None:
        from .data.synthetic import cached_summary

        found = cached_summary(preset, seed=seed, **params)
        if found is None:
            return None
        return DatasetSummary(found["content_hash"], found["sizes"], found["metric_family"], len(found["classes"]))

    return summary


def _mmsa(path: str | None = None, **params: Any) -> MSADataset:
    if not path:
        raise DataError("dataset 'mmsa': params.path is required (the MMSA pickle file)",
                        hint="datasets: [{name: mmsa, params: {path: data/MOSI/aligned_50.pkl}}]")
    from .data.mmsa import load_mmsa_pickle

    return load_mmsa_pickle(path, **params)


def _synthetic_raw(seed: int = 0, **params: Any) -> MSADataset:
    from .media.dataset import load_synthetic_raw

    return load_synthetic_raw(seed=seed, **params)


def _raw(path: str | None = None, **params: Any) -> MSADataset:
    from .media.dataset import load_raw_folder

    return load_raw_folder(path, **params)


register_dataset(
    "synthetic",
    "embedded benchmark, MOSI aligned_50 shapes (1284/229/686), params: seed, any SyntheticConfig field",
    _synthetic("mosi"), _synthetic_summary("mosi"),
)
register_dataset("synthetic_mosei", "embedded benchmark, MOSEI aligned_50 shapes (16326/1871/4659)",
                 _synthetic("mosei"), _synthetic_summary("mosei"))
register_dataset("synthetic_sims", "embedded benchmark, CH-SIMS unaligned_39 shapes, labels in [-1, 1]",
                 _synthetic("sims"), _synthetic_summary("sims"))
register_dataset(
    "synthetic_trimodal",
    "embedded benchmark, MOSI shapes, every modality carries shared and private cues, exact oracle (the main "
    "suite's dataset)",
    _synthetic("trimodal"), _synthetic_summary("trimodal"),
)
register_dataset(
    "synthetic_emotion",
    "embedded MELD-style emotion classification (7 classes with MELD's imbalance) from the cue design, MOSI "
    "shapes; task classification (docs/classification.md)",
    _synthetic("emotion"), _synthetic_summary("emotion"),
)
register_dataset("synthetic_sims2", "embedded benchmark, CH-SIMS v2.0 shapes (2722/647/1034; audio 925x25, vision "
                 "232x177), labels in [-1, 1]", _synthetic("sims2"), _synthetic_summary("sims2"))
register_dataset("mmsa", "an MMSA processed-feature pickle, params: path (required), metric_family, nonfinite, "
                 "variant (simsv2), classes (a categorical pickle: labels as class indices), "
                 "label (name in tables; default from the path, e.g. MOSI/aligned_50)", _mmsa)
#: datasets handed to :func:`robustmsa.evaluate` as objects, by content hash (this process only)
_OBJECTS: dict[str, MSADataset] = {}


def remember_dataset(dataset: MSADataset) -> str:
    """Keep a loaded dataset for this process; its key (the ``key`` param of dataset ``memory``)."""
    key = dataset.content_hash()
    _OBJECTS[key] = dataset
    return key


def _memory(key: str = "") -> MSADataset:
    if key not in _OBJECTS:
        raise DataError(f"dataset 'memory': no dataset {key!r} in this process",
                        hint="a dataset object runs in-process (backend local); give Ray a dataset name and params")
    return _OBJECTS[key]


register_dataset("memory", "a loaded dataset passed to robustmsa.evaluate (in-process only), params: key", _memory)
register_dataset(
    "synthetic_raw",
    "embedded raw-media benchmark (faces, voice, transcripts; 360/80/160 clips), features extracted; raw "
    "corruption families apply, params: seed, any RawBenchmarkConfig field (voice: espeak, text_source: "
    "tweets), extractors, workers, cache",
    _synthetic_raw,
)
register_dataset(
    "raw",
    "a folder or manifest CSV of raw clips (wav, mp4 or frames, transcript, label), features extracted; "
    "params: path (required), tokenizer, extractors, sample_rate, fps, frame_size, workers, cache",
    _raw,
)
