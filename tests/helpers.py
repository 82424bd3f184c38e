"""Shared helpers of the model tests: small deterministic batches and models of given feature sizes.

A test file states its sizes once, ``KIT = ModelKit(dims, lengths)``, then builds models with
``KIT.build(name, **overrides)`` and batches with ``KIT.batch(n, seed, ...)``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

import torch

from corruptions.keys import MODALITIES
from robustmsa.data.batch import Batch
from robustmsa.data.synthetic import CLUE_VOCAB
from robustmsa.models import MSAModel, create_model

__all__ = ["ModelKit", "with_missing", "absent", "run"]

@dataclass(frozen=True)
class ModelKit:
    """Feature sizes ``dims`` and sequence ``lengths`` shared by the models and batches of a test file,
    and the file's defaults for :meth:`batch` (``min_valid``, ``clue_len``, ``normal_labels``)."""

    dims: dict[str, int]
    lengths: dict[str, int]
    min_valid: int = 1
    clue_len: int = 0
    normal_labels: bool = False

    def build(self, name: str, seed: int = 0, lengths: dict[str, int] | None = None,
              **overrides: typing.Any) -> MSAModel:
        """Model ``name`` built by the factory for these sizes."""
        return create_model(name, self.dims, lengths or self.lengths, seed=seed, **overrides)

    def batch(self, n: int = 6, seed: int = 0, missing: typing.Any = None, lengths: dict[str, int] | None = None,
              clue_len: int | None = None) -> Batch:
        """A random batch with ragged masks: per sample a valid prefix of random length >= ``min_valid``.

        ``missing``: bool [n, 3] or 3 flags for every sample (features zeroed, masks False there);
        ``clue_len`` > 0 (default: the kit's): audio and vision clue ids like the synthetic data's (a
        leading 1, then clue words and padding 0); labels uniform in [-3, 3] (standard normal with
        ``normal_labels``). ``lengths`` default to the kit's.
        """
        lengths = lengths or self.lengths
        clue_len = self.clue_len if clue_len is None else clue_len
        min_valid = self.min_valid
        g = torch.Generator().manual_seed(seed)
        miss = torch.zeros(n, 3, dtype=torch.bool)
        if missing is not None:
            miss[:] = torch.as_tensor(missing, dtype=torch.bool)
        parts: dict[str, torch.Tensor] = {}
        for i, m in enumerate(MODALITIES):
            t = lengths[m]
            mask = (torch.arange(t).unsqueeze(0) < torch.randint(min_valid, t + 1, (n, 1), generator=g)) & ~miss[:, i : i + 1]
            parts[m] = torch.randn(n, t, self.dims[m], generator=g) * mask.unsqueeze(-1)
            parts[f"{m}_mask"] = mask
        clues: dict[str, torch.Tensor] = {}
        for m in ("audio", "vision") if clue_len else ():
            body = torch.randint(3, len(CLUE_VOCAB), (n, clue_len), generator=g)
            body = body * (torch.arange(clue_len) < torch.randint(3, clue_len + 1, (n, 1), generator=g))
            clues[m] = torch.cat([torch.ones(n, 1, dtype=torch.long), body], dim=1)
        labels = torch.randn(n, generator=g) if self.normal_labels else torch.rand(n, generator=g) * 6 - 3
        return Batch(missing=miss, labels=labels, keys=torch.randint(0, 2**62, (n,), generator=g), clues=clues,
                     **parts)


def with_missing(batch: Batch, missing: torch.Tensor) -> Batch:
    """Apply the missing-modality contract: zero features and all-False mask where missing."""
    changes: dict[str, torch.Tensor] = {"missing": missing}
    for i, m in enumerate(MODALITIES):
        keep = ~missing[:, i]
        changes[m] = getattr(batch, m) * keep[:, None, None]
        changes[f"{m}_mask"] = getattr(batch, f"{m}_mask") & keep[:, None]
    return dataclasses.replace(batch, **changes)


def absent(batch: Batch, *modalities: str) -> Batch:
    """Flag ``modalities`` missing in every sample (features zeroed, masks all False)."""
    missing = batch.missing.clone()
    for m in modalities:
        missing[:, MODALITIES.index(m)] = True
    return with_missing(batch, missing)


def run(model: MSAModel, batch: Batch, train: bool = False, clean: Batch | None = None) -> dict[str, typing.Any]:
    """``model(batch, clean)`` in training mode with gradients, or in eval mode without."""
    model.train(train)
    if train:
        return model(batch, clean=clean)
    with torch.no_grad():
        return model(batch, clean=clean)


def mlflow_client(uri: str):
    """A raw MLflow client for tests that inspect the store directly (the package reads it only
    through robustmsa.tracking)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)
