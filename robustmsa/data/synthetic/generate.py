"""``generate_synthetic(config)``: the dataset of a config, and the lexical design (MOSI-like text,
audio and vision cue bursts, clue texts); the cue design is in :mod:`.cue_design`."""
from __future__ import annotations

import numpy as np

from ..dataset import SPLITS, MSADataset, Split
from .assembly import dataset_info, sample_population, slice_split
from .config import SyntheticConfig, stream_rng
from .cue_design import generate_cue_design
from .emotion import generate_emotion
from .frames import audio_cues, clue_sequences, frame_lengths, render_frames, vision_cues
from .latent import annotate
from .text import PAD_ID, SyntheticTextEncoder, render_text, sample_transcripts, word_strings

__all__ = ["generate_synthetic"]


def generate_synthetic(config: SyntheticConfig) -> MSADataset:
    """The synthetic dataset of ``config``: a pure, deterministic function of the config."""
    if config.metric_family == "classification":
        return generate_emotion(config)
    if config.design == "cue":
        return generate_cue_design(config)
    return _generate_lexical(config)


def _generate_lexical(config: SyntheticConfig) -> MSADataset:
    pop = sample_population(config)
    labels = annotate(pop.s, config.latent, stream_rng(config.seed, "labels"))
    encoder = SyntheticTextEncoder(config)
    text_ids, n_words = sample_transcripts(config, encoder.lexicon, pop.z_t, stream_rng(config.seed, "text"))
    text = encoder(text_ids)
    text_lengths = n_words + 2
    frames, masks = {}, {}
    cues = {"audio": audio_cues(pop.z_a), "vision": vision_cues(pop.z_v)}
    for m in ("audio", "vision"):
        lengths = frame_lengths(config, m, text_lengths)
        frames[m] = render_frames(config, m, cues[m], lengths, pop.video)
        masks[m] = np.arange(getattr(config, f"{m}_len"))[None, :] < lengths[:, None]
    clue_rng = stream_rng(config.seed, "clues")
    clues = {m: clue_sequences(m, cues[m], config, clue_rng) for m in ("audio", "vision")}
    unimodal: dict[str, np.ndarray] = {}
    if config.unimodal_labels:
        uni_rng = stream_rng(config.seed, "unimodal")
        for key, z in (("T", pop.z_t), ("A", pop.z_a), ("V", pop.z_v)):
            unimodal[key] = annotate(z * config.rating_levels, config.latent, uni_rng)
    ids = np.array([f"vid{v:04d}$_${c}" for v, c in zip(pop.video, pop.clip)], dtype=str)
    raw = render_text(text_ids, n_words, word_strings(encoder.lexicon))
    full = Split(
        text=text, text_mask=text_ids != PAD_ID, audio=frames["audio"], audio_mask=masks["audio"],
        vision=frames["vision"], vision_mask=masks["vision"], labels=labels, ids=ids, text_ids=text_ids,
        unimodal_labels=unimodal, clues=clues, raw_text=raw,
    )
    index = {s: np.flatnonzero(pop.split == i) for i, s in enumerate(SPLITS)}
    splits = {s: slice_split(full, int(idx[0]), int(idx[-1]) + 1) for s, idx in index.items()}
    info = dataset_info(config, pop.s, pop.conflict, labels, index, encoder.lexicon)
    return MSADataset(
        name=config.dataset_name, splits=splits, label_range=tuple(float(x) for x in config.label_range),
        metric_family=config.metric_family, info=info,
    )
