"""The text modality of the synthetic benchmark: the BERT-sized vocabulary and its sentiment
lexicon, the transcripts, and the frozen "BERT" (:class:`SyntheticTextEncoder`) that turns token
ids into contextual features."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import RobustMSAError
from .config import SyntheticConfig, stream_rng

__all__ = [
    "PAD_ID", "UNK_ID", "CLS_ID", "SEP_ID", "VOCAB_SIZE", "Lexicon", "SyntheticTextEncoder", "build_lexicon",
    "context_smooth", "text_cue_dims", "word_strings", "render_text", "transcript_frame", "slot_position",
    "sample_transcripts",
]

PAD_ID, UNK_ID, CLS_ID, SEP_ID = 0, 100, 101, 102
VOCAB_SIZE = 30522
_WORD_LO, _WORD_HI = 1000, 30000
_NEGATION_WORDS = ("not", "never", "no", "hardly", "without")
_NEUTRAL_THRESHOLD = 0.08
_STRENGTH_RANGE = (0.05, 1.0)
_TEXT_CHUNK = 32


@dataclass(frozen=True)
class Lexicon:
    """The sentiment lexicon of a seed: sentiment words with a polarity and a strength, negation
    words, and the neutral words with their Zipf frequencies (all token ids)."""

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


def build_lexicon(config: SyntheticConfig) -> Lexicon:
    rng = stream_rng(config.seed, "lexicon")
    words = rng.permutation(np.arange(_WORD_LO, _WORD_HI, dtype=np.int64))
    n_s = config.n_sentiment_words
    polarity = np.where(np.arange(n_s) % 2 == 0, 1.0, -1.0)
    strength = rng.uniform(*_STRENGTH_RANGE, n_s)
    neutral = words[n_s + len(_NEGATION_WORDS):]
    p = 1.0 / (np.arange(len(neutral)) + 10.0)
    return Lexicon(
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
    dims = stream_rng(config.seed, "cue_world").choice(config.text_dim, 3 * width, replace=False)
    return np.sort(dims).astype(np.int64)


class SyntheticTextEncoder:
    """The frozen "BERT" of the synthetic benchmark: token ids -> contextual features.

    Features are a pure function of the ids, so corrupted ids (e.g. words replaced by ``[UNK]``)
    can be re-embedded exactly as the generator embeds clean ones. Build once, call many times.
    """

    def __init__(self, config: SyntheticConfig):
        self.config = config
        self.lexicon = build_lexicon(config)
        rng = stream_rng(config.seed, "table")
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


def word_strings(lexicon: Lexicon) -> np.ndarray:
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


def render_text(ids: np.ndarray, lengths: np.ndarray, words: np.ndarray) -> np.ndarray:
    return np.array([" ".join(words[row[1:n + 1]]) for row, n in zip(ids, lengths)], dtype=str)


def transcript_frame(
    config: SyntheticConfig, lex: Lexicon, n: int, rng: np.random.Generator
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


def slot_position(j: int, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Position [N] of sentiment slot ``j``: uniform inside the j-th of the equal word segments
    (never its first position, so a negation word can precede it)."""
    start = np.floor(j * segment).astype(np.int64) + 1
    end = np.floor((j + 1) * segment).astype(np.int64) + 1
    return start + 1 + np.floor(rng.random(len(segment)) * (end - start - 1)).astype(np.int64)


def sample_transcripts(
    config: SyntheticConfig, lex: Lexicon, z_t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [N, L] and word counts [N] expressing the text latent ``z_t``."""
    n = len(z_t)
    ids, n_words = transcript_frame(config, lex, n, rng)
    lo, hi = config.sentiment_words
    k = rng.integers(lo, hi + 1, n)
    k[np.abs(z_t) < _NEUTRAL_THRESHOLD] = 0
    per_word = np.abs(z_t) / np.maximum(k, 1)
    segment = n_words / np.maximum(k, 1)
    rows = np.arange(n)
    for j in range(hi):
        active = j < k
        p = slot_position(j, segment, rng)
        target = np.clip(per_word * np.exp(rng.normal(0.0, 0.2, n)), *_STRENGTH_RANGE)
        negate = rng.random(n) < config.negation_rate
        word = lex.pick(np.sign(z_t) * np.where(negate, -1.0, 1.0), target, rng)
        negation = lex.negation_ids[rng.integers(0, len(lex.negation_ids), n)]
        ids[rows[active], p[active]] = word[active]
        both = active & negate
        ids[rows[both], p[both] - 1] = negation[both]
    return ids.astype(np.int64), n_words

