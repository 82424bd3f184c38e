"""Text tokens through a Hugging Face tokenizer, and token features for the models.

Tokenizer
    :func:`build_word_tokenizer` builds, offline, a word-level ``tokenizers`` model over a word
    list, wrapped as a :class:`transformers.PreTrainedTokenizerFast` and saved with
    ``save_pretrained`` (so ``AutoTokenizer.from_pretrained(dir)`` loads it). Its special ids are
    BERT's (``[PAD]`` 0, ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103; words from 104),
    so the feature-level text families (which keep ``[CLS]``/``[SEP]`` and write ``[UNK]``) act on
    these ids as on MMSA's BERT ids. Text is lower-cased and split on whitespace and punctuation;
    a word outside the vocabulary (a typo) becomes ``[UNK]``. A user may instead give the path of
    any local tokenizer folder (``tokenizer: /path/to/bert-base-uncased``); nothing is downloaded.

``token_embedding`` (default text extractor)
    ``[CLS] tokens [SEP]`` padded/truncated to ``max_tokens``; features = a fixed embedding table
    ``N(0, 1)`` of size ``[vocab, dim]`` drawn from ``seed`` (``[PAD]`` row zero), like a frozen
    lookup embedding. Without ``lexicon`` it has no semantics: the models learn what words mean
    from the training labels alone. ``lexicon`` (``{word: [v_1, ..., v_k]}``) stands in for what a
    pretrained encoder knows about words: word ``w``'s row gets ``lexical_signal x sqrt(dim) x
    sum_j v_j u_j`` added, with ``u_j`` fixed random unit directions from ``seed``. The embedded
    benchmark passes its lexicon (polarity x strength, negation, intensity), as a pretrained
    encoder would know English; a typo still maps the word to ``[UNK]`` and loses all of it.
    The extractor's identity is the tokenizer's content hash (not its path), ``dim``,
    ``max_tokens``, ``seed``, ``lexicon`` and ``lexical_signal``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .features import Extractor, FeatureRow, register_extractor

__all__ = ["SPECIAL_IDS", "build_word_tokenizer", "tokenizer_hash", "load_tokenizer", "TokenEmbedding",
           "split_words"]

SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
_FIRST_WORD_ID = 104
_WORD_RE = re.compile(r"\w+|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """The tokenizer's pre-tokenisation (lower case, ``\\w+`` runs and punctuation runs)."""
    return _WORD_RE.findall(text.lower())


def build_word_tokenizer(words: Iterable[str], directory: str | Path) -> Path:
    """Save a word-level tokenizer over ``words`` (lower-cased, de-duplicated) to ``directory``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = dict(SPECIAL_IDS)
    vocab.update({f"[unused{i}]": i for i in range(1, 100)})
    for w in sorted({w.lower() for w in words} - set(vocab)):
        if not w or any(c.isspace() for c in w):
            raise DataError(f"tokenizer vocabulary entries must be single words, got {w!r}")
        vocab[w] = max(_FIRST_WORD_ID, max(vocab.values()) + 1)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", SPECIAL_IDS["[CLS]"]), ("[SEP]", SPECIAL_IDS["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out


def tokenizer_hash(directory: str | Path) -> str:
    """Content hash of a tokenizer folder (every regular file, by name and bytes)."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"tokenizer folder {d} does not exist",
                        hint="give a local folder saved with save_pretrained (nothing is downloaded)")
    h = hashlib.sha256()
    for p in sorted(d.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\x1f" + p.read_bytes())
    return h.hexdigest()[:16]


def load_tokenizer(directory: str | Path) -> Any:
    """``AutoTokenizer.from_pretrained(directory, local_files_only=True)`` with a clear error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataError(f"tokenizer at {directory} cannot be loaded: {e}".replace("\n", " ")) from None


@register_extractor
class TokenEmbedding(Extractor):
    """Token ids from a Hugging Face tokenizer; features from a fixed seeded embedding table."""

    name = "token_embedding"
    version = "1"
    modality = "text"
    description = "HF tokenizer ids ([CLS] ... [SEP]) -> fixed seeded N(0,1) embedding table"
    accepts = ("tokenizer", "max_tokens")

    def __init__(self, tokenizer: str | Path | None = None, dim: int = 64, max_tokens: int = 24, seed: int = 0,
                 lexicon: Mapping[str, Sequence[float]] | None = None, lexical_signal: float = 1.5):
        if tokenizer is None:
            raise DataError("token_embedding needs a tokenizer folder (the raw datasets build one)")
        if int(dim) < 1 or int(max_tokens) < 3:
            raise DataError("token_embedding: dim >= 1 and max_tokens >= 3 required")
        self.tokenizer_dir = str(tokenizer)
        self.tokenizer_sha = tokenizer_hash(self.tokenizer_dir)
        self.dim_, self.max_tokens, self.seed = int(dim), int(max_tokens), int(seed)
        self.lexicon = {str(w).lower(): [float(x) for x in v] for w, v in sorted((lexicon or {}).items())}
        widths = {len(v) for v in self.lexicon.values()}
        if len(widths) > 1 or not all(np.isfinite(x) for v in self.lexicon.values() for x in v):
            raise DataError("token_embedding: lexicon values must be finite lists of one common length")
        self.lexical_signal = float(lexical_signal)
        self._tok: Any = None
        self._table: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tok": None, "_table": None}

    @property
    def dim(self) -> int:
        return self.dim_

    @property
    def length(self) -> int:
        return self.max_tokens

    def _ready(self) -> tuple[Any, np.ndarray]:
        if self._tok is None or self._table is None:
            self._tok = load_tokenizer(self.tokenizer_dir)
            size = max(self._tok.get_vocab().values()) + 1
            table = np.random.default_rng([self.seed, size, self.dim_]).standard_normal((size, self.dim_))
            if self.lexicon:
                k = len(next(iter(self.lexicon.values())))
                u = np.random.default_rng([self.seed, 1, self.dim_]).standard_normal((k, self.dim_))
                u /= np.linalg.norm(u, axis=1, keepdims=True)
                vocab = self._tok.get_vocab()
                for w, v in self.lexicon.items():
                    if w in vocab:
                        table[vocab[w]] += self.lexical_signal * np.sqrt(self.dim_) * (np.asarray(v) @ u)
            table[self._tok.pad_token_id or 0] = 0.0
            self._table = table.astype(np.float32)
        return self._tok, self._table

    def token_ids(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids [max_tokens] int64, mask [max_tokens] bool) of ``text``."""
        tok, _ = self._ready()
        enc = tok(text, padding="max_length", truncation=True, max_length=self.max_tokens)
        return np.asarray(enc["input_ids"], dtype=np.int64), np.asarray(enc["attention_mask"], dtype=bool)

    def extract(self, text: str) -> FeatureRow:
        if not isinstance(text, str):
            raise TypeError(f"token_embedding takes a str, got {type(text).__name__}")
        ids, mask = self.token_ids(text)
        _, table = self._ready()
        feats = table[ids] * mask[:, None]
        return FeatureRow(feats.astype(np.float32), mask, ids)

    def config(self) -> dict[str, Any]:
        return {"tokenizer_sha": self.tokenizer_sha, "dim": self.dim_, "max_tokens": self.max_tokens, "seed": self.seed,
                "lexicon": self.lexicon, "lexical_signal": self.lexical_signal}
