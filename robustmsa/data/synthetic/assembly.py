"""What both designs of the synthetic benchmark share: the population (videos, splits and the
latents of :mod:`.latent`), the slicing into splits and the dataset's ``info``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dataset import SPLITS, Split
from .config import SyntheticConfig, stream_rng
from .frames import CLUE_VOCAB
from .latent import expected_label, sample_latents
from .text import Lexicon

__all__ = ["GENERATOR_VERSION", "Population", "sample_population", "slice_split", "dataset_info"]

#: Bump whenever the same config would produce different arrays (invalidates every cache).
GENERATOR_VERSION = "2"


@dataclass(frozen=True)
class Population:
    """The clips of every split, in split order, and their latents (all [N])."""

    split: np.ndarray  # split index
    video: np.ndarray  # global video index
    clip: np.ndarray  # clip number within the video (from 1)
    s: np.ndarray  # latent in rating units
    conflict: np.ndarray  # bool
    z_t: np.ndarray
    z_a: np.ndarray
    z_v: np.ndarray


def _video_sizes(n: int, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    sizes = rng.integers(lo, hi + 1, n // lo + 1)
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, n)) + 1
    sizes = sizes[:count].copy()
    sizes[-1] -= int(ends[count - 1] - n)
    return sizes


def sample_population(config: SyntheticConfig) -> Population:
    """Videos of ``clips_per_video`` clips, whole videos per split, and the clips' latents."""
    rng = stream_rng(config.seed, "population")
    sizes = [_video_sizes(config.split_sizes[s], *config.clips_per_video, rng) for s in SPLITS]
    split = np.concatenate([np.full(int(v.sum()), i) for i, v in enumerate(sizes)])
    per_video = np.concatenate(sizes)
    video = np.repeat(np.arange(len(per_video)), per_video)
    clip = np.arange(len(video)) - np.repeat(np.cumsum(per_video) - per_video, per_video) + 1
    lat = sample_latents(config.latent, video, len(per_video), rng)
    return Population(split=split, video=video, clip=clip, s=lat.s, conflict=lat.conflict,
                      z_t=lat.z_t, z_a=lat.z_a, z_v=lat.z_v)


def slice_split(split: Split, start: int, stop: int) -> Split:
    """Rows ``start:stop`` of every array (views: the splits are contiguous blocks)."""
    def take(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dict):
            return {k: a[start:stop] for k, a in v.items()}
        if v.dtype.kind == "U":  # each split gets its own string width, as a file of it would
            return np.array(v[start:stop].tolist(), dtype=str)
        return v[start:stop]

    return Split(**{f.name: take(getattr(split, f.name)) for f in dataclasses.fields(split)})


def _ceiling(pred: np.ndarray, truth: np.ndarray, family: str) -> dict[str, float]:
    from ...metrics import compute_metrics

    return {k: float(v) for k, v in compute_metrics(pred, truth, family).items()}


def dataset_info(
    config: SyntheticConfig, s: np.ndarray, conflict: np.ndarray, labels: np.ndarray,
    index: dict[str, np.ndarray], lex: Lexicon,
) -> dict[str, Any]:
    """The ``info`` of a generated dataset (provenance, the planted ceiling, conflict clips, lexicon)."""
    best = expected_label(s, config.latent)
    ceiling = {
        k: _ceiling(best[index[k]], labels[index[k]], config.metric_family) for k in ("valid", "test")
    }
    return {
        "source": "synthetic",
        "description": (
            f"robustmsa synthetic MSA benchmark, preset {config.preset!r}, seed {config.seed}: latent "
            + ("sentiment -> BERT-like text, audio/vision cue bursts, sarcasm-like conflict samples"
               if config.design == "lexical" else
               "sentiment and private factors -> text, audio and vision cues at known places, sarcastic "
               "conflict samples told apart by the tone of voice")
        ),
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "ceiling": ceiling,
        "ceiling_predictor": "E[label | latent] in closed form: everything but the label noise",
        "conflict": {k: np.flatnonzero(conflict[index[k]]).tolist() for k in SPLITS},
        "conflict_fraction": float(conflict.mean()),
        "zero_label_share": float(np.mean(labels == 0)),
        "lexicon": lex.to_info(),
        "clue_vocab": list(CLUE_VOCAB),
    }
