"""The Python API, for notebooks and scripts: run a suite, read any run's rows back.

    import robustmsa

    res = robustmsa.run("suites/smoke.yaml", training__epochs=1, seeds=[0])
    res.rows                     # tidy rows (one per trial, grid point and metric), a pandas DataFrame
    res.report_paths["table"]    # reports/smoke/results.md
    res.experiment, res.run_id   # the MLflow experiment and this invocation's parent run

    old = robustmsa.load_results("suites/smoke.yaml")                 # as the suite is defined now
    old = robustmsa.load_results("sqlite:///mlflow.db", "smoke")     # any experiment of any store

Overrides are those of ``robustmsa run SUITE key=value ...``, in three spellings that can be mixed:
a list of ``"key=value"`` strings (values parsed as YAML, ``overrides=["training.epochs=1"]``), a
dict with dotted or nested keys (``overrides={"training.epochs": 1}``), or keyword arguments with
``__`` for the dots (``training__epochs=1``). Later spellings win: the list, then the dict, then the
keywords. Everything is read back from the tracking store through :mod:`robustmsa.tracking`
(rows via :func:`robustmsa.reports.collect_rows` and :func:`robustmsa.reports.load_from_tracking`),
never from a run's memory, so the rows of ``run`` and of a later ``load_results`` are the same.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from .errors import RobustMSAError
from .reports import collect_rows
from .reports.load import NothingToReport, load_from_tracking
from .runner import RunSummary, run_suite
from .suite import Suite, load_eval_suite, load_suite, parse_overrides
from .tracking import Tracker

__all__ = ["Results", "run", "load_results", "evaluate", "resolve_overrides", "model_spec", "data_spec", "spectrum_file"]

Overrides = Sequence[str] | Mapping[str, Any] | None


@dataclass(frozen=True)
class Results:
    """What a run left in the tracking store, read back from it.

    ``rows``: the tidy rows of the model trials (columns ``dataset, model, regime, condition, seed,
    family, sweep, level_index, level, metric, value, trial_id, ...``), empty when nothing finished.
    ``trial_runs``: trial identity -> the MLflow run id its rows come from. ``run_id``: the parent
    run of this invocation (``run`` only; None when every trial was reused or for ``load_results``).
    ``summary``: counts and failures of the invocation (``run`` only).
    """

    suite: str
    rows: pd.DataFrame
    tracking_uri: str
    experiment: str
    experiment_id: str | None = None
    run_id: str | None = None
    trial_runs: dict[str, str] = field(default_factory=dict)
    report_paths: dict[str, str] = field(default_factory=dict)
    summary: RunSummary | None = None

    def __repr__(self) -> str:
        trials = self.rows["trial_id"].nunique() if "trial_id" in self.rows else 0
        return (f"Results(suite={self.suite!r}, {len(self.rows)} rows of {trials} trials, "
                f"experiment={self.experiment!r} in {self.tracking_uri})")


def _quiet_downloads() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as the CLI: no bar per artifact


def _nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"training.epochs": 1, "report": {"dir": "x"}}`` -> nested dicts."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = str(key).split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(value, Mapping):
            node[last] = _merge(node[last], _nest(value)) if isinstance(node.get(last), dict) else _nest(value)
        else:
            node[last] = value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolve_overrides(overrides: Overrides = None, **keyword_overrides: Any) -> dict[str, Any]:
    """The nested override dict of the three spellings (``"k.j=v"`` strings, a dotted or nested
    dict, ``k__j=v`` keywords), later ones winning."""
    if isinstance(overrides, str):
        overrides = [overrides]
    merged: dict[str, Any] = {}
    if isinstance(overrides, Mapping):
        merged = _nest(overrides)
    elif overrides:
        merged = parse_overrides(list(overrides))
    return _merge(merged, _nest({k.replace("__", "."): v for k, v in keyword_overrides.items()}))


def _suite(suite: str | Path | Suite, overrides: dict[str, Any]) -> Suite:
    if isinstance(suite, Suite):
        if overrides:
            raise ValueError("overrides apply to a suite file: pass its path (or load_suite(path, overrides))")
        return suite
    return load_suite(suite, overrides or None)


def _store(uri: str, experiment: str) -> tuple[str | None, dict[str, str]]:
    """The experiment's id and its trial identities -> latest FINISHED run ids (None, {} if absent)."""
    tracker = Tracker.existing(uri, experiment)
    if tracker is None:
        return None, {}
    return tracker.experiment_id, tracker.completed_trials()


def _results(suite: str, rows: pd.DataFrame, uri: str, experiment: str, **extra: Any) -> Results:
    experiment_id, runs = _store(uri, experiment)
    ids = set(rows["trial_id"]) if "trial_id" in rows else set()
    return Results(suite, rows, uri, experiment, experiment_id,
                   trial_runs={t: r for t, r in sorted(runs.items()) if t in ids}, **extra)


def run(
    suite: str | Path | Suite,
    overrides: Overrides = None,
    *,
    backend: str | None = None,
    ray_address: str | None = None,
    report: bool = True,
    quiet: bool = False,
    **keyword_overrides: Any,
) -> Results:
    """Run ``suite`` (a suite file, or a :class:`~robustmsa.suite.Suite` from ``load_suite``) as
    ``robustmsa run`` does: completed trials are reused, the rest trained and evaluated, everything
    tracked, the report written (``report=False`` skips it). ``backend`` is ``"ray"`` or ``"local"``
    (default: the suite's ``runner.backend``); ``quiet`` silences the progress output. Returns the
    suite's rows as read back from the store, with the report paths and the MLflow ids.

    >>> res = run("suites/smoke.yaml", training__epochs=1, backend="local")  # doctest: +SKIP
    """
    _quiet_downloads()
    s = _suite(suite, resolve_overrides(overrides, **keyword_overrides))
    summary = run_suite(s, ray_address=ray_address, backend=backend, make_report=report,
                        console=Console(stderr=True, quiet=quiet))
    return _results(s.name, collect_rows(s), s.tracking.uri, s.experiment, run_id=summary.parent_run_id,
                    report_paths=dict(summary.report_paths), summary=summary)


def _tracking_uri(source: str) -> str | None:
    """``source`` as a tracking URI (a ``.db`` file becomes ``sqlite:///<file>``), or None for a suite."""
    if "://" in source or source.startswith(("sqlite:", "file:", "databricks")):
        return source
    if source.endswith(".db"):
        return f"sqlite:///{source}"
    return None


def load_results(source: str | Path | Suite, experiment: str | None = None, overrides: Overrides = None,
                 **keyword_overrides: Any) -> Results:
    """The rows of past runs, read back from the tracking store.

    ``source`` is a suite (file or :class:`~robustmsa.suite.Suite`; overrides as for :func:`run`):
    the rows of its cells as the suite is defined now, from its ``tracking.uri`` (``experiment``
    overrides ``tracking.experiment``). Or a tracking URI (``sqlite:///mlflow.db``,
    ``http://host:5000``, or a ``.db`` file) with the ``experiment`` to read: every finished trial
    of it, the latest run of each cell. Rows are empty when nothing has finished yet.
    """
    _quiet_downloads()
    uri = _tracking_uri(str(source)) if not isinstance(source, Suite) else None
    if uri is None:
        s = _suite(source, resolve_overrides(overrides, **keyword_overrides))
        if experiment:
            s = s.model_copy(update={"tracking": s.tracking.model_copy(update={"experiment": experiment})})
        return _results(s.name, collect_rows(s), s.tracking.uri, s.experiment)
    if not experiment:
        raise RobustMSAError(f"{uri}: which experiment? pass experiment=<name> (a suite's name by default)")
    if Tracker.existing(uri, experiment) is None:
        raise RobustMSAError(f"{uri}: no experiment {experiment!r} in the tracking store",
                             hint="check the URI and the name (the suite's name, or its tracking.experiment)")
    try:
        data = load_from_tracking(uri, experiment, predictions=False)
        rows, name = data.rows, data.suite
    except NothingToReport:
        rows, name = pd.DataFrame(), experiment
    return _results(name, rows, uri, experiment)


# ----------------------------------------------------------------------------- evaluate-only


def spectrum_file(spectrum: str | Path | None) -> Path:
    """The suite file whose evaluation grid ``robustmsa eval`` uses: a path, or a suite's name
    (``smoke`` -> suites/smoke.yaml); default the main suite, suites/continuous_spectrum.yaml."""
    text = str(spectrum or "continuous_spectrum")
    for cand in (Path(text), Path("suites") / f"{text}.yaml", Path(__file__).resolve().parents[1] / "suites" / f"{text}.yaml"):
        if cand.is_file():
            return cand
    raise RobustMSAError(f"--spectrum: no suite file {text!r}", hint="give a suite file or a name from `robustmsa ls suites`")


def data_spec(data: Any) -> dict[str, Any]:
    """A dataset as a suite entry: ``"name"`` or ``"name:{params as YAML}"`` (e.g. ``mmsa:{path: x.pkl}``),
    a mapping ``{name, params}``, or a loaded dataset (kept in this process: dataset ``memory``)."""
    import yaml

    from .data.dataset import MSADataset
    from .datasets import remember_dataset

    if isinstance(data, MSADataset):
        return {"name": "memory", "params": {"key": remember_dataset(data), "label": data.info.get("label") or "data"}}
    if isinstance(data, Mapping):
        return dict(data)
    name, _, rest = str(data).partition(":")
    try:
        params = yaml.safe_load(rest) if rest.strip() else {}
    except yaml.YAMLError as e:
        raise RobustMSAError(f"--data {data}: the params after ':' are not YAML ({str(e).splitlines()[0]})",
                             hint="e.g. --data 'mmsa:{path: data/MOSI/aligned_50.pkl}'") from None
    if not isinstance(params, dict):
        raise RobustMSAError(f"--data {data}: the params after ':' must be a YAML mapping",
                             hint="e.g. --data 'synthetic_trimodal:{seed: 0, n_test: 64}'")
    return {"name": name, "params": params}


def _checkpoint_cache() -> Path:
    from .data.synthetic.cache import default_cache_dir

    return default_cache_dir() / "checkpoints"


def _robustmsa_checkpoint(path: Path, label: str | None) -> dict[str, Any]:
    from .models.external import file_sha256, read_weights

    inner = read_weights(str(path), f"checkpoint {path}").get("model", "model")
    return {"name": "checkpoint", "label": label or f"{inner}@{file_sha256(path)[:8]}",
            "params": {"path": str(path.resolve())}}


def model_spec(model: Any, tracking_uri: str = "sqlite:///mlflow.db", label: str | None = None) -> dict[str, Any]:
    """A model that comes with its weights as a suite entry (a ModelSpec mapping). ``model`` is

    - ``run:<mlflow run id>``: that trial's ``checkpoint/model.pt`` (from the store at ``tracking_uri``);
    - a path to a robustmsa ``model.pt``;
    - ``mmsa:<model>:<checkpoint.pth>``: a model trained by MMSA (tfn, lf_dnn, lmf, mfn, mult);
    - ``module:attribute`` or ``module:attribute@weights.pt``: your own model (docs/byo_model.md);
    - a YAML mapping ``{name: ..., params: {...}}`` or a dict (a suite's models entry as written);
    - an ``nn.Module`` or a callable of the batch (kept in this process).
    """
    import yaml

    from .models.external import remember_model

    if isinstance(model, Mapping):
        return dict(model)
    if not isinstance(model, (str, Path)):
        if not callable(model):
            raise RobustMSAError(f"model {type(model).__name__}: not callable; expected an nn.Module, a callable of "
                                 "the batch or a model spec string", hint="see docs/byo_model.md")
        shown = label or getattr(model, "label", None) or type(model).__name__  # a function: "function"
        shown = getattr(model, "__name__", shown) if shown == "function" else shown
        return {"name": "external", "label": str(shown), "params": {"entry": remember_model(model)}}
    text = str(model)
    if text.startswith("{"):
        spec = yaml.safe_load(text)
        return {**spec, **({"label": label} if label else {})}
    if text.startswith("run:"):
        run_id = text[4:]
        from .tracking import download_run_checkpoint

        path = download_run_checkpoint(tracking_uri, run_id, _checkpoint_cache() / run_id)
        spec = _robustmsa_checkpoint(path, label)
        return {**spec, "label": label or f"{spec['label'].split('@')[0]}@{run_id[:8]}"}
    if text.startswith("mmsa:"):
        _, name, ck = text.split(":", 2) if text.count(":") >= 2 else (None, text[5:], "")
        from .models.external import file_sha256

        sha = file_sha256(ck)[:8] if Path(ck).is_file() else "?"
        return {"name": "mmsa", "label": label or f"MMSA-{name}@{sha}",
                "params": {"model": name, "checkpoint": str(Path(ck).resolve()) if ck else ""}}
    if Path(text).is_file():
        return _robustmsa_checkpoint(Path(text), label)
    entry, _, weights = text.partition("@")
    if ":" in entry and Path(entry).suffix not in (".pt", ".pth"):
        params = {"entry": entry, **({"checkpoint": str(Path(weights).resolve())} if weights else {})}
        return {"name": "external", "label": label or entry.rsplit(":", 1)[1], "params": params}
    raise RobustMSAError(f"model {text!r}: not a checkpoint file, run:<id>, mmsa:<model>:<file> or module:attribute",
                         hint="e.g. robustmsa eval run:<run id> or mypkg.models:build@weights.pt (docs/byo_model.md)")


def evaluate(
    model: Any,
    data: Any,
    spectrum: str | Path | None = None,
    *,
    seed: int | None = None,
    backend: str = "local",
    overrides: Overrides = None,
    quiet: bool = False,
    **keyword_overrides: Any,
) -> Results:
    """Evaluate a model that comes with its weights over a suite's spectrum (``robustmsa eval``).

    ``model``: an ``nn.Module`` or callable (the protocol of docs/byo_model.md) or a spec string
    (:func:`model_spec`: ``run:<id>``, a ``model.pt``, ``mmsa:tfn:<file>``, ``module:attribute``).
    ``data``: a dataset name (``"synthetic_trimodal"``, ``"mmsa:{path: x.pkl}"``), a mapping or a
    loaded dataset. ``spectrum``: the suite file (or name) whose evaluation grid is used (default
    the main suite's). ``seed``: the corruption draws' seed (default the spectrum's). ``backend``:
    ``"local"`` (in-process, the default: no Ray) or ``"ray"`` (not for in-memory models or data).
    An in-memory model is named in tables by its ``label`` attribute, else its class (or function) name.
    Tracked like any trial (experiment ``eval_<spectrum>``); a rerun with the same weights reuses it.

    >>> res = evaluate(my_module, "synthetic_trimodal", spectrum="smoke")  # doctest: +SKIP
    """
    _quiet_downloads()
    extra = resolve_overrides(overrides, **keyword_overrides)
    if seed is not None:
        extra = _merge(extra, {"evaluation": {"seed": int(seed)}})
    uri = (extra.get("tracking") or {}).get("uri") or "sqlite:///mlflow.db"
    mspec, dspec = model_spec(model, uri), data_spec(data)
    in_memory = str(mspec.get("params", {}).get("entry", "")).startswith("object:") or dspec["name"] == "memory"
    if in_memory and backend == "ray":
        raise RobustMSAError("evaluate(backend='ray'): an in-memory model or dataset lives in this process only",
                             hint="use backend='local', or give the model as 'module:attribute' and the data by name")
    s = load_eval_suite(spectrum_file(spectrum), mspec, dspec, extra or None)
    summary = run_suite(s, backend=backend, make_report=False, console=Console(stderr=True, quiet=quiet))
    return _results(s.name, collect_rows(s), s.tracking.uri, s.experiment, run_id=summary.parent_run_id,
                    summary=summary)
