"""The *cue design* of the synthetic benchmark: every modality matters, and an exact oracle exists.

Presets with ``design: cue`` (``trimodal``) share the population, the annotation model, the
transcript frames and the frame background of the lexical design (:mod:`.generate`)
but put the sentiment into *cues*: a few numbers per modality and clip, written at known places
along known feature directions, so that what a corrupted observation still says about them can
be computed exactly (:mod:`robustmsa.data.oracle`).

Latents (per clip; ``z = s / rating_levels`` is the shared sentiment, ``kappa`` the conflict flag)
    ``s`` and ``kappa`` as in the lexical design; one *private* factor per modality
    ``u_m ~ N(0, 1)`` that only modality m reveals. The label annotates
    ``s_total = s + rating_levels (text_private u_t + audio_private u_a + vision_private u_v)``.

Cues (each plus its own jitter ``N(0, modality_jitter^2)``; :func:`shared_cue_means`)
    ============  ==========================================  =============================
    modality      cues                                        private cue
    ============  ==========================================  =============================
    text          stated sentiment: z, or -conflict_text_scale z   text-only content: u_t
                  on a conflict (sarcastic) clip
    audio         pitch: tanh(2 z); sarcastic tone: sarcasm_signal kappa   energy: u_a
    vision        smile: 2 relu(z); frown: 2 relu(-z)         expressivity: u_v
    ============  ==========================================  =============================

    Text alone is misled on conflict clips unless the tone of voice gives them away (a
    multiplicative text x audio interaction); pitch and the face are non-linear in z; each private
    factor reaches the label through one modality only. No additive or linear model of the pooled
    features can represent the sign flip.

Rendering
    Text: the transcript frame of the lexical design; at each of ``sentiment_words`` (1-3, drawn
    independently of every latent) slot positions a sentiment word drawn uniformly from the
    lexicon (words carry no sentiment in this design: they only mark where the cues are). The
    encoder's table and positions are zero on ``2 cue_dims`` dedicated dimensions
    (:func:`~robustmsa.data.synthetic.text.text_cue_dims`); there the slot positions carry
    ``text_signal x (cues @ loadings)`` and the contextual smoothing spreads them to the
    neighbours. Audio and vision: the background of the lexical design (speaker offset + AR(1),
    per-dimension scale and offset) plus one burst of ``*_salient_frames`` frames carrying
    ``*_signal x (cues @ loadings)``. Clue texts are not generated (the TEXT model runs without
    explanations): they would be a second, never corrupted view of the cues.

The oracle's privileged knowledge, in ``info["oracle"]``: the slot positions and the burst
starts and widths of the valid and test splits (where the cues are; never their values).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri

from ..dataset import SPLITS, MSADataset, Split
from .assembly import Population, dataset_info, sample_population, slice_split
from .config import SyntheticConfig, stream_rng
from .frames import burst_frames, cue_loadings, frame_lengths
from .latent import annotate
from .text import (
    PAD_ID,
    SyntheticTextEncoder,
    context_smooth,
    render_text,
    slot_position,
    text_cue_dims,
    transcript_frame,
    word_strings,
)

__all__ = ["CUE_NAMES", "PRIVATE_CUE", "CueWorld", "build_world", "shared_cue_means", "private_weights",
           "cue_design_with_private",
           "generate_cue_design", "slot_indicator", "with_marker"]

#: The cues of each modality, in order (the last one is the private factor).
CUE_NAMES: dict[str, tuple[str, ...]] = {
    "text": ("stated sentiment", "text-only content"),
    "audio": ("pitch", "sarcastic tone", "energy"),
    "vision": ("smile", "frown", "expressivity"),
}
#: Index of the private cue of each modality.
PRIVATE_CUE: dict[str, int] = {m: len(c) - 1 for m, c in CUE_NAMES.items()}
_MODALITIES = ("text", "audio", "vision")


def private_weights(config: SyntheticConfig) -> dict[str, float]:
    """Weight of each modality's private factor in ``z`` units of the label."""
    return {m: float(getattr(config, f"{m}_private")) for m in _MODALITIES}


def shared_cue_means(z: np.ndarray, conflict: np.ndarray, config: SyntheticConfig) -> dict[str, np.ndarray]:
    """Per modality, the cues [..., k] without jitter and with the private cue at 0.

    ``z`` and ``conflict`` broadcast together (the oracle passes a grid of z against both flags).
    """
    z = np.asarray(z, np.float64)
    kappa = np.asarray(conflict, np.float64)
    z, kappa = np.broadcast_arrays(z, kappa)
    zero = np.zeros_like(z)
    stated = np.where(kappa > 0.5, -config.conflict_text_scale * z, z)
    return {
        "text": np.stack([stated, zero], axis=-1),
        "audio": np.stack([np.tanh(2.0 * z), config.sarcasm_signal * kappa, zero], axis=-1),
        "vision": np.stack([2.0 * np.maximum(z, 0.0), 2.0 * np.maximum(-z, 0.0), zero], axis=-1),
    }


@dataclass(frozen=True)
class CueWorld:
    """Everything fixed by the seed that maps cues to features (the oracle's structural knowledge).

    Per modality: ``dims`` the feature dimensions that carry cues, ``loadings`` [k + 1, len(dims)]
    (signal included: a cue value of 1 adds ``loadings[j]`` to those dimensions of each cue
    frame; the last row carries the position marker, whose value is always ``cue_marker``),
    ``scale`` and ``offset`` [len(dims)] of the affine map applied after the background is
    added (1 and 0 for text, whose cue dimensions carry no background).
    """

    dims: dict[str, np.ndarray]
    loadings: dict[str, np.ndarray]
    scale: dict[str, np.ndarray]
    offset: dict[str, np.ndarray]


def _text_loadings(config: SyntheticConfig, width: int, rng: np.random.Generator) -> np.ndarray:
    k = len(CUE_NAMES["text"]) + 1  # the cues and the position marker, one block each
    w = np.zeros((k, k * width))
    for j in range(k):
        values = rng.choice([-1.0, 1.0], width) * rng.uniform(0.5, 1.5, width)
        w[j, j * width:(j + 1) * width] = values / np.sqrt(np.mean(values**2))
    return (w * config.text_signal).astype(np.float32)


def build_world(config: SyntheticConfig) -> CueWorld:
    """The :class:`CueWorld` of ``config`` (a pure function of the config, independent of sizes)."""
    dims = {"text": text_cue_dims(config)}
    width = len(dims["text"]) // (len(CUE_NAMES["text"]) + 1)
    loadings = {"text": _text_loadings(config, width, stream_rng(config.seed, "cue_world", 0))}
    scale = {"text": np.ones(len(dims["text"]), np.float32)}
    offset = {"text": np.zeros(len(dims["text"]), np.float32)}
    for i, m in enumerate(("audio", "vision"), start=1):
        rng = stream_rng(config.seed, "cue_world", i)
        dim = getattr(config, f"{m}_dim")
        dims[m] = np.arange(dim)
        signal = np.float32(getattr(config, f"{m}_signal"))
        loadings[m] = cue_loadings(len(CUE_NAMES[m]) + 1, dim, config.cue_dims, rng) * signal
        scale[m] = np.exp(rng.permutation(ndtri((np.arange(dim) + 0.5) / dim))).astype(np.float32)
        offset[m] = (rng.normal(0.0, 1.0, dim) * scale[m]).astype(np.float32)
    return CueWorld(dims, loadings, scale, offset)


def slot_indicator(positions: np.ndarray, length: int) -> np.ndarray:
    """float32 [N, L]: 1 at each slot position (``positions`` [N, S], -1 = no slot)."""
    out = np.zeros((len(positions), length), np.float32)
    rows, cols = np.nonzero(positions >= 0)
    out[rows, positions[rows, cols]] = 1.0
    return out


def _slots(config: SyntheticConfig, n_words: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64 [N, max slots] slot positions (-1 where a clip has fewer), independent of every latent."""
    lo, hi = config.sentiment_words
    k = rng.integers(lo, hi + 1, len(n_words))
    segment = n_words / k
    out = np.full((len(n_words), hi), -1, np.int64)
    for j in range(hi):
        p = slot_position(j, segment, rng)
        out[:, j] = np.where(j < k, p, -1)
    return out


def with_marker(cues: np.ndarray, config: SyntheticConfig) -> np.ndarray:
    """``cues`` [N, k] with the position marker appended as a last column (the rows of the loadings)."""
    return np.concatenate([cues, np.full((len(cues), 1), config.cue_marker)], axis=1)


def _cues(config: SyntheticConfig, z: np.ndarray, conflict: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The cues of every clip (private factors and jitter drawn here) and the private factors [3, N]."""
    n = len(z)
    u = stream_rng(config.seed, "private").standard_normal((3, n))
    jitter_rng = stream_rng(config.seed, "cue_jitter")
    cues = shared_cue_means(z, conflict, config)
    for i, m in enumerate(_MODALITIES):
        cues[m][:, PRIVATE_CUE[m]] = u[i]
        cues[m] = cues[m] + config.modality_jitter * jitter_rng.standard_normal(cues[m].shape)
    return cues, u


def generate_cue_design(config: SyntheticConfig) -> MSADataset:
    """The synthetic dataset of a ``design: cue`` config (see the module docstring)."""
    return cue_design_with_private(config)[0]


def cue_design_with_private(config: SyntheticConfig) -> tuple[MSADataset, dict[str, np.ndarray]]:
    """The dataset of a ``design: cue`` config and, per split, its clips' private factors [3, n]
    (text, audio, vision; the emotion preset maps them to classes, :mod:`.emotion`)."""
    pop = sample_population(config)
    z = pop.s / config.rating_levels
    cues, u = _cues(config, z, pop.conflict)
    weights = private_weights(config)
    s_total = pop.s + config.rating_levels * sum(weights[m] * u[i] for i, m in enumerate(_MODALITIES))
    labels = annotate(s_total, config.latent, stream_rng(config.seed, "labels"))
    world = build_world(config)
    encoder = SyntheticTextEncoder(config)
    text_ids, n_words, slots = _cue_transcripts(config, encoder, len(z))
    text = _cue_text(config, encoder, text_ids, slots, cues["text"], world)
    frames, masks, bursts = _cue_frames(config, pop, n_words + 2, cues, world)
    ids = np.array([f"vid{v:04d}$_${c}" for v, c in zip(pop.video, pop.clip)], dtype=str)
    raw = render_text(text_ids, n_words, word_strings(encoder.lexicon))
    full = Split(
        text=text, text_mask=text_ids != PAD_ID, audio=frames["audio"], audio_mask=masks["audio"],
        vision=frames["vision"], vision_mask=masks["vision"], labels=labels, ids=ids, text_ids=text_ids,
        unimodal_labels={}, clues={}, raw_text=raw,
    )
    index = {s: np.flatnonzero(pop.split == i) for i, s in enumerate(SPLITS)}
    splits = {s: slice_split(full, int(idx[0]), int(idx[-1]) + 1) for s, idx in index.items()}
    info = dataset_info(config, s_total, pop.conflict, labels, index, encoder.lexicon)
    info["oracle"] = _oracle_info(slots, bursts, index)
    info["private_share"] = _private_share(config, pop.s, s_total)
    dataset = MSADataset(
        name=config.dataset_name, splits=splits, label_range=tuple(float(x) for x in config.label_range),
        metric_family=config.metric_family, info=info,
    )
    return dataset, {s: u[:, idx] for s, idx in index.items()}


def _cue_transcripts(
    config: SyntheticConfig, encoder: SyntheticTextEncoder, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids [N, L], word counts [N] and slot positions [N, S]: the transcript frames with a
    sentiment word drawn uniformly at each slot (drawn here: frames, slots, words)."""
    text_rng = stream_rng(config.seed, "text")
    text_ids, n_words = transcript_frame(config, encoder.lexicon, n, text_rng)
    slots = _slots(config, n_words, text_rng)
    rows, cols = np.nonzero(slots >= 0)
    text_ids[rows, slots[rows, cols]] = text_rng.choice(encoder.lexicon.sentiment_ids, len(rows))
    return text_ids, n_words, slots


def _cue_text(
    config: SyntheticConfig, encoder: SyntheticTextEncoder, text_ids: np.ndarray, slots: np.ndarray,
    cues: np.ndarray, world: CueWorld,
) -> np.ndarray:
    """float32 [N, L, D]: the encoded transcripts plus the text cues at the slot positions, smoothed."""
    text = encoder(text_ids)
    pad = text_ids == PAD_ID
    pattern = with_marker(cues, config) @ world.loadings["text"]
    marks = slot_indicator(slots, config.text_len)[:, :, None] * pattern[:, None, :]
    text[:, :, world.dims["text"]] += context_smooth(marks.astype(np.float32), pad, config.context_mix,
                                                     np.empty_like(marks, dtype=np.float32))
    return text


def _cue_frames(
    config: SyntheticConfig, pop: Population, text_lengths: np.ndarray, cues: dict[str, np.ndarray],
    world: CueWorld,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Audio and vision frames, masks and bursts (start, width) [N, 2]: the lexical design's
    background plus one burst carrying the cues."""
    frames, masks, bursts = {}, {}, {}
    for m in ("audio", "vision"):
        rng = stream_rng(config.seed, m)
        dim = getattr(config, f"{m}_dim")
        speaker = rng.normal(0.0, config.speaker_sd, (int(pop.video.max()) + 1, dim)).astype(np.float32)[pop.video]
        lengths = frame_lengths(config, m, text_lengths)
        pattern = (with_marker(cues[m], config) @ world.loadings[m]).astype(np.float32)
        frames[m], start, width = burst_frames(config, m, pattern, speaker, world.scale[m], world.offset[m],
                                               lengths, rng)
        masks[m] = np.arange(getattr(config, f"{m}_len"))[None, :] < lengths[:, None]
        bursts[m] = np.stack([start, width], axis=1)
    return frames, masks, bursts


def _oracle_info(slots: np.ndarray, bursts: dict[str, np.ndarray], index: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "design": "cue",
        "where": {
            s: {"text": slots[index[s]].tolist(), "audio": bursts["audio"][index[s]].tolist(),
                "vision": bursts["vision"][index[s]].tolist()}
            for s in ("valid", "test")
        },
        "note": "cue positions (text slots; audio/vision burst start and width) of the valid and test "
                "splits: where the cues are, never their values",
    }


def _private_share(config: SyntheticConfig, s: np.ndarray, s_total: np.ndarray) -> float:
    """Share of the latent label variance that only one modality can see (the private factors)."""
    return round(1.0 - float(np.var(s)) / max(float(np.var(s_total)), 1e-12), 4)
