"""Declared model extras: how each per-sample output besides ``pred`` reaches tracking.

A model lists the extras its ``forward`` returns in its class attribute ``extras``, a tuple of
:class:`Extra`; :func:`~robustmsa.models.base.register_model` collects the declarations of every
registered model, so tracking needs no knowledge of any model:

- :func:`extra_columns` turns the extras of one grid point into prediction-table columns;
- :func:`extra_summaries` gives the metric rows of the extras declared with ``summary=True``.

An extra no registered model declares is stored with the default layout of :class:`Extra`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Extra", "MAX_EXTRA_WIDTH", "declare_extras", "declared_extra", "extra_columns", "extra_summaries"]

MAX_EXTRA_WIDTH = 16
"""Widest [N, k] extra stored by default as columns ``<name>_0 .. <name>_<k-1>``."""


@dataclass(frozen=True)
class Extra:
    """One per-sample extra ``forward(...)["extras"][name]`` (leading dimension = samples).

    columns: names of the columns of an [N, len(columns)] extra: the prediction table gets
             ``<name>_<column>`` (e.g. ``quality_text``). Empty (the default), or an extra of
             another shape: ``<name>`` for [N], ``<name>_<j>`` for [N, k] with k <= the maximum
             width (e.g. ``expert_weights_0..7``); wider or higher-rank extras are not stored.
    summary: also record, per grid point, the mean of each column over the samples as a metric
             row named like the column (e.g. ``quality_text``).
    """

    name: str
    columns: tuple[str, ...] = ()
    summary: bool = False

    def layout(self, a: np.ndarray, max_width: int = MAX_EXTRA_WIDTH) -> list[tuple[str, int | None]]:
        """(column name, index in the last dimension or None for an [N] extra) of array ``a``."""
        if self.columns and a.shape[1:] == (len(self.columns),):
            return [(f"{self.name}_{c}", j) for j, c in enumerate(self.columns)]
        if a.ndim == 1:
            return [(self.name, None)]
        if a.ndim == 2 and a.shape[1] <= max_width:
            return [(f"{self.name}_{j}", j) for j in range(a.shape[1])]
        return []


_DECLARED: dict[str, tuple[Extra, str]] = {}


def declare_extras(model: str, extras: tuple[Extra, ...]) -> None:
    """Record the extras model ``model`` declares; an extra name that another model declares with
    another layout is an error (one name, one meaning in the prediction table)."""
    names = [e.name for e in extras if isinstance(e, Extra)]
    for extra in extras:
        if not isinstance(extra, Extra):
            raise TypeError(f"model {model!r}: extras must be Extra declarations, got {extra!r}")
        if names.count(extra.name) > 1:
            raise TypeError(f"model {model!r} declares extra {extra.name!r} twice")
        known = _DECLARED.get(extra.name)
        if known is not None and known[0] != extra:
            raise TypeError(f"model {model!r} declares extra {extra!r}, but model {known[1]!r} declares "
                            f"{known[0]!r}: one name must have one layout")
    for extra in extras:
        _DECLARED.setdefault(extra.name, (extra, model))


def declared_extra(name: str) -> Extra:
    """The declaration of extra ``name`` (the default layout when no registered model declares it)."""
    known = _DECLARED.get(name)
    return known[0] if known is not None else Extra(name)


def extra_columns(extras: Mapping[str, np.ndarray], n: int,
                  max_width: int = MAX_EXTRA_WIDTH) -> dict[str, list[float]]:
    """Prediction-table columns (float64 values) of the extras of ``n`` samples, extras by name."""
    out: dict[str, list[float]] = {}
    for name in sorted(extras):
        a = np.asarray(extras[name], dtype=np.float64)
        if a.ndim == 0 or a.shape[0] != n:
            continue
        for column, j in declared_extra(name).layout(a, max_width):
            out[column] = (a if j is None else a[:, j]).tolist()
    return out


def extra_summaries(extras: Mapping[str, np.ndarray]) -> list[tuple[str, float]]:
    """(metric, value) pairs: the mean over samples of each column of every ``summary`` extra."""
    out: list[tuple[str, float]] = []
    for name in sorted(extras):
        extra = declared_extra(name)
        if not extra.summary:
            continue
        a = np.asarray(extras[name])
        out += [(column, float((a if j is None else a[:, j]).mean())) for column, j in extra.layout(a)]
    return out
