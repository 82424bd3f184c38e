"""The latent sentiment and rater model shared by both embedded benchmarks.

The feature benchmark (:mod:`robustmsa.data.synthetic`) and the raw-media benchmark
(:mod:`robustmsa.media.generate`) draw their clips' sentiment, labels and modality latents here;
each generator supplies its own random streams and its own video layout.

Latent sentiment (:func:`sample_latents`)
    ``s`` in rating units: neutral with probability ``neutral_share`` (``s ~ N(0, neutral_sd)``),
    else polar with magnitude ``|N(polarity_mean, polarity_sd)|`` and a sign drawn from a per-video
    tendency (Beta with mean ``negative_share``, concentration ``video_concentration``); optionally
    clipped to ``+-latent_limit``.

Modality latents and conflict clips
    ``z = s / rating_levels``; ``z_a = z + N(0, modality_jitter)``, ``z_v`` likewise. A fraction
    ``conflict_fraction`` of clips (only those with ``|z| > conflict_min_abs`` when set) are
    *conflict* clips whose text says the opposite: ``z_t = -conflict_text_scale z + jitter``.

Raters (:func:`annotate`) and the planted noise floor (:func:`expected_label`)
    ``n_raters`` annotators rate ``round(s + b + e_j)`` clipped to ``[-rating_levels,
    rating_levels]``, with ``b ~ N(0, label_noise)`` shared by the raters of a clip and
    ``e_j ~ N(0, rater_noise)`` each rater's own; the label is the mean rating times
    ``label_max / rating_levels``. ``E[label | s]`` has a closed form: the best predictor that
    knows the latent.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

__all__ = ["LatentModel", "Latents", "sample_latents", "annotate", "expected_label"]


@dataclass(frozen=True)
class LatentModel:
    """Every parameter of the latent and rater model (see the module docstring).

    ``latent_limit``: clip ``s`` to ``+-latent_limit`` (None: no clipping); ``conflict_min_abs``:
    only clips with ``|z|`` above it can be conflict clips (None: any clip).
    """

    rating_levels: int
    label_max: float
    n_raters: int
    neutral_share: float
    negative_share: float
    polarity_mean: float
    polarity_sd: float
    neutral_sd: float
    video_concentration: float
    label_noise: float
    rater_noise: float
    modality_jitter: float
    conflict_fraction: float
    conflict_text_scale: float
    latent_limit: float | None = None
    conflict_min_abs: float | None = None

    @classmethod
    def of(cls, config: Any, **fixed: Any) -> LatentModel:
        """The model of a generator config: its attributes of the same names, then ``fixed``."""
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{**values, **fixed})


@dataclass(frozen=True)
class Latents:
    """Per clip [N]: latent ``s`` (rating units), conflict flag, text/audio/vision latents."""

    s: np.ndarray
    conflict: np.ndarray
    z_t: np.ndarray
    z_a: np.ndarray
    z_v: np.ndarray


def sample_latents(model: LatentModel, video: np.ndarray, n_videos: int, rng: np.random.Generator) -> Latents:
    """The latents of clips whose videos are ``video`` [N] (indices < ``n_videos``), drawn from
    ``rng`` in a fixed order: video tendencies, neutral flags, signs, magnitudes, neutral values,
    conflict flags, modality jitter."""
    c, q = model.video_concentration, model.negative_share
    p_neg = rng.beta(max(c * q, 1e-3), max(c * (1 - q), 1e-3), n_videos)[video]
    n = len(video)
    neutral = rng.random(n) < model.neutral_share
    sign = np.where(rng.random(n) < p_neg, -1.0, 1.0)
    polar = sign * np.abs(rng.normal(model.polarity_mean, model.polarity_sd, n))
    s = np.where(neutral, rng.normal(0.0, model.neutral_sd, n), polar)
    if model.latent_limit is not None:
        s = np.clip(s, -model.latent_limit, model.latent_limit)
    conflict = rng.random(n) < model.conflict_fraction
    z = s / model.rating_levels
    if model.conflict_min_abs is not None:
        conflict &= np.abs(z) > model.conflict_min_abs
    jitter = model.modality_jitter * rng.standard_normal((3, n))
    return Latents(
        s=s, conflict=conflict,
        z_t=np.where(conflict, -model.conflict_text_scale * z, z) + jitter[0],
        z_a=z + jitter[1],
        z_v=z + jitter[2],
    )


def annotate(s: np.ndarray, model: LatentModel, rng: np.random.Generator) -> np.ndarray:
    """float32 [N]: the mean of ``n_raters`` integer ratings of the latent ``s`` (rating units), in
    label units."""
    k = model.rating_levels
    shared = rng.normal(0.0, model.label_noise, (len(s), 1))
    x = s[:, None] + shared + rng.normal(0.0, model.rater_noise, (len(s), model.n_raters))
    ratings = np.clip(np.rint(x), -k, k)
    return (ratings.sum(axis=1) / model.n_raters * (model.label_max / k)).astype(np.float32)


def expected_label(s: np.ndarray, model: LatentModel) -> np.ndarray:
    """E[label | s] in closed form: the planted noise floor's predictor."""
    k = model.rating_levels
    sd = max(math.hypot(model.label_noise, model.rater_noise), 1e-9)
    levels = np.arange(-k, k + 1, dtype=np.float64)
    upper = np.append(ndtr((levels[:-1] + 0.5 - s[:, None]) / sd), np.ones((len(s), 1)), axis=1)
    lower = np.append(np.zeros((len(s), 1)), upper[:, :-1], axis=1)
    return ((upper - lower) @ levels) * (model.label_max / k)
