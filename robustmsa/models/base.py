"""The model interface, the model registry and the factory.

Every model is an :class:`MSAModel` registered with :func:`register_model` under a name, together
with a frozen dataclass holding its configuration: its documented defaults are the dataclass
defaults, the one place they are written. :func:`create_model` resolves the configuration from
those defaults and keyword overrides (e.g. a suite's ``models[i].overrides``), validated key by key.

An unknown key raises :class:`~robustmsa.errors.ModelConfigError` naming the model, the key, the close matches
and the allowed keys; a value of the wrong type names the key and the expected type. Parameters
are initialised under ``torch.random.fork_rng(devices=[])`` with ``torch.manual_seed(seed)``:
creation is deterministic and leaves the caller's global RNG untouched.
"""
from __future__ import annotations

import contextlib
import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from corruptions.keys import MODALITIES
from corruptions.registry import Registry, did_you_mean

from ..data.batch import Batch
from ..errors import ModelConfigError, RobustMSAError
from .extras import Extra, declare_extras
from .layers import EncoderSpec, ModalityEncoders, SequenceEncoder, TextFeatureEncoder
from .text_encoders import HFTextEncoder, build_text_encoder, text_param_groups

__all__ = [
    "MSAModel",
    "BaseConfig",
    "MODELS",
    "register_model",
    "create_model",
    "model_config",
    "resolve_config",
    "count_parameters",
    "check_config",
    "classification_models",
]

@dataclass(frozen=True)
class BaseConfig:
    """Settings shared by the models built on the shared encoders (:mod:`robustmsa.models.layers`).

    d_model:     width of every modality representation (64: CPU-friendly).
    encoder:     "conv" (masked residual 1-D convolution, the cheapest) or "attention" (one pre-norm
                 transformer block with sinusoidal positions).
    kernel_size: kernel of the "conv" encoder (odd; 3).
    num_heads:   heads of the "attention" encoder (must divide d_model; 4).
    dropout:     dropout rate (0.0). Dropout draws from torch's global RNG in training mode, so it
                 is off by default; the trainer seeds that RNG inside ``fork_rng`` when it is on.
    text_encoder: "features" (precomputed ``batch.text`` features through the shared sequence
                 encoder; the default) or "hf" (a Hugging Face encoder over ``batch.text_ids``, see
                 :mod:`robustmsa.models.text_encoders`).
    text_model:  Hugging Face model id (read from the local cache only: nothing is downloaded) or
                 local directory written by ``save_pretrained``; required when text_encoder is "hf".
    text_lr:     learning rate of the pretrained encoder's own weights (1e-5, as in the authors'
                 code of QA-MoE); everything else uses the training lr (``MSAModel.param_groups``).
    freeze_text: keep the pretrained encoder frozen (no gradient, eval mode) (False: fine-tuned).
                 A delayed unfreeze (e.g. after 5 epochs) needs a trainer hook and is not offered.
    encoder_pooling: how each modality encoder turns its sequence into one vector: "attention"
                 (masked attention pooling with ``num_heads`` heads; finds the few salient frames or
                 words), "mean", "max", "attention_mean" or "attention_max" (attention and the
                 mean or the max, mixed back to d_model).
    encoder_layers: masked blocks per modality encoder (1).
    standardize_inputs: standardise every input dimension with training statistics before the
                 projection (True; :meth:`MSAModel.fit_inputs`, called by the trainer).
    input_rank:  project every input wider than this through a rank-``input_rank`` bottleneck
                 (``Linear(D, r, bias=False)`` then ``Linear(r, d_model)``; on the main suite's
                 shapes only the 768-dimensional text); 0 (the default): a full projection.
    local_contrast: for audio and vision, add to each standardised frame its local contrast: the
                 frame minus the masked moving average of ``2 local_contrast + 1`` frames around it
                 (a temporal high-pass beside the raw frames; the projection sees both); 0: off.
    frame_deltas: for audio and vision, add to each standardised frame its first difference (the
                 frame minus the one before it: "delta features"); the projection sees both (False).
    frame_readout: for audio and vision, a linear readout beside the attention pooling: per pooling
                 head, the attention-weighted sum of the standardised frames and their first
                 differences, projected (from zero) and added to the pooled encoding. It can form
                 the linear statistics that estimate a short burst's amplitude against a smooth
                 background, which the per-frame projection and LayerNorm cannot (False; needs an
                 attention ``encoder_pooling``).
    clamp_output: clamp the predicted score to the dataset's label range ([-3, 3] on MOSI and
                 MOSEI, [-1, 1] on SIMS), in training as in evaluation (False). Sentiment labels are
                 means of bounded ratings, so they saturate at the ends of the scale (on MOSI-shaped
                 data about one clip in seven sits at -3 or 3); a clamped output represents that
                 saturation, which an unbounded head must otherwise learn as a bend near the ends
                 and learns shrunk towards the middle (docs/benchmark.md). The range is a buffer set
                 by :meth:`MSAModel.fit_outputs` (the trainer calls it), so a checkpoint keeps it.
                 An output beyond the range gets no gradient from the task loss there. Regression
                 only.
    """

    d_model: int = 64
    encoder: Literal["conv", "attention"] = "conv"
    kernel_size: int = 3
    num_heads: int = 4
    dropout: float = 0.0
    text_encoder: Literal["features", "hf"] = "features"
    text_model: str = ""
    text_lr: float = 1e-5
    freeze_text: bool = False
    encoder_pooling: Literal["mean", "attention", "max", "attention_mean", "attention_max"] = "attention"
    encoder_layers: int = 1
    standardize_inputs: bool = True
    input_rank: int = 0
    local_contrast: int = 0
    frame_deltas: bool = False
    frame_readout: bool = False
    clamp_output: bool = False

    def __post_init__(self) -> None:
        check_config(self.encoder_layers >= 1, "encoder_layers", "must be >= 1")
        check_config(self.d_model >= 1, "d_model", "must be >= 1")
        check_config(self.text_encoder != "hf" or bool(self.text_model), "text_model",
                     "must name a Hugging Face model id or local path when text_encoder is 'hf'")
        check_config(self.text_lr > 0, "text_lr", "must be > 0")
        check_config(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size",
                     "must be a positive odd number")
        check_config(self.num_heads >= 1 and self.d_model % self.num_heads == 0, "num_heads",
              f"must be >= 1 and divide d_model={self.d_model}")
        check_config(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        check_config(self.input_rank >= 0, "input_rank", "must be >= 0 (0: a full projection)")
        check_config(self.local_contrast >= 0, "local_contrast", "must be >= 0 (0: off)")
        check_config(not self.frame_readout or self.encoder_pooling.startswith("attention"), "frame_readout",
                     "needs an attention pooling (encoder_pooling: attention, attention_mean or attention_max)")


def _clamp_prediction(model: MSAModel, args: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Forward hook of a ``clamp_output`` model: ``pred`` clamped to ``model.output_range``."""
    lo, hi = model.output_range
    return {**out, "pred": torch.clamp(out["pred"], lo, hi)}


def check_config(ok: bool, key: str, message: str) -> None:
    """Raise a :class:`ModelConfigError` about config key ``key`` unless ``ok`` (for ``__post_init__`` checks)."""
    if not ok:
        raise ModelConfigError(key, message, hint=f"fix {key!r} in the overrides")


class MSAModel(nn.Module, ABC):
    """A multimodal sentiment model: a :class:`Batch` in, a dict out.

    ``forward(batch, clean=None)`` returns

    - ``"pred"``: float [B] sentiment scores; on a classification dataset float [B, C] logits
      (the trainer's loss is cross-entropy, the prediction their argmax);
    - ``"losses"``: dict name -> scalar tensor of auxiliary losses, already weighted (the trainer
      adds their sum to its task loss; ``{}`` if none);
    - optionally ``"extras"``: dict name -> detached tensor with leading dim B, for analysis.

    ``clean`` is the uncorrupted version of the same samples in the same order; the trainer passes
    it during corrupted training. It may only feed self-supervised targets, never the prediction.

    What the base class does, so that a model file holds only what is its own:

    - ``__init__`` stores ``config``, ``dims`` and ``lengths`` and, when the class sets
      ``shared_encoders`` (the default), builds ``self.encoders``: the per-modality
      :class:`~robustmsa.models.layers.ModalityEncoders` its :class:`BaseConfig` describes (text
      from features or a Hugging Face encoder). These are the first parameters created, so a
      model's own layers, built after ``super().__init__``, come next. A model with other encoders
      sets ``shared_encoders = False`` and builds its own with :meth:`build_text_encoder` and
      :meth:`build_sequence_encoder`;
    - :meth:`param_groups` gives a pretrained text encoder its own learning rate;
    - :meth:`fit_inputs` fits the input standardisation of every shared sequence encoder;
    - with ``clamp_output`` (a :class:`BaseConfig` key), ``pred`` is clamped to the label range
      that :meth:`fit_outputs` sets (a forward hook, so every model's ``forward`` stays its own).

    ``extras`` declares every extra ``forward`` may return (:class:`~robustmsa.models.extras.Extra`:
    its prediction-table columns, and whether each column's mean is a metric row).

    Classification: ``create_model(..., classes=C)`` builds the model with ``num_classes = C``
    (0 for regression, the default). A model that sets ``supports_classification`` builds its
    output layer with :attr:`num_outputs` units (C, or 1 for regression) and keeps ``.squeeze(-1)``
    on it, which leaves [B, C] logits as they are; a model whose losses need continuous labels
    (e.g. Self-MM's generated unimodal labels) leaves it False and is refused with a clear error.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type] = BaseConfig
    shared_encoders: ClassVar[bool] = True
    extras: ClassVar[tuple[Extra, ...]] = ()
    #: the model comes with its weights (a checkpoint, your own code): the ``evaluate`` regime takes it as
    #: given, and :meth:`content_hash` enters the trial identity instead of the ``weight_files`` config keys
    brings_weights: ClassVar[bool] = False
    weight_files: ClassVar[tuple[str, ...]] = ()
    #: the model can output class logits (its head has :attr:`num_outputs` units and no loss of its own
    #: needs continuous labels)
    supports_classification: ClassVar[bool] = False

    def __init__(self, config: Any, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__()
        self.num_classes = _BUILD_CLASSES.get()
        self.config = config
        self.dims = dict(dims)
        self.lengths = None if lengths is None else dict(lengths)
        if self.shared_encoders:
            self.encoders = ModalityEncoders(self.dims, self.encoder_spec(), build_text_encoder(config))
        if getattr(config, "clamp_output", False):
            if self.num_classes:
                raise ModelConfigError("clamp_output", "clamps a regression score; a classification model "
                                       "outputs class logits", hint="leave clamp_output off for a classification dataset")
            # unbounded until fit_outputs sets the dataset's label range; a buffer, so checkpoints keep it
            self.register_buffer("output_range", torch.tensor([-float("inf"), float("inf")]))
            self.register_forward_hook(_clamp_prediction)

    @abstractmethod
    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        """Predict ``batch``; see the class docstring for the returned dict."""

    @property
    def num_outputs(self) -> int:
        """Units of the output layer: the number of classes, or 1 (a regression score)."""
        return self.num_classes or 1

    def encoder_spec(self) -> EncoderSpec:
        """The shape of every modality encoder, from the shared :class:`BaseConfig` keys."""
        c = self.config
        return EncoderSpec(c.d_model, c.encoder, c.kernel_size, c.num_heads, c.dropout, c.encoder_pooling,
                           c.encoder_layers, getattr(c, "input_rank", 0), getattr(c, "local_contrast", 0),
                           getattr(c, "frame_deltas", False), getattr(c, "frame_readout", False))

    def build_text_encoder(self) -> nn.Module:
        """A text encoder as ``text_encoder`` asks: a Hugging Face encoder or precomputed features."""
        pretrained = build_text_encoder(self.config)
        return pretrained if pretrained is not None else TextFeatureEncoder(self.dims["text"], self.encoder_spec())

    def build_sequence_encoder(self, modality: str) -> SequenceEncoder:
        """The shared encoder of ``modality``'s features (standardised with its training statistics)."""
        return SequenceEncoder(self.dims[modality], self.encoder_spec(), source=modality)

    def fit_inputs(self, train: Batch) -> None:
        """Fit input statistics on the training split before training (the trainer calls this once):
        every shared sequence encoder standardises its modality when ``standardize_inputs`` is on."""
        if not getattr(self.config, "standardize_inputs", False):
            return
        for module in self.modules():
            if isinstance(module, SequenceEncoder):
                module.fit_inputs(train)

    def fit_outputs(self, label_range: tuple[float, float]) -> None:
        """Set the range :attr:`BaseConfig.clamp_output` clamps ``pred`` to: the dataset's label
        range (the trainer calls this once, before training). A no-op when ``clamp_output`` is off."""
        if hasattr(self, "output_range"):
            lo, hi = (float(v) for v in label_range)
            if not lo < hi:
                raise ValueError(f"label range must have low < high; got {label_range}")
            self.output_range.copy_(torch.tensor([lo, hi]))

    def content_hash(self) -> str | None:
        """The sha256 of the weights a :attr:`brings_weights` model comes with (None: trained here)."""
        return None

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: everything trainable at ``lr``, except the weights of a
        fine-tuned pretrained text encoder, which get their own group at its ``text_lr``."""
        return text_param_groups(self, lr, weight_decay)


MODELS: Registry[type[MSAModel]] = Registry("model")

#: the number of classes of the model being built (set by :func:`create_model` around the constructor)
_BUILD_CLASSES: ContextVar[int] = ContextVar("robustmsa_build_classes", default=0)


@contextlib.contextmanager
def _building(classes: int) -> Iterator[None]:
    token = _BUILD_CLASSES.set(int(classes))
    try:
        yield
    finally:
        _BUILD_CLASSES.reset(token)


def classification_models() -> list[str]:
    """The registered models that support classification datasets."""
    return [n for n in MODELS.names() if MODELS.get(n).supports_classification]


def _check_classes(name: str, cls: type[MSAModel], classes: int) -> None:
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 0 or classes == 1:
        raise RobustMSAError(f"model {name!r}: classes must be 0 (regression) or an integer >= 2, got {classes!r}")
    if classes and not cls.supports_classification:
        raise RobustMSAError(f"model {name!r} predicts a sentiment score only and cannot be trained on a classification "
                         f"dataset ({classes} classes)",
                         hint=f"models that support classification: {', '.join(classification_models())}")

M = TypeVar("M", bound=type)


def register_model(name: str, config_cls: type) -> Callable[[M], M]:
    """Class decorator: register an :class:`MSAModel` subclass under ``name`` with its config class
    (and the extras it declares, see :mod:`robustmsa.models.extras`)."""
    if not (dataclasses.is_dataclass(config_cls) and config_cls.__dataclass_params__.frozen):
        raise TypeError(f"model {name!r}: config class {config_cls!r} must be a frozen dataclass")
    for key, hint in typing.get_type_hints(config_cls).items():
        _check_supported_hint(name, key, hint)

    def add(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, MSAModel)):
            raise TypeError(f"model {name!r}: {cls!r} is not an MSAModel subclass")
        declare_extras(name, cls.extras)
        cls.name = name
        cls.config_cls = config_cls
        MODELS.register(name, cls)
        return cls

    return add


def _check_supported_hint(name: str, key: str, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if hint in (bool, int, float, str) or origin is Literal:
        return
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (bool, int, float, str):
            return
    raise TypeError(f"model {name!r}: config field {key!r} has unsupported type {hint!r}")


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    """Validate ``value`` against a config field type (ints are accepted for floats) of model ``source``."""
    def fail(expected: str) -> ModelConfigError:
        return ModelConfigError(key, f"must be {expected}, got {value!r}", model=source,
                                hint=f"give {key!r} {expected}")

    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise fail("one of " + ", ".join(repr(a) for a in allowed))
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list of {typing.get_args(hint)[0].__name__}")
        return tuple(_coerce(typing.get_args(hint)[0], v, source, key) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("a boolean")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if not isinstance(value, str):
        raise fail("a string")
    return value


def _merge(values: dict[str, Any], hints: dict[str, Any], new: Mapping[str, Any], source: str) -> None:
    allowed = list(hints)
    for key, value in new.items():
        if key not in hints:
            hint = did_you_mean(key, allowed)
            raise ModelConfigError(key, f"unknown key{f' ({hint})' if hint else ''}; allowed: {', '.join(allowed)}",
                                   model=source, hint="remove or rename the key")
        values[key] = _coerce(hints[key], value, source, key)


def resolve_config(name: str, **overrides: Any) -> Any:
    """The config dataclass instance of model ``name``: its defaults with ``overrides`` applied."""
    cls = MODELS.get(name)
    hints = typing.get_type_hints(cls.config_cls)
    values = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
              for f in dataclasses.fields(cls.config_cls)}  # not config_cls(): its defaults may be incomplete
    _merge(values, hints, overrides, name)
    try:
        return cls.config_cls(**values)
    except ModelConfigError as e:  # a __post_init__ check: name the model
        raise ModelConfigError(e.key, e.problem, e.hint, model=e.model or name) from None


def model_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The resolved configuration of model ``name`` as a plain dict (for tracking)."""
    return dataclasses.asdict(resolve_config(name, **overrides))


def _check_dims(dims: Mapping[str, int], lengths: Mapping[str, int] | None) -> None:
    for what, d in (("dims", dims), ("lengths", lengths)):
        if d is None:
            continue
        bad = [m for m in MODALITIES if not isinstance(d.get(m), int) or isinstance(d.get(m), bool) or d[m] < 1]
        if bad:
            raise RobustMSAError(f"model {what} must give a positive integer for {', '.join(MODALITIES)}; "
                                 f"got {dict(d)}", hint="pass dataset.dims / dataset.lengths")


def create_model(
    name: str,
    dims: Mapping[str, int],
    lengths: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    classes: int = 0,
    **overrides: Any,
) -> MSAModel:
    """Build model ``name`` for feature sizes ``dims`` (and sequence ``lengths``), deterministically.

    ``classes``: 0 for a regression model (a score per sample), else the number of classes of a
    classification dataset (the model outputs that many logits; models without
    ``supports_classification`` raise :class:`~robustmsa.errors.RobustMSAError` naming those that do).
    Unknown model names raise the registry's ``UnknownNameError`` (close matches, allowed names).
    """
    cls = MODELS.get(name)
    _check_dims(dims, lengths)
    _check_classes(name, cls, classes)
    config = resolve_config(name, **overrides)
    with torch.random.fork_rng(devices=[]), _building(classes):
        torch.manual_seed(int(seed))
        model = cls(config, dims, lengths)
    if getattr(config, "text_encoder", "features") == "hf":
        if not any(isinstance(m, HFTextEncoder) for m in model.modules()):
            raise RobustMSAError(f"model {name!r} does not use a Hugging Face text encoder, but its config "
                                 "sets text_encoder: hf", hint="remove text_encoder/text_model from its overrides")
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (only those requiring grad if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
