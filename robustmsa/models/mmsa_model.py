"""``mmsa``: a model trained by MMSA (the field's toolkit, ``pip install 'robustmsa[mmsa]'``), evaluated as given.

MMSA's own model class (``MMSA.models.AMIO``) is built from MMSA's own configuration
(``MMSA.config.get_config_regression(model, dataset)``, then the data's feature dims and sequence
lengths, then ``config``: the JSON object of overrides the model was trained with), and the
checkpoint MMSA saved (``<model_save_dir>/<model>-<dataset>.pth``) is loaded into it strictly.

The batch is adapted to MMSA's inputs as MMSA's own data loader and trainers build them: the
``text``, ``audio`` and ``vision`` feature tensors (the pickle's ``text``, not BERT), with audio and
vision averaged over the whole time axis when the configuration sets ``need_normalized`` (TFN,
LF_DNN, LMF, MFN), computed with numpy in MMSA's order, NaN set to 0; the model's ``M`` output is
the score. A corrupted modality reaches the model as its corrupted features (the corruption
engine zeroes what it removes); MMSA's models have no masks or missing flags.
Supported: TFN, LF_DNN, LMF, MFN, MulT, without BERT.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from ..data.batch import Batch
from ..errors import ModelError
from .base import MSAModel, check_config, register_model
from .external import file_sha256, load_state, read_weights

__all__ = ["MMSAConfig", "MMSAModel", "MMSA_MODELS"]

MMSA_MODELS = ("tfn", "lf_dnn", "lmf", "mfn", "mult")
_ORDER = ("text", "audio", "vision")


@dataclass(frozen=True)
class MMSAConfig:
    """model:      MMSA's model name (tfn, lf_dnn, lmf, mfn, mult).
    checkpoint: the state dict MMSA saved (``<model_save_dir>/<model>-<dataset>.pth``), required.
    dataset:    the dataset section of MMSA's config (mosi, mosei, sims; "mosi").
    config:     JSON object of the MMSA config overrides the model was trained with ("": none)."""

    model: Literal["tfn", "lf_dnn", "lmf", "mfn", "mult"] = "tfn"
    checkpoint: str = ""
    dataset: Literal["mosi", "mosei", "sims"] = "mosi"
    config: str = ""

    def __post_init__(self) -> None:
        check_config(bool(self.checkpoint), "checkpoint", "must name the .pth file MMSA saved")
        try:
            ok = isinstance(json.loads(self.config or "{}"), dict)
        except json.JSONDecodeError:
            ok = False
        check_config(ok, "config", "must be a JSON object of MMSA config keys")


def mmsa_args(c: MMSAConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None) -> Any:
    """MMSA's configuration of model ``c.model`` for data of these dims and lengths."""
    try:
        from MMSA.config import get_config_regression
    except Exception as e:  # noqa: BLE001 - any import failure means: not installed
        raise ModelError(f"model 'mmsa': MMSA is not importable ({type(e).__name__}: {e})",
                         hint="pip install 'robustmsa[mmsa]'") from None
    args = get_config_regression(c.model, c.dataset)
    args.update({"feature_dims": [int(dims[m]) for m in _ORDER], "use_bert": False, "train_mode": "regression",
                 "device": torch.device("cpu"), "custom_feature": None})
    if lengths:
        args["seq_lens"] = [int(lengths[m]) for m in _ORDER]
    args.update(json.loads(c.config or "{}"))
    return args


def _time_mean(x: torch.Tensor) -> torch.Tensor:
    """MMSA's ``need_normalized``: the mean over the time axis as its loader computes it (numpy, NaN -> 0)."""
    a = np.transpose(x.detach().cpu().numpy().astype(np.float32), (1, 0, 2))
    a = np.mean(a, axis=0, keepdims=True)
    a[a != a] = 0
    return torch.from_numpy(np.ascontiguousarray(np.transpose(a, (1, 0, 2)))).to(x.device)


@register_model("mmsa", MMSAConfig)
class MMSAModel(MSAModel):
    """An MMSA checkpoint in MMSA's own model class, fed MMSA's inputs (module docstring)."""

    shared_encoders = False
    brings_weights: ClassVar[bool] = True
    weight_files: ClassVar[tuple[str, ...]] = ("checkpoint",)

    def __init__(self, config: MMSAConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        where = f"model 'mmsa' ({config.model}, {config.checkpoint})"
        self.args = mmsa_args(config, dims, lengths)
        from MMSA.models import AMIO

        with torch.random.fork_rng(devices=[]):
            self.inner = AMIO(self.args)
        load_state(self.inner, read_weights(config.checkpoint, where), config.checkpoint, where)
        self.normalized = bool(self.args.get("need_normalized"))

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        audio, vision = batch.audio, batch.vision
        if self.normalized:
            audio, vision = _time_mean(audio), _time_mean(vision)
        out = self.inner(batch.text, audio, vision)
        return {"pred": out["M"].reshape(-1), "losses": {}, "extras": {}}

    def content_hash(self) -> str:
        return file_sha256(self.config.checkpoint)
