"""The embedded synthetic MSA benchmark: the harness's default dataset, no download needed.

``generate_synthetic(config)`` is a pure, deterministic function of a :class:`SyntheticConfig`
that returns an :class:`~robustmsa.data.dataset.MSADataset` with the *structure* of the real
benchmarks (CMU-MOSI, CMU-MOSEI, CH-SIMS), so that corruptions hurt the way they hurt on real data.
``load_synthetic(preset, seed)`` caches the result on disk (``.npz`` + ``.json``, never pickle).

Modules: :mod:`.config` (the config, its validation, the presets), :mod:`.latent` (the latent
sentiment and rater model, shared with the raw-media benchmark :mod:`robustmsa.media.generate`),
:mod:`.assembly` (population, splits, ``info``), :mod:`.text` (vocabulary, transcripts, the text
encoder), :mod:`.frames` (audio and vision frames, clues), :mod:`.generate` (the lexical design),
:mod:`.cue_design` (the cue design) and :mod:`.cache` (disk cache, MMSA export).

Generative model (all draws from ``np.random.default_rng([seed, stream])``, one stream per part)
------------------------------------------------------------------------------------------------
Speakers and splits
    Clips come in videos of ``clips_per_video`` clips (a video is one speaker); ids are
    ``"vid{k:04d}$_${clip}"``. Splits are made of whole videos: no speaker is in two splits.

Latent sentiment and labels (:mod:`.latent`)
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
    closed form (:func:`~.latent.expected_label`). Also: ``config`` (every parameter), ``generator_version``,
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

    ``trimodal`` uses the *cue design* (:mod:`.cue_design`): every modality carries
    information the others lack, and an exact observable oracle exists (:mod:`robustmsa.data.oracle`).

With the defaults (mosi, seed 0) ridge probes on masked-mean-pooled features reach test MAE about
0.99 (text), 1.17 (audio), 1.28 (vision), against 1.42 for the mean and 0.48 for the latent noise
floor (``info["ceiling"]``: nothing observable reaches it); the best text-only predictor (knowing
the words' sentiment exactly) is held to about 0.85 by the conflict samples, so only fusion gets
closer.
Generation takes about 1.5 s on one core for mosi (about 16 s and 4 GB for mosei).
"""
from __future__ import annotations

from .assembly import GENERATOR_VERSION
from .cache import cached_summary, default_cache_dir, export_mmsa, load_synthetic, synthetic_cache_key
from .config import DATASET_NAMES, PRESETS, SyntheticConfig
from .frames import CLUE_VOCAB
from .generate import generate_synthetic
from .latent import LatentModel, expected_label
from .text import CLS_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE, SyntheticTextEncoder

__all__ = [
    "GENERATOR_VERSION",
    "cached_summary",
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
    "LatentModel",
    "generate_synthetic",
    "load_synthetic",
    "synthetic_cache_key",
    "expected_label",
    "default_cache_dir",
    "export_mmsa",
]
