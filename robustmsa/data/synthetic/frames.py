"""The audio and vision frames of the synthetic benchmark (speaker offset, AR(1) background and a
burst of cue frames) and the clue texts that describe their cues."""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri

from .config import SyntheticConfig, stream_rng

__all__ = [
    "CLUE_VOCAB", "cue_loadings", "render_frames", "burst_frames", "audio_cues", "vision_cues", "clue_sequences",
    "frame_lengths",
]

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


def cue_loadings(n_cues: int, dim: int, cue_dims: int, rng: np.random.Generator) -> np.ndarray:
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


def render_frames(
    config: SyntheticConfig, modality: str, cues: np.ndarray, lengths: np.ndarray, video: np.ndarray
) -> np.ndarray:
    """float32 [N, T, D] frames: speaker offset + AR(1) background + cue burst, per-dim scaled."""
    rng = stream_rng(config.seed, modality)
    dim = getattr(config, f"{modality}_dim")
    loadings = cue_loadings(cues.shape[1], dim, config.cue_dims, rng)
    speaker = rng.normal(0.0, config.speaker_sd, (int(video.max()) + 1, dim)).astype(np.float32)[video]
    scale = np.exp(rng.permutation(ndtri((np.arange(dim) + 0.5) / dim))).astype(np.float32)
    offset = (rng.normal(0.0, 1.0, dim) * scale).astype(np.float32)
    pattern = (cues @ loadings).astype(np.float32) * np.float32(getattr(config, f"{modality}_signal"))
    return burst_frames(config, modality, pattern, speaker, scale, offset, lengths, rng)[0]


def burst_frames(
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


def audio_cues(z: np.ndarray) -> np.ndarray:
    return np.stack([np.tanh(2.0 * z), 2.0 * np.abs(z)], axis=1)


def vision_cues(z: np.ndarray) -> np.ndarray:
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


def clue_sequences(
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


def frame_lengths(config: SyntheticConfig, modality: str, text_lengths: np.ndarray) -> np.ndarray:
    """int64 [N] valid frames of ``modality``: the text lengths when aligned, else ragged lengths of
    at least ``min_frame_fraction`` of the sequence."""
    if config.aligned:
        return text_lengths
    length = getattr(config, f"{modality}_len")
    rng = stream_rng(config.seed, modality, 1)
    frac = rng.uniform(config.min_frame_fraction, 1.0, len(text_lengths))
    return np.clip(np.ceil(frac * length).astype(np.int64), 1, length)

