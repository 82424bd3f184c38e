"""The raw-media path: clips on disk, the embedded raw benchmark, feature extraction, raw corruption.

* :mod:`.clips` — the raw-clip dataset format (manifest CSV or folders), validation, media readers
* :mod:`.generate` — the procedural benchmark (faces, voiced audio, transcripts)
* :mod:`.features` — the extractor interface and registry; :mod:`.acoustic`, :mod:`.visual`,
  :mod:`.textual` — the default extractors (and the offline word-level tokenizer)
* :mod:`.extract` — corrupt + extract, in parallel, deterministic; :mod:`.cache` — the feature cache
* :mod:`.dataset` — :class:`RawMSADataset` / :class:`RawSource` and the ``synthetic_raw`` / ``raw``
  loaders; raw families in an evaluation grid go through :meth:`RawSource.prepared`

See docs/raw_media.md.
"""
from __future__ import annotations

from .cache import FeatureCache, cell_key
from .clips import (
    ArrayCorpus,
    ClipCorpus,
    ClipRecord,
    FileCorpus,
    MediaOptions,
    load_clip_records,
    validate_records,
)
from .dataset import (
    ModalityArrays,
    RawMSADataset,
    RawPrepared,
    RawSource,
    build_raw_dataset,
    is_raw_family,
    load_raw_folder,
    load_synthetic_raw,
)
from .extract import ClipCorruption, corrupt_and_extract, extract_rows, shutdown_pools
from .features import EXTRACTORS, Extractor, FeatureRow, build_extractor, register_extractor
from .generate import RawBenchmarkConfig, generate_raw_benchmark, load_raw_benchmark

__all__ = [
    "ArrayCorpus",
    "ClipCorpus",
    "ClipRecord",
    "FileCorpus",
    "MediaOptions",
    "load_clip_records",
    "validate_records",
    "FeatureCache",
    "cell_key",
    "EXTRACTORS",
    "Extractor",
    "FeatureRow",
    "build_extractor",
    "register_extractor",
    "ClipCorruption",
    "corrupt_and_extract",
    "extract_rows",
    "shutdown_pools",
    "RawBenchmarkConfig",
    "generate_raw_benchmark",
    "load_raw_benchmark",
    "ModalityArrays",
    "RawMSADataset",
    "RawPrepared",
    "RawSource",
    "build_raw_dataset",
    "is_raw_family",
    "load_raw_folder",
    "load_synthetic_raw",
]
