"""Suites are data: YAML loaded safely, validated into typed objects, grid axes expanded in code.

A suite file declares datasets x models x training regimes x seeds, the evaluation spectrum,
resources, tracking and report settings. Errors name the file, the key and the allowed values.
``include:`` merges other suite files first (paths relative to the including file); CLI overrides
``a.b=value`` (value parsed as YAML) are applied last.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from corruptions.keys import MODALITIES
from corruptions.registry import did_you_mean

from .errors import ModelConfigError, SuiteError

__all__ = [
    "Suite",
    "DatasetSpec",
    "ModelSpec",
    "SamplerSpec",
    "GridSpec",
    "FamilyRef",
    "Condition",
    "RegimeSpec",
    "TrainingSpec",
    "EvaluationSpec",
    "load_suite",
    "parse_overrides",
    "SUITE_SCHEMA_VERSION",
]

SUITE_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_levels(levels: list[float]) -> list[float]:
    if not levels:
        raise ValueError("at least one level is required")
    for v in levels:
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"reliability level {v} is outside [0, 1]")
    return sorted({float(v) for v in levels}, reverse=True)


class DatasetSpec(_Strict):
    """A dataset by registry name; ``params`` go to its loader (e.g. ``path`` for ``mmsa``)."""

    name: str = "synthetic"
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        """Name in tables and trial names: params.label, else an MMSA file's (MOSI/aligned_50), else name."""
        if self.params.get("label"):
            return str(self.params["label"])
        if self.name == "mmsa" and self.params.get("path"):
            from .data.mmsa import mmsa_label

            return mmsa_label(self.params["path"])
        return self.name


class ModelSpec(_Strict):
    """A model by registry name with config overrides; ``label`` names it in tables."""

    name: str
    label: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.name


class FamilyRef(BaseModel):
    """A corruption family by registry name, with its parameters, parsed once.

    A suite writes it as a bare name (``noise``) or a mapping (``{name: noise, snr_db_low: 0}``);
    :meth:`spec` gives it back in that written form, which is what the corruption engine takes
    and what a trial's identity hashes, so a reference serialises exactly as it was written.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    written_as_name: bool = True

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, FamilyRef):
            return v
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "written_as_name" not in v:
            if not isinstance(v.get("name"), str):
                raise ValueError("a corruption family is a name or a mapping with a 'name' key "
                                 "(e.g. {name: noise, snr_db_low: 0})")
            return {"name": v["name"], "params": {k: x for k, x in v.items() if k != "name"},
                    "written_as_name": False}
        return v

    @model_serializer
    def spec(self) -> str | dict[str, Any]:
        """The written form: the bare name, or ``{"name": ..., **params}``."""
        return self.name if self.written_as_name else {"name": self.name, **self.params}

    def key(self) -> str:
        """A stable text key of the reference (caches, identities)."""
        return json.dumps(self.spec(), sort_keys=True)

    def members(self) -> list[FamilyRef]:
        """This family and, for ``compose``, the families it composes (recursively)."""
        inner = self.params.get("families") if self.name == "compose" else None
        return [self, *(m for f in inner or [] for m in FamilyRef.model_validate(f).members())]


class Condition(_Strict):
    """A specialist's training condition: one family at one point of the spectrum.

    ``sweep`` is a modality (the others clean) or ``joint``; :meth:`spec` gives the condition as
    written (the form a trial's identity and its rows' ``condition`` column hold).
    """

    family: FamilyRef
    sweep: str = "joint"
    level: float | int

    @field_validator("sweep")
    @classmethod
    def _v_sweep(cls, v: str) -> str:
        if v not in (*MODALITIES, "joint"):
            raise ValueError(f"unknown sweep {v!r}; allowed: {', '.join((*MODALITIES, 'joint'))}")
        return v

    @field_validator("level")
    @classmethod
    def _v_level(cls, v: float | int) -> float | int:
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"reliability level {v} is outside [0, 1]")
        return v

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    def point(self) -> Any:
        """The condition's :class:`~corruptions.ReliabilityPoint`."""
        from corruptions import ReliabilityPoint

        level = float(self.level)
        return ReliabilityPoint.joint(level) if self.sweep == "joint" else ReliabilityPoint.only(self.sweep, level)

    @property
    def label(self) -> str:
        """``family:sweep=level``, as trial names and report groups show it."""
        return f"{self.family.name}:{self.sweep}={float(self.level):g}"

    @classmethod
    def from_json(cls, text: str) -> Condition | None:
        """The condition of a result row's ``condition`` column (empty: none)."""
        return cls.model_validate(json.loads(text)) if text else None


def _refs(*names: str) -> list[FamilyRef]:
    return [FamilyRef.model_validate(n) for n in names]


class SamplerSpec(_Strict):
    """Training sampler of the spectrum regime (see corruptions.samplers.TrainingSampler)."""

    families: list[FamilyRef] = Field(default_factory=lambda: _refs("noise", "drop", "missing"))
    weights: list[float] | None = None
    p_clean_sample: float = Field(0.2, ge=0, le=1)
    p_clean_modality: float = Field(0.1, ge=0, le=1)
    rho_low: float = Field(0.0, ge=0, le=1)
    rho_high: float = Field(1.0, ge=0, le=1)


class GridSpec(_Strict):
    """A grid over the spectrum: families x sweeps x levels (level 1.0 is the clean end).

    Sweeps: a modality (the others clean), ``joint`` (all at the same level), a product of
    modalities joined by ``+`` (``audio+vision``: every pair of levels, for heatmaps), or ``qmc``:
    ``qmc_points`` scrambled Sobol' points over all three modalities (the first is not clean; the
    grid's clean point is evaluated separately).
    """

    families: list[FamilyRef] = Field(default_factory=lambda: _refs("missing", "drop", "noise"))
    levels: list[float] = Field(default_factory=lambda: [1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    sweeps: list[str] = Field(default_factory=lambda: ["text", "audio", "vision", "joint"])

    _v_levels = field_validator("levels")(classmethod(lambda cls, v: _check_levels(v)))

    @field_validator("sweeps")
    @classmethod
    def _v_sweeps(cls, v: list[str]) -> list[str]:
        allowed = [*MODALITIES, "joint"]
        for s in v:
            parts = s.split("+")
            if s in allowed or s == "qmc":
                continue
            if len(parts) >= 2 and all(p in MODALITIES for p in parts) and len(set(parts)) == len(parts):
                continue
            raise ValueError(f"unknown sweep {s!r}; allowed: {', '.join(allowed)}, qmc, or a product of "
                             "distinct modalities joined by '+' (e.g. audio+vision)")
        return v

    qmc_points: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _families_have_points(self) -> GridSpec:
        from corruptions._families import FAMILIES
        from corruptions.grids import supported_sweeps

        for f in self.families:
            name = f.name
            if name not in FAMILIES.names():
                continue  # reported with its position by the family-name check
            if not supported_sweeps(name, self.sweeps):
                mods = ", ".join(getattr(FAMILIES.get(name), "modalities", MODALITIES))
                raise ValueError(f"family {name!r} corrupts only {mods}: none of the sweeps "
                                 f"{', '.join(self.sweeps)} applies to it; add a sweep over {mods}")
        return self

    def points(self) -> int:
        """Grid points over all families: each family's supported sweeps (a product over k modalities
        has len(levels)**k points, qmc has qmc_points)."""
        from corruptions.grids import supported_sweeps

        def n(s: str) -> int:
            if s == "qmc":
                return self.qmc_points
            return len(self.levels) ** len(s.split("+")) if "+" in s else len(self.levels)

        names = [f.name for f in self.families]
        return sum(n(s) for name in names for s in supported_sweeps(name, self.sweeps))


class RegimeSpec(_Strict):
    """A training regime: ``clean``, ``spectrum`` (one checkpoint for all) or ``specialist``.

    ``validation`` is the spectrum on which the validation split selects the epoch (never test).
    ``conditions`` (specialist): one trial per condition, each trained at that fixed point.
    """

    name: str
    kind: Literal["clean", "spectrum", "specialist"]
    sampler: SamplerSpec | None = None
    validation: GridSpec | None = None
    conditions: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _defaults(self) -> RegimeSpec:
        if self.kind == "spectrum" and self.sampler is None:
            object.__setattr__(self, "sampler", SamplerSpec())
        if self.kind == "specialist" and not self.conditions:
            raise ValueError("a specialist regime needs 'conditions' (family, sweep, level)")
        return self


class TrainingSpec(_Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(5, ge=1)
    loss: Literal["l1", "mse"] = "l1"
    grad_clip: float | None = 1.0
    device: Literal["auto", "cpu", "cuda"] = "auto"


class EvaluationSpec(GridSpec):
    """The evaluation grid on the test split; ``seed`` keys the corruption draws. ``references``:
    also evaluate the reference predictors (the oracle where the dataset has one, linear probes)
    over the same grid, in one reference trial per dataset (robustmsa.references)."""

    seed: int = 1234
    references: bool = True
    batch_size: int = Field(512, ge=1)
    split: Literal["test", "valid"] = "test"


class ResourcesSpec(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)


class TrackingSpec(_Strict):
    uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None
    log_predictions: bool = True
    log_checkpoint: bool = True


class RunnerSpec(_Strict):
    backend: Literal["ray", "local"] = "ray"
    max_concurrent: int | None = Field(None, ge=1)
    retries: int = Field(1, ge=0)
    ray_address: str | None = None


class ReportSpec(_Strict):
    """Report settings (docs/reports.md). ``reference_model``: label of the model that corruption
    errors are measured against; ``effective_reference``: label of the late-fusion model of the
    effective robustness; both are compared within the same regime and seed."""

    dir: str = "reports"
    reference_model: str | None = None
    main_metric: str = "mae"
    effective_reference: str = "late_fusion"
    digits: int = Field(3, ge=1, le=6)
    alpha: float = Field(0.05, gt=0, lt=1)
    seed_test: Literal["ttest", "wilcoxon"] = "ttest"
    bootstrap: int = Field(1000, ge=0, le=100_000)  # replicates of the paired bootstrap; 0 = none
    bootstrap_seed: int = Field(0, ge=0)
    provenance_in_caption: bool = True

    @field_validator("main_metric")
    @classmethod
    def _v_main_metric(cls, v: str) -> str:
        from .metrics import METRIC_INFO

        if v not in METRIC_INFO:
            hint = did_you_mean(v, METRIC_INFO)
            raise ValueError(f"unknown metric {v!r}{f' ({hint})' if hint else ''}; allowed: {', '.join(METRIC_INFO)}")
        return v


def _regimes(v: Any) -> Any:
    out = []
    for r in v or []:
        if isinstance(r, str):
            if r not in ("clean", "spectrum"):
                raise ValueError(f"regime {r!r} must be a mapping (allowed short names: clean, spectrum)")
            out.append({"name": r, "kind": r})
        else:
            out.append(r)
    return out


class Suite(_Strict):
    """A validated suite. ``source`` is the file it came from (for messages and provenance)."""

    name: str
    version: int = 1
    description: str = ""
    datasets: list[DatasetSpec] = Field(default_factory=lambda: [DatasetSpec()])
    models: list[ModelSpec]
    regimes: list[RegimeSpec] = Field(default_factory=lambda: [RegimeSpec(name="spectrum", kind="spectrum")])
    seeds: list[int] = Field(default_factory=lambda: [0])
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    metrics: list[str] | None = None  # the metric columns of the report tables (None: the standard ones)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    source: str | None = None

    _v_regimes = field_validator("regimes", mode="before")(classmethod(lambda cls, v: _regimes(v)))

    @field_validator("metrics")
    @classmethod
    def _v_metrics(cls, v: list[str] | None) -> list[str] | None:
        from .metrics import METRIC_INFO

        for name in v or []:
            if name not in METRIC_INFO:
                raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(METRIC_INFO)}")
        return v

    @field_validator("models", "seeds", "datasets")
    @classmethod
    def _non_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("must not be empty")
        return v

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json(exclude={"source"}))


# ----------------------------------------------------------------------------- loading


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise SuiteError(f"{path}: suite file does not exist", hint="robustmsa ls suites lists the suites")
    if path.resolve() in seen:
        raise SuiteError(f"{path}: include cycle: {' -> '.join(map(str, seen))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a mapping of keys, got {type(data).__name__}")
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        merged = _deep_merge(merged, _read_yaml((path.parent / inc), (*seen, path.resolve())))
    return _deep_merge(merged, data)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["training.epochs=3", "seeds=[1,2]"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SuiteError(f"override {item!r}: not of the form key=value", hint="e.g. training.epochs=3")
        key, _, raw = item.partition("=")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class at ``loc`` inside ``cls`` (skipping list indices)."""
    import typing

    cur: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        ann = cur.model_fields[part].annotation
        for _ in range(3):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if args and not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                ann = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0])
        cur = ann
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _format_errors(e: ValidationError, source: str) -> str:
    msgs = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "union["))))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(Suite, loc[:-1])
            allowed = sorted(k for k in (parent.model_fields if parent else {}) if k != "source")
            hint = did_you_mean(loc[-1], allowed)
            msgs.append(f"unknown key '{key}'{f' ({hint})' if hint else ''}; allowed: {', '.join(allowed)}")
        elif err["type"] == "missing":
            msgs.append(f"missing required key '{key}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            msgs.append(f"key '{key}': {msg}")
    return f"{source}: " + "; ".join(msgs)


def _check_names(suite: Suite, source: str) -> None:
    """Registry names (datasets, models, corruption families, metrics) exist, with close matches."""
    from corruptions import FAMILIES

    from .datasets import DATASETS
    from .models import MODELS

    def check(registry: Any, name: str, key: str) -> None:
        if name not in registry:
            allowed = registry.names()
            hint = did_you_mean(name, allowed)
            raise SuiteError(f"{source}: key '{key}': unknown name {name!r}{f' ({hint})' if hint else ''}; "
                             f"allowed: {', '.join(allowed)}")

    for i, d in enumerate(suite.datasets):
        check(DATASETS, d.name, f"datasets.{i}.name")
    for i, m in enumerate(suite.models):
        check(MODELS, m.name, f"models.{i}.name")
    grids = [("evaluation", suite.evaluation)]
    grids += [(f"regimes.{i}.validation", r.validation) for i, r in enumerate(suite.regimes) if r.validation]
    for key, g in grids:
        for j, f in enumerate(g.families):
            check(FAMILIES, f.name, f"{key}.families.{j}")
    for i, r in enumerate(suite.regimes):
        for j, f in enumerate(r.sampler.families if r.sampler else []):
            check(FAMILIES, f.name, f"regimes.{i}.sampler.families.{j}")
        for j, c in enumerate(r.conditions):
            check(FAMILIES, c.family.name, f"regimes.{i}.conditions.{j}.family")
    _check_model_configs(suite, source)
    labels = [m.display for m in suite.models]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise SuiteError(f"{source}: key 'models': labels must be unique, repeated: {', '.join(sorted(dup))}",
                         hint="give each variant a 'label'")
    if suite.metrics:
        from .metrics import METRIC_INFO

        for j, m in enumerate(suite.metrics):
            check(_NameList(list(METRIC_INFO)), m, f"metrics.{j}")


def _check_model_configs(suite: Suite, source: str) -> None:
    """Each model's overrides resolve to a valid config; an error names the file and the key."""
    from .models import resolve_config

    for i, m in enumerate(suite.models):
        try:
            resolve_config(m.name, **m.overrides)
        except ModelConfigError as e:
            raise SuiteError(f"{source}: key 'models.{i}.overrides.{e.key}' (model {m.name!r}): {e.problem}",
                             hint=e.hint) from None


class _NameList:
    def __init__(self, names: list[str]):
        self._n = names

    def __contains__(self, x: object) -> bool:
        return x in self._n

    def names(self) -> list[str]:
        return sorted(self._n)


def load_suite(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Suite:
    """Load, merge includes and overrides, validate. Raises SuiteError naming file, key, allowed values."""
    p = Path(path)
    data = _read_yaml(p)
    if overrides:
        ov = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = _deep_merge(data, ov)
    data.setdefault("name", p.stem)
    try:
        suite = Suite.model_validate({**data, "source": str(p)})
    except ValidationError as e:
        raise SuiteError(_format_errors(e, str(p)), hint="see suites/README.md for the schema") from None
    _check_names(suite, str(p))
    return suite
