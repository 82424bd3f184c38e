"""In-memory MSA dataset: three splits of aligned numpy arrays, one format for every source.

Both the embedded synthetic benchmark and MMSA pickles load into :class:`MSADataset`; models and
the corruption engine only ever see batches made from it (:mod:`robustmsa.data.batch`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["Split", "MSADataset", "SPLITS", "TASKS", "CLASSIFICATION"]

SPLITS = ("train", "valid", "test")
#: dataset task types: a sentiment score per sample, or one of ``classes`` per sample
TASKS = ("regression", "classification")
#: the metric family of every classification dataset (:func:`robustmsa.metrics.classification_metrics`)
CLASSIFICATION = "classification"


@dataclass
class Split:
    """One split. Shapes: N samples, L text tokens, Ta/Tv audio/vision frames.

    text:        float32 [N, L, Dt]  precomputed text features (e.g. BERT)
    text_ids:    int64   [N, L] or None: token ids (BERT vocabulary: [CLS]=101, [SEP]=102, [UNK]=100, pad 0)
    text_mask:   bool    [N, L]
    audio:       float32 [N, Ta, Da];  audio_mask  bool [N, Ta]
    vision:      float32 [N, Tv, Dv];  vision_mask bool [N, Tv]
    labels:      float32 [N]  regression labels, or class indices 0..C-1 (as float32) on a
                 classification dataset (:attr:`MSADataset.task`)
    ids:         str     [N]  sample ids ("video$_$clip")
    unimodal_labels: {"T"|"A"|"V": float32 [N]} (SIMS), may be empty
    clues:       {"audio"|"vision": int64 [N, Lc]} token ids of per-sample clue texts, may be empty
    raw_text:    str [N] or None
    """

    text: np.ndarray
    text_mask: np.ndarray
    audio: np.ndarray
    audio_mask: np.ndarray
    vision: np.ndarray
    vision_mask: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    text_ids: np.ndarray | None = None
    unimodal_labels: dict[str, np.ndarray] = field(default_factory=dict)
    clues: dict[str, np.ndarray] = field(default_factory=dict)
    raw_text: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> Split:
        def take(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, dict):
                return {k: a[idx] for k, a in v.items()}
            return v[idx]

        return Split(**{f.name: take(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the split under a flat name (for hashing and export)."""
        out: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, dict):
                out.update({f"{f.name}.{k}": a for k, a in sorted(v.items())})
            else:
                out[f.name] = v
        return out


@dataclass
class MSADataset:
    """A dataset: ``splits`` (train/valid/test), the label range, the metric family and the task.

    metric_family: "mosi" (MOSI/MOSEI definitions), "sims" (SIMS definitions) or "classification"
    info: provenance and facts (source, generator parameters, planted ceiling, non-finite report)
    task: "regression" (the default: a sentiment score per sample) or "classification": every
          label is a class index into ``classes`` (e.g. MELD's seven emotions), the metric family
          is "classification" and ``label_range`` is ``(0, C - 1)``. Checked on construction.
    """

    name: str
    splits: dict[str, Split]
    label_range: tuple[float, float] = (-3.0, 3.0)
    metric_family: str = "mosi"
    info: dict[str, Any] = field(default_factory=dict)
    task: str = "regression"
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        if self.task not in TASKS:
            raise DataError(f"dataset {self.name!r}: task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.task == "regression":
            if self.classes:
                raise DataError(f"dataset {self.name!r}: classes {list(self.classes)} given for a regression task",
                                hint="set task: classification, or drop classes")
            return
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise DataError(f"dataset {self.name!r}: a classification task needs at least 2 distinct class names, "
                            f"got {list(self.classes)}")
        if self.metric_family != CLASSIFICATION:
            raise DataError(f"dataset {self.name!r}: metric_family {self.metric_family!r} with a classification "
                            f"task (allowed: {CLASSIFICATION!r})")
        for split, s in self.splits.items():
            y = np.asarray(s.labels)
            bad = ~np.isfinite(y) | (y != np.round(y)) | (y < 0) | (y >= len(self.classes))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"dataset {self.name!r}: split {split!r} label {float(y[i])!r} of sample {str(s.ids[i])!r} "
                                f"is not a class index in 0..{len(self.classes) - 1} (classes: "
                                f"{', '.join(self.classes)})")

    @property
    def num_classes(self) -> int:
        """The number of classes of a classification dataset; 0 for regression."""
        return len(self.classes)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    @property
    def dims(self) -> dict[str, int]:
        s = self.splits["train"]
        return {"text": s.text.shape[-1], "audio": s.audio.shape[-1], "vision": s.vision.shape[-1]}

    @property
    def lengths(self) -> dict[str, int]:
        s = self.splits["train"]
        return {"text": s.text.shape[1], "audio": s.audio.shape[1], "vision": s.vision.shape[1]}

    def content_hash(self) -> str:
        """sha256 over every array of every split (names, dtypes, shapes and bytes), and the class
        names of a classification dataset (a regression dataset's hash depends on its arrays only)."""
        h = hashlib.sha256()
        if self.task != "regression":
            h.update(f"task/{self.task}/{chr(31).join(self.classes)}".encode())
        for split in SPLITS:
            for name, a in self.splits[split].arrays().items():
                a = np.ascontiguousarray(a)
                h.update(f"{split}/{name}/{a.dtype.str}/{a.shape}".encode())
                if a.dtype.kind in "OU":
                    h.update("\x1f".join(map(str, a.ravel().tolist())).encode("utf-8"))
                else:
                    h.update(a.tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        sizes = "/".join(str(len(self.splits[s])) for s in SPLITS)
        d, length = self.dims, self.lengths
        classes = f"; {self.num_classes} classes ({', '.join(self.classes)})" if self.classes else ""
        return (
            f"{self.name}: {sizes} samples; text {length['text']}x{d['text']}, "
            f"audio {length['audio']}x{d['audio']}, vision {length['vision']}x{d['vision']}{classes}"
        )
