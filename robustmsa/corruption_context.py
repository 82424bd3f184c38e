"""Per-trial cache of fitted corrupters and prepared corruption sources, for every family level.

:class:`CorruptionContext` hands out one :class:`~corruptions.source.CorruptionSource` per
(family, seed, split). Which implementation serves a family is decided by the family's declared
level (:func:`corruptions.family_level`): feature-level families are fitted on the training split
and drawn once (:class:`corruptions.Prepared`); raw-level families go to the dataset's raw clips
(:meth:`robustmsa.media.dataset.RawSource.prepared`, a :class:`~robustmsa.media.dataset.RawPrepared`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from corruptions import Corrupter, CorruptionSource, ModalityBatch, family_level, make_corrupter
from corruptions.base import Level

from .data.batch import Batch
from .errors import DataError
from .suite import FamilyRef

__all__ = ["CorruptionContext", "RawClips"]

#: a family as a suite's parsed reference, or written as a name or ``{"name": ..., **params}``
FamilySpec = FamilyRef | str | dict[str, Any]


class RawClips(Protocol):
    """The raw clips of a dataset, as the context needs them (:class:`~robustmsa.media.dataset.RawSource`)."""

    def prepared(self, family: FamilySpec, seed: int, data: Batch, split: str) -> CorruptionSource: ...


class CorruptionContext:
    """Per-trial cache of corrupters fitted once on the training split, and of sampled states.

    Fitting (e.g. feature statistics of ``noise``) and sampling (the random state of a split) are
    done once per (family, seed) and (family, seed, split); every later grid point, validation
    epoch or evaluation reuses them. States depend only on keys, so caching changes no number.

    Raw-level families (audio, frames, transcripts) need the dataset's raw clips: ``raw`` is the
    dataset's :class:`~robustmsa.media.dataset.RawSource` (None for feature-only datasets, named
    ``dataset`` in errors); their ``prepared`` state corrupts the clips of the split and
    re-extracts features at each point (:class:`~robustmsa.media.dataset.RawPrepared`).
    """

    def __init__(self, train: Mapping[str, ModalityBatch], raw: RawClips | None = None, dataset: str = ""):
        self.train = train
        self.raw = raw
        self.dataset = dataset
        self._corrupters: dict[tuple[str, int], Corrupter] = {}
        self._prepared: dict[tuple[str, int, str], CorruptionSource] = {}
        self._sources: dict[Level, Callable[[FamilyRef, int, Batch, str], CorruptionSource]] = {
            "feature": self._feature_source,
            "raw": self._raw_source,
        }

    def _level(self, f: FamilyRef, use: str) -> Level:
        """The family's declared level; raw families only as ``prepared`` sources of raw clips."""
        name = f.name
        level = family_level(name)
        if level == "raw" and (self.raw is None or use != "prepared"):
            why = (f"dataset {self.dataset or '(unnamed)'!r} has no raw clips (use synthetic_raw or raw)"
                   if self.raw is None else "raw families apply in evaluation and validation grids only, "
                   "not to training batches")
            raise DataError(f"corruption family {name!r} is raw-level (it corrupts media before feature "
                            f"extraction): {why}", hint="use a feature-level family (missing, drop, noise, blur)")
        return level

    def corrupter(self, f: FamilySpec, seed: int) -> Corrupter:
        """The feature-level corrupter of ``f`` fitted on the training split (one per family and seed)."""
        ref = FamilyRef.model_validate(f)
        self._level(ref, "corrupter")
        key = (ref.key(), seed)
        if key not in self._corrupters:
            self._corrupters[key] = make_corrupter(ref.name, seed=seed, train=self.train, **ref.params)
        return self._corrupters[key]

    def prepared(self, f: FamilySpec, seed: int, data: Batch, split: str) -> CorruptionSource:
        """The sampled state of ``data`` (named ``split``: one state per split and family)."""
        ref = FamilyRef.model_validate(f)
        key = (ref.key(), seed, split)
        if key not in self._prepared:
            self._prepared[key] = self._sources[self._level(ref, "prepared")](ref, seed, data, split)
        return self._prepared[key]

    def _feature_source(self, f: FamilyRef, seed: int, data: Batch, split: str) -> CorruptionSource:
        return self.corrupter(f, seed).prepare(data.modalities(), data.keys)

    def _raw_source(self, f: FamilyRef, seed: int, data: Batch, split: str) -> CorruptionSource:
        assert self.raw is not None  # checked by _level
        return self.raw.prepared(f.spec(), seed, data, split)
