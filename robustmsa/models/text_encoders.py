"""Pretrained text encoders over token ids (Hugging Face), pluggable into the shared encoders.

:class:`HFTextEncoder` implements the :class:`~robustmsa.models.layers.TextEncoder` protocol: it
reads ``batch.text_ids`` (with the text mask) instead of precomputed features, runs an encoder-only
Hugging Face model (BERT, RoBERTa, DeBERTa, ...; loaded with ``transformers.AutoModel``), projects
its last hidden states to ``d_model`` and returns an :class:`~robustmsa.models.layers.Encoded`.
Every model built on :class:`~robustmsa.models.layers.ModalityEncoders` selects it with the
:class:`~robustmsa.models.base.BaseConfig` keys ``text_encoder: hf``, ``text_model`` (a model id
or a local directory), ``text_lr`` and ``freeze_text``.

- Nothing is downloaded: models load with ``local_files_only=True`` (an id must already be in the
  local Hugging Face cache); ``transformers`` is imported only when an encoder is built, never at
  module import.
- Masks: only valid tokens are attended to; ids at masked positions are replaced by the pad id,
  outputs at masked positions are zero, a row without a valid token encodes to zeros (no NaN).
- Token-level corruptions act through the ids: a dropped token becomes ``[UNK]`` (100) or
  ``[MASK]`` (103) in the BERT vocabulary (:mod:`corruptions.feature.drop`), which the model sees.
- ``freeze_text``: no gradient and eval mode (no dropout) for the pretrained weights; fine-tuned
  otherwise, with the checkpoint's own dropout (drawn from torch's global RNG, which the trainer
  seeds). :func:`text_param_groups` gives the pretrained weights their own learning rate
  ``text_lr``; the projection to ``d_model`` trains with the model's learning rate.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.batch import Batch
from ..errors import RobustMSAError
from .layers import Encoded, masked_mean

__all__ = ["HFTextEncoder", "load_pretrained", "build_text_encoder", "text_param_groups"]


def load_pretrained(name_or_path: str, what: str, **kwargs: Any) -> nn.Module:
    """``transformers.AutoModel.from_pretrained`` from a local path or the local cache, in float32.

    ``what`` names the component in the error raised when the model cannot be found offline.
    """
    import transformers  # lazy: importing transformers takes seconds

    version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
    dtype_key = "dtype" if version >= (4, 56) else "torch_dtype"  # renamed in 4.56
    try:
        return transformers.AutoModel.from_pretrained(name_or_path, local_files_only=True,
                                                      **{dtype_key: torch.float32}, **kwargs)
    except (OSError, ValueError) as e:
        raise RobustMSAError(
            f"cannot load the {what} {name_or_path!r} offline: {e}",
            hint="pass a local directory written by save_pretrained, or put the model in the local "
                 "Hugging Face cache beforehand (nothing is downloaded at run time)") from None


class HFTextEncoder(nn.Module):
    """A Hugging Face encoder over token ids -> ``Encoded`` with sequences of width ``d_model``.

    ``forward(batch, mask)`` encodes ``batch.text_ids`` (TextEncoder protocol);
    ``encode_ids(ids, mask)`` encodes any id sequence of the same vocabulary (e.g. clue texts).
    Output = ``LayerNorm(Linear(hidden -> d_model)(last_hidden_state))``, zero where masked,
    ``pooled`` = masked mean.
    """

    def __init__(self, name_or_path: str, d_model: int, freeze: bool = False, lr: float = 1e-5):
        super().__init__()
        self.backbone = load_pretrained(name_or_path, "text encoder")
        if getattr(self.backbone.config, "is_encoder_decoder", False):
            raise RobustMSAError(f"text encoder {name_or_path!r} is an encoder-decoder model",
                                 hint="use an encoder-only model (BERT, RoBERTa, DeBERTa, ...)")
        self.vocab_size = int(self.backbone.get_input_embeddings().num_embeddings)
        pad = getattr(self.backbone.config, "pad_token_id", None)
        self.pad_id = 0 if pad is None else int(pad)
        self.proj = nn.Linear(int(self.backbone.config.hidden_size), d_model)
        self.norm = nn.LayerNorm(d_model)
        self.freeze = freeze
        self.lr = lr
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> HFTextEncoder:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        return self

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> Encoded:
        """Encode int64 ``ids`` [B, T] with validity ``mask`` [B, T]."""
        if ids.shape != mask.shape:
            raise ValueError(f"token ids {tuple(ids.shape)} and mask {tuple(mask.shape)} differ in shape")
        valid_ids = ids[mask]
        if valid_ids.numel() and (int(valid_ids.min()) < 0 or int(valid_ids.max()) >= self.vocab_size):
            raise RobustMSAError(
                f"token ids outside the text encoder's vocabulary [0, {self.vocab_size}): "
                f"min {int(valid_ids.min())}, max {int(valid_ids.max())}",
                hint="tokenize with the tokenizer of text_model")
        has_token = mask.any(1)
        attend = mask.clone()
        attend[:, 0] |= ~has_token  # a row must attend somewhere; its output is zeroed below
        ids = ids.masked_fill(~attend, self.pad_id)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.backbone(input_ids=ids, attention_mask=attend.long()).last_hidden_state
        seq = self.norm(self.proj(hidden)) * mask.to(hidden.dtype).unsqueeze(-1)
        return Encoded(seq, masked_mean(seq, mask), mask)

    def forward(self, batch: Batch, mask: torch.Tensor) -> Encoded:
        if batch.text_ids is None:
            raise RobustMSAError("text_encoder 'hf' needs token ids, but the batch has no text_ids",
                                 hint="use a dataset with token ids, or text_encoder: features")
        return self.encode_ids(batch.text_ids.to(mask.device), mask)


def build_text_encoder(config: Any) -> HFTextEncoder | None:
    """The pretrained text encoder a :class:`~robustmsa.models.base.BaseConfig` asks for: None for
    ``text_encoder: features`` (the caller keeps its feature encoder), an :class:`HFTextEncoder` for ``hf``."""
    if config.text_encoder == "features":
        return None
    return HFTextEncoder(config.text_model, config.d_model, freeze=config.freeze_text, lr=config.text_lr)


def text_param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser groups: pretrained text weights at their encoder's ``lr``, the rest at ``lr``.

    Frozen parameters are left out; without a fine-tuned :class:`HFTextEncoder` this is one group.
    Every model uses it through :meth:`MSAModel.param_groups <robustmsa.models.base.MSAModel.param_groups>`.
    """
    seen: set[int] = set()
    text_groups: list[dict[str, Any]] = []
    for module in model.modules():
        if isinstance(module, HFTextEncoder):
            params = [p for p in module.backbone.parameters() if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            if params:
                text_groups.append({"params": params, "lr": module.lr, "weight_decay": weight_decay})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    return [{"params": rest, "lr": lr, "weight_decay": weight_decay}, *text_groups]
