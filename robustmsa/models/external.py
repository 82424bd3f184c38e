"""Models that come with their weights: your own code (``external``) and a past trial's checkpoint
(``checkpoint``). The protocol is in docs/byo_model.md.

``external`` takes ``entry: module:attribute``. The attribute is

- a class (e.g. an ``nn.Module`` subclass) or a function with a ``dims`` or ``lengths`` parameter, or
  none at all: a *factory*, called with the keyword arguments among ``dims`` and ``lengths`` that it
  accepts; what it returns is the model;
- anything else callable (an ``nn.Module`` instance, a function of the batch): the model itself.

The model is called with one argument, the harness's :class:`~robustmsa.data.batch.Batch`
(features, masks and missing flags per modality), and returns the scores, a tensor [B], or a dict
with ``pred`` [B] and optional ``extras`` (name -> tensor with leading dimension B, e.g. ``quality``
[B, 3]; declared extras reach the reports as the zoo's do) and ``losses`` (for training).
``checkpoint`` (optional) is a state dict file (``torch.save(model.state_dict(), path)``, or a dict
holding one under ``state_dict``) loaded into the model with ``weights_only=True``.

``checkpoint`` takes ``path``: a robustmsa trial's ``checkpoint/model.pt``; the zoo (or plugin) model
it names is rebuilt from its stored configuration and evaluated as it was selected.

Both are :attr:`~robustmsa.models.base.MSAModel.brings_weights` models: the ``evaluate`` regime
evaluates them as given, and their :meth:`content_hash` (the sha256 of the weight file, or of the
state dict) is part of the trial identity.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.batch import Batch
from ..errors import ModelError
from .base import MSAModel, check_config, create_model, register_model

__all__ = ["ExternalConfig", "ExternalModel", "CheckpointConfig", "CheckpointModel", "remember_model",
           "model_output", "file_sha256", "state_sha256", "read_weights"]

#: in-memory models handed to :func:`robustmsa.evaluate` (``entry: object:<key>``, in-process only)
_OBJECTS: dict[str, Any] = {}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_sha256(obj: Any) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes, bytes); of its source for a plain callable."""
    h = hashlib.sha256()
    if isinstance(obj, nn.Module):
        for k, v in sorted(obj.state_dict().items()):
            t = v.detach().cpu().contiguous()
            h.update(f"{k}/{t.dtype}/{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    else:
        try:
            h.update(inspect.getsource(obj).encode())
        except (OSError, TypeError):
            h.update(repr(obj).encode())
    return h.hexdigest()


def remember_model(obj: Any) -> str:
    """Keep an in-memory model for this process; the ``entry`` that names it (``object:<hash>``)."""
    key = state_sha256(obj)[:20]
    _OBJECTS[key] = obj
    return f"object:{key}"


def _import_entry(entry: str, where: str) -> Any:
    if entry.startswith("object:"):
        if entry[7:] not in _OBJECTS:
            raise ModelError(f"{where}: in-memory model {entry!r} is not in this process",
                             hint="in-memory models run in-process (backend local); give Ray a module:attribute")
        return _OBJECTS[entry[7:]]
    mod_name, _, attr = entry.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises on import
        raise ModelError(f"{where}: module {mod_name!r} does not import ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})",
                         hint="install the package or put it on PYTHONPATH; entry is 'module:attribute'") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{where}: module {mod_name!r} has no attribute {attr!r}",
                             hint="entry is 'module:attribute', the attribute a factory or a model")
        obj = getattr(obj, part)
    return obj


def _params(fn: Any) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None


def _is_factory(obj: Any) -> bool:
    if isinstance(obj, type):
        return True
    if isinstance(obj, nn.Module) or not inspect.isfunction(obj):
        return False
    params = _params(obj) or []
    return not params or any(p.name in ("dims", "lengths") for p in params)


def _build_entry(entry: str, dims: Mapping[str, int], lengths: Mapping[str, int] | None, where: str) -> Any:
    """The model an entry names (a factory called with the arguments it accepts among dims and lengths)."""
    obj = _import_entry(entry, where)
    if not _is_factory(obj):
        model = obj
    else:
        params = _params(obj.__init__ if isinstance(obj, type) else obj) or []
        names = {p.name for p in params}
        kw = {k: v for k, v in (("dims", dict(dims)), ("lengths", None if lengths is None else dict(lengths)))
              if k in names or any(p.kind is p.VAR_KEYWORD for p in params)}
        try:
            model = obj(**kw)
        except Exception as e:  # noqa: BLE001 - whatever the user's factory raises
            raise ModelError(f"{where}: the factory, called with {sorted(kw) or 'no arguments'}, raised "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             hint="a factory takes keyword arguments dims and/or lengths (or none)") from None
    if not callable(model):
        raise ModelError(f"{where}: {type(model).__name__} is not callable; expected an nn.Module or a function "
                         "of the batch", hint="see docs/byo_model.md")
    _check_signature(model, where)
    return model


def _check_signature(model: Any, where: str) -> None:
    fn = model.forward if isinstance(model, nn.Module) else model
    params = _params(fn)
    if params is None:
        return
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        shown = ", ".join(p.name for p in params)
        raise ModelError(f"{where}: the model takes ({shown}); expected one argument, the batch "
                         "(robustmsa.data.batch.Batch)", hint="see docs/byo_model.md") from None


def read_weights(path: str, where: str) -> dict[str, Any]:
    """A checkpoint file read with ``weights_only=True`` (no pickled code runs)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{where}: checkpoint {path} does not exist", hint="give the path of a saved state dict")
    try:
        ck = torch.load(io.BytesIO(p.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ModelError(f"{where}: checkpoint {path} cannot be read as plain tensors "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                         hint="save it with torch.save(model.state_dict(), path)") from None
    if not isinstance(ck, dict):
        raise ModelError(f"{where}: checkpoint {path} holds a {type(ck).__name__}, expected a state dict")
    return ck


def load_state(model: nn.Module, state: Mapping[str, Any], path: str, where: str) -> None:
    """``model.load_state_dict(state)``; a mismatch is one line naming the first offending keys."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        raise ModelError(f"{where}: checkpoint {path} does not fit the model: {'; '.join(lines[:2])[:400]}",
                         hint="the checkpoint must come from the same architecture and feature dims as the data"
                         ) from None


def model_output(out: Any, n: int, where: str) -> dict[str, Any]:
    """A model's output in the harness's form (``pred`` [B], ``losses``, ``extras``), checked."""
    expected = f"expected a tensor [{n}] or a dict with 'pred' [{n}] (and optional 'extras')"
    if isinstance(out, Mapping):
        if "pred" not in out:
            raise ModelError(f"{where}: returned a dict with keys {sorted(out)}; {expected}")
        pred, extras, losses = out["pred"], dict(out.get("extras") or {}), dict(out.get("losses") or {})
    else:
        pred, extras, losses = out, {}, {}
    if not isinstance(pred, torch.Tensor):
        raise ModelError(f"{where}: returned {type(pred).__name__}; {expected}")
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if tuple(pred.shape) != (n,):
        raise ModelError(f"{where}: returned scores of shape {list(pred.shape)} for a batch of {n}; {expected}")
    for k, v in extras.items():
        if not isinstance(v, torch.Tensor) or v.ndim == 0 or v.shape[0] != n:
            raise ModelError(f"{where}: extra {k!r} must be a tensor with leading dimension {n}, got "
                             f"{list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
    return {"pred": pred, "losses": losses, "extras": {k: v.detach() for k, v in extras.items()}}


@dataclass(frozen=True)
class ExternalConfig:
    """entry:      ``module:attribute`` of a factory or a model (module docstring), required.
    checkpoint: a state dict file loaded into the model ("" none: the model as the factory builds it)."""

    entry: str = ""
    checkpoint: str = ""

    def __post_init__(self) -> None:
        mod, _, attr = self.entry.partition(":")
        check_config(bool(mod) and bool(attr), "entry", f"must be 'module:attribute' (e.g. mypkg.models:build), "
                                                         f"got {self.entry!r}")


@register_model("external", ExternalConfig)
class ExternalModel(MSAModel):
    """Your own model (``entry``), optionally with a state dict (``checkpoint``); see the module docstring."""

    shared_encoders = False
    brings_weights: ClassVar[bool] = True
    weight_files: ClassVar[tuple[str, ...]] = ("checkpoint",)

    def __init__(self, config: ExternalConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        self.where = f"model 'external' (entry {config.entry!r})"
        target = _build_entry(config.entry, dims, lengths, self.where)
        self.inner = target if isinstance(target, nn.Module) else None
        self._fn: Callable[[Batch], Any] | None = None if self.inner is not None else target
        if config.checkpoint:
            if self.inner is None:
                raise ModelError(f"{self.where}: a checkpoint needs an nn.Module; the entry is a plain callable")
            ck = read_weights(config.checkpoint, self.where)
            load_state(self.inner, ck.get("state_dict", ck), config.checkpoint, self.where)

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        fn = self.inner if self.inner is not None else self._fn
        return model_output(fn(batch), len(batch), self.where)

    def content_hash(self) -> str:
        if self.config.checkpoint:
            return file_sha256(self.config.checkpoint)
        return state_sha256(self.inner if self.inner is not None else self._fn)


@dataclass(frozen=True)
class CheckpointConfig:
    """path: a robustmsa trial checkpoint (``checkpoint/model.pt`` of its MLflow run), required."""

    path: str = ""

    def __post_init__(self) -> None:
        check_config(bool(self.path), "path", "must name a robustmsa checkpoint file (model.pt)")


@register_model("checkpoint", CheckpointConfig)
class CheckpointModel(MSAModel):
    """A past trial's best model, rebuilt from its checkpoint (any registered model, plugins included).
    The checkpoint's feature dims must be the data's; the sequence lengths may differ."""

    shared_encoders = False
    brings_weights: ClassVar[bool] = True
    weight_files: ClassVar[tuple[str, ...]] = ("path",)

    def __init__(self, config: CheckpointConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        where = f"model 'checkpoint' ({config.path})"
        ck = read_weights(config.path, where)
        missing = [k for k in ("model", "config", "dims", "state_dict") if k not in ck]
        if missing:
            raise ModelError(f"{where}: not a robustmsa checkpoint (no {', '.join(missing)})",
                             hint="use 'external' with entry and checkpoint for your own state dicts")
        if dict(ck["dims"]) != dict(dims):
            raise ModelError(f"{where}: the {ck['model']} checkpoint was trained on feature dims {dict(ck['dims'])}, "
                             f"the data has {dict(dims)}", hint="evaluate it on data with the same feature dims")
        self.model_name = str(ck["model"])
        self.inner = create_model(self.model_name, dims=ck["dims"], lengths=ck.get("lengths"), seed=0, **ck["config"])
        load_state(self.inner, ck["state_dict"], config.path, where)

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        return self.inner(batch, clean)

    def content_hash(self) -> str:
        return file_sha256(self.config.path)
