"""The configuration of the synthetic benchmark: :class:`SyntheticConfig`, its validation and the
presets (:data:`PRESETS`) with the real datasets' sizes and shapes."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from corruptions.registry import did_you_mean

from ...errors import RobustMSAError
from .latent import LatentModel

__all__ = ["SyntheticConfig", "PRESETS", "DATASET_NAMES", "STREAMS", "stream_rng"]

#: Dataset name of each preset.
DATASET_NAMES: Mapping[str, str] = MappingProxyType(
    {"mosi": "synthetic", "mosei": "synthetic_mosei", "sims": "synthetic_sims", "trimodal": "synthetic_trimodal",
     "emotion": "synthetic_emotion", "sims2": "synthetic_sims2"}
)

#: Random stream of each part of the generator: every draw comes from ``default_rng([seed, stream])``.
STREAMS: Mapping[str, int] = MappingProxyType({
    "table": 1, "lexicon": 2, "population": 3, "labels": 4, "text": 5,
    "audio": 6, "vision": 7, "clues": 8, "unimodal": 9, "private": 10, "cue_jitter": 11, "cue_world": 12,
})


def stream_rng(seed: int, stream: str, *sub: int) -> np.random.Generator:
    """The generator of ``stream`` (and sub-stream ``sub``) for ``seed``."""
    return np.random.default_rng([seed, STREAMS[stream], *sub])


@dataclass(frozen=True)
class SyntheticConfig:
    """Every parameter of the generator (defaults: the ``mosi`` preset); the generative model is
    described in :mod:`robustmsa.data.synthetic`.

    Probabilities lie in [0, 1]; strengths and noise levels are non-negative; pairs are
    ``(min, max)`` inclusive. :meth:`from_preset` builds a preset (unknown preset or key:
    :class:`~robustmsa.errors.RobustMSAError`); ``config.preset`` is its name.
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
    # and private cues at known places; robustmsa.data.synthetic.cue_design, exact oracle in
    # robustmsa.data.oracle)
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

    @property
    def latent(self) -> LatentModel:
        """The latent sentiment and rater model of this config (:mod:`.latent`)."""
        return LatentModel.of(self, label_max=self.label_range[1])

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> SyntheticConfig:
        """The preset ``name`` ("mosi", "mosei", "sims", "trimodal", "emotion", "sims2") with ``overrides`` applied."""
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


def _close_hint(name: str, allowed: Any) -> str:
    return did_you_mean(name, allowed) or "check the spelling"


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
    if c.metric_family not in ("mosi", "sims", "classification"):
        raise _bad("metric_family", c.metric_family, "mosi, sims, classification")
    if c.metric_family == "classification" and c.design != "cue":
        raise _bad("metric_family", c.metric_family, "mosi or sims with design lexical (classification needs "
                   "design cue: the emotion classes come from its latents)")
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

#: MELD-style emotion classes from the cue design (:mod:`.emotion`): no private factor in the valence,
#: neutral and negative shares set so that the classes come close to MELD's shares; MOSI's sizes
_EMOTION = dict(
    _TRIMODAL, preset="emotion", metric_family="classification", text_private=0.0, audio_private=0.0,
    vision_private=0.0, neutral_share=0.44, negative_share=0.44,
)

#: CH-SIMS v2.0 (supervised part, MMSA's ch-simsv2s.pkl): 2722/647/1034 clips, text 50x768, audio
#: 925x25, vision 232x177, unaligned, SIMS labels and unimodal labels T/A/V
_SIMS2 = dict(
    _SIMS, preset="sims2", n_train=2722, n_valid=647, n_test=1034, text_len=50, audio_len=925, audio_dim=25,
    vision_len=232, vision_dim=177,
)

#: The presets (read-only): name -> config with the real dataset's sizes and shapes.
PRESETS: Mapping[str, SyntheticConfig] = MappingProxyType({
    "mosi": SyntheticConfig(),
    "mosei": SyntheticConfig(**_MOSEI),
    "sims": SyntheticConfig(**_SIMS),
    "trimodal": SyntheticConfig(**_TRIMODAL),
    "emotion": SyntheticConfig(**_EMOTION),
    "sims2": SyntheticConfig(**_SIMS2),
})
