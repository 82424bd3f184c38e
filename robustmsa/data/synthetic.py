"""The embedded synthetic MSA benchmark: the harness's default dataset, no download needed.

``generate_synthetic(config)`` is a pure, deterministic function of a :class:`SyntheticConfig`
that returns an :class:`~robustmsa.data.dataset.MSADataset` with the *structure* of the real
benchmarks (CMU-MOSI, CMU-MOSEI, CH-SIMS), so that corruptions hurt the way they hurt on real data.
``load_synthetic(preset, seed)`` caches the result on disk (``.npz`` + ``.json``, never pickle).

Generative model (all draws from ``np.random.default_rng([seed, stream])``, one stream per part)
------------------------------------------------------------------------------------------------
Speakers and splits
    Clips come in videos of ``clips_per_video`` clips (a video is one speaker); ids are
    ``"vid{k:04d}$_${clip}"``. Splits are made of whole videos: no speaker is in two splits.

Latent sentiment and labels
    Each clip has a latent sentiment ``s`` in rating units (integer ratings in
    ``[-rating_levels, rating_levels]``): neutral with probability ``neutral_share``
    (``s ~ N(0, neutral_sd)``), else polar with magnitude ``|N(polarity_mean, polarity_sd)|`` and a
    sign drawn from a per-video tendency (Beta with mean ``negative_share``, concentration
    ``video_concentration``): slightly more negative than positive, like MOSI. ``n_raters``
    annotators rate ``round(s + b + e_j)`` clipped to the scale, where ``b ~ N(0, label_noise)`` is a
    per-clip disagreement shared by the raters and ``e_j ~ N(0, rater_noise)`` is each rater's own.
    The label is the mean rating times ``label_range[1] / rating_levels``: for MOSI steps of 1/3
    (three raters on -3..3) with a share of exact zeros, for SIMS steps of 0.2 (five raters on
    -1..1). Every modality reads the normalised latent ``z = s / rating_levels`` (about [-1, 1]).

Modality latents and conflict (sarcasm-like) samples
    ``z_a = z + N(0, modality_jitter)``, ``z_v`` likewise. A fraction ``conflict_fraction`` of clips
    are *conflict* samples whose text expresses the opposite polarity
    (``z_t = -conflict_text_scale z + jitter``) while audio and vision follow the true latent and
    the label follows ``z``: fusion genuinely helps.
    The conflict indices of every split are in ``info["conflict"]``. SIMS-like presets also
    annotate ``z_t``, ``z_a``, ``z_v`` separately into ``unimodal_labels`` T/A/V.

Text (strongest modality)
    A transcript of ``min_words..text_len-2`` words framed by ``[CLS]`` (101) and ``[SEP]`` (102),
    padded with 0, in a BERT-sized vocabulary: ordinary words 1000..29999 drawn with Zipf
    frequencies, ``n_sentiment_words`` sentiment words with a polarity and a strength in
    ``[0.05, 1]``, and five negation words that flip the polarity of the next word. Sentiment lives
    in ``sentiment_words`` (1-3) words, one per segment of the transcript, whose signed strengths
    (after negation) add up to ``z_t``; near-neutral transcripts (``|z_t| < 0.08``) have none. The
    lexicon is in ``info["lexicon"]``. Features are a pure function of the ids
    (:class:`SyntheticTextEncoder`, like a frozen BERT): a fixed random embedding table (from the
    seed; per-dimension scales and two outlier dimensions, as in BERT) in which sentiment words carry
    ``lexical_signal x polarity x strength`` along one direction, plus a sinusoidal positional
    component, plus a *contextual* component ``text_signal x effective sentiment`` along another
    direction (negation already applied), then a smoothing across neighbouring tokens
    (``context_mix`` to each side) as BERT spreads information. Sentiment is therefore readable
    mostly at the few sentiment-word positions. ``raw_text`` renders the ids with a deterministic
    made-up word list (negation words render as "not", "never", ...).

Audio (weaker) and vision (weakest)
    Frame features = per-speaker offset (``speaker_sd``, shared by the clips of a video) + AR(1)
    background variation (coefficient ``frame_smoothness``) + a cue burst in a few consecutive
    salient frames (``*_salient_frames``) of strength ``*_signal``. Cues are NON-LINEAR in the
    latent: audio pitch ``tanh(2 z_a)`` and energy ``2 |z_a|``; vision smile ``2 relu(z_v)`` and frown
    ``2 relu(-z_v)``; each cue loads on ``cue_dims`` feature dimensions (disjoint across cues when
    the modality has enough dimensions, like separate facial action units). Every dimension then
    gets its own scale (log-normal quantiles: some dimensions have a large variance, like
    COVAREP/Facet) and offset, so noise scaled to training statistics matters. Padded frames are 0.
    Aligned presets (MOSI, MOSEI) share the text mask; unaligned ones (SIMS) have ragged lengths of
    at least ``min_frame_fraction`` of the sequence.

Clues (for the TEXT model's explanation branch)
    ``clues["audio"]`` and ``clues["vision"]`` are int64 ``[N, clue_len]`` token sequences in the
    small vocabulary :data:`CLUE_VOCAB` (0 pad, 1 ``[CLS]``, 2 ``[SEP]``): repeated noisy
    discretised descriptions of the latent cues ("high pitch", "broad smile", ...) mixed with
    uninformative filler, in random order.

Planted noise floor and other facts in ``info``
    ``info["ceiling"]`` holds, for valid and test, the metrics (:func:`robustmsa.metrics.compute_metrics`)
    of the best predictor that knows the latent: ``E[label | s]`` (all but the label noise), in
    closed form (:func:`expected_label`). Also: ``config`` (every parameter), ``generator_version``,
    ``description``, ``conflict`` (indices per split), ``conflict_fraction``, ``zero_label_share``,
    ``lexicon`` (sentiment ids, polarity, strength; negation ids) and ``clue_vocab``.

Presets (:data:`PRESETS`; every field can be overridden)

    ========  ===============  ===========  ============  ============  ========  ===========
    preset    train/valid/test  text         audio         vision        labels    dataset name
    ========  ===============  ===========  ============  ============  ========  ===========
    mosi      1284/229/686     50x768+ids   50x5          50x20         [-3, 3]   synthetic
    mosei     16326/1871/4659  50x768+ids   50x74         50x35         [-3, 3]   synthetic_mosei
    sims      1368/456/457     39x768+ids   400x33 ragged 55x709 ragged [-1, 1]   synthetic_sims
    trimodal  1284/229/686     50x768+ids   50x5          50x20         [-3, 3]   synthetic_trimodal
    ========  ===============  ===========  ============  ============  ========  ===========

    ``trimodal`` uses the *cue design* (:mod:`robustmsa.data.cue_design`): every modality carries
    information the others lack, and an exact observable oracle exists (:mod:`robustmsa.data.oracle`).

With the defaults (mosi, seed 0) ridge probes on masked-mean-pooled features reach test MAE about
0.99 (text), 1.17 (audio), 1.28 (vision), against 1.42 for the mean and 0.48 for the latent noise
floor (``info["ceiling"]``: nothing observable reaches it); the best text-only predictor (knowing
the words' sentiment exactly) is held to about 0.85 by the conflict samples, so only fusion gets
closer.
Generation takes about 1.5 s on one core for mosi (about 16 s and 4 GB for mosei).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from ..errors import RobustMSAError
from .dataset import SPLITS, MSADataset, Split

__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "DATASET_NAMES",
    "CLUE_VOCAB",
    "PAD_ID",
    "UNK_ID",
    "CLS_ID",
    "SEP_ID",
    "VOCAB_SIZE",
    "SyntheticConfig",
    "SyntheticTextEncoder",
    "generate_synthetic",
    "load_synthetic",
    "synthetic_cache_key",
    "expected_label",
    "default_cache_dir",
    "export_mmsa",
]

#: Bump whenever the same config would produce different arrays (invalidates every cache).
GENERATOR_VERSION = "2"

PAD_ID, UNK_ID, CLS_ID, SEP_ID = 0, 100, 101, 102
VOCAB_SIZE = 30522
_WORD_LO, _WORD_HI = 1000, 30000
_NEGATION_WORDS = ("not", "never", "no", "hardly", "without")
_NEUTRAL_THRESHOLD = 0.08
_STRENGTH_RANGE = (0.05, 1.0)
_TEXT_CHUNK = 32

#: Clue vocabulary shared by the audio and vision clue sequences (index = token id).
CLUE_VOCAB: tuple[str, ...] = (
    "[PAD]", "[CLS]", "[SEP]",
    "very low pitch", "low pitch", "steady pitch", "high pitch", "very high pitch",
    "quiet voice", "moderate voice", "loud voice",
    "short pause", "long pause", "breath", "background noise", "echo",
    "no smile", "slight smile", "broad smile",
    "no frown", "slight frown", "deep frown",
    "head tilt", "blink", "looks away", "looks at camera", "hand gesture",
)
_CLUE_ID = {w: i for i, w in enumerate(CLUE_VOCAB)}

#: Dataset name of each preset.
DATASET_NAMES: Mapping[str, str] = MappingProxyType(
    {"mosi": "synthetic", "mosei": "synthetic_mosei", "sims": "synthetic_sims", "trimodal": "synthetic_trimodal"}
)

_STREAMS = {
    "table": 1, "lexicon": 2, "population": 3, "labels": 4, "text": 5,
    "audio": 6, "vision": 7, "clues": 8, "unimodal": 9, "private": 10, "cue_jitter": 11, "cue_world": 12,
}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """Every parameter of the generator (defaults: the ``mosi`` preset). See the module docstring.

    Probabilities lie in [0, 1]; strengths and noise levels are non-negative; pairs are
    ``(min, max)`` inclusive. ``SyntheticConfig.preset(name, **overrides)`` builds a preset (unknown
    preset or key: :class:`~robustmsa.errors.RobustMSAError`); ``config.preset`` is its name.
    """

    preset: str = "mosi"
    seed: int = 0
    # sizes and speakers
    n_train: int = 1284
    n_valid: int = 229
    n_test: int = 686
    clips_per_video: tuple[int, int] = (8, 40)
    # shapes
    text_len: int = 50
    text_dim: int = 768
    audio_len: int = 50
    audio_dim: int = 5
    vision_len: int = 50
    vision_dim: int = 20
    aligned: bool = True
    min_frame_fraction: float = 0.4
    # labels
    label_range: tuple[float, float] = (-3.0, 3.0)
    metric_family: str = "mosi"
    rating_levels: int = 3
    n_raters: int = 3
    unimodal_labels: bool = False
    neutral_share: float = 0.1
    negative_share: float = 0.54
    polarity_mean: float = 1.5
    polarity_sd: float = 0.8
    neutral_sd: float = 0.3
    video_concentration: float = 6.0
    label_noise: float = 0.5
    rater_noise: float = 0.6
    # modalities
    modality_jitter: float = 0.15
    conflict_fraction: float = 0.15
    conflict_text_scale: float = 0.6
    text_signal: float = 2.0
    lexical_signal: float = 0.5
    context_mix: float = 0.15
    min_words: int = 8
    sentiment_words: tuple[int, int] = (1, 3)
    negation_rate: float = 0.15
    n_sentiment_words: int = 240
    audio_signal: float = 1.2
    vision_signal: float = 0.6
    audio_salient_frames: tuple[int, int] = (3, 8)
    vision_salient_frames: tuple[int, int] = (3, 8)
    speaker_sd: float = 0.5
    frame_smoothness: float = 0.7
    cue_dims: int = 8
    # clues
    clue_len: int = 16
    clue_noise: float = 0.25
    # design: "lexical" (the MOSI-like text encoder, above) or "cue" (every modality carries shared
    # and private cues at known places; robustmsa.data.cue_design, exact oracle in robustmsa.data.oracle)
    design: str = "lexical"
    text_cue_dims: int = 8
    text_private: float = 0.0
    audio_private: float = 0.0
    vision_private: float = 0.0
    sarcasm_signal: float = 0.0
    cue_marker: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
                value = tuple(value)
            _check_type(f.name, value, str(f.type))
        _check_ranges(self)

    @property
    def dataset_name(self) -> str:
        return DATASET_NAMES[self.preset]

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "valid": self.n_valid, "test": self.n_test}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every parameter (pairs as lists)."""
        return {
            f.name: list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple)
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }


def _config_from_preset(cls: type[SyntheticConfig], name: str, **overrides: Any) -> SyntheticConfig:
    """The preset ``name`` ("mosi", "mosei", "sims") with ``overrides`` applied."""
    if name not in PRESETS:
        raise RobustMSAError(
            f"unknown synthetic preset {name!r}; allowed presets: {', '.join(PRESETS)}",
            hint=_close_hint(name, PRESETS),
        )
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "preset"]
    for key in overrides:
        if key not in allowed:
            raise RobustMSAError(
                f"unknown synthetic config key {key!r}; allowed keys: {', '.join(allowed)}",
                hint=_close_hint(key, allowed),
            )
    return dataclasses.replace(PRESETS[name], **overrides)


class _PresetAccessor:
    """``SyntheticConfig.preset(name, **overrides)`` on the class, the preset name on an instance.

    A non-data descriptor installed after the dataclass is built: an instance finds its ``preset``
    field in its ``__dict__`` first, the class finds the factory.
    """

    def __get__(self, obj: SyntheticConfig | None, cls: type[SyntheticConfig]) -> Any:
        if obj is None:
            return functools.partial(_config_from_preset, cls)
        return obj.__dict__["preset"]


SyntheticConfig.preset = _PresetAccessor()  # type: ignore[assignment,method-assign]


def _close_hint(name: str, allowed: Any) -> str:
    close = difflib.get_close_matches(str(name), list(allowed), n=3)
    return f"did you mean {' or '.join(map(repr, close))}?" if close else "check the spelling"


def _bad(key: str, value: Any, allowed: str) -> RobustMSAError:
    return RobustMSAError(
        f"synthetic config key {key!r} = {value!r} is invalid; allowed: {allowed}",
        hint=f"fix {key!r} in the dataset config or the overrides",
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(float(v))


def _check_type(key: str, value: Any, typ: str) -> None:
    checks = {
        "int": (_is_int, "an integer"),
        "float": (_is_real, "a finite number"),
        "bool": (lambda v: isinstance(v, bool), "true or false"),
        "str": (lambda v: isinstance(v, str), "a string"),
    }
    if typ.startswith("tuple["):
        inner = typ[len("tuple["):].split(",")[0].strip()
        ok = isinstance(value, tuple) and len(value) == 2 and all(checks[inner][0](v) for v in value)
        if not ok:
            raise _bad(key, value, f"a pair [min, max] of {checks[inner][1][2:]}s")
        return
    test, words = checks[typ]
    if not test(value):
        raise _bad(key, value, words)


def _check_ranges(c: SyntheticConfig) -> None:
    if c.preset not in DATASET_NAMES:
        raise _bad("preset", c.preset, ", ".join(DATASET_NAMES))
    if c.design not in ("lexical", "cue"):
        raise _bad("design", c.design, "lexical, cue")
    if c.metric_family not in ("mosi", "sims"):
        raise _bad("metric_family", c.metric_family, "mosi, sims")
    for key in ("seed",):
        if getattr(c, key) < 0:
            raise _bad(key, getattr(c, key), "an integer >= 0")
    for key in ("n_train", "n_valid", "n_test", "text_dim", "audio_dim", "vision_dim", "rating_levels",
                "n_raters", "cue_dims", "text_cue_dims"):
        if getattr(c, key) < 1:
            raise _bad(key, getattr(c, key), "an integer >= 1")
    for key in ("neutral_share", "negative_share", "conflict_fraction", "negation_rate", "context_mix"):
        if not 0.0 <= getattr(c, key) <= (0.5 if key == "context_mix" else 1.0):
            raise _bad(key, getattr(c, key), "a number in [0, 0.5]" if key == "context_mix" else "[0, 1]")
    for key in ("polarity_mean", "polarity_sd", "neutral_sd", "label_noise", "rater_noise",
                "modality_jitter", "conflict_text_scale", "text_signal", "lexical_signal", "audio_signal",
                "vision_signal",
                "speaker_sd", "clue_noise", "text_private", "audio_private", "vision_private", "sarcasm_signal",
                "cue_marker"):
        if getattr(c, key) < 0:
            raise _bad(key, getattr(c, key), "a number >= 0")
    if not 0.0 <= c.frame_smoothness < 1.0:
        raise _bad("frame_smoothness", c.frame_smoothness, "a number in [0, 1)")
    if not 0.0 < c.min_frame_fraction <= 1.0:
        raise _bad("min_frame_fraction", c.min_frame_fraction, "a number in (0, 1]")
    if c.video_concentration <= 0:
        raise _bad("video_concentration", c.video_concentration, "a number > 0")
    lo, hi = c.label_range
    if not (hi > 0 and lo == -hi):
        raise _bad("label_range", list(c.label_range), "a symmetric pair [-m, m] with m > 0")
    _check_pair(c, "clips_per_video", 1, None)
    _check_pair(c, "sentiment_words", 1, None)
    if c.min_words < 2 * c.sentiment_words[1]:
        least = 2 * c.sentiment_words[1]
        raise _bad("min_words", c.min_words, f"an integer >= 2 * sentiment_words max = {least}")
    if c.text_len < c.min_words + 2:
        raise _bad("text_len", c.text_len, f"an integer >= min_words + 2 = {c.min_words + 2}")
    if c.text_dim < 8:
        raise _bad("text_dim", c.text_dim, "an integer >= 8")
    if c.n_sentiment_words < 4:
        raise _bad("n_sentiment_words", c.n_sentiment_words, "an integer >= 4")
    if c.aligned and (c.audio_len != c.text_len or c.vision_len != c.text_len):
        key = "audio_len" if c.audio_len != c.text_len else "vision_len"
        raise _bad(key, getattr(c, key), f"text_len = {c.text_len} when aligned is true")
    _check_pair(c, "audio_salient_frames", 1, c.audio_len)
    _check_pair(c, "vision_salient_frames", 1, c.vision_len)
    if c.clue_len < 4:
        raise _bad("clue_len", c.clue_len, "an integer >= 4")


def _check_pair(c: SyntheticConfig, key: str, lo: int, hi: int | None) -> None:
    a, b = getattr(c, key)
    if not (lo <= a <= b and (hi is None or b <= hi)):
        upper = "" if hi is None else f" <= {hi}"
        raise _bad(key, list(getattr(c, key)), f"a pair [min, max] with {lo} <= min <= max{upper}")


_MOSEI = dict(
    preset="mosei", n_train=16326, n_valid=1871, n_test=4659, clips_per_video=(2, 12),
    audio_dim=74, vision_dim=35, neutral_share=0.2, negative_share=0.4, polarity_mean=1.3, label_noise=0.35,
)
_SIMS = dict(
    preset="sims", n_train=1368, n_valid=456, n_test=457, clips_per_video=(20, 56),
    text_len=39, audio_len=400, audio_dim=33, vision_len=55, vision_dim=709, aligned=False,
    label_range=(-1.0, 1.0), metric_family="sims", rating_levels=1, n_raters=5,
    unimodal_labels=True, neutral_share=0.12, negative_share=0.6, polarity_mean=0.75,
    polarity_sd=0.35, neutral_sd=0.12, video_concentration=20.0, label_noise=0.35, rater_noise=0.5,
    audio_signal=1.0, vision_signal=0.8, audio_salient_frames=(24, 64), vision_salient_frames=(3, 8),
    cue_dims=16,
)

_TRIMODAL = dict(
    preset="trimodal", design="cue", lexical_signal=0.0, negation_rate=0.0,
    text_signal=2.0, audio_signal=2.0, vision_signal=2.0, sarcasm_signal=1.0,
    text_private=0.25, audio_private=0.25, vision_private=0.25, text_cue_dims=32, cue_marker=1.0,
    audio_salient_frames=(4, 10), vision_salient_frames=(4, 10),
)

#: The presets (read-only): name -> config with the real dataset's sizes and shapes.
PRESETS: Mapping[str, SyntheticConfig] = MappingProxyType({
    "mosi": SyntheticConfig(),
    "mosei": SyntheticConfig(**_MOSEI),
    "sims": SyntheticConfig(**_SIMS),
    "trimodal": SyntheticConfig(**_TRIMODAL),
})


# --------------------------------------------------------------------------------------------
# lexicon and text features
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lexicon:
    sentiment_ids: np.ndarray  # [S] int64
    polarity: np.ndarray  # [S] +-1
    strength: np.ndarray  # [S] in _STRENGTH_RANGE
    negation_ids: np.ndarray  # [5]
    neutral_ids: np.ndarray  # [W], by frequency rank
    neutral_p: np.ndarray  # [W] Zipf probabilities

    def value_by_id(self) -> np.ndarray:
        """float32 [VOCAB_SIZE]: signed lexical strength of every id (0 for non-sentiment ids)."""
        v = np.zeros(VOCAB_SIZE, np.float32)
        v[self.sentiment_ids] = self.polarity * self.strength
        return v

    def negation_by_id(self) -> np.ndarray:
        v = np.zeros(VOCAB_SIZE, bool)
        v[self.negation_ids] = True
        return v

    def pick(self, polarity: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A sentiment word of the given polarity with a strength near ``target`` (per sample)."""
        out = np.empty(len(polarity), np.int64)
        jitter = rng.integers(-2, 3, len(polarity))
        for sign in (-1.0, 1.0):
            sel = polarity == sign
            ids, strength = self.sentiment_ids[self.polarity == sign], self.strength[self.polarity == sign]
            order = np.argsort(strength)
            j = np.searchsorted(strength[order], target[sel]) + jitter[sel]
            out[sel] = ids[order][np.clip(j, 0, len(ids) - 1)]
        return out

    def to_info(self) -> dict[str, Any]:
        return {
            "sentiment_ids": self.sentiment_ids.tolist(),
            "polarity": self.polarity.astype(int).tolist(),
            "strength": [round(float(x), 6) for x in self.strength],
            "negation_ids": self.negation_ids.tolist(),
        }


def _build_lexicon(config: SyntheticConfig) -> _Lexicon:
    rng = _rng(config.seed, "lexicon")
    words = rng.permutation(np.arange(_WORD_LO, _WORD_HI, dtype=np.int64))
    n_s = config.n_sentiment_words
    polarity = np.where(np.arange(n_s) % 2 == 0, 1.0, -1.0)
    strength = rng.uniform(*_STRENGTH_RANGE, n_s)
    neutral = words[n_s + len(_NEGATION_WORDS):]
    p = 1.0 / (np.arange(len(neutral)) + 10.0)
    return _Lexicon(
        sentiment_ids=words[:n_s], polarity=polarity, strength=strength,
        negation_ids=words[n_s:n_s + len(_NEGATION_WORDS)], neutral_ids=neutral, neutral_p=p / p.sum(),
    )


def _sinusoid(length: int, dim: int) -> np.ndarray:
    pos = np.arange(length)[:, None]
    freq = np.exp(-np.log(10000.0) * (np.arange(dim) // 2 * 2) / dim)[None, :]
    angle = pos * freq
    return np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)


def _direction(rng: np.random.Generator, dim: int, norm: float) -> np.ndarray:
    u = rng.standard_normal(dim)
    return (u / np.linalg.norm(u) * norm).astype(np.float32)


def text_cue_dims(config: SyntheticConfig) -> np.ndarray:
    """int64 [3 text_cue_dims]: the text feature dimensions that carry the cues of the cue design
    (the two cues and the position marker, one block each); drawn from the seed alone, empty for
    the lexical design."""
    if config.design != "cue":
        return np.zeros(0, np.int64)
    width = min(config.text_cue_dims, config.text_dim // 3)
    return np.sort(_rng(config.seed, "cue_world").choice(config.text_dim, 3 * width, replace=False)).astype(np.int64)


class SyntheticTextEncoder:
    """The frozen "BERT" of the synthetic benchmark: token ids -> contextual features.

    Features are a pure function of the ids, so corrupted ids (e.g. words replaced by ``[UNK]``)
    can be re-embedded exactly as the generator embeds clean ones. Build once, call many times.
    """

    def __init__(self, config: SyntheticConfig):
        self.config = config
        self.lexicon = _build_lexicon(config)
        rng = _rng(config.seed, "table")
        d = config.text_dim
        token_norm = 0.5 * math.sqrt(d)
        scale = np.exp(rng.normal(0.0, 0.2, d)).astype(np.float32) * 0.5
        table = rng.standard_normal((VOCAB_SIZE, d), dtype=np.float32)
        table *= scale
        outliers = rng.choice(d, 2, replace=False)
        table[:, outliers] = table[:, outliers] * 3.0 + np.array([2.5, -2.5], np.float32)
        self.u_lexical = _direction(rng, d, token_norm)
        self.u_context = _direction(rng, d, token_norm)
        lex = self.lexicon
        lexical = config.lexical_signal * lex.polarity * lex.strength
        table[lex.sentiment_ids] += lexical[:, None].astype(np.float32) * self.u_lexical
        table[PAD_ID] = 0.0
        self.table = table
        self._value = self.lexicon.value_by_id()
        self._negation = self.lexicon.negation_by_id()
        self._positions = 0.1 * _sinusoid(max(config.text_len, 1), d)
        self.cue_dims = text_cue_dims(config)
        if config.design == "cue":  # words carry no sentiment; the cue dimensions carry only the cues
            self._value[:] = 0.0
            self.table[:, self.cue_dims] = 0.0
            self._positions[:, self.cue_dims] = 0.0

    def effective_sentiment(self, ids: np.ndarray) -> np.ndarray:
        """float32 [N, L]: signed strength of each token after negation by the previous token."""
        eff = self._value[ids]
        negated = self._negation[ids[:, :-1]]
        eff[:, 1:] = np.where(negated, -eff[:, 1:], eff[:, 1:])
        return eff

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """float32 [N, L, text_dim] features of int token ids [N, L] (0 = padding)."""
        ids = np.asarray(ids)
        in_range = ids.size == 0 or (ids.min() >= 0 and ids.max() < VOCAB_SIZE)
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or not in_range:
            raise RobustMSAError(
                f"text ids must be an integer array [N, L] with values in [0, {VOCAB_SIZE})",
                hint="pass Split.text_ids",
            )
        n, length = ids.shape
        positions = self._positions
        if length > len(positions):
            positions = 0.1 * _sinusoid(length, self.config.text_dim)
            if self.config.design == "cue":
                positions[:, self.cue_dims] = 0.0
        out = np.empty((n, length, self.config.text_dim), np.float32)
        for a in range(0, n, _TEXT_CHUNK):
            b = min(a + _TEXT_CHUNK, n)
            self._encode_chunk(ids[a:b].astype(np.int64), positions[:length], out[a:b])
        return out

    def _encode_chunk(self, ids: np.ndarray, positions: np.ndarray, out: np.ndarray) -> None:
        """Write the features of ``ids`` [n, L] into ``out`` [n, L, D] (few passes, in place)."""
        pad = ids == PAD_ID
        x = self.table[ids]
        x += positions
        eff = self.effective_sentiment(ids)
        hit = np.nonzero(eff)
        x[hit] += (self.config.text_signal * eff[hit])[:, None] * self.u_context
        x[pad] = 0.0
        context_smooth(x, pad, self.config.context_mix, out)


def context_smooth(x: np.ndarray, pad: np.ndarray, context_mix: float, out: np.ndarray) -> np.ndarray:
    """``out`` [N, L, D] = each token mixed with its neighbours (``context_mix`` to each side, the
    rest kept), padding zeroed: the "contextual" spreading of the synthetic text encoder. ``x``
    must be 0 on padding. Linear in ``x``: the oracle applies it to cue positions."""
    c = np.float32(context_mix)
    np.multiply(x, np.float32(1.0) - 2 * c, out=out)
    scratch = np.multiply(x[:, :-1], c)
    out[:, 1:] += scratch
    np.multiply(x[:, 1:], c, out=scratch)
    out[:, :-1] += scratch
    out[pad] = 0.0
    return out


def _word_strings(lexicon: _Lexicon) -> np.ndarray:
    """Deterministic made-up word for every id (negation ids render as real negations)."""
    syllables = [a + b for a in "bdfgklmnprstvz" for b in "aeiou"]
    k = len(syllables)
    ids = np.arange(VOCAB_SIZE)
    first = np.array(syllables)[ids % k]
    second = np.array(syllables)[(ids // k) % k]
    third = np.array(syllables)[(ids // (k * k)) % k]
    words = np.char.add(np.char.add(first, second), third).astype(object)
    words[UNK_ID], words[CLS_ID], words[SEP_ID], words[PAD_ID] = "[UNK]", "[CLS]", "[SEP]", ""
    words[lexicon.negation_ids] = list(_NEGATION_WORDS)
    return words


def _render_text(ids: np.ndarray, lengths: np.ndarray, words: np.ndarray) -> np.ndarray:
    return np.array([" ".join(words[row[1:n + 1]]) for row, n in zip(ids, lengths)], dtype=str)


def _transcript_frame(
    config: SyntheticConfig, lex: _Lexicon, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [N, L] of ``[CLS]`` + Zipf-distributed neutral words + ``[SEP]`` + padding, and the
    word counts [N] (drawn here: the counts, then the words)."""
    length = config.text_len
    span = length - 2 - config.min_words + 1
    n_words = config.min_words + np.minimum((rng.beta(1.3, 2.5, n) * span).astype(np.int64), span - 1)
    pos = np.arange(length)[None, :]
    fill = rng.choice(lex.neutral_ids, size=(n, length), p=lex.neutral_p)
    ids = np.where((pos >= 1) & (pos <= n_words[:, None]), fill, PAD_ID)
    ids[:, 0] = CLS_ID
    ids[np.arange(n), n_words + 1] = SEP_ID
    return ids, n_words


def _slot_position(j: int, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Position [N] of sentiment slot ``j``: uniform inside the j-th of the equal word segments
    (never its first position, so a negation word can precede it)."""
    start = np.floor(j * segment).astype(np.int64) + 1
    end = np.floor((j + 1) * segment).astype(np.int64) + 1
    return start + 1 + np.floor(rng.random(len(segment)) * (end - start - 1)).astype(np.int64)


def _sample_transcripts(
    config: SyntheticConfig, lex: _Lexicon, z_t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [N, L] and word counts [N] expressing the text latent ``z_t``."""
    n = len(z_t)
    ids, n_words = _transcript_frame(config, lex, n, rng)
    lo, hi = config.sentiment_words
    k = rng.integers(lo, hi + 1, n)
    k[np.abs(z_t) < _NEUTRAL_THRESHOLD] = 0
    per_word = np.abs(z_t) / np.maximum(k, 1)
    segment = n_words / np.maximum(k, 1)
    rows = np.arange(n)
    for j in range(hi):
        active = j < k
        p = _slot_position(j, segment, rng)
        target = np.clip(per_word * np.exp(rng.normal(0.0, 0.2, n)), *_STRENGTH_RANGE)
        negate = rng.random(n) < config.negation_rate
        word = lex.pick(np.sign(z_t) * np.where(negate, -1.0, 1.0), target, rng)
        negation = lex.negation_ids[rng.integers(0, len(lex.negation_ids), n)]
        ids[rows[active], p[active]] = word[active]
        both = active & negate
        ids[rows[both], p[both] - 1] = negation[both]
    return ids.astype(np.int64), n_words


# --------------------------------------------------------------------------------------------
# population, labels, frames, clues
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Population:
    split: np.ndarray  # [N] split index
    video: np.ndarray  # [N] global video index
    clip: np.ndarray  # [N] clip number within the video (from 1)
    s: np.ndarray  # [N] latent in rating units
    conflict: np.ndarray  # [N] bool
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


def _sample_population(config: SyntheticConfig) -> _Population:
    rng = _rng(config.seed, "population")
    sizes = [_video_sizes(config.split_sizes[s], *config.clips_per_video, rng) for s in SPLITS]
    split = np.concatenate([np.full(int(v.sum()), i) for i, v in enumerate(sizes)])
    per_video = np.concatenate(sizes)
    video = np.repeat(np.arange(len(per_video)), per_video)
    clip = np.arange(len(video)) - np.repeat(np.cumsum(per_video) - per_video, per_video) + 1
    c, q = config.video_concentration, config.negative_share
    p_neg = rng.beta(max(c * q, 1e-3), max(c * (1 - q), 1e-3), len(per_video))[video]
    n = len(video)
    neutral = rng.random(n) < config.neutral_share
    sign = np.where(rng.random(n) < p_neg, -1.0, 1.0)
    polar = sign * np.abs(rng.normal(config.polarity_mean, config.polarity_sd, n))
    s = np.where(neutral, rng.normal(0.0, config.neutral_sd, n), polar)
    conflict = rng.random(n) < config.conflict_fraction
    z = s / config.rating_levels
    jitter = config.modality_jitter * rng.standard_normal((3, n))
    return _Population(
        split=split, video=video, clip=clip, s=s, conflict=conflict,
        z_t=np.where(conflict, -config.conflict_text_scale * z, z) + jitter[0],
        z_a=z + jitter[1],
        z_v=z + jitter[2],
    )


def _annotate(s: np.ndarray, config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Mean of ``n_raters`` integer ratings of the latent ``s`` (rating units), in label units."""
    k = config.rating_levels
    shared = rng.normal(0.0, config.label_noise, (len(s), 1))
    x = s[:, None] + shared + rng.normal(0.0, config.rater_noise, (len(s), config.n_raters))
    ratings = np.clip(np.rint(x), -k, k)
    return (ratings.sum(axis=1) / config.n_raters * (config.label_range[1] / k)).astype(np.float32)


def expected_label(s: np.ndarray, config: SyntheticConfig) -> np.ndarray:
    """E[label | s] in closed form: the planted noise floor's predictor."""
    k = config.rating_levels
    sd = max(math.hypot(config.label_noise, config.rater_noise), 1e-9)
    levels = np.arange(-k, k + 1, dtype=np.float64)
    upper = np.append(ndtr((levels[:-1] + 0.5 - s[:, None]) / sd), np.ones((len(s), 1)), axis=1)
    lower = np.append(np.zeros((len(s), 1)), upper[:, :-1], axis=1)
    return ((upper - lower) @ levels) * (config.label_range[1] / k)


def _loadings(n_cues: int, dim: int, cue_dims: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [n_cues, dim]: each cue on ``cue_dims`` dimensions (disjoint when there is room).

    Signs are random, magnitudes in [0.5, 1.5] rescaled to unit RMS per cue, so the strength of a
    modality depends on ``*_signal`` and not on the luck of the draw.
    """
    width = min(cue_dims, dim)
    order = np.resize(rng.permutation(dim), n_cues * width).reshape(n_cues, width)
    values = rng.choice([-1.0, 1.0], (n_cues, width)) * rng.uniform(0.5, 1.5, (n_cues, width))
    values /= np.sqrt(np.mean(values**2, axis=1, keepdims=True))
    w = np.zeros((n_cues, dim), np.float32)
    np.put_along_axis(w, order, values.astype(np.float32), axis=1)
    return w


def _render_frames(
    config: SyntheticConfig, modality: str, cues: np.ndarray, lengths: np.ndarray, video: np.ndarray
) -> np.ndarray:
    """float32 [N, T, D] frames: speaker offset + AR(1) background + cue burst, per-dim scaled."""
    rng = _rng(config.seed, modality)
    dim = getattr(config, f"{modality}_dim")
    loadings = _loadings(cues.shape[1], dim, config.cue_dims, rng)
    speaker = rng.normal(0.0, config.speaker_sd, (int(video.max()) + 1, dim)).astype(np.float32)[video]
    scale = np.exp(rng.permutation(ndtri((np.arange(dim) + 0.5) / dim))).astype(np.float32)
    offset = (rng.normal(0.0, 1.0, dim) * scale).astype(np.float32)
    pattern = (cues @ loadings).astype(np.float32) * np.float32(getattr(config, f"{modality}_signal"))
    return _burst_frames(config, modality, pattern, speaker, scale, offset, lengths, rng)[0]


def _burst_frames(
    config: SyntheticConfig, modality: str, pattern: np.ndarray, speaker: np.ndarray, scale: np.ndarray,
    offset: np.ndarray, lengths: np.ndarray, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames float32 [N, T, D] = ((AR(1) + speaker + burst x pattern) x scale + offset) on valid frames,
    0 on padding; and each burst's start and width [N] (drawn here: width, start, then the background).

    ``pattern`` [N, D] is the cue pattern of each sample (signal included), ``speaker`` [N, D] its
    speaker's offset, ``scale``/``offset`` [D] the per-dimension affine map.
    """
    length = getattr(config, f"{modality}_len")
    lo, hi = getattr(config, f"{modality}_salient_frames")
    n = len(pattern)
    width = np.minimum(rng.integers(lo, hi + 1, n), lengths)
    start = np.floor(rng.random(n) * (lengths - width + 1)).astype(np.int64)
    t = np.arange(length)[None, :]
    burst = np.nonzero((t >= start[:, None]) & (t < (start + width)[:, None]))
    out = _ar1(rng.standard_normal((n, length, pattern.shape[1]), dtype=np.float32), config.frame_smoothness)
    out += speaker[:, None, :]
    out[burst] += pattern[burst[0]]
    out *= scale
    out += offset
    out[t >= lengths[:, None]] = 0.0
    return out, start, width


def _ar1(noise: np.ndarray, a: float) -> np.ndarray:
    """Stationary unit-variance AR(1) along axis 1 of white ``noise`` [N, T, D], in place."""
    noise[:, 1:] *= np.float32(math.sqrt(1.0 - a * a))
    for t in range(1, noise.shape[1]):
        noise[:, t] += np.float32(a) * noise[:, t - 1]
    return noise


def _audio_cues(z: np.ndarray) -> np.ndarray:
    return np.stack([np.tanh(2.0 * z), 2.0 * np.abs(z)], axis=1)


def _vision_cues(z: np.ndarray) -> np.ndarray:
    return np.stack([2.0 * np.maximum(z, 0.0), 2.0 * np.maximum(-z, 0.0)], axis=1)


_CLUE_ATTRIBUTES = {
    "audio": (
        (
            ("very low pitch", "low pitch", "steady pitch", "high pitch", "very high pitch"),
            (-0.6, -0.2, 0.2, 0.6),
        ),
        (("quiet voice", "moderate voice", "loud voice"), (0.5, 1.2)),
    ),
    "vision": (
        (("no smile", "slight smile", "broad smile"), (0.3, 1.0)),
        (("no frown", "slight frown", "deep frown"), (0.3, 1.0)),
    ),
}
_CLUE_FILLERS = {
    "audio": ("short pause", "long pause", "breath", "background noise", "echo"),
    "vision": ("head tilt", "blink", "looks away", "looks at camera", "hand gesture"),
}


def _clue_sequences(
    modality: str, cues: np.ndarray, config: SyntheticConfig, rng: np.random.Generator
) -> np.ndarray:
    """int64 [N, clue_len]: [CLS] shuffled noisy cue descriptions and fillers [SEP], 0-padded."""
    n, body = len(cues), config.clue_len - 2
    attributes = _CLUE_ATTRIBUTES[modality]
    mentions = max(1, body // (2 * len(attributes)))
    columns = []
    for a, (words, edges) in enumerate(attributes):
        vocab = np.array([_CLUE_ID[w] for w in words])
        noisy = cues[:, a:a + 1] + rng.normal(0.0, config.clue_noise, (n, mentions))
        columns.append(vocab[np.digitize(noisy, edges)])
    fillers = np.array([_CLUE_ID[w] for w in _CLUE_FILLERS[modality]])
    n_fixed = len(attributes) * mentions
    columns.append(fillers[rng.integers(0, len(fillers), (n, body - n_fixed))])
    tokens = np.concatenate(columns, axis=1)
    n_tokens = rng.integers(min(n_fixed, body), body + 1, n)
    present = np.arange(body)[None, :] < n_tokens[:, None]
    keys = np.where(present, rng.random((n, body)), np.inf)
    order = np.argsort(keys, axis=1, kind="stable")
    tokens = np.where(present, tokens, 0)
    tokens = np.take_along_axis(tokens, order, axis=1)
    out = np.zeros((n, config.clue_len), np.int64)
    out[:, 0] = _CLUE_ID["[CLS]"]
    out[:, 1:body + 1] = tokens
    out[np.arange(n), n_tokens + 1] = _CLUE_ID["[SEP]"]
    return out


# --------------------------------------------------------------------------------------------
# assembly
# --------------------------------------------------------------------------------------------


def _ceiling(pred: np.ndarray, truth: np.ndarray, family: str) -> dict[str, float]:
    from ..metrics import compute_metrics

    return {k: float(v) for k, v in compute_metrics(pred, truth, family).items()}


def _frame_lengths(config: SyntheticConfig, modality: str, text_lengths: np.ndarray) -> np.ndarray:
    if config.aligned:
        return text_lengths
    length = getattr(config, f"{modality}_len")
    rng = np.random.default_rng([config.seed, _STREAMS[modality], 1])
    frac = rng.uniform(config.min_frame_fraction, 1.0, len(text_lengths))
    return np.clip(np.ceil(frac * length).astype(np.int64), 1, length)


def generate_synthetic(config: SyntheticConfig) -> MSADataset:
    """The synthetic dataset of ``config``: a pure, deterministic function of the config."""
    if config.design == "cue":
        from .cue_design import generate_cue_design

        return generate_cue_design(config)
    pop = _sample_population(config)
    labels = _annotate(pop.s, config, _rng(config.seed, "labels"))
    encoder = SyntheticTextEncoder(config)
    text_ids, n_words = _sample_transcripts(config, encoder.lexicon, pop.z_t, _rng(config.seed, "text"))
    text = encoder(text_ids)
    text_lengths = n_words + 2
    frames, masks = {}, {}
    cues = {"audio": _audio_cues(pop.z_a), "vision": _vision_cues(pop.z_v)}
    for m in ("audio", "vision"):
        lengths = _frame_lengths(config, m, text_lengths)
        frames[m] = _render_frames(config, m, cues[m], lengths, pop.video)
        masks[m] = np.arange(getattr(config, f"{m}_len"))[None, :] < lengths[:, None]
    clue_rng = _rng(config.seed, "clues")
    clues = {m: _clue_sequences(m, cues[m], config, clue_rng) for m in ("audio", "vision")}
    unimodal: dict[str, np.ndarray] = {}
    if config.unimodal_labels:
        uni_rng = _rng(config.seed, "unimodal")
        for key, z in (("T", pop.z_t), ("A", pop.z_a), ("V", pop.z_v)):
            unimodal[key] = _annotate(z * config.rating_levels, config, uni_rng)
    ids = np.array([f"vid{v:04d}$_${c}" for v, c in zip(pop.video, pop.clip)], dtype=str)
    raw = _render_text(text_ids, n_words, _word_strings(encoder.lexicon))
    full = Split(
        text=text, text_mask=text_ids != PAD_ID, audio=frames["audio"], audio_mask=masks["audio"],
        vision=frames["vision"], vision_mask=masks["vision"], labels=labels, ids=ids, text_ids=text_ids,
        unimodal_labels=unimodal, clues=clues, raw_text=raw,
    )
    index = {s: np.flatnonzero(pop.split == i) for i, s in enumerate(SPLITS)}
    splits = {s: _slice_split(full, int(idx[0]), int(idx[-1]) + 1) for s, idx in index.items()}
    info = _info(config, pop.s, pop.conflict, labels, index, encoder.lexicon)
    return MSADataset(
        name=config.dataset_name, splits=splits, label_range=tuple(float(x) for x in config.label_range),
        metric_family=config.metric_family, info=info,
    )


def _slice_split(split: Split, start: int, stop: int) -> Split:
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


def _info(
    config: SyntheticConfig, s: np.ndarray, conflict: np.ndarray, labels: np.ndarray,
    index: dict[str, np.ndarray], lex: _Lexicon,
) -> dict[str, Any]:
    best = expected_label(s, config)
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


# --------------------------------------------------------------------------------------------
# cache and export
# --------------------------------------------------------------------------------------------


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
    config = SyntheticConfig.preset(preset, seed=seed, **overrides)
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


def _flat_arrays(dataset: MSADataset) -> dict[str, np.ndarray]:
    return {f"{s}/{k}": v for s in SPLITS for k, v in dataset.splits[s].arrays().items()}


def _atomic_write(path: Path, write: Any) -> None:
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
    meta = {
        "cache_key": key, "generator_version": GENERATOR_VERSION, "content_hash": dataset.content_hash(),
        "name": dataset.name, "label_range": list(dataset.label_range),
        "metric_family": dataset.metric_family, "info": dataset.info,
    }
    arrays = _flat_arrays(dataset)
    _atomic_write(stem.with_suffix(".npz"), lambda f: np.savez(f, **arrays))
    _atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps(meta).encode("utf-8")))


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
        )
        ok = (meta["cache_key"] == key and meta["generator_version"] == GENERATOR_VERSION
              and dataset.content_hash() == meta["content_hash"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
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
    from .mmsa import save_mmsa_pickle

    save_mmsa_pickle(dataset, path)
