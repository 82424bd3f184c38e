"""The planning layer: a suite expanded into trials, each with its identity and cost.

A trial is one grid cell, (dataset, model, regime, seed[, specialist condition]), or the reference
trial of a dataset (the oracle and the linear probes, :mod:`robustmsa.references`). Its identity
hashes the fully resolved configuration, the data's content hash and the versions of the
corruption families it uses, so a finished trial is recognised on resume and a changed one is
not. Planning loads each dataset once (for its hash) and runs nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corruptions import FAMILIES

from ._version import __version__
from .datasets import DatasetSummary, load_dataset, summarise_dataset
from .errors import ModelError, NonFiniteError, RobustMSAError
from .models import MODELS, create_model, model_config
from .suite import (
    Condition,
    DatasetSpec,
    EvaluationSpec,
    FamilyRef,
    GridSpec,
    ModelSpec,
    RegimeSpec,
    ResourcesSpec,
    Suite,
    TrainingSpec,
)

__all__ = ["TrialSpec", "TrainingRun", "PlannedTrial", "Cost", "trial_cost", "REFERENCE_PASSES", "expand_trials", "plan_suite", "trial_identity", "estimate_cost",
           "validation_grid", "code_version", "corruption_versions", "trial_threads", "REFERENCE_VERSION",
           "probe_model"]

#: version of what the reference trial computes (:mod:`robustmsa.references`), part of its identity:
#: bump it whenever a reference predictor would give other numbers for the same data
REFERENCE_VERSION = "1"


def trial_threads(resources: ResourcesSpec) -> int:
    """The torch thread count a trial runs with: ``max(1, int(resources.cpus_per_trial))``. Results
    differ in the last bits between thread counts (reduction order), so it is part of the identity."""
    return max(1, int(resources.cpus_per_trial))


def validation_grid(regime: RegimeSpec) -> GridSpec | None:
    """The grid on which the validation split selects the epoch (None: the clean point only; a
    specialist validates at its own condition)."""
    if regime.validation is not None:
        return regime.validation
    if regime.kind == "spectrum" and regime.sampler is not None:
        names = sorted({f.name for f in regime.sampler.families})
        return GridSpec(families=names, levels=[1.0, 0.5], sweeps=["joint"])
    return None


@dataclass(frozen=True)
class TrainingRun:
    """What the trainer needs of a trial: the regime, the recipe, the seed, a specialist's condition.
    ``valid_seed`` keys the corruption draws of the validation grid."""

    regime: RegimeSpec
    training: TrainingSpec
    seed: int
    condition: Condition | None = None
    valid_seed: int = 4321


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs; ``kind`` "model" trains and evaluates, "reference" evaluates the
    reference predictors of its dataset."""

    suite: str
    suite_version: int
    dataset: DatasetSpec
    model: ModelSpec
    regime: RegimeSpec
    seed: int
    training: TrainingSpec
    evaluation: EvaluationSpec
    condition: Condition | None = None
    kind: str = "model"
    threads: int = 1  # torch threads of the trial (:func:`trial_threads`)
    model_hash: str = ""  # sha256 of the weights a model comes with (:func:`probe_model`); "" when trained here

    @property
    def is_evaluate(self) -> bool:
        """No training: the model comes with its weights and is evaluated as given."""
        return self.regime.kind == "evaluate"

    @property
    def is_reference(self) -> bool:
        return self.kind == "reference"

    @property
    def name(self) -> str:
        if self.is_reference:
            return f"references/{self.dataset.display}"
        cond = f"@{self.condition.label}" if self.condition else ""
        return f"{self.model.display}/{self.regime.name}{cond}/{self.dataset.display}/seed{self.seed}"

    def training_run(self) -> TrainingRun:
        return TrainingRun(self.regime, self.training, self.seed, self.condition)

    def families(self) -> list[str]:
        """Every corruption family the trial uses (training, validation, evaluation; compose's members)."""
        refs: list[FamilyRef] = list(self.evaluation.families)
        if not self.is_reference:
            refs += self.regime.sampler.families if self.regime.sampler else []
            vg = validation_grid(self.regime)
            refs += vg.families if vg else []
            refs += [self.condition.family] if self.condition else []
        return sorted({m.name for f in refs for m in f.members()})

    def resolved(self) -> dict[str, Any]:
        """The fully resolved configuration (the model's defaults included).

        Everything that changes the numbers is in it. The torch thread count enters as ``"threads"``
        only when it is not 1, and the keys added later (:data:`LATER_MODEL_KEYS`,
        :data:`LATER_TRAINING_KEYS`) only away from their defaults, so the identities of trials that
        do not use them stay as they were before the keys existed."""
        common = {"suite": self.suite, "suite_version": self.suite_version,
                  "dataset": self.dataset.model_dump(mode="json")}
        if self.threads != 1:
            common["threads"] = self.threads
        if self.is_reference:
            return {**common, "kind": "reference", "references": REFERENCE_VERSION,
                    "evaluation": self.evaluation.model_dump(mode="json")}
        config = _without_later_defaults(model_config(self.model.name, **self.model.overrides), LATER_MODEL_KEYS)
        model = {"name": self.model.name, "label": self.model.display, "config": config}
        if self.model_hash:  # the weights' content, not where the file lies, is the model's identity
            files = MODELS.get(self.model.name).weight_files
            model = {**model, "config": {k: v for k, v in model["config"].items() if k not in files},
                     "weights_sha256": self.model_hash}
        out = {
            **common,
            "model": model,
            "regime": self.regime.model_dump(mode="json"),
            "condition": self.condition.spec() if self.condition else None,
            "seed": self.seed,
            "training": _without_later_defaults(self.training.model_dump(mode="json"), LATER_TRAINING_KEYS),
            "evaluation": self.evaluation.model_dump(mode="json"),
        }
        if self.is_evaluate:  # nothing is trained: the recipe changes no number
            del out["training"]
        return out


#: model config keys added after trial identities were first published, with the default that
#: changes nothing (the option off): a trial's identity leaves them out while at that default
LATER_MODEL_KEYS: dict[str, Any] = {"input_rank": 0, "local_contrast": 0, "aux_weight": 0.0, "input_sparsity": 0.0,
                                    "unimodal_weight": 0.0, "frame_deltas": False, "frame_readout": False,
                                    "clamp_output": False}
#: the same for the suite's ``training:`` keys
LATER_TRAINING_KEYS: dict[str, Any] = {"average": "none", "ema_decay": 0.99, "swa_start": 0, "schedule": "plateau"}


def _without_later_defaults(values: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in later or v != later[k]}


#: the model and regime entries of a reference trial (it trains nothing)
REFERENCE_MODEL = ModelSpec(name="references")
REFERENCE_REGIME = RegimeSpec(name="reference", kind="clean")


def expand_trials(suite: Suite) -> list[TrialSpec]:
    """datasets x models x regimes x seeds (x conditions for specialist regimes), in a stable order,
    then one reference trial per dataset (``evaluation.references``)."""
    out: list[TrialSpec] = []
    threads = trial_threads(suite.resources)
    for d in suite.datasets:
        for m in suite.models:
            for r in suite.regimes:
                conditions: list[Condition | None] = list(r.conditions) if r.kind == "specialist" else [None]
                out += [TrialSpec(suite.name, suite.version, d, m, r, s, suite.training, suite.evaluation, c,
                                  threads=threads) for c in conditions for s in suite.seeds]
    if suite.evaluation.references:
        out += [TrialSpec(suite.name, suite.version, d, REFERENCE_MODEL, REFERENCE_REGIME, 0, suite.training,
                          suite.evaluation, kind="reference", threads=threads) for d in suite.datasets]
    return out


def corruption_versions(names: list[str]) -> dict[str, str]:
    return {n: FAMILIES.get(n).version for n in names}


def trial_identity(spec: TrialSpec, data_hash: str) -> str:
    """Identity from the resolved config, the data's content hash and the corruption versions."""
    payload = {"config": spec.resolved(), "data": data_hash,
               "corruptions": corruption_versions(spec.families())}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass
class PlannedTrial:
    """A trial with its identity, its data's content hash and its cost (:func:`trial_cost`), by
    which the runner orders the trials (longest first)."""

    spec: TrialSpec
    trial_id: str
    data_hash: str
    cost: int = 0


#: per evaluated sample and grid point, the reference trial's work in model passes: the oracle's
#: posterior over the cues plus the linear probes (the oracle dominates); measured on the main job
REFERENCE_PASSES = 4


def trial_cost(spec: TrialSpec, sizes: tuple[int, int, int]) -> int:
    """Sample passes of one trial on splits of ``sizes`` (train, valid, evaluated), for ordering
    trials only: each epoch passes the training split forward and backward (2, plus 1 when its
    batches are corrupted) and the validation split once per validation point; the evaluation passes
    the evaluated split once per grid point (:data:`REFERENCE_PASSES` times for the reference trial)."""
    n_train, n_valid, n_eval = sizes
    points = spec.evaluation.points()
    if spec.is_reference:
        return REFERENCE_PASSES * points * n_eval
    if spec.is_evaluate:
        return points * n_eval
    grid = validation_grid(spec.regime)
    corrupted = spec.regime.kind != "clean"
    per_epoch = (2 + corrupted) * n_train + (grid.points() if grid else 1) * n_valid
    return spec.training.epochs * per_epoch + points * n_eval


def plan_suite(suite: Suite) -> list[PlannedTrial]:
    """Expand the suite and compute every trial's identity from each dataset's summary (read once; the
    embedded benchmark's from its cache entry without its arrays, other datasets loaded). A model that
    comes with its weights is built and run on one batch first (:func:`probe_model`): a model that
    fails it stops the suite here, before the store is touched, and its weights' hash enters the identity.
    On a classification dataset a model without classification support stops the suite here too, and
    the dataset has no reference trial (the oracle and the linear probes predict scores)."""
    summaries: dict[str, DatasetSummary] = {}
    loaded: dict[str, Any] = {}  # the datasets a model with weights is probed on
    probed: dict[tuple[str, str], str] = {}
    out = []
    for spec in expand_trials(suite):
        key = spec.dataset.model_dump_json()
        if key not in summaries:  # the arrays are read only where the summary needs them
            summaries[key] = summarise_dataset(spec.dataset.name, spec.dataset.params)
            check_metrics(suite.metrics, summaries[key].metric_family, spec.dataset.display)
        data = summaries[key]
        if data.num_classes and spec.is_reference:
            continue
        if data.num_classes:
            check_classification(spec.model.name, data.num_classes, spec.dataset.display)
        if not spec.is_reference and MODELS.get(spec.model.name).brings_weights:
            mkey = (key, spec.model.model_dump_json())
            if mkey not in probed:
                if key not in loaded:
                    loaded[key] = load_dataset(spec.dataset.name, spec.dataset.params)
                probed[mkey] = probe_model(spec.model, loaded[key], spec.evaluation.split)
            spec = dataclasses.replace(spec, model_hash=probed[mkey])
        n = data.sizes
        cost = trial_cost(spec, (n.get("train", 0), n.get("valid", 0), n.get(spec.evaluation.split, 0)))
        out.append(PlannedTrial(spec, trial_identity(spec, data.content_hash), data.content_hash, cost))
    return out


def check_metrics(metrics: list[str] | None, family: str, dataset: str) -> None:
    """Refuse report metrics (``metrics:``) that the dataset's metric family does not compute, e.g.
    accuracy on a regression dataset (before anything runs)."""
    from .metrics import metric_keys

    allowed = metric_keys(family)
    for j, m in enumerate(metrics or []):
        if m not in allowed:
            raise RobustMSAError(f"key 'metrics.{j}': metric {m!r} is not computed for dataset {dataset!r} "
                                 f"(metric family {family}); allowed: {', '.join(allowed)}",
                                 hint="list only the metrics of the suite's datasets")


def check_classification(model: str, num_classes: int, dataset: str) -> None:
    """Refuse a model without classification support on a classification dataset (before anything runs)."""
    from .models.base import classification_models

    if not MODELS.get(model).supports_classification:
        raise RobustMSAError(f"model {model!r} predicts a sentiment score only; dataset {dataset!r} is a "
                             f"classification dataset ({num_classes} classes)",
                             hint=f"models that support classification: {', '.join(classification_models())}")


PROBE_SAMPLES = 8


def probe_model(model: ModelSpec, dataset: Any, split: str = "test") -> str:
    """Build a model that comes with its weights for ``dataset`` and run it on the first
    :data:`PROBE_SAMPLES` samples of ``split``: its code, signature, checkpoint shapes and output
    (scores [B], finite) are checked before anything runs. Returns its weights' sha256."""
    import torch

    from .data.batch import split_to_batch

    where = f"model {model.display!r}"
    built = create_model(model.name, dims=dataset.dims, lengths=dataset.lengths, seed=0, **model.overrides)
    batch = split_to_batch(dataset[split])
    batch = batch.slice(0, min(PROBE_SAMPLES, len(batch)))
    try:
        with torch.no_grad():
            out = built.eval()(batch)
    except RobustMSAError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's forward raises on the data
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"{where}: its first batch of {dataset.info.get('label') or 'the data'} failed: "
                         f"{type(e).__name__}: {msg}"[:600],
                         hint=f"the data has feature dims {dict(dataset.dims)}; see docs/byo_model.md") from None
    pred = out["pred"] if isinstance(out, dict) else out
    if not isinstance(pred, torch.Tensor) or tuple(pred.shape) != (len(batch),):
        raise ModelError(f"{where}: returned scores of shape {list(getattr(pred, 'shape', []))} for a batch of "
                         f"{len(batch)}; expected [{len(batch)}]")
    bad = int((~torch.isfinite(pred.float())).sum())
    if bad:
        raise NonFiniteError(f"{where}: returned {bad} non-finite scores (NaN or inf) out of {len(batch)} on its "
                             "first batch; expected finite scores", hint="check the model on the clean data")
    return built.content_hash() or ""


@dataclass(frozen=True)
class Cost:
    """An upper bound on a suite's work, in sample passes (one sample through one model once)."""

    sample_passes: int
    grid_points: int
    sizes: dict[str, tuple[int, int]]  # dataset -> (train samples, evaluated samples)


def estimate_cost(suite: Suite, planned: list[PlannedTrial]) -> Cost:
    """Training (epochs x train x 2: the epoch and its validation) plus evaluation (grid points x
    evaluated split) of every model trial; the split sizes from each dataset's summary."""
    ev = suite.evaluation
    sizes: dict[str, tuple[int, int]] = {}
    for d in suite.datasets:
        n = summarise_dataset(d.name, d.params).sizes
        sizes[d.name] = (n["train"], n[ev.split])
    n_points = ev.points()
    passes = sum((0 if p.spec.is_evaluate else suite.training.epochs * sizes[p.spec.dataset.name][0] * 2)
                 + n_points * sizes[p.spec.dataset.name][1] for p in planned if not p.spec.is_reference)
    return Cost(passes, n_points, sizes)


def code_version() -> str:
    """Package version plus the git commit (and '+dirty') when run from a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__
