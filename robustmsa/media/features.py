"""Feature extractors: the pluggable step from raw media to the feature sequences the models read.

An extractor serves one modality. It turns one clip (an :class:`~corruptions.raw.AudioClip`, uint8
RGB frames ``[T, H, W, 3]`` or a transcript ``str``) into a :class:`FeatureRow`: features
``[length, dim]`` float32 padded with zeros, a validity mask ``[length]`` and, for text, the token
ids ``[length]``. ``length`` and ``dim`` are fixed at construction, so every clip, clean or
corrupted, gives arrays of the same shape (the models are built for ``dims`` and ``lengths``).

Extractors are pure functions of the clip (no randomness, no global state), versioned: ``version``
changes whenever the same configuration would give different numbers, and :meth:`Extractor.key`
(name, version, configuration) is part of every feature-cache key. They are picklable, so worker
processes receive them as they are; heavy resources (a tokenizer, a face cascade) are loaded
lazily in each process.

Register a new one with ``@register_extractor`` (one mechanism, :data:`EXTRACTORS`) and select it
in a dataset's params: ``extractors: {vision: {name: my_faces, param: ...}}``.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from corruptions.registry import Registry

from ..errors import DataError

__all__ = ["FeatureRow", "Extractor", "EXTRACTORS", "register_extractor", "build_extractor", "pad_rows"]


@dataclass(frozen=True, eq=False)
class FeatureRow:
    """Features of one clip: float32 [length, dim], bool mask [length], int64 ids [length] or None."""

    features: np.ndarray
    mask: np.ndarray
    ids: np.ndarray | None = None


class Extractor(ABC):
    """One modality's extractor. Subclasses set ``name``, ``version``, ``modality``."""

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]
    #: what the features are, for the docs and ``robustmsa ls``
    description: ClassVar[str] = ""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature size D."""

    @property
    @abstractmethod
    def length(self) -> int:
        """Sequence length T (clips are padded or truncated to it)."""

    @abstractmethod
    def extract(self, data: Any) -> FeatureRow:
        """Features of one clip (pure)."""

    def config(self) -> dict[str, Any]:
        """Every constructor parameter that shapes the numbers (JSON-ready)."""
        return {}

    def key(self) -> str:
        """Identity of the numbers this extractor produces: hash of name, version and config."""
        blob = json.dumps({"name": self.name, "version": self.version, "config": self.config()},
                          sort_keys=True, default=str)
        return f"{self.name}-v{self.version}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


EXTRACTORS: Registry[type[Extractor]] = Registry("feature extractor")


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: register an extractor class under its ``name``."""
    EXTRACTORS.register(cls.name, cls)
    return cls


def build_extractor(modality: str, spec: str | dict[str, Any] | Extractor, **defaults: Any) -> Extractor:
    """An extractor from a name, a ``{"name": ..., **params}`` dict or an instance.

    ``defaults`` are constructor parameters used unless ``spec`` sets them (e.g. the dataset's
    sequence length or sample rate).
    """
    if isinstance(spec, Extractor):
        ext = spec
    else:
        params = {"name": spec} if isinstance(spec, str) else dict(spec)
        if "name" not in params:
            raise DataError(f"extractor for {modality} needs a 'name'; registered: {', '.join(EXTRACTORS.names())}")
        cls = EXTRACTORS.get(params.pop("name"))
        accepted = getattr(cls, "accepts", ())
        merged = {**{k: v for k, v in defaults.items() if k in accepted}, **params}
        try:
            ext = cls(**merged)
        except TypeError as e:
            raise DataError(f"extractor {cls.name!r}: bad parameters {sorted(merged)}: {e}") from None
    if ext.modality != modality:
        raise DataError(f"extractor {ext.name!r} is for {ext.modality}, not {modality}")
    return ext


def pad_rows(features: np.ndarray, length: int, ids: np.ndarray | None = None) -> FeatureRow:
    """Pad (with zeros) or truncate [n, D] features to [length, D] with the matching mask."""
    n = min(len(features), length)
    out = np.zeros((length, features.shape[1]), dtype=np.float32)
    out[:n] = features[:n]
    mask = np.zeros(length, dtype=bool)
    mask[:n] = True
    pid = None
    if ids is not None:
        pid = np.zeros(length, dtype=np.int64)
        pid[:n] = ids[:n]
    return FeatureRow(out, mask, pid)
