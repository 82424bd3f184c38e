"""Batches: torch views of a split, with masks, missing flags and per-sample keys."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from corruptions.base import ModalityBatch
from corruptions.keys import MODALITIES, sample_keys

from .dataset import Split

__all__ = ["Batch", "batches", "split_to_batch"]


@dataclass
class Batch:
    """A batch of B samples. ``missing`` is bool [B, 3] in the order text, audio, vision.

    ``keys`` is an int64 [B] CPU tensor of per-sample keys (hash of the sample id): the only source
    of per-sample randomness for corruptions. ``clues`` holds optional clue token ids.
    ``reliability`` is set by the trainer on corrupted training batches (the rho each modality was
    corrupted at, 1 = clean): a training target for quality estimators, never a model input.
    """

    text: torch.Tensor
    text_mask: torch.Tensor
    audio: torch.Tensor
    audio_mask: torch.Tensor
    vision: torch.Tensor
    vision_mask: torch.Tensor
    missing: torch.Tensor
    labels: torch.Tensor
    keys: torch.Tensor
    text_ids: torch.Tensor | None = None
    clues: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    reliability: torch.Tensor | None = None  # float [B, 3]: the rho applied in training (a target only)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.text.device

    def modality(self, m: str) -> ModalityBatch:
        i = MODALITIES.index(m)
        return ModalityBatch(
            getattr(self, m), getattr(self, f"{m}_mask"), self.missing[:, i],
            self.text_ids if m == "text" else None,
        )

    def with_modality(self, m: str, data: ModalityBatch) -> Batch:
        i = MODALITIES.index(m)
        missing = self.missing.clone()
        missing[:, i] = data.missing
        changes: dict[str, Any] = {m: data.features, f"{m}_mask": data.mask, "missing": missing}
        if m == "text" and data.ids is not None:
            changes["text_ids"] = data.ids
        return dataclasses.replace(self, **changes)

    def modalities(self) -> dict[str, ModalityBatch]:
        """Every modality as the corruption engine's :class:`~corruptions.base.ModalityBatch`."""
        return {m: self.modality(m) for m in MODALITIES}

    def with_modalities(self, data: Mapping[str, ModalityBatch]) -> Batch:
        """A copy with the given modalities replaced (e.g. by a corrupter's output)."""
        batch = self
        for m, mb in data.items():
            batch = batch.with_modality(m, mb)
        return batch

    def to(self, device: torch.device | str) -> Batch:
        def mv(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v if v is self.keys else v.to(device, non_blocking=True)
            if isinstance(v, dict):
                return {k: t.to(device) for k, t in v.items()}
            return v

        return Batch(**{f.name: mv(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` as views (no copy)."""

        def take(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, dict):
                return {k: t[start:stop] for k, t in v.items()}
            return v[start:stop]

        return Batch(**{f.name: take(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def index(self, idx: torch.Tensor) -> Batch:
        cpu_idx = idx.cpu()

        def take(name: str, v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, dict):
                return {k: t[idx.to(t.device)] for k, t in v.items()}
            return v[cpu_idx] if name == "keys" else v[idx.to(v.device)]

        return Batch(**{f.name: take(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)})


def split_to_batch(split: Split, idx: np.ndarray | None = None, keys: np.ndarray | None = None) -> Batch:
    """Make a CPU batch of ``split`` (rows ``idx``, all rows if None). ``keys`` = sample_keys(split.ids)."""
    s = split if idx is None else split.subset(idx)
    if keys is None:
        keys = sample_keys(s.ids.tolist())
    elif idx is not None:
        keys = keys[idx]
    t = torch.from_numpy
    n = len(s)
    return Batch(
        text=t(np.ascontiguousarray(s.text, dtype=np.float32)),
        text_mask=t(np.ascontiguousarray(s.text_mask, dtype=bool)),
        audio=t(np.ascontiguousarray(s.audio, dtype=np.float32)),
        audio_mask=t(np.ascontiguousarray(s.audio_mask, dtype=bool)),
        vision=t(np.ascontiguousarray(s.vision, dtype=np.float32)),
        vision_mask=t(np.ascontiguousarray(s.vision_mask, dtype=bool)),
        missing=torch.zeros(n, 3, dtype=torch.bool),
        labels=t(np.ascontiguousarray(s.labels, dtype=np.float32)),
        keys=t(np.ascontiguousarray(keys, dtype=np.int64)),
        text_ids=None if s.text_ids is None else t(np.ascontiguousarray(s.text_ids, dtype=np.int64)),
        clues={k: t(np.ascontiguousarray(v, dtype=np.int64)) for k, v in s.clues.items()},
    )


def batches(
    batch: Batch, batch_size: int, shuffle_seed: int | None = None
) -> Iterator[Batch]:
    """Iterate mini-batches of a (full-split) batch; shuffled by a private generator when a seed is given."""
    n = len(batch)
    if shuffle_seed is None:
        order = torch.arange(n)
    else:
        g = torch.Generator().manual_seed(int(shuffle_seed))
        order = torch.randperm(n, generator=g)
    for start in range(0, n, batch_size):
        yield batch.index(order[start : start + batch_size])
