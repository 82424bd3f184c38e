"""robustmsa: robustness evaluation harness for multimodal sentiment analysis.

From Python (see :mod:`robustmsa.api`)::

    import robustmsa
    res = robustmsa.run("suites/smoke.yaml", training__epochs=1)   # tidy rows in res.rows
    old = robustmsa.load_results("suites/smoke.yaml")              # read back from the store
    res = robustmsa.evaluate(my_module, "synthetic_trimodal")      # any model with its weights, no training

``run``, ``load_results`` and ``Results`` are imported on first use, so ``import robustmsa`` stays
fast (it loads neither torch, Ray nor MLflow).
"""
from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "run", "load_results", "evaluate", "Results"]

_API = ("run", "load_results", "evaluate", "Results")


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'robustmsa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
