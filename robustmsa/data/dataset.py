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

__all__ = ["Split", "MSADataset", "SPLITS"]

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    """One split. Shapes: N samples, L text tokens, Ta/Tv audio/vision frames.

    text:        float32 [N, L, Dt]  precomputed text features (e.g. BERT)
    text_ids:    int64   [N, L] or None: token ids (BERT vocabulary: [CLS]=101, [SEP]=102, [UNK]=100, pad 0)
    text_mask:   bool    [N, L]
    audio:       float32 [N, Ta, Da];  audio_mask  bool [N, Ta]
    vision:      float32 [N, Tv, Dv];  vision_mask bool [N, Tv]
    labels:      float32 [N]  regression labels
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
    """A dataset: ``splits`` (train/valid/test), the label range and the metric family.

    metric_family: "mosi" (MOSI/MOSEI definitions) or "sims" (SIMS definitions)
    info: provenance and facts (source, generator parameters, planted ceiling, non-finite report)
    """

    name: str
    splits: dict[str, Split]
    label_range: tuple[float, float] = (-3.0, 3.0)
    metric_family: str = "mosi"
    info: dict[str, Any] = field(default_factory=dict)

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
        """sha256 over every array of every split (names, dtypes, shapes and bytes)."""
        h = hashlib.sha256()
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
        return (
            f"{self.name}: {sizes} samples; text {length['text']}x{d['text']}, "
            f"audio {length['audio']}x{d['audio']}, vision {length['vision']}x{d['vision']}"
        )
