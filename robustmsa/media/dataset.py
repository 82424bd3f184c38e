"""Raw-media datasets: clean extracted features for training, plus a handle on the raw clips.

A raw dataset loads as a :class:`RawMSADataset`: an ordinary
:class:`~robustmsa.data.dataset.MSADataset` whose splits hold the features extracted from the
*clean* media (text ``[N, L, D]`` with token ids, audio ``[N, Ta, Da]``, vision ``[N, Tv, Dv]``,
masks, labels, ids, ``raw_text``), so every model, training regime and feature-level corruption
works on it exactly as on MMSA pickles. Its ``raw`` attribute is a :class:`RawSource`: the clips
of every split, the extractors, the feature cache and the worker count.

Evaluation with raw families (:meth:`RawSource.prepared`)
    :class:`robustmsa.corruption_context.CorruptionContext` hands raw-level families to
    ``RawSource.prepared(family, seed, data, split)``, which returns a :class:`RawPrepared`:
    ``at(point)`` corrupts the raw clips of ``split`` (the rows of ``data``, matched by sample
    key) at ``point``'s reliability of the family's modality, extracts their features (cached by
    clip, point and extractor version) and returns every modality as a
    :class:`~corruptions.ModalityBatch`, the other modalities clean. A raw family acts on its
    one modality: asking it to degrade another modality is an error naming the family. At rho = 1
    the clean features are returned untouched; corrupting at rho = 1 explicitly gives the same
    numbers bit for bit (the families' identity at rho = 1). The raw path never sets the
    ``missing`` flag: a real pipeline sees silence, an empty transcript or a grey video, not a
    flag, and so do the models.

Registered datasets (see :mod:`robustmsa.datasets`)
    ``synthetic_raw``: the embedded procedural benchmark (:mod:`robustmsa.media.generate`), params =
    any :class:`RawBenchmarkConfig` field plus ``extractors``, ``workers``, ``cache``.
    ``raw``: a user's clips (:mod:`robustmsa.media.clips`), params ``path`` (required), the
    :class:`MediaOptions` fields, ``tokenizer`` (a local tokenizer folder; default: a word-level
    tokenizer built from the training transcripts), ``max_tokens``, ``label_range``,
    ``metric_family``, ``extractors``, ``workers``, ``cache``.

``extractors`` maps a modality to an extractor name or ``{name: ..., **params}``; parameters of the
default extractor are merged (``{vision: {detector: haar}}`` keeps ``face_hog``). ``workers``
(default ``$ROBUSTMSA_RAW_WORKERS`` or 1) is the number of extraction processes; ``cache: false``
keeps features in memory only.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corruptions import CorruptionSource, ModalityBatch, PointLike, family_level
from corruptions.base import as_rho
from corruptions.keys import MODALITIES, sample_keys
from corruptions.source import point_rhos

from ..data.dataset import SPLITS, MSADataset, Split
from ..errors import DataError
from . import acoustic, minilm, textual, visual  # noqa: F401  (registers the extractors)
from .cache import FeatureCache, cell_key
from .clips import ArrayCorpus, ClipCorpus, FileCorpus, MediaOptions, load_clip_records, validate_records
from .extract import ClipCorruption, default_workers, extract_rows, raw_family
from .features import Extractor, FeatureRow, build_extractor

__all__ = ["RawSource", "RawPrepared", "RawMSADataset", "ModalityArrays", "load_synthetic_raw", "load_raw_folder",
           "build_raw_dataset", "is_raw_family"]


@dataclass(frozen=True, eq=False)
class ModalityArrays:
    """Stacked features of N clips: float32 [N, T, D], bool [N, T], int64 [N, T] or None."""

    features: np.ndarray
    mask: np.ndarray
    ids: np.ndarray | None = None

    @classmethod
    def stack(cls, rows: Sequence[FeatureRow]) -> ModalityArrays:
        ids = None if any(r.ids is None for r in rows) else np.stack([r.ids for r in rows]).astype(np.int64)
        return cls(np.stack([r.features for r in rows]).astype(np.float32), np.stack([r.mask for r in rows]), ids)


def _cache_root() -> Path:
    from ..data.synthetic.cache import default_cache_dir

    return default_cache_dir() / "raw_features"


class RawSource:
    """The raw clips of a dataset (one corpus per split), its extractors and its feature cache."""

    def __init__(
        self,
        name: str,
        corpora: Mapping[str, ClipCorpus],
        extractors: Mapping[str, Extractor],
        cache: FeatureCache | None = None,
        workers: int = 1,
        progress: bool | None = None,
    ):
        missing = [s for s in SPLITS if s not in corpora]
        if missing:
            raise DataError(f"raw dataset {name!r} lacks split(s) {', '.join(missing)}")
        for m in MODALITIES:
            if m not in extractors:
                raise DataError(f"raw dataset {name!r} has no extractor for {m}")
        self.name, self.corpora, self.extractors = name, dict(corpora), dict(extractors)
        self.cache = cache if cache is not None else FeatureCache(None)
        self.workers, self.progress = max(1, int(workers)), progress
        self._fingerprints = {s: c.fingerprint() for s, c in self.corpora.items()}
        places = sorted({c.location() for c in self.corpora.values()})
        self._corpus_key = hashlib.sha256("\x1f".join(places).encode()).hexdigest()[:16]
        self._rows: dict[str, dict[int, int]] = {}

    def fingerprint(self) -> str:
        """Identity of the clips and the extractors (part of the dataset's content hash)."""
        blob = json.dumps({"clips": self._fingerprints, "extractors": {m: e.key() for m, e in self.extractors.items()}},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def clip_keys(self, split: str) -> list[str]:
        c = self.corpora[split]
        return [f"{cid}\x1f{c.stamp(i)}" for i, cid in enumerate(c.ids)]

    def rows_of(self, split: str, keys: torch.Tensor | np.ndarray) -> list[int]:
        """Corpus positions of the samples with per-sample ``keys`` (``Batch.keys``)."""
        if split not in self._rows:
            self._rows[split] = {int(k): i for i, k in enumerate(sample_keys(self.corpora[split].ids))}
        index = self._rows[split]
        ks = keys.tolist() if hasattr(keys, "tolist") else list(keys)
        unknown = [k for k in ks if int(k) not in index]
        if unknown:
            raise DataError(f"raw dataset {self.name!r}: {len(unknown)} sample(s) of the batch are not clips of "
                            f"split {split!r}")
        return [index[int(k)] for k in ks]

    def features(
        self,
        split: str,
        modality: str,
        family: str | dict[str, Any] | None = None,
        seed: int = 0,
        rho: float | Sequence[float] = 1.0,
        rows: Sequence[int] | None = None,
    ) -> ModalityArrays:
        """Features of ``rows`` (default all) of ``split``; corrupted by ``family`` at ``rho`` if given.

        ``rho`` is one reliability or one per row. Cached by (clip, corruption point, extractor).
        """
        corpus, extractor = self.corpora[split], self.extractors[modality]
        rows = list(range(len(corpus))) if rows is None else [int(r) for r in rows]
        rhos = [float(rho)] * len(rows) if np.ndim(rho) == 0 else [float(r) for r in rho]
        if len(rhos) != len(rows):
            raise ValueError(f"got {len(rows)} rows and {len(rhos)} rho values")
        spec, version = None, ""
        if family is not None:
            spec, fam = raw_family(family, modality)
            version = fam.version
        all_keys = self.clip_keys(split)
        result: list[FeatureRow | None] = [None] * len(rows)
        for r in sorted(set(rhos)):
            pos = [p for p, x in enumerate(rhos) if x == r]
            cell = cell_key(spec, version, seed, r)
            shard = (self._corpus_key, modality, extractor.key(), cell)
            keys = [all_keys[rows[p]] for p in pos]
            found, missing = self.cache.lookup(shard, keys)
            for j, row in found.items():
                result[pos[j]] = row
            if missing:
                todo = [rows[pos[j]] for j in missing]
                what = f"{modality} clean ({split})" if spec is None else f"{modality} {spec['name']} rho={r:g} ({split})"
                corruption = None if spec is None else ClipCorruption(spec, seed, (r,) * len(todo))
                new = extract_rows(corpus, todo, extractor, corruption, workers=self.workers, progress=self.progress,
                                   description=what)
                for j, row in zip(missing, new):
                    result[pos[j]] = row
                self.cache.store(shard, {keys[j]: row for j, row in zip(missing, new)})
        return ModalityArrays.stack([r for r in result if r is not None])

    def prepared(self, family: str | dict[str, Any], seed: int, data: Any, split: str) -> RawPrepared:
        """The raw counterpart of ``Corrupter.prepare``: ``data`` is a :class:`~robustmsa.data.batch.Batch`."""
        spec, fam = raw_family(family)
        return RawPrepared(self, spec, fam.modality, int(seed), split, self.rows_of(split, data.keys),
                           data.modalities())


class RawPrepared(CorruptionSource):
    """The raw-level :class:`~corruptions.CorruptionSource`: ``at(point)`` gives every modality at
    ``point``, the raw family's one modality corrupted as clips and re-extracted."""

    def __init__(self, source: RawSource, family: dict[str, Any], modality: str, seed: int, split: str,
                 rows: list[int], clean: Mapping[str, ModalityBatch]):
        self.data = dict(clean)
        self.source, self.family, self.modality = source, family, modality
        self.seed, self.split, self.rows = seed, split, rows

    def at(self, point: PointLike) -> dict[str, ModalityBatch]:
        out = dict(self.data)
        for m, rho in point_rhos(point).items():
            clean = self.data[m]
            r = as_rho(rho, clean.batch_size, "cpu")
            if bool((r == 1).all()):
                continue
            if m != self.modality:
                raise ValueError(f"raw family {self.family['name']!r} corrupts {self.modality} only, but {m} = "
                                 f"{rho} was asked for; sweep {self.modality} for this family")
            out[m] = self._extracted(m, r, clean)
        return out

    def _extracted(self, m: str, rho: torch.Tensor, clean: ModalityBatch) -> ModalityBatch:
        """Modality ``m`` of the rows re-extracted from clips corrupted at per-sample ``rho``."""
        arr = self.source.features(self.split, m, self.family, self.seed, rho.tolist(), self.rows)
        dev = clean.features.device
        ids = None if arr.ids is None or m != "text" else torch.from_numpy(arr.ids).to(dev)
        return ModalityBatch(torch.from_numpy(arr.features).to(dev), torch.from_numpy(arr.mask).to(dev),
                             clean.missing.clone(), ids)


@dataclass
class RawMSADataset(MSADataset):
    """An MSADataset of clean extracted features with a handle on its raw clips (``raw``)."""

    raw: RawSource | None = field(default=None, repr=False, compare=False)

    def content_hash(self) -> str:
        base = super().content_hash()
        if self.raw is None:
            return base
        return hashlib.sha256(f"{base}/{self.raw.fingerprint()}".encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- building


def build_raw_dataset(source: RawSource, label_range: tuple[float, float] = (-3.0, 3.0), metric_family: str = "mosi",
                      info: dict[str, Any] | None = None) -> RawMSADataset:
    """Extract the clean features of every split of ``source`` into a :class:`RawMSADataset`."""
    splits = {}
    for s in SPLITS:
        corpus = source.corpora[s]
        f = {m: source.features(s, m) for m in MODALITIES}
        splits[s] = Split(
            text=f["text"].features, text_mask=f["text"].mask, audio=f["audio"].features, audio_mask=f["audio"].mask,
            vision=f["vision"].features, vision_mask=f["vision"].mask, labels=np.asarray(corpus.labels, np.float32),
            ids=np.asarray(corpus.ids), text_ids=f["text"].ids,
            raw_text=np.asarray([corpus.transcript(i) for i in range(len(corpus))]),
        )
    meta = dict(info or {})
    meta["extractors"] = {m: {"key": e.key(), "name": e.name, "version": e.version, "config": e.config()}
                          for m, e in source.extractors.items()}
    meta["raw_source"] = source.fingerprint()
    return RawMSADataset(name=source.name, splits=splits, label_range=tuple(label_range), metric_family=metric_family,
                         info=meta, raw=source)


def _extractors(user: Mapping[str, Any] | None, defaults: Mapping[str, dict[str, Any]],
                lengths: Mapping[str, Mapping[str, Any]]) -> dict[str, Extractor]:
    user = dict(user or {})
    unknown = sorted(set(user) - set(MODALITIES))
    if unknown:
        raise DataError(f"extractors: unknown modality key(s) {unknown}; allowed: {', '.join(MODALITIES)}")
    out = {}
    for m in MODALITIES:
        spec: Any = user.get(m, {})
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, (dict, Extractor)):
            raise DataError(f"extractors.{m} must be a name or a mapping with 'name', got {spec!r}")
        if isinstance(spec, dict) and spec.get("name", defaults[m]["name"]) == defaults[m]["name"]:
            spec = {**defaults[m], **spec}
        out[m] = build_extractor(m, spec, **lengths[m])
    return out


def _cache(enabled: bool) -> FeatureCache:
    return FeatureCache(_cache_root() if enabled else None)


def _tokenizer_dir(words: Sequence[str]) -> Path:
    from ..data.synthetic.cache import default_cache_dir

    words = sorted(set(words))
    key = hashlib.sha256("\x1f".join(words).encode()).hexdigest()[:16]
    folder = default_cache_dir() / "raw_tokenizers" / key
    if not (folder / "tokenizer.json").is_file():
        textual.build_word_tokenizer(words, folder)
    return folder


def load_synthetic_raw(seed: int = 0, extractors: Mapping[str, Any] | None = None, workers: int | None = None,
                       cache: bool = True, progress: bool | None = None, **params: Any) -> RawMSADataset:
    """The embedded raw benchmark (generated once, cached) with its clean extracted features."""
    from .generate import FACE_BOX, RawBenchmarkConfig, lexicon_features, load_raw_benchmark, vocabulary

    config = RawBenchmarkConfig.from_params(seed=seed, **params)
    n_workers = default_workers() if workers is None else int(workers)
    root = load_raw_benchmark(config, workers=n_workers)
    corpora = {s: ArrayCorpus(root, s) for s in SPLITS}
    templates = config.text_source == "templates"
    words = vocabulary() if templates else [w for t in corpora["train"].transcripts for w in textual.split_words(t)]
    defaults = {
        "text": {"name": "token_embedding", "lexicon": lexicon_features() if templates else {}},
        "audio": {"name": "acoustic"},
        "vision": {"name": "face_hog", "crop": list(FACE_BOX)},
    }
    n_audio = acoustic.AcousticFeatures(sample_rate=config.sample_rate).frames_for(config.n_samples)
    lengths = {"text": {"tokenizer": str(_tokenizer_dir(words)), "max_tokens": config.max_tokens},
               "audio": {"sample_rate": config.sample_rate, "max_frames": n_audio},
               "vision": {"max_frames": config.n_frames}}
    source = RawSource("synthetic_raw", corpora, _extractors(extractors, defaults, lengths), _cache(cache),
                       n_workers, progress)
    info = json.loads((root / "info.json").read_text(encoding="utf-8"))
    info["source"] = "robustmsa.media.generate"
    return build_raw_dataset(source, (-3.0, 3.0), "mosi", info)


@dataclass(frozen=True)
class RawFolderParams:
    """The params of dataset ``raw`` besides ``path`` and the media options
    (:class:`~robustmsa.media.clips.MediaOptions`): the text tokenizer (default: one built from the
    training transcripts), label range and metric family, extractors, workers, cache and progress."""

    tokenizer: str | None = None
    max_tokens: int = 50
    label_range: Sequence[float] = (-3.0, 3.0)
    metric_family: str = "mosi"
    extractors: Mapping[str, Any] | None = None
    workers: int | None = None
    cache: bool = True
    progress: bool | None = None


def load_raw_folder(path: str | None = None, **params: Any) -> RawMSADataset:
    """A user's raw clips (manifest CSV or split/clip folders; see :mod:`robustmsa.media.clips`)."""
    from .acoustic import AcousticFeatures

    if not path:
        raise DataError("dataset 'raw': params.path is required (a manifest .csv or a folder of clips)",
                        hint="datasets: [{name: raw, params: {path: data/my_clips}}]")
    own, media = list(RawFolderParams.__dataclass_fields__), list(MediaOptions.__dataclass_fields__)
    unknown = sorted(set(params) - set(own) - set(media))
    if unknown:
        raise DataError(f"dataset 'raw': unknown parameter(s) {unknown}; allowed: path, "
                        f"{', '.join(own)}, {', '.join(media)}")
    p = RawFolderParams(**{k: v for k, v in params.items() if k in own})
    if p.metric_family not in ("mosi", "sims"):
        raise DataError(f"dataset 'raw': metric_family must be mosi or sims, got {p.metric_family!r}")
    options = MediaOptions(**{k: v for k, v in params.items() if k in media})
    records = load_clip_records(path)
    facts = validate_records(records, options, str(path))
    corpora = {s: FileCorpus(s, records, options) for s in SPLITS}
    if p.tokenizer is None:
        words = [w for r in records if r.split == "train" for w in textual.split_words(r.transcript)]
        tok_dir = str(_tokenizer_dir(words))
    else:
        tok_dir = str(Path(p.tokenizer).expanduser())
    n_audio = AcousticFeatures(sample_rate=options.sample_rate).frames_for(int(facts["max_audio_s"] * options.sample_rate))
    defaults = {"text": {"name": "token_embedding"}, "audio": {"name": "acoustic"},
                "vision": {"name": "face_hog", "detector": "haar", "crop": [0.2, 0.1, 0.8, 0.9]}}
    lengths = {"text": {"tokenizer": tok_dir, "max_tokens": int(p.max_tokens)},
               "audio": {"sample_rate": options.sample_rate, "max_frames": max(1, n_audio)},
               "vision": {"max_frames": max(1, int(facts["max_frames"]))}}
    source = RawSource(f"raw:{Path(path).name}", corpora, _extractors(p.extractors, defaults, lengths),
                       _cache(p.cache), default_workers() if p.workers is None else p.workers, p.progress)
    lr = tuple(float(x) for x in p.label_range)
    info = {"source": str(Path(path).expanduser().resolve()), "media": options.__dict__, "clips": facts["splits"]}
    return build_raw_dataset(source, (lr[0], lr[1]), p.metric_family, info)


def is_raw_family(name: str) -> bool:
    """Whether the registered corruption family ``name`` acts on raw media."""
    return family_level(name) == "raw"
