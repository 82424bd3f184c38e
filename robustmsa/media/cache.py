"""The extraction cache: features of a clip at a corruption point, by extractor version.

One entry is the :class:`~robustmsa.media.features.FeatureRow` of one clip, keyed by

* the **clip**: its id and content stamp (:meth:`ClipCorpus.stamp`: changes when the media change);
* the **corruption point** of that modality: ``"clean"`` for the uncorrupted media, otherwise a
  hash of (family name, family parameters, family version, seed, stream, rho) — see
  :func:`cell_key`;
* the **extractor**: :meth:`Extractor.key` (name, version, configuration).

Entries are grouped into shards, one ``.npz`` file per (corpus location, modality, extractor,
corruption point) under ``<root>/<location>/<modality>/<extractor key>/<cell>.npz`` (the location
only groups files: a changed clip misses by its stamp, alone), each holding the entries
of any subset of the corpus' clips (arrays ``keys``, ``features``, ``mask`` and, for text,
``ids``). A lookup loads the shard once (then keeps it in memory), returns the rows it holds and
the clips it lacks; :meth:`FeatureCache.store` merges new rows and rewrites the shard atomically
(write to a temporary file, then rename), so concurrent writers lose at most each other's rows,
never corrupt a file. ``hits`` and ``misses`` count clips.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .features import FeatureRow

__all__ = ["FeatureCache", "cell_key", "CLEAN"]

CLEAN = "clean"


def cell_key(family: dict[str, Any] | None, version: str, seed: int, rho: float, stream: int = 0) -> str:
    """Identity of one corruption point of one modality (``"clean"`` when ``family`` is None)."""
    if family is None:
        return CLEAN
    blob = json.dumps({"family": family, "version": version, "seed": int(seed), "stream": int(stream),
                       "rho": float(rho).hex()}, sort_keys=True, default=str)
    return f"{family['name']}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


class FeatureCache:
    """Shards of extracted features on disk (``root``) and in memory; ``root=None``: memory only."""

    def __init__(self, root: str | Path | None, memory_shards: int = 256):
        self.root = None if root is None else Path(root)
        self.memory_shards = int(memory_shards)
        self._shards: OrderedDict[tuple[str, ...], dict[str, FeatureRow]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, shard: tuple[str, ...]) -> Path | None:
        if self.root is None:
            return None
        *folders, name = shard
        return self.root.joinpath(*folders, f"{name}.npz")

    def _load(self, shard: tuple[str, ...]) -> dict[str, FeatureRow]:
        if shard in self._shards:
            self._shards.move_to_end(shard)
            return self._shards[shard]
        rows: dict[str, FeatureRow] = {}
        path = self._path(shard)
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys, feats, mask = z["keys"], z["features"], z["mask"]
                    ids = z["ids"] if "ids" in z.files else None
                rows = {str(k): FeatureRow(feats[i], mask[i], None if ids is None else ids[i]) for i, k in enumerate(keys)}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                rows = {}  # an unreadable shard is recomputed
        self._shards[shard] = rows
        while len(self._shards) > self.memory_shards:
            self._shards.popitem(last=False)
        return rows

    def lookup(self, shard: tuple[str, ...], keys: Sequence[str]) -> tuple[dict[int, FeatureRow], list[int]]:
        """(rows found by position in ``keys``, positions missing); counts hits and misses."""
        rows = self._load(shard)
        found = {i: rows[k] for i, k in enumerate(keys) if k in rows}
        missing = [i for i in range(len(keys)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def store(self, shard: tuple[str, ...], entries: dict[str, FeatureRow]) -> None:
        """Add ``entries`` (clip key -> row) to ``shard`` and rewrite its file."""
        if not entries:
            return
        rows = self._load(shard)
        rows.update(entries)
        path = self._path(shard)
        if path is None:
            return
        keys = sorted(rows)
        arrays: dict[str, np.ndarray] = {
            "keys": np.asarray(keys, dtype=str),
            "features": np.stack([rows[k].features for k in keys]),
            "mask": np.stack([rows[k].mask for k in keys]),
        }
        if all(rows[k].ids is not None for k in keys):
            arrays["ids"] = np.stack([rows[k].ids for k in keys])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass  # an unwritable cache only costs recomputation
