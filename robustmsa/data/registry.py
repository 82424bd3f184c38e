"""Datasets by name: the embedded synthetic presets, MMSA-format pickles and raw-media clips."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corruptions.registry import Registry

from ..errors import DataError
from .dataset import MSADataset

__all__ = ["DATASETS", "load_dataset", "DATASET_HELP"]

DATASETS: Registry[Callable[..., MSADataset]] = Registry("dataset")

DATASET_HELP: dict[str, str] = {
    "synthetic": "embedded benchmark, MOSI aligned_50 shapes (1284/229/686), params: seed, any SyntheticConfig field",
    "synthetic_mosei": "embedded benchmark, MOSEI aligned_50 shapes (16326/1871/4659)",
    "synthetic_sims": "embedded benchmark, CH-SIMS unaligned_39 shapes, labels in [-1, 1]",
    "synthetic_trimodal": "embedded benchmark, MOSI shapes, every modality carries shared and private cues, exact "
                          "oracle (the main suite's dataset)",
    "mmsa": "an MMSA processed-feature pickle, params: path (required), metric_family, nonfinite",
    "synthetic_raw": "embedded raw-media benchmark (faces, voice, transcripts; 360/80/160 clips), features "
                     "extracted; raw corruption families apply, params: seed, any RawBenchmarkConfig field "
                     "(voice: espeak, text_source: tweets), extractors, workers, cache",
    "raw": "a folder or manifest CSV of raw clips (wav, mp4 or frames, transcript, label), features extracted; "
           "params: path (required), tokenizer, extractors, sample_rate, fps, frame_size, workers, cache",
}


def _synthetic(preset: str) -> Callable[..., MSADataset]:
    def load(seed: int = 0, **params: Any) -> MSADataset:
        from .synthetic import load_synthetic

        return load_synthetic(preset, seed=seed, **params)

    return load


def _mmsa(path: str | None = None, **params: Any) -> MSADataset:
    if not path:
        raise DataError("dataset 'mmsa' needs params.path (the MMSA pickle file)",
                        hint="datasets: [{name: mmsa, params: {path: data/MOSI/aligned_50.pkl}}]")
    from .mmsa import load_mmsa_pickle

    return load_mmsa_pickle(path, **params)


def _synthetic_raw(seed: int = 0, **params: Any) -> MSADataset:
    from ..raw.dataset import load_synthetic_raw

    return load_synthetic_raw(seed=seed, **params)


def _raw(path: str | None = None, **params: Any) -> MSADataset:
    from ..raw.dataset import load_raw_folder

    return load_raw_folder(path, **params)


DATASETS.register("synthetic", _synthetic("mosi"))
DATASETS.register("synthetic_mosei", _synthetic("mosei"))
DATASETS.register("synthetic_sims", _synthetic("sims"))
DATASETS.register("synthetic_trimodal", _synthetic("trimodal"))
DATASETS.register("mmsa", _mmsa)
DATASETS.register("synthetic_raw", _synthetic_raw)
DATASETS.register("raw", _raw)


def load_dataset(name: str, params: dict[str, Any] | None = None) -> MSADataset:
    """Load dataset ``name`` (registry) with ``params``; unknown names list the close matches."""
    loader = DATASETS.get(name)
    try:
        return loader(**(params or {}))
    except TypeError as e:
        raise DataError(f"dataset {name!r}: bad params {sorted(params or {})}: {e}") from None
