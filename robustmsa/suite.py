"""Suites are data: YAML loaded safely, validated into typed objects, grid axes expanded in code.

A suite file declares datasets x models x training regimes x seeds, the evaluation spectrum,
resources, tracking and report settings. Errors name the file, the key and the allowed values.
``include:`` merges other suite files first (paths relative to the including file); CLI overrides
``a.b=value`` (value parsed as YAML) are applied last.
"""
from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

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
    "load_eval_suite",
    "parse_overrides",
    "rho_step",
    "RHO_STEPS",
    "SUITE_SCHEMA_VERSION",
]

SUITE_SCHEMA_VERSION = 1

#: a seed torch and numpy both accept (``torch.manual_seed``, ``np.random.default_rng``, int32 keys)
SEED_LIMIT = 2**31
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]


class _Strict(BaseModel):
    # inf and nan are refused in every float field (a learning rate of inf fails only at run time)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _unique(values: list, what: str, key: Any = None) -> list:
    """``values`` unchanged; a ValueError naming the repeated entries when two are equal (by ``key``)."""
    keys = [key(v) if key else v for v in values]
    dup = sorted({str(k) for i, k in enumerate(keys) if k in keys[:i]})
    if dup:
        raise ValueError(f"{what} must be unique, repeated: {', '.join(dup)}")
    return values


#: MLflow's step axis for curves: a level rho is logged at step round(RHO_STEPS * rho) (0 absent .. 1000 clean)
RHO_STEPS = 1000


def rho_step(level: float) -> int:
    """The MLflow step of reliability ``level``: ``round(1000 * rho)``, increasing with rho, so a
    curve reads left to right from absent to clean and its latest value is the clean one."""
    return int(round(RHO_STEPS * float(level)))


def _check_levels(levels: list[float]) -> list[float]:
    if not levels:
        raise ValueError("at least one level is required")
    for v in levels:
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"reliability level {v} is outside [0, 1]")
        if abs(RHO_STEPS * float(v) - rho_step(v)) > 1e-6:
            raise ValueError(f"reliability level {v} is not on the 1/{RHO_STEPS} grid that curves are logged on "
                             f"(MLflow step = round({RHO_STEPS}·rho)); use {rho_step(v) / RHO_STEPS:g}")
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
    """A model by registry name with config overrides; ``label`` names it in tables. ``params`` is
    accepted for ``overrides`` (as datasets spell it, e.g. ``{name: external, params: {entry: ...}}``)."""

    name: str
    label: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _params_alias(cls, v: Any) -> Any:
        if isinstance(v, dict) and "params" in v:
            if "overrides" in v:
                raise ValueError("give 'overrides' or 'params' (the same thing), not both")
            v = {**{k: x for k, x in v.items() if k != "params"}, "overrides": v["params"]}
        return v

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

    @model_validator(mode="after")
    def _consistent(self) -> SamplerSpec:
        if not self.families:
            raise ValueError("sampler.families must name at least one family")
        if self.weights is not None:
            if len(self.weights) != len(self.families):
                raise ValueError(f"sampler.weights needs one entry per family ({len(self.families)}), "
                                 f"got {len(self.weights)}")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"sampler.weights must be >= 0 and not all 0, got {self.weights}")
        if self.rho_low > self.rho_high:
            raise ValueError(f"sampler.rho_low ({self.rho_low}) must not exceed rho_high ({self.rho_high})")
        return self


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

    @field_validator("families")
    @classmethod
    def _v_families(cls, v: list[FamilyRef]) -> list[FamilyRef]:
        return _unique(v, "family names (rows are keyed by family name)", key=lambda f: f.name)

    @field_validator("sweeps")
    @classmethod
    def _v_sweeps(cls, v: list[str]) -> list[str]:
        allowed = [*MODALITIES, "joint"]
        _unique(v, "sweeps")
        for s in v:
            parts = s.split("+")
            if s in allowed or s == "qmc":
                continue
            if len(parts) >= 2 and all(p in MODALITIES for p in parts) and len(set(parts)) == len(parts):
                continue
            raise ValueError(f"unknown sweep {s!r}; allowed: {', '.join(allowed)}, qmc, or a product of "
                             "distinct modalities joined by '+' (e.g. audio+vision)")
        return v

    qmc_points: int = Field(16, ge=1, le=65536)

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
    """A training regime: ``clean``, ``spectrum`` (one checkpoint for all) or ``specialist``; or
    ``evaluate``: no training at all, the model comes with its weights (a checkpoint, your own model)
    and is evaluated as given, so there is no validation selection either.

    ``validation`` is the spectrum on which the validation split selects the epoch (never test).
    ``conditions`` (specialist): one trial per condition, each trained at that fixed point.
    """

    name: str
    kind: Literal["clean", "spectrum", "specialist", "evaluate"]
    sampler: SamplerSpec | None = None
    validation: GridSpec | None = None
    conditions: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _defaults(self) -> RegimeSpec:
        if self.kind == "spectrum" and self.sampler is None:
            object.__setattr__(self, "sampler", SamplerSpec())
        if self.kind == "specialist" and not self.conditions:
            raise ValueError("a specialist regime needs 'conditions' (family, sweep, level)")
        if self.kind == "evaluate" and (self.sampler is not None or self.validation is not None):
            raise ValueError("an evaluate regime trains nothing and selects nothing: no 'sampler' or 'validation'")
        if self.conditions and self.kind != "specialist":
            raise ValueError(f"'conditions' belong to a specialist regime, not to kind {self.kind!r}")
        _unique(self.conditions, "specialist conditions",
                key=lambda c: c.label + ("" if c.family.written_as_name else f" {c.family.key()}"))
        return self


class TrainingSpec(_Strict):
    """The training recipe. ``average``: validate and keep an average of the weights instead of the
    last ones ("ema": exponential moving average per step with decay ``ema_decay``; "swa": equal
    average per epoch from epoch ``swa_start``; "none"); ``schedule``: "plateau" (halve the lr when
    validation stalls) or "cosine" (per step, to 0 at the last epoch). See the trainer's
    ``TrainerOptions``."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(5, ge=1)
    loss: Literal["l1", "mse"] = "l1"
    grad_clip: float | None = 1.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    average: Literal["none", "ema", "swa"] = "none"
    ema_decay: float = Field(0.99, gt=0, lt=1)
    swa_start: int = Field(0, ge=0)
    schedule: Literal["plateau", "cosine"] = "plateau"


class EvaluationSpec(GridSpec):
    """The evaluation grid on the test split; ``seed`` keys the corruption draws. ``references``:
    also evaluate the reference predictors (the oracle where the dataset has one, linear probes)
    over the same grid, in one reference trial per dataset (robustmsa.references)."""

    seed: Seed = 1234
    references: bool = True
    batch_size: int = Field(512, ge=1)
    split: Literal["test", "valid"] = "test"

    @field_validator("families", "sweeps")
    @classmethod
    def _v_non_empty(cls, v: list, info: Any) -> list:
        if not v:  # (an internal clean-only GridSpec may be empty; an evaluation may not)
            raise ValueError(f"at least one {'corruption family' if info.field_name == 'families' else 'sweep'} "
                             "is required")
        return v


class ResourcesSpec(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)


_URI_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")


def _check_uri(uri: str) -> str:
    """A tracking URI MLflow can open: a known scheme with what it needs (reachability is not checked here)."""
    if not uri.strip() or uri != uri.strip() or not uri.isprintable():
        raise ValueError(f"tracking URI {uri!r} is empty, padded with blanks or holds control characters; "
                         "e.g. sqlite:///mlflow.db")
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0].lower()
    if "://" not in uri and scheme != "databricks":
        if ":" in uri.split("/")[0] and len(uri.split(":")[0]) > 1:
            raise ValueError(f"tracking URI {uri!r}: write <scheme>://..., e.g. sqlite:///mlflow.db")
        return uri  # a local folder (MLflow's file store)
    if scheme not in _URI_SCHEMES:
        raise ValueError(f"tracking URI {uri!r}: unknown scheme {parsed.scheme!r}; allowed: {', '.join(_URI_SCHEMES)}")
    if scheme == "sqlite" and (not uri.startswith("sqlite:///") or not uri[len("sqlite:///"):].strip("/")):
        raise ValueError(f"tracking URI {uri!r}: a SQLite store needs a file, e.g. sqlite:///mlflow.db "
                         "(relative) or sqlite:////abs/path/mlflow.db")
    if scheme in ("http", "https", "postgresql", "mysql", "mssql") and not parsed.hostname:
        raise ValueError(f"tracking URI {uri!r} names no host, e.g. http://127.0.0.1:5000")
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"tracking URI {uri!r}: the port is not a number in 0-65535") from None
    if scheme == "file" and not parsed.path:
        raise ValueError(f"tracking URI {uri!r} names no folder, e.g. file:///abs/path/mlruns")
    return uri


class TrackingSpec(_Strict):
    uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None
    log_predictions: bool = True
    log_checkpoint: bool = True

    _v_uri = field_validator("uri")(classmethod(lambda cls, v: _check_uri(v)))


class RunnerSpec(_Strict):
    backend: Literal["ray", "local"] = "ray"
    max_concurrent: int | None = Field(None, ge=1)
    retries: int = Field(1, ge=0)
    ray_address: str | None = None


class ReportSpec(_Strict):
    """Report settings (docs/reports.md). ``reference_model``: label of the model that corruption
    errors are measured against; ``effective_reference``: label of the late-fusion model of the
    effective robustness; both are compared within the same regime and seed. ``mce_reference``:
    ``fixed`` (default) measures mCE against the stored reference curve that matches the data, grid
    and corruption versions (robustmsa/published/mce_references), falling back to ``reference_model``
    when none does; ``suite`` always uses ``reference_model``."""

    dir: str = "reports"
    reference_model: str | None = None
    mce_reference: Literal["fixed", "suite"] = "fixed"
    main_metric: str = "mae"
    effective_reference: str = "late_fusion"
    digits: int = Field(3, ge=1, le=6)
    alpha: float = Field(0.05, gt=0, lt=1)
    seed_test: Literal["ttest", "wilcoxon"] = "ttest"
    bootstrap: int = Field(1000, ge=0, le=100_000)  # replicates of the paired bootstrap; 0 = none
    bootstrap_seed: Seed = 0
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
            if r not in ("clean", "spectrum", "evaluate"):
                raise ValueError(f"regime {r!r} must be a mapping (allowed short names: clean, spectrum, evaluate)")
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
    seeds: list[Seed] = Field(default_factory=lambda: [0])
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

    # a repeated entry would give two trials the same identity (or two cells the same name in reports)
    _u_seeds = field_validator("seeds")(classmethod(lambda cls, v: _unique(v, "seeds")))
    _u_datasets = field_validator("datasets")(classmethod(
        lambda cls, v: _unique(v, "dataset names (trial names and report cells are keyed by the name a dataset "
                                  "shows: params.label, an MMSA file's name, else the registry name)",
                               key=lambda d: d.display)))
    _u_regimes = field_validator("regimes")(classmethod(
        lambda cls, v: _unique(v, "regime names", key=lambda r: r.name)))
    _u_metrics = field_validator("metrics")(classmethod(lambda cls, v: v if v is None else _unique(v, "metrics")))

    @field_validator("name")
    @classmethod
    def _v_name(cls, v: str) -> str:
        if not v.strip() or v != v.strip() or v.startswith(".") or any(ch in v for ch in "/\\") \
                or not v.isprintable():
            raise ValueError(f"suite name {v!r} must be a non-empty file name (no '/', '\\', leading '.' or "
                             "control characters): it names the report folder and the MLflow experiment")
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice",
                                                            key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: the suite schema refuses it later
                pass
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path, included_by: Path | None = None) -> str:
    """The file's text; a missing or wrong path is named by the file that includes it, if any."""
    where, what = (f"{included_by}: key 'include'", f"included file {path}") if included_by else (str(path), "suite file")
    if path.is_dir():
        raise SuiteError(f"{where}: {what} is a directory, not a YAML file",
                         hint="give the path of a .yaml file; robustmsa ls suites lists the suites")
    if not path.exists():
        raise SuiteError(f"{where}: {what} does not exist", hint="robustmsa ls suites lists the suites")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})",
                         hint="save the suite file as UTF-8") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None


def _includes(path: Path, data: dict[str, Any]) -> list[str]:
    includes = data.pop("include", None)
    if includes is None:
        return []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i.strip() for i in includes):
        raise SuiteError(f"{path}: key 'include': expected a file name or a list of file names, got {includes!r}",
                         hint="include: base.yaml   or   include: [a.yaml, b.yaml]")
    return includes


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    text = _read_text(path, seen[-1] if seen else None)
    if path.resolve() in seen:
        raise SuiteError(f"{path}: include cycle: {' -> '.join(map(str, (*seen, path.resolve())))}")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a mapping of keys, got {type(data).__name__}")
    merged: dict[str, Any] = {}
    for inc in _includes(path, data):
        merged = _deep_merge(merged, _read_yaml((path.parent / inc), (*seen, path.resolve())))
    return _deep_merge(merged, data)


def _override_item(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise SuiteError(f"override {item!r}: not of the form key=value", hint="e.g. training.epochs=3")
    key, _, raw = item.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not all(parts):
        raise SuiteError(f"override {item!r}: the key {key!r} has an empty part",
                         hint="keys are dotted names, e.g. training.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["training.epochs=3", "seeds=[1,2]"]`` -> nested dict (values parsed as YAML). A later
    override of the same key wins; one that sets a key inside a value an earlier one set to a
    non-mapping (``training=3 training.epochs=2``), or the reverse, is refused."""
    out: dict[str, Any] = {}
    for item in items:
        parts, value = _override_item(item)
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SuiteError(f"override {item!r} sets a key inside '{'.'.join(parts[:i + 1])}', which an "
                                 f"earlier override set to {node!r}", hint="keep one of the two overrides")
        old = node.get(parts[-1])
        if isinstance(old, dict) and old and not isinstance(value, dict):
            raise SuiteError(f"override {item!r} replaces '{'.'.join(parts)}', whose keys an earlier override set",
                             hint="keep one of the two overrides")
        node[parts[-1]] = _deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
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
    for key, f, _ in _family_refs(suite):
        check(FAMILIES, f.name, key)
    for key, f, training in _family_refs(suite):
        _check_family(f, key, source, training)
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
    from .models import MODELS, resolve_config

    for i, m in enumerate(suite.models):
        try:
            resolve_config(m.name, **m.overrides)
        except ModelConfigError as e:
            raise SuiteError(f"{source}: key 'models.{i}.overrides.{e.key}' (model {m.name!r}): {e.problem}",
                             hint=e.hint) from None
        evaluate = [r.name for r in suite.regimes if r.kind == "evaluate"]
        if evaluate and not MODELS.get(m.name).brings_weights:
            raise SuiteError(f"{source}: key 'models.{i}' (model {m.name!r}): regime {evaluate[0]!r} (kind evaluate) "
                             "trains nothing, and this model is trained by the harness",
                             hint="evaluate a checkpoint ({name: checkpoint, params: {path: model.pt}}) or your own "
                                  "model ({name: external, params: {entry: mypkg.models:build}}), or use a training "
                                  "regime")


def _family_refs(suite: Suite) -> list[tuple[str, FamilyRef, bool]]:
    """Every corruption family of the suite: (its key, the reference, whether training draws it per batch)."""
    grids = [("evaluation", suite.evaluation)]
    grids += [(f"regimes.{i}.validation", r.validation) for i, r in enumerate(suite.regimes) if r.validation]
    out = [(f"{key}.families.{j}", f, False) for key, g in grids for j, f in enumerate(g.families)]
    for i, r in enumerate(suite.regimes):
        out += [(f"regimes.{i}.sampler.families.{j}", f, True)
                for j, f in enumerate(r.sampler.families if r.sampler else [])]
        out += [(f"regimes.{i}.conditions.{j}.family", c.family, False) for j, c in enumerate(r.conditions)]
    return out


def _check_family(ref: FamilyRef, key: str, source: str, training: bool) -> None:
    """The family can be built with its parameters (what a trial would do at run time)."""
    from corruptions import FAMILIES

    cls = FAMILIES.get(ref.name)
    if training and cls.level != "feature":
        raise SuiteError(f"{source}: key '{key}': the training sampler takes feature-level families; "
                         f"{ref.name!r} is {cls.level}-level (it may go in evaluation.families)")
    accepted = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(ref.params) - set(accepted))
    if unknown:
        raise SuiteError(f"{source}: key '{key}': unknown parameter(s) {', '.join(unknown)} of family {ref.name!r}; "
                         f"allowed: {', '.join(accepted) or 'none'}", hint="see docs/corruptions.md")
    try:
        cls(**ref.params)
        ref.members()
    except Exception as e:  # noqa: BLE001 - any failure of the constructor is a bad parameter value
        msg = str(e).replace("\n", " ")
        raise SuiteError(f"{source}: key '{key}': bad parameters for family {ref.name!r}: {msg}",
                         hint="see docs/corruptions.md") from None


def _check_report_dir(suite: Suite, source: str) -> None:
    """The report folder can be created: no file on its path (checked before any trial runs)."""
    target = Path(suite.report.dir) / suite.name
    for p in (target, *target.parents):
        if p.exists():
            if not p.is_dir():
                raise SuiteError(f"{source}: key 'report.dir': {p} is a file, so the report folder {target} "
                                 "cannot be created", hint="set report.dir=<a folder>")
            return


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
    return _validated(data, str(p))


def _validated(data: dict[str, Any], source: str) -> Suite:
    try:
        suite = Suite.model_validate({**data, "source": source})
    except ValidationError as e:
        raise SuiteError(_format_errors(e, source), hint="see suites/README.md for the schema") from None
    _check_names(suite, source)
    _check_report_dir(suite, source)
    return suite


#: what an evaluate-only suite keeps of the suite whose spectrum it evaluates
SPECTRUM_KEYS = ("version", "evaluation", "metrics", "resources", "report", "runner")


def load_eval_suite(spectrum: str | Path, model: dict[str, Any], dataset: dict[str, Any],
                    overrides: list[str] | dict[str, Any] | None = None) -> Suite:
    """The suite of ``robustmsa eval``: ``model`` (a ModelSpec mapping: a model that comes with its
    weights) on ``dataset`` (a DatasetSpec mapping), one ``evaluate`` trial, over the evaluation
    grid of the suite file ``spectrum`` (its ``evaluation``, metrics, resources, report and runner
    settings and its tracking URI, not its datasets, models, regimes or training). Its name is
    ``eval_<spectrum suite's name>``: one experiment per spectrum, every evaluated model in it."""
    p = Path(spectrum)
    base = _read_yaml(p)
    data: dict[str, Any] = {k: base[k] for k in SPECTRUM_KEYS if k in base}
    data["report"] = {**data.get("report", {}), "reference_model": None}
    data.update(name=f"eval_{base.get('name', p.stem)}", datasets=[dataset], models=[model],
                regimes=[{"name": "evaluate", "kind": "evaluate"}], seeds=[0],
                description=f"evaluate-only: models with their weights over the spectrum of {p}",
                tracking={"uri": (base.get("tracking") or {}).get("uri", TrackingSpec().uri)})
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return _validated(data, str(p))
