"""Feature-level corruption families (torch, batched, device-agnostic).

Importing this package registers every family below in :data:`corruptions.FAMILIES`:

| name | physical parameter at reliability rho | rho = 0 |
|---|---|---|
| ``missing`` | P(missing) = 1 - rho per sample | every sample missing |
| ``drop`` | drop rate = 1 - rho per token / frame (nested masks) | all droppable elements dropped |
| ``noise`` | SNR = 10 log10(rho / (1 - rho)) dB, scaled to training statistics | pure noise |
| ``blur`` | temporal Gaussian sigma = c (1 - rho) / rho frames | masked mean over time |
| ``compose`` | every component at the same rho, in sequence | every component at rho = 0 |
"""
from __future__ import annotations

from ..registry import import_submodules
from .blur import Blur
from .compose import Compose, build_family
from .drop import TEXT_TOKENS, Drop
from .missing import Missing
from .noise import Noise

import_submodules(__name__, __path__)  # a new family file registers itself; the built-ins are re-exported above

__all__ = ["Missing", "Drop", "Noise", "Blur", "Compose", "TEXT_TOKENS", "build_family"]
