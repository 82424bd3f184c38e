"""The on-disk cache of the synthetic benchmark (``.npz`` + ``.json``, never pickle) and the export
to an MMSA pickle."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import RobustMSAError
from ..dataset import SPLITS, MSADataset, Split
from ..mmsa import save_mmsa_pickle
from .assembly import GENERATOR_VERSION
from .config import SyntheticConfig
from .generate import generate_synthetic

__all__ = ["synthetic_cache_key", "default_cache_dir", "load_synthetic", "cached_summary", "export_mmsa"]


def synthetic_cache_key(config: SyntheticConfig) -> str:
    """Hash of the full config and :data:`GENERATOR_VERSION`."""
    text = json.dumps({"config": config.to_dict(), "version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$ROBUSTMSA_CACHE`` or ``~/.cache/robustmsa``."""
    env = os.environ.get("ROBUSTMSA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robustmsa"


def load_synthetic(
    preset: str = "mosi", seed: int = 0, cache_dir: str | Path | None = None, **overrides: Any
) -> MSADataset:
    """The synthetic dataset of ``preset`` and ``seed``, generated once and cached on disk.

    The cache lives in ``<cache_dir>/synthetic/`` (default :func:`default_cache_dir`), keyed by
    :func:`synthetic_cache_key`. A cache entry that cannot be read or whose content hash does not
    match is regenerated; if the folder cannot be written the dataset is returned uncached.
    """
    config = SyntheticConfig.from_preset(preset, seed=seed, **overrides)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = synthetic_cache_key(config)
    stem = folder / "synthetic" / f"{config.dataset_name}-{key}"
    cached = _read_cache(stem, key)
    if cached is not None:
        return cached
    dataset = generate_synthetic(config)
    try:
        _write_cache(stem, dataset, key)
    except OSError:
        pass  # an unwritable cache only costs regeneration next time
    return dataset


def cached_summary(
    preset: str = "mosi", seed: int = 0, cache_dir: str | Path | None = None, **overrides: Any
) -> dict[str, Any] | None:
    """What planning needs of the cached dataset of ``preset`` and ``seed`` (content hash, split
    sizes, metric family, classes), read from the cache entry's ``.json`` alone; None when there is
    no entry for this exact config and generator version (then :func:`load_synthetic` builds it).

    The arrays are not read, so their hash is not re-checked here: a trial loads them and compares
    the hash with the one planned (a changed file is refused there, nothing runs on it)."""
    config = SyntheticConfig.from_preset(preset, seed=seed, **overrides)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = synthetic_cache_key(config)
    stem = folder / "synthetic" / f"{config.dataset_name}-{key}"
    try:
        meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        ok = (stem.with_suffix(".npz").is_file() and meta["cache_key"] == key
              and meta["generator_version"] == GENERATOR_VERSION and isinstance(meta.get("sizes"), dict))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not ok:
        return None
    return {"content_hash": meta["content_hash"], "sizes": {k: int(v) for k, v in meta["sizes"].items()},
            "metric_family": meta["metric_family"], "classes": list(meta.get("classes", []))}


def _flat_arrays(dataset: MSADataset) -> dict[str, np.ndarray]:
    return {f"{s}/{k}": v for s in SPLITS for k, v in dataset.splits[s].arrays().items()}


def atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_cache(stem: Path, dataset: MSADataset, key: str) -> None:
    arrays = _flat_arrays(dataset)
    atomic_write(stem.with_suffix(".npz"), lambda f: np.savez(f, **arrays))
    _write_meta(stem, _meta(dataset, key, dataset.content_hash()))


def _meta(dataset: MSADataset, key: str, content_hash: str) -> dict[str, Any]:
    meta = {
        "cache_key": key, "generator_version": GENERATOR_VERSION, "content_hash": content_hash,
        "name": dataset.name, "label_range": list(dataset.label_range),
        "metric_family": dataset.metric_family, "info": dataset.info,
        "sizes": {s: len(dataset.splits[s]) for s in SPLITS},
    }
    if dataset.task != "regression":
        meta.update(task=dataset.task, classes=list(dataset.classes))
    return meta


def _write_meta(stem: Path, meta: dict[str, Any]) -> None:
    atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps(meta).encode("utf-8")))


def _read_cache(stem: Path, key: str) -> MSADataset | None:
    npz, meta_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    if not (npz.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(npz, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        splits = {s: _split_from_arrays(arrays, s) for s in SPLITS}
        dataset = MSADataset(
            name=meta["name"], splits=splits, label_range=tuple(meta["label_range"]),
            metric_family=meta["metric_family"], info=meta["info"],
            task=meta.get("task", "regression"), classes=tuple(meta.get("classes", ())),
        )
        ok = (meta["cache_key"] == key and meta["generator_version"] == GENERATOR_VERSION
              and dataset.content_hash() == meta["content_hash"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, RobustMSAError):
        return None
    if ok and "sizes" not in meta:  # an entry written before the sizes were kept: add them
        with contextlib.suppress(OSError):
            _write_meta(stem, _meta(dataset, key, meta["content_hash"]))
    return dataset if ok else None


def _split_from_arrays(arrays: dict[str, np.ndarray], split: str) -> Split:
    prefix = f"{split}/"
    own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Split):
        if f.name in ("unimodal_labels", "clues"):
            kwargs[f.name] = {k.split(".", 1)[1]: v for k, v in own.items() if k.startswith(f.name + ".")}
        else:
            kwargs[f.name] = own.get(f.name)
    required = ("text", "text_mask", "audio", "audio_mask", "vision", "vision_mask", "labels", "ids")
    missing = [k for k in required if kwargs[k] is None]
    if missing:
        raise KeyError(f"{split}: {missing}")
    return Split(**kwargs)


def export_mmsa(dataset: MSADataset, path: str | Path) -> None:
    """Write ``dataset`` as an MMSA processed-feature pickle (for tools that read MMSA files)."""
    save_mmsa_pickle(dataset, path)
