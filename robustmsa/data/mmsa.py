"""MMSA processed-feature pickles: a safe loader and an exporter.

The MMSA toolkit ships its features as pickled dicts (``train``/``valid``/``test``, each a dict of
numpy arrays; see ``shared/PROTOCOLS.md``). A pickle runs code when it is loaded, so these files
are read with :class:`SafeUnpickler`, which rebuilds numpy arrays, numpy scalars and dtypes, plain
containers, numbers and strings, and refuses every other global (``os.system``, ``builtins.eval``,
arbitrary classes) and every persistent id before anything is called.

:func:`load_mmsa_pickle` validates the schema (each error names the file, the split, the key and
the expected shape), detects the feature dims and the known MOSI variants, handles non-finite
values by an explicit policy and returns an :class:`~robustmsa.data.dataset.MSADataset`.
:func:`save_mmsa_pickle` writes a dataset back in the same format, atomically.

Masks: unaligned files give the number of valid leading frames per sample (``audio_lengths``,
``vision_lengths``). Aligned files (the ``aligned_50`` releases) carry no length keys: as MMSA does
for aligned data (``MMSA/data_loader.py``, ``MMDataset.__init_mosi``: ``audio_lengths =
vision_lengths = np.sum(text_bert[:, 1, :], axis=1)``), audio and vision then share the text's valid
length, the sum of the ``text_bert`` attention mask, so their padding frames are masked out. A
file is aligned when text, audio and vision have the same length in every split and any length
key it carries equals the text's valid lengths (``info["aligned"]``); where each audio/vision
mask came from is in ``info["frame_masks"]`` and, in words, ``info["frame_masks_from"]``.

Categorical pickles (MELD- and IEMOCAP-style emotion classification) use the same layout with
``labels`` (int class indices [N]) in place of ``regression_labels`` in every split, and the class
names either in a top-level key ``classes`` (a list of strings, index = class) or in the loader's
``classes`` argument; the dataset is then a classification task (docs/classification.md).
CH-SIMS v2.0 (MMSA's ``ch-simsv2s.pkl``: 2722/647/1034 clips, text 50x768, audio 925x25,
vision 232x177, unaligned, ``regression_labels_T/A/V``) is SIMS with other feature sizes: it is
recognised by its dims (``info["variant"]`` ``simsv2-a25-v177``) or declared with
``variant="simsv2"``, and uses the SIMS metrics.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError
from .dataset import SPLITS, MSADataset, Split

__all__ = [
    "SafeUnpickler",
    "safe_load_pickle",
    "load_mmsa_pickle",
    "save_mmsa_pickle",
    "NONFINITE_POLICIES",
    "METRIC_FAMILIES",
    "KNOWN_VARIANTS",
    "VARIANTS",
    "mmsa_label",
    "mmsa_split_payload",
    "write_mmsa_payload",
    "RELEASE_SIZES",
    "recognise_release",
]

NONFINITE_POLICIES = ("report", "zero", "error")
METRIC_FAMILIES = ("mosi", "sims")
#: (audio dim, vision dim) -> variant name recorded in ``info["variant"]``.
KNOWN_VARIANTS: dict[tuple[int, int], str] = {
    (5, 20): "mosi-a5-v20",
    (74, 47): "mosi-a74-v47",
    (74, 35): "mosei-a74-v35",
    (33, 709): "sims-a33-v709",
    (25, 177): "simsv2-a25-v177",
}
#: variants a caller may declare (``variant=``): name -> (audio dim, vision dim, metric family)
VARIANTS: dict[str, tuple[int, int, str]] = {"simsv2": (25, 177, "sims")}

#: (train, valid, test) sizes of the public MMSA releases (docs/protocols.md, "Recognising the public release").
RELEASE_SIZES: dict[str, tuple[int, int, int]] = {
    "MOSI": (1284, 229, 686),
    "MOSEI": (16326, 1871, 4659),
    "SIMS": (1368, 456, 457),
    "SIMS-v2": (2722, 647, 1034),
}
#: an MMSA sample id: ``<video>$_$<clip>`` (e.g. ``03bSnISJMiM$_$1``)
RELEASE_ID = re.compile(r"[^$\s]+\$_\$[^$\s]+")

_ALLOWED_WHAT = "only numpy arrays, numbers, strings, lists and dicts are allowed"
_REFUSED_HINT = (
    "the file is not a plain MMSA feature pickle (or it was tampered with); if you trust its "
    "source, re-save it with numpy arrays and plain dicts only"
)
_LATIN1_NAMES = ("latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1")


# --------------------------------------------------------------------------------------------
# Safe unpickling
# --------------------------------------------------------------------------------------------


class _Frozen:
    """A callable wrapper whose attributes cannot be set (pickle's BUILD opcode cannot alter it)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


def _latin1_encode(filename: str) -> _Frozen:
    """Stand-in for ``_codecs.encode`` (how protocol-2 pickles store bytes): latin-1 only."""

    def encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(text, str) or str(encoding).lower() not in _LATIN1_NAMES:
            raise DataError(
                f"{filename}: refused to unpickle _codecs.encode({type(text).__name__}, {encoding!r}): "
                f"{_ALLOWED_WHAT}",
                hint=_REFUSED_HINT,
            )
        return text.encode("latin-1")

    return _Frozen(encode)


def _numpy_helpers() -> dict[str, Any]:
    """The numpy functions pickles of arrays refer to, resolved without importing ``numpy.core``."""
    try:
        from numpy._core import _internal, multiarray, numeric
    except ImportError:  # numpy < 2 without the numpy._core forward-compatibility package
        from numpy.core import _internal, multiarray, numeric  # type: ignore[no-redef]
    helpers: dict[str, Any] = {
        "_reconstruct": multiarray._reconstruct,
        "scalar": multiarray.scalar,
        "_frombuffer": _Frozen(numeric._frombuffer),
    }
    if hasattr(_internal, "_convert_to_stringdtype_kwargs"):
        helpers["_convert_to_stringdtype_kwargs"] = _Frozen(_internal._convert_to_stringdtype_kwargs)
    return helpers


def _build_allowlist() -> dict[tuple[str, str], Any]:
    """(module, name) -> object, for numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) names."""
    helpers = _numpy_helpers()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
    }
    for core in ("numpy.core", "numpy._core"):
        for sub in ("multiarray", "_multiarray_umath"):
            allowed[(f"{core}.{sub}", "_reconstruct")] = helpers["_reconstruct"]
            allowed[(f"{core}.{sub}", "scalar")] = helpers["scalar"]
        allowed[(f"{core}.numeric", "_frombuffer")] = helpers["_frombuffer"]
        if "_convert_to_stringdtype_kwargs" in helpers:
            allowed[(f"{core}._internal", "_convert_to_stringdtype_kwargs")] = helpers[
                "_convert_to_stringdtype_kwargs"
            ]
    for module in ("builtins", "__builtin__"):  # protocol 2 writes Python 2 names
        for kind in (set, frozenset, complex, bytes, bytearray):
            allowed[(module, kind.__name__)] = kind
    return allowed


_ALLOWED = _build_allowlist()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only numpy arrays, numpy scalars, numbers, strings and containers.

    ``find_class`` resolves names from a fixed allowlist and raises :class:`DataError` ("refused
    to unpickle <module>.<name>") for anything else, before it can be called; persistent ids are
    refused too. ``load`` turns every other failure (truncated file, garbage) into a DataError that
    names ``filename``.
    """

    def __init__(self, file: IO[bytes], *, filename: str = "<pickle>") -> None:
        super().__init__(file, encoding="latin1")
        self.filename = filename

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode(self.filename)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.filename}: refused to unpickle {module}.{name}: {_ALLOWED_WHAT}",
                hint=_REFUSED_HINT,
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(
            f"{self.filename}: refused to unpickle a persistent id: {_ALLOWED_WHAT}", hint=_REFUSED_HINT
        )

    def load(self) -> Any:
        try:
            return super().load()
        except DataError:
            raise
        except Exception as exc:  # any failure of a malformed stream: EOFError, UnpicklingError, ...
            raise DataError(
                f"{self.filename}: not a readable pickle ({type(exc).__name__}: {exc})",
                hint="the file is truncated or corrupt: download or export it again",
            ) from exc


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataError(
            f"{path}: file not found",
            hint="pass the path of an MMSA feature pickle, e.g. MOSI/Processed/aligned_50.pkl",
        )
    if not path.is_file():
        raise DataError(f"{path}: not a file", hint="pass the .pkl file itself, not its directory")


def safe_load_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; every failure is a :class:`DataError`."""
    p = Path(path)
    _check_readable(p)
    try:
        with p.open("rb") as f:
            return SafeUnpickler(f, filename=p.name).load()
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})", hint="check the file permissions") from exc


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

_REQUIRED = ("text", "audio", "vision", "regression_labels")
#: the label key of a categorical pickle (class indices), in place of ``regression_labels``
CLASS_LABELS = "labels"
_FLOAT_3D = {
    "text": "float array [N, L, d]",
    "text_bert": "float array [N, 3, L]",
    "audio": "float array [N, T, d]",
    "vision": "float array [N, T, d]",
}
_UNIMODAL = ("T", "A", "V")
_LENGTH_KEYS = {"audio_lengths": "audio", "vision_lengths": "vision"}
_FLOAT_KEYS = ("text", "text_bert", "audio", "vision", "regression_labels") + tuple(
    f"regression_labels_{m}" for m in _UNIMODAL
)


def _expected(key: str) -> str:
    if key in _FLOAT_3D:
        return _FLOAT_3D[key]
    if key.startswith("regression_labels"):
        return "float array [N]"
    if key == CLASS_LABELS:
        return "int array [N] of class indices"
    if key in _LENGTH_KEYS:
        return "int array [N]"
    if key.startswith("clues_"):
        return "int array [N, Lc]"
    return "string array [N]"


def _where(file: str, split: str, key: str) -> str:
    return f"{file}: split '{split}' key '{key}'"


def _as_array(file: str, split: str, key: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{_where(file, split, key)} cannot be read as an array ({exc}) (expected {_expected(key)})"
        ) from exc


def _check_ndim(file: str, split: str, key: str, a: np.ndarray, ndim: int) -> None:
    if a.ndim != ndim:
        raise DataError(
            f"{_where(file, split, key)} has shape {a.shape} (expected {_expected(key)})",
            hint="the file does not follow the MMSA feature-pickle layout",
        )


def _as_float(
    file: str, split: str, key: str, value: Any, ndim: int, dtype: type = np.float32
) -> np.ndarray:
    a = _as_array(file, split, key, value)
    if a.dtype.kind not in "biuf":
        try:
            a = a.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"{_where(file, split, key)} has dtype {a.dtype} (expected {_expected(key)})"
            ) from exc
    if key.startswith("regression_labels") and a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]  # some exports store labels as [N, 1]
    _check_ndim(file, split, key, a, ndim)
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing values become inf, counted later
        a = np.asarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()  # protocol-5 arrays may be read-only views of bytes


def _as_int(file: str, split: str, key: str, value: Any, ndim: int) -> np.ndarray:
    a = _as_array(file, split, key, value)
    if a.dtype.kind == "O":
        a = _as_float(file, split, key, a, ndim, np.float64)
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise DataError(f"{_where(file, split, key)} has non-integer values (expected {_expected(key)})")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{_where(file, split, key)} has dtype {a.dtype} (expected {_expected(key)})")
    _check_ndim(file, split, key, a, ndim)
    return a.astype(np.int64)


def _as_strings(file: str, split: str, key: str, value: Any) -> np.ndarray:
    a = _as_array(file, split, key, value)
    _check_ndim(file, split, key, a, 1)
    if a.size == 0:
        return np.zeros(0, dtype=str)
    if a.dtype.kind not in "OUST":
        raise DataError(f"{_where(file, split, key)} has dtype {a.dtype} (expected {_expected(key)})")
    items = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in a.tolist()]
    return np.array(items, dtype=str)


def _read_key(file: str, split: str, key: str, value: Any) -> np.ndarray:
    if key == "text_bert":  # float64 keeps every token id exact
        return _as_float(file, split, key, value, 3, np.float64)
    if key in _FLOAT_3D:
        return _as_float(file, split, key, value, 3)
    if key.startswith("regression_labels"):
        return _as_float(file, split, key, value, 1)
    if key in _LENGTH_KEYS or key == CLASS_LABELS:
        return _as_int(file, split, key, value, 1)
    if key.startswith("clues_"):
        return _as_int(file, split, key, value, 2)
    return _as_strings(file, split, key, value)


def _known_key(key: str) -> bool:
    return (
        key in _FLOAT_3D
        or key in _LENGTH_KEYS
        or key in ("regression_labels", CLASS_LABELS, "id", "raw_text")
        or key in {f"regression_labels_{m}" for m in _UNIMODAL}
        or key.startswith("clues_")
    )


def _check_sizes(file: str, split: str, arrays: dict[str, np.ndarray]) -> None:
    n = arrays["text"].shape[0]
    for key, a in arrays.items():
        if a.shape[0] != n:
            raise DataError(
                f"{_where(file, split, key)} has {a.shape[0]} samples but key 'text' has {n} "
                f"(expected {_expected(key)} with N = {n})"
            )
    tb = arrays.get("text_bert")
    length = arrays["text"].shape[1]
    if tb is not None and (tb.shape[1] != 3 or tb.shape[2] != length):
        raise DataError(
            f"{_where(file, split, 'text_bert')} has shape {tb.shape} but key 'text' has L = {length} "
            f"(expected {_expected('text_bert')} with L = {length})"
        )


def _read_split(file: str, split: str, raw: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """Validated arrays of one split and the names of the keys it ignores."""
    if not isinstance(raw, Mapping):
        raise DataError(
            f"{file}: split '{split}' is a {type(raw).__name__} (expected a dict of arrays "
            f"with keys {', '.join(_REQUIRED)})"
        )
    for key in _REQUIRED:
        if key == "regression_labels" and CLASS_LABELS in raw:
            continue  # a categorical pickle
        if key not in raw:
            also = f" or '{CLASS_LABELS}' ({_expected(CLASS_LABELS)})" if key == "regression_labels" else ""
            raise DataError(
                f"{file}: split '{split}' has no key '{key}' (expected {_expected(key)}){also}",
                hint="the file does not follow the MMSA feature-pickle layout",
            )
    known = [k for k in raw if isinstance(k, str) and _known_key(k)]
    ignored = sorted(str(k) for k in raw if not (isinstance(k, str) and _known_key(k)))
    arrays: dict[str, np.ndarray] = {}
    for key in known:
        arrays[key] = _read_key(file, split, key, raw[key])
        if isinstance(raw, dict):
            raw[key] = None  # the unpickled dict is ours: free each unconverted array early
    _check_sizes(file, split, arrays)
    return arrays, ignored


def _read_top(file: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise DataError(
            f"{file}: top level is a {type(raw).__name__} (expected a dict with keys "
            f"'train', 'valid', 'test', each a dict of arrays)"
        )
    for split in SPLITS:
        if split not in raw:
            raise DataError(
                f"{file}: no split '{split}' (expected a dict with keys 'train', 'valid', 'test', "
                f"each a dict of arrays: text [N, L, d], audio [N, T, d], vision [N, T, d], "
                f"regression_labels [N])",
                hint="the file does not follow the MMSA feature-pickle layout",
            )
    return raw


def _check_dims(file: str, data: dict[str, dict[str, np.ndarray]]) -> dict[str, int]:
    dims = {m: int(data["train"][m].shape[-1]) for m in ("text", "audio", "vision")}
    for split in SPLITS[1:]:
        for m, d in dims.items():
            found = int(data[split][m].shape[-1])
            if found != d:
                shape = f"[N, L, {d}]" if m == "text" else f"[N, T, {d}]"
                raise DataError(
                    f"{_where(file, split, m)} has feature dim {found} but split 'train' has {d} "
                    f"(expected float array {shape})"
                )
    return dims


# --------------------------------------------------------------------------------------------
# Non-finite values
# --------------------------------------------------------------------------------------------


def _count_nonfinite(a: np.ndarray) -> dict[str, int]:
    if np.isfinite(a).all():
        return {}
    return {"nan": int(np.isnan(a).sum()), "posinf": int(np.isposinf(a).sum()), "neginf": int(np.isneginf(a).sum())}


def _offending(key: str, counts: dict[str, int], policy: str) -> dict[str, int]:
    """The counts the policy does not silently fix (audio -inf is zeroed unless policy is error)."""
    if key == "audio" and policy != "error":
        counts = {k: v for k, v in counts.items() if k != "neginf"}
    return {k: v for k, v in counts.items() if v}


def _describe(found: dict[str, dict[str, dict[str, int]]]) -> str:
    names = {"nan": "NaN", "posinf": "+inf", "neginf": "-inf"}
    parts = []
    for split, keys in found.items():
        for key, counts in keys.items():
            what = ", ".join(f"{n} {names[k]}" for k, n in counts.items())
            parts.append(f"{split}/{key} ({what})")
    return "; ".join(parts)


def _handle_nonfinite(
    file: str, data: dict[str, dict[str, np.ndarray]], policy: str
) -> dict[str, dict[str, dict[str, int]]]:
    """Count non-finite values per split and key, raise or zero them by ``policy`` (in place)."""
    report: dict[str, dict[str, dict[str, int]]] = {}
    offending: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        for key in _FLOAT_KEYS:
            if key not in data[split]:
                continue
            counts = _count_nonfinite(data[split][key])
            if counts:
                report.setdefault(split, {})[key] = counts
                bad = _offending(key, counts, policy)
                if bad:
                    offending.setdefault(split, {})[key] = bad
    if offending and policy != "zero":
        raise DataError(
            f"{file}: non-finite values in {_describe(offending)}",
            hint='pass nonfinite="zero" to replace them by 0 (the counts are kept in info["nonfinite"])',
        )
    for split, keys in report.items():
        for key, counts in keys.items():
            a = data[split][key]
            bad = ~np.isfinite(a)
            a[bad] = 0.0
            counts["zeroed"] = int(bad.sum())
    return report


# --------------------------------------------------------------------------------------------
# Building the dataset
# --------------------------------------------------------------------------------------------


def _frame_mask(lengths: np.ndarray | None, n: int, t: int) -> tuple[np.ndarray, int]:
    """Prefix mask [n, t] from per-sample lengths (clamped to [0, t]) and how many were clamped."""
    if lengths is None:
        return np.ones((n, t), dtype=bool), 0
    clamped = np.clip(lengths, 0, t)
    mask = np.arange(t)[None, :] < clamped[:, None]
    return mask, int((clamped != lengths).sum())


def _text_lengths(a: dict[str, np.ndarray]) -> np.ndarray | None:
    """Valid text tokens per sample, the sum of the ``text_bert`` attention mask (as MMSA); None without it."""
    tb = a.get("text_bert")
    return None if tb is None else (tb[:, 1] > 0.5).sum(axis=1).astype(np.int64)


def _split_aligned(a: dict[str, np.ndarray]) -> bool:
    """Text, audio and vision of the same length, and any length key equal to the text's valid lengths
    (to each other without ``text_bert``): the aligned layout, with or without length keys."""
    length = a["text"].shape[1]
    if a["audio"].shape[1] != length or a["vision"].shape[1] != length:
        return False
    given = [a[k] for k in _LENGTH_KEYS if k in a]
    reference = _text_lengths(a)
    if reference is None:
        reference = given[0] if given else None
    return all(np.array_equal(g, reference) for g in given)


#: info["frame_masks"] values: where an audio/vision mask came from
MASK_FROM_LENGTHS, MASK_FROM_TEXT, MASK_ALL_VALID = "lengths", "text_mask", "all_valid"


def _frame_lengths(a: dict[str, np.ndarray], key: str, aligned: bool) -> tuple[np.ndarray | None, str]:
    """The lengths behind one audio/vision mask and their source: the length key, else (aligned) the
    text's valid lengths, else None (every frame valid)."""
    if key in a:
        return a[key], MASK_FROM_LENGTHS
    text = _text_lengths(a) if aligned else None
    return (text, MASK_FROM_TEXT) if text is not None else (None, MASK_ALL_VALID)


def _build_split(split: str, a: dict[str, np.ndarray], aligned: bool) -> tuple[Split, dict[str, Any]]:
    """A :class:`Split` from validated arrays, and facts about it for ``info``."""
    n, length = a["text"].shape[:2]
    facts: dict[str, Any] = {"clamped_lengths": {}, "generated_ids": False, "frame_masks": {}}
    masks = {}
    for key, modality in _LENGTH_KEYS.items():
        lengths, facts["frame_masks"][modality] = _frame_lengths(a, key, aligned)
        masks[modality], clamped = _frame_mask(lengths, n, a[modality].shape[1])
        if clamped:
            facts["clamped_lengths"][key] = clamped
    tb = a.get("text_bert")
    ids = a.get("id")
    if ids is None:
        ids = np.array([f"{split}$_${i}" for i in range(n)], dtype=str)
        facts["generated_ids"] = True
    s = Split(
        text=a["text"],
        text_mask=tb[:, 1] > 0.5 if tb is not None else np.ones((n, length), dtype=bool),
        audio=a["audio"],
        audio_mask=masks["audio"],
        vision=a["vision"],
        vision_mask=masks["vision"],
        labels=a["regression_labels"] if "regression_labels" in a else a[CLASS_LABELS].astype(np.float32),
        ids=ids,
        text_ids=np.rint(tb[:, 0]).astype(np.int64) if tb is not None else None,
        unimodal_labels={m: a[f"regression_labels_{m}"] for m in _UNIMODAL if f"regression_labels_{m}" in a},
        clues={k[len("clues_"):]: v for k, v in sorted(a.items()) if k.startswith("clues_")},
        raw_text=a.get("raw_text"),
    )
    return s, facts


def _metric_family(arg: str | None, splits: dict[str, Split], name: str, path: str,
                   variant: str = "") -> tuple[str, str]:
    """(family, why): the argument, else SIMS unimodal labels, else a SIMS variant's dims, else
    [-1, 1] labels and a SIMS name."""
    if arg is not None:
        return arg, "argument"
    if variant.startswith("sims"):
        return "sims", f"variant {variant}"
    if any("T" in s.unimodal_labels for s in splits.values()):
        return "sims", "regression_labels_T present"
    labels = np.concatenate([s.labels for s in splits.values()])
    in_unit = labels.size == 0 or bool(np.abs(labels).max() <= 1.0)
    if in_unit and ("sims" in name.lower() or "sims" in path.lower()):
        return "sims", "labels within [-1, 1] and 'sims' in the name"
    return "mosi", "default"


def _check_option(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise DataError(
            f"{what}={value!r} is not supported (allowed: {', '.join(map(repr, allowed))})",
            hint=f"pass one of {', '.join(allowed)}",
        )


#: folder names that say nothing about which dataset a file holds (skipped by :func:`mmsa_label`)
_GENERIC_FOLDERS = frozenset({"processed", "data", "features", "feature", "feats", "pkl", "pickles", "mmsa"})


def mmsa_label(path: str | os.PathLike[str]) -> str:
    """The name of an MMSA file in report tables: its dataset folder and stem.

    The folder is the nearest of the file's two parent folders not named like ``Processed``,
    ``data`` or ``features``: ``data/MOSI/Processed/aligned_50.pkl`` -> ``MOSI/aligned_50``,
    ``SIMS/unaligned_39.pkl`` -> ``SIMS/unaligned_39``; without one, ``mmsa:<stem>``
    (``aligned_50.pkl`` -> ``mmsa:aligned_50``). Computed from the path as written, no file read.
    """
    p = Path(path)
    for folder in reversed(p.parent.parts[-2:]):
        if folder.lower() not in _GENERIC_FOLDERS and folder not in ("", ".", "..", p.anchor):
            return f"{folder}/{p.stem}"
    return f"mmsa:{p.stem}"


def _merged(facts: dict[str, dict[str, Any]], key: str) -> dict[str, str]:
    """Per modality, the split facts' ``key`` value, or ``split=value`` pairs where the splits differ."""
    out: dict[str, str] = {}
    for m in _LENGTH_KEYS.values():
        found = {s: facts[s][key][m] for s in SPLITS}
        values = set(found.values())
        out[m] = values.pop() if len(values) == 1 else ", ".join(f"{s}={v}" for s, v in found.items())
    return out


def _masks_from(frame_masks: dict[str, str]) -> str:
    """``info["frame_masks_from"]``: the audio/vision mask sources in words."""
    words = {
        MASK_FROM_LENGTHS: "the file's {m}_lengths",
        MASK_FROM_TEXT: "the text mask (aligned file without {m}_lengths: as MMSA does for aligned data, "
        "{m} shares the text's valid length, the sum of the text_bert attention mask)",
        MASK_ALL_VALID: "every frame valid (no {m}_lengths and no text_bert mask to take them from)",
    }
    return "; ".join(f"{m}: {words.get(src, src).format(m=m)}" for m, src in frame_masks.items())


def _file_info(p: Path, data: dict[str, dict[str, np.ndarray]], dims: dict[str, int],
               facts: dict[str, dict[str, Any]], aligned: bool) -> dict[str, Any]:
    """The provenance and layout part of ``info``."""
    frame_masks = _merged(facts, "frame_masks")
    return {
        "format": "mmsa-pickle",
        "source": str(p.resolve()),
        "sha256": file_sha256(p),
        "sizes": {s: int(data[s]["text"].shape[0]) for s in SPLITS},
        "lengths": {s: {m: int(data[s][m].shape[1]) for m in ("text", "audio", "vision")} for s in SPLITS},
        "dims": dims,
        "variant": KNOWN_VARIANTS.get((dims["audio"], dims["vision"]), "unknown"),
        "aligned": aligned,
        "frame_masks": frame_masks,
        "frame_masks_from": _masks_from(frame_masks),
    }


def _categorical(file: str, data: dict[str, dict[str, np.ndarray]]) -> bool:
    """Whether the file is categorical (``labels``, no ``regression_labels``), the same in every split."""
    kinds = {s: "regression_labels" not in data[s] for s in SPLITS}
    if len(set(kinds.values())) > 1:
        which = ", ".join(f"{s}: {CLASS_LABELS if k else 'regression_labels'}" for s, k in kinds.items())
        raise DataError(f"{file}: the splits disagree on their label key ({which})",
                        hint=f"every split holds regression_labels, or every split holds {CLASS_LABELS}")
    return kinds["train"]


def _class_names(file: str, top: Mapping[str, Any], classes: Any) -> tuple[str, ...]:
    """The class names of a categorical file: its top-level ``classes`` key, else the argument."""
    given = top.get("classes")
    if given is None and classes is None:
        raise DataError(f"{file}: categorical labels ('{CLASS_LABELS}') but no class names: the file has no "
                        "top-level key 'classes' and no classes argument was given",
                        hint="pass classes: [neutral, joy, ...] (index = class) in the dataset params")
    names = [str(c) for c in (given if given is not None else classes)]
    if given is not None and classes is not None and [str(c) for c in classes] != names:
        raise DataError(f"{file}: classes argument {list(classes)} differs from the file's classes {names}")
    return tuple(names)


def _variant(file: str, dims: dict[str, int], declared: str | None) -> str:
    """The variant of the file's dims; a declared variant must match them."""
    found = KNOWN_VARIANTS.get((dims["audio"], dims["vision"]), "unknown")
    if declared is None:
        return found
    _check_option(declared, tuple(VARIANTS), "variant")
    audio, vision, _ = VARIANTS[declared]
    if (dims["audio"], dims["vision"]) != (audio, vision):
        raise DataError(f"{file}: variant {declared!r} has audio dim {audio} and vision dim {vision}, the file has "
                        f"{dims['audio']} and {dims['vision']}", hint="drop variant or check the file")
    return found


def _read_file(p: Path) -> tuple[Mapping[str, Any], dict[str, dict[str, np.ndarray]], set[str]]:
    """(top level, validated arrays per split, ignored keys) of a pickle."""
    file = p.name
    top = _read_top(file, safe_load_pickle(p))
    data: dict[str, dict[str, np.ndarray]] = {}
    ignored: set[str] = set()
    for split in SPLITS:
        data[split], skipped = _read_split(file, split, top[split])
        ignored.update(skipped)
    return top, data, ignored


def load_mmsa_pickle(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    label: str | None = None,
    metric_family: str | None = None,
    nonfinite: str = "report",
    variant: str | None = None,
    classes: list[str] | None = None,
) -> MSADataset:
    """Load an MMSA processed-feature pickle safely into an :class:`MSADataset`.

    nonfinite: "report" (default) zeroes audio -inf (as the reference loader does) and raises for
    any other NaN/inf; "zero" replaces every non-finite value by 0; "error" raises for all of them.
    Counts per split and key are recorded in ``info["nonfinite"]`` either way.
    metric_family: "mosi" or "sims"; when None, "sims" if ``regression_labels_T`` exists, the dims
    are a SIMS variant's, or all labels lie in [-1, 1] and the name or path contains "sims", else
    "mosi" (reason in ``info["metric_family_from"]``). label_range follows: (-1, 1) for sims, (-3, 3) for mosi.
    variant: "simsv2" declares CH-SIMS v2.0 (its dims are checked: audio 25, vision 177).
    classes: the class names of a categorical file without a top-level ``classes`` key (module
    docstring); such a file is a classification task with metric family "classification".
    name: defaults to the file stem. label: the name in report tables, ``info["label"]``
    (default :func:`mmsa_label`, e.g. ``MOSI/aligned_50``). Aligned files without length keys get
    audio/vision masks from the text mask, as MMSA does (module docstring; ``info["aligned"]``,
    ``info["frame_masks"]``). Errors are :class:`DataError` naming the file, split and key.
    """
    _check_option(nonfinite, NONFINITE_POLICIES, "nonfinite")
    if metric_family is not None:
        _check_option(metric_family, METRIC_FAMILIES, "metric_family")
    p = Path(path)
    file = p.name
    top, data, ignored = _read_file(p)
    dims = _check_dims(file, data)
    found_variant = _variant(file, dims, variant)
    report = _handle_nonfinite(file, data, nonfinite)
    aligned = all(_split_aligned(data[s]) for s in SPLITS)
    splits: dict[str, Split] = {}
    facts: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        splits[split], facts[split] = _build_split(split, data[split], aligned)
    ds_name = name if name is not None else p.stem
    info: dict[str, Any] = {
        "label": label if label is not None else mmsa_label(path),
        **_file_info(p, data, dims, facts, aligned),
        "nonfinite_policy": nonfinite,
        "nonfinite": report,
        "generated_ids": [s for s in SPLITS if facts[s]["generated_ids"]],
        "clamped_lengths": {s: facts[s]["clamped_lengths"] for s in SPLITS if facts[s]["clamped_lengths"]},
        "ignored_keys": sorted(ignored),
    }
    if _categorical(file, data):
        if metric_family is not None:
            raise DataError(f"{file}: metric_family={metric_family!r} given for categorical labels "
                            f"('{CLASS_LABELS}'), whose metrics are the classification ones", hint="drop metric_family")
        return _classification_dataset(file, ds_name, splits, _class_names(file, top, classes), info)
    family, why = _metric_family(metric_family, splits, ds_name, str(path), found_variant)
    info["metric_family_from"] = why
    label_range = (-1.0, 1.0) if family == "sims" else (-3.0, 3.0)
    return MSADataset(name=ds_name, splits=splits, label_range=label_range, metric_family=family, info=info)


def recognise_release(dataset: MSADataset, known_sha256: Mapping[str, str] | None = None) -> str | None:
    """The public MMSA release ``dataset`` is (``"MOSI"``, ``"MOSEI"``, ``"SIMS"``, ``"SIMS-v2"``), or None.

    Rule: the file's sha256 (``info["sha256"]``) is one of ``known_sha256`` (file hash -> release,
    the hashes listed in the published-numbers table); or its (train, valid, test) sizes are those of
    a release in :data:`RELEASE_SIZES` and every sample id of every split, as read from the file
    (none generated), has the MMSA form ``<video>$_$<clip>`` (:data:`RELEASE_ID`). Feature variants
    (aligned or not, BERT or GloVe text) of one release are the same release: the rule looks at the
    samples, not at the features. Any other dataset (synthetic, a subset, a re-split) gives None.
    """
    sha = dataset.info.get("sha256")
    if known_sha256 and isinstance(sha, str) and sha in known_sha256:
        return known_sha256[sha]
    sizes = tuple(len(dataset.splits[s]) for s in SPLITS)
    name = next((n for n, c in RELEASE_SIZES.items() if c == sizes), None)
    if name is None or dataset.info.get("generated_ids"):
        return None
    ids = (str(i) for s in SPLITS for i in dataset.splits[s].ids)
    return name if all(RELEASE_ID.fullmatch(i) for i in ids) else None


def _classification_dataset(file: str, name: str, splits: dict[str, Split], classes: tuple[str, ...],
                            info: dict[str, Any]) -> MSADataset:
    """The classification dataset of a categorical file (label checks name the file)."""
    info["metric_family_from"] = "categorical labels"
    try:
        return MSADataset(name=name, splits=splits, label_range=(0.0, float(len(classes) - 1)),
                          metric_family="classification", info=info, task="classification", classes=classes)
    except DataError as exc:
        raise DataError(f"{file}: {exc}", hint=exc.hint or "labels are class indices 0..C-1, one name per class") from exc


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def _prefix_lengths(split: str, modality: str, s: Split) -> np.ndarray:
    """Valid-frame counts of a prefix mask (written even when every frame is valid: without them the
    loader would take an aligned file's masks from the text mask)."""
    mask = np.asarray(getattr(s, f"{modality}_mask"), dtype=bool)
    lengths = mask.sum(axis=1)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    bad = np.flatnonzero((prefix != mask).any(axis=1))
    if bad.size:
        raise DataError(
            f"split '{split}' {modality}_mask of sample {str(s.ids[bad[0]])!r} is not a prefix mask "
            f"({bad.size} sample(s) in all): MMSA files store only {modality}_lengths",
            hint="make the valid frames the leading ones before exporting",
        )
    return lengths.astype(np.int64)


def _text_bert(s: Split) -> np.ndarray:
    n, length = s.text.shape[:2]
    tb = np.zeros((n, 3, length), dtype=np.float64)
    if s.text_ids is not None:
        tb[:, 0] = s.text_ids
    tb[:, 1] = s.text_mask
    return tb


def _strings(a: np.ndarray) -> np.ndarray:
    return np.array([str(x) for x in np.asarray(a).tolist()], dtype=object)


def _split_payload(split: str, s: Split) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "text": np.asarray(s.text, dtype=np.float32),
        "text_bert": _text_bert(s),
        "audio": np.asarray(s.audio, dtype=np.float32),
        "vision": np.asarray(s.vision, dtype=np.float32),
        "regression_labels": np.asarray(s.labels, dtype=np.float32),
        "id": _strings(s.ids),
    }
    for modality in ("audio", "vision"):
        out[f"{modality}_lengths"] = _prefix_lengths(split, modality, s)
    for m, labels in sorted(s.unimodal_labels.items()):
        out[f"regression_labels_{m}"] = np.asarray(labels, dtype=np.float32)
    for k, clue in sorted(s.clues.items()):
        out[f"clues_{k}"] = np.asarray(clue, dtype=np.int64)
    if s.raw_text is not None:
        out["raw_text"] = _strings(s.raw_text)
    return out


def _atomic_pickle(payload: Any, path: Path) -> None:
    """Write ``payload`` to a temp file beside ``path``, then rename it over ``path``."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write ({exc.strerror})", hint="create the directory or choose a writable path"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(payload, f, protocol=4)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise DataError(f"{path}: cannot write ({exc})", hint="check the disk space and permissions") from exc
        raise


def save_mmsa_pickle(dataset: MSADataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` as an MMSA feature pickle (protocol 4), atomically.

    Per split: text, text_bert (ids, mask, zero segment ids; zero ids when ``text_ids`` is None),
    audio, vision, regression_labels, id, audio_lengths/vision_lengths (always: the masks must be
    prefix masks, and an aligned file read back keeps its masks and is reported aligned), and when
    present regression_labels_<T|A|V>, clues_<modality> and raw_text; a classification dataset gets
    ``labels`` (int64 class indices) instead of regression_labels and a top-level ``classes``.
    :func:`load_mmsa_pickle` reads every one of them back.
    """
    missing = [s for s in SPLITS if s not in dataset.splits]
    if missing:
        raise DataError(
            f"dataset {dataset.name!r} has no split {missing[0]!r} (expected 'train', 'valid', 'test')",
            hint="MMSA files always hold the three splits",
        )
    try:
        payload: dict[str, Any] = {s: _split_payload(s, dataset.splits[s]) for s in SPLITS}
    except DataError as exc:
        raise DataError(f"{Path(path).name}: {exc}", hint=exc.hint) from exc
    _atomic_pickle(categorical_layout(payload, dataset), Path(path))


def categorical_layout(payload: dict[str, Any], dataset: MSADataset) -> dict[str, Any]:
    """``payload`` (``{split: {key: array}}``) in the categorical layout when ``dataset`` is a
    classification dataset: ``labels`` (int64 class indices) in place of ``regression_labels`` in
    every split it holds and the class names on top; unchanged for a regression dataset."""
    if dataset.task == "classification":
        for s in SPLITS:
            if s in payload:
                payload[s][CLASS_LABELS] = payload[s].pop("regression_labels").astype(np.int64)
        payload["classes"] = list(dataset.classes)
    return payload


def mmsa_split_payload(split: str, s: Split) -> dict[str, np.ndarray]:
    """One split under the keys :func:`save_mmsa_pickle` writes; ``raw_text`` is empty strings when the
    split has none (MMSA's loader reads the key unconditionally)."""
    out = _split_payload(split, s)
    out.setdefault("raw_text", np.array([""] * len(s), dtype=object))
    return out


def write_mmsa_payload(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``payload`` (``{split: {key: array}}``) as a pickle (protocol 4), atomically."""
    _atomic_pickle(dict(payload), Path(path))
