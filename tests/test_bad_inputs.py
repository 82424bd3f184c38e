"""A corpus of bad inputs: each one is refused with ONE line on stderr (``error: ...``, plus an
optional ``hint: ...`` line), exit code 2, no traceback, and nothing written to the tracking store.

Groups: suite files (YAML, encodings, includes, types, unknown keys at every level, duplicates,
ranges, family parameters, sweeps, specialist conditions, samplers, names, report folders),
overrides, tracking URIs (malformed ones; reachability is tested elsewhere), MMSA pickles
(malformed and hostile), raw clip folders, and CLI commands (in-process through
``robustmsa.cli.main``, a few through the real entry point). Most cases use ``validate``, which
reaches the same checks as ``run`` without starting anything; the ``run`` cases show that errors
found before running leave the store untouched.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from robustmsa.cli import main

BASE = "name: bad\nmodels: [{name: late_fusion}]\n"


@dataclass(frozen=True)
class Case:
    """``files`` are written into the working folder (``s.yaml``: the suite, BASE by default);
    ``args`` follow ``<command> s.yaml``; ``says``: parts of the error line."""

    args: tuple[str, ...] = ()
    says: tuple[str, ...] = ()
    files: dict[str, str | bytes] = field(default_factory=dict)
    command: str = "validate"
    suite: str = "s.yaml"


def suite(text: str, *says: str, **files: str | bytes) -> Case:
    return Case(says=says, files={"s.yaml": text, **files})


def override(*args: str, says: tuple[str, ...] = ()) -> Case:
    return Case(args=args, says=says)


def _pickle(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=4)


class _Reduce:
    """Pickles as ``func(*args)``: what a hostile pickle runs on a plain ``pickle.load``."""

    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def mmsa(path: str, *says: str, **files: str | bytes) -> Case:
    return Case(args=(f"datasets=[{{name: mmsa, params: {{path: {path}}}}}]",), says=says, files=files)


def raw(params: str, *says: str, **files: str | bytes) -> Case:
    return Case(args=(f"datasets=[{{name: raw, params: {params}}}]",), says=says, files=files)


MANIFEST = "id,split,label,audio,video,transcript\n"
SPEC = "regimes=[{name: s, kind: specialist, conditions: "

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- YAML and encodings
    "yaml: unclosed bracket": suite("name: a\nmodels: [\n", "not valid YAML"),
    "yaml: tab indentation": suite("name: a\nmodels:\n\t- name: x\n", "not valid YAML"),
    "yaml: duplicate key": suite(BASE + "seeds: [0]\nseeds: [1]\n", "key 'seeds' given twice"),
    "yaml: duplicate nested key": suite(BASE + "training: {epochs: 1, epochs: 2}\n", "key 'epochs' given twice"),
    "yaml: top level list": suite("- a\n- b\n", "must be a mapping", "got list"),
    "yaml: top level scalar": suite("just words\n", "must be a mapping", "got str"),
    "yaml: empty file": suite("", "missing required key 'models'"),
    "encoding: latin-1": suite("name: caf\xe9\n".encode("latin-1") + BASE.encode(), "not UTF-8"),  # type: ignore[arg-type]
    "encoding: utf-16": suite(BASE.encode("utf-16"), "not UTF-8"),  # type: ignore[arg-type]
    "encoding: binary": suite(b"\x00\xff\xfe\x80garbage", "not UTF-8"),  # type: ignore[arg-type]
    # ---------------------------------------------------------------- includes and paths
    "include: a number": suite(BASE + "include: 3\n", "key 'include'", "got 3"),
    "include: a number in a list": suite(BASE + "include: [b.yaml, 3]\n", "key 'include'"),
    "include: a mapping": suite(BASE + "include: {a: 1}\n", "key 'include'"),
    "include: missing file": suite(BASE + "include: nope.yaml\n", "key 'include': included file", "nope.yaml does not exist"),
    "include: cycle": suite(BASE + "include: b.yaml\n", "include cycle", **{"b.yaml": "include: s.yaml\n"}),
    "include: a directory": suite(BASE + "include: sub\n", "is a directory", **{"sub/x.yaml": BASE}),
    "include: not UTF-8": suite(BASE + "include: b.yaml\n", "b.yaml: not UTF-8", **{"b.yaml": b"name: \xff\n"}),
    "path: a directory": Case(suite="sub", says=("sub: suite file is a directory",), files={"sub/x.yaml": BASE}),
    "path: missing": Case(suite="nope.yaml", says=("nope.yaml: suite file does not exist",)),
    # ---------------------------------------------------------------- wrong types
    "type: name a list": suite("name: [1, 2]\nmodels: [{name: late_fusion}]\n", "key 'name'", "valid string"),
    "type: version text": suite(BASE + "version: abc\n", "key 'version'"),
    "type: seeds a scalar": suite(BASE + "seeds: 0\n", "key 'seeds'", "valid list"),
    "type: models a string": suite("name: a\nmodels: late_fusion\n", "key 'models'"),
    "type: training a number": suite(BASE + "training: 3\n", "key 'training'"),
    "type: epochs fractional": suite(BASE + "training: {epochs: 1.5}\n", "key 'training.epochs'"),
    "type: levels text": suite(BASE + "evaluation: {levels: high}\n", "key 'evaluation.levels'"),
    "type: cpus text": suite(BASE + "resources: {cpus_per_trial: many}\n", "key 'resources.cpus_per_trial'"),
    "type: regime a number": suite(BASE + "regimes: [3]\n", "key 'regimes.0'"),
    "type: family a number": suite(BASE + "evaluation: {families: [3]}\n", "key 'evaluation.families.0'"),
    # ---------------------------------------------------------------- unknown keys at every level
    "unknown: top level": suite(BASE + "modelz: []\n", "unknown key 'modelz'", "allowed: datasets"),
    "unknown: training": suite(BASE + "training: {epochz: 3}\n", "unknown key 'training.epochz'", "epochs"),
    "unknown: evaluation": suite(BASE + "evaluation: {sweep: [joint]}\n", "unknown key 'evaluation.sweep'", "sweeps"),
    "unknown: model entry": suite("name: a\nmodels: [{name: late_fusion, overridez: {}}]\n",
                                  "unknown key 'models.0.overridez'"),
    "unknown: dataset entry": suite(BASE + "datasets: [{name: synthetic, param: {}}]\n",
                                    "unknown key 'datasets.0.param'"),
    "unknown: regime": suite(BASE + "regimes: [{name: s, kind: spectrum, samplr: {}}]\n",
                             "unknown key 'regimes.0.samplr'"),
    "unknown: sampler": suite(BASE + "regimes: [{name: s, kind: spectrum, sampler: {family: [noise]}}]\n",
                              "unknown key 'regimes.0.sampler.family'"),
    "unknown: condition": suite(BASE + "regimes: [{name: s, kind: specialist, conditions: [{family: noise, "
                                "level: 0.5, lvl: 1}]}]\n", "unknown key 'regimes.0.conditions.0.lvl'"),
    "unknown: tracking": suite(BASE + "tracking: {urii: x}\n", "unknown key 'tracking.urii'"),
    "unknown: report": suite(BASE + "report: {dirr: x}\n", "unknown key 'report.dirr'"),
    "unknown: runner": suite(BASE + "runner: {backends: ray}\n", "unknown key 'runner.backends'"),
    "unknown: resources": suite(BASE + "resources: {gpus: 1}\n", "unknown key 'resources.gpus'"),
    "unknown: model name": override("models=[{name: late_fusin}]", says=("unknown name 'late_fusin'", "late_fusion")),
    "unknown: dataset name": override("datasets=[{name: synthetc}]", says=("unknown name 'synthetc'",)),
    "unknown: model config key": override("models=[{name: late_fusion, overrides: {hiden: 3}}]",
                                          says=("models.0.overrides.hiden", "did you mean head_hidden")),
    "unknown: dataset param": override("datasets=[{name: synthetic, params: {n_trains: 3}}]",
                                       says=("unknown synthetic config key 'n_trains'",)),
    "unknown: metric": override("metrics=[mae, acuracy]", says=("unknown metric 'acuracy'", "accuracy")),
    "metric of another family": override("metrics=[mae, accuracy]",
                                         says=("metric 'accuracy' is not computed for dataset", "family mosi")),
    # ---------------------------------------------------------------- duplicates (one identity, twice)
    "duplicate: seeds": override("seeds=[0, 0]", says=("seeds must be unique", "repeated: 0")),
    "duplicate: model labels": override("models=[{name: late_fusion}, {name: late_fusion}]",
                                        says=("labels must be unique",)),
    "duplicate: datasets": override("datasets=[{name: synthetic}, {name: synthetic, params: {seed: 1}}]",
                                    says=("dataset names", "repeated: synthetic")),
    "duplicate: regime names": override("regimes=[clean, {name: clean, kind: spectrum}]",
                                        says=("regime names must be unique",)),
    "duplicate: conditions": override(SPEC + "[{family: noise, level: 0.5}, {family: noise, level: 0.5, "
                                      "sweep: joint}]}]", says=("specialist conditions must be unique",)),
    "duplicate: families": override("evaluation.families=[noise, {name: noise}]", says=("repeated: noise",)),
    "duplicate: sweeps": override("evaluation.sweeps=[audio, audio]", says=("sweeps must be unique",)),
    "duplicate: metrics": override("metrics=[mae, mae]", says=("metrics must be unique",)),
    # ---------------------------------------------------------------- out of range
    "range: seed too large": override("seeds=[99999999999999999999]", says=("key 'seeds.0'", "2147483648")),
    "range: seed 2**31": override("seeds=[2147483648]", says=("key 'seeds.0'",)),
    "range: seed negative": override("seeds=[-1]", says=("key 'seeds.0'",)),
    "range: evaluation seed": override("evaluation.seed=4294967296", says=("key 'evaluation.seed'",)),
    "range: lr inf": override("training.lr=.inf", says=("key 'training.lr'", "finite")),
    "range: lr nan": override("training.lr=.nan", says=("key 'training.lr'",)),
    "range: lr zero": override("training.lr=0", says=("key 'training.lr'",)),
    "range: epochs zero": override("training.epochs=0", says=("key 'training.epochs'",)),
    "range: level above 1": override("evaluation.levels=[1.5, 0]", says=("outside [0, 1]",)),
    "range: digits": override("report.digits=9", says=("key 'report.digits'",)),
    "range: qmc points": override("evaluation.qmc_points=1000000000", says=("key 'evaluation.qmc_points'",)),
    "range: cpus zero": override("resources.cpus_per_trial=0", says=("key 'resources.cpus_per_trial'",)),
    "range: cpus inf": override("resources.cpus_per_trial=.inf", says=("key 'resources.cpus_per_trial'",)),
    "range: p_clean_sample": override("regimes=[{name: s, kind: spectrum, sampler: {p_clean_sample: 2}}]",
                                      says=("p_clean_sample",)),
    "range: alpha": override("report.alpha=1", says=("key 'report.alpha'",)),
    # ---------------------------------------------------------------- corruption families and their parameters
    "family: unknown name": override("evaluation.families=[nois]", says=("unknown name 'nois'", "noise")),
    "family: unknown parameter": override("evaluation.families=[{name: noise, snr: 3}]",
                                          says=("unknown parameter(s) snr of family 'noise'",)),
    "family: bad value": override("evaluation.families=[{name: blur, c: -1}]", says=("family 'blur'", "c (sigma")),
    "family: bad choice": override("evaluation.families=[{name: drop, text_token: xyz}]", says=("text_token",)),
    "family: value of wrong type": override("evaluation.families=[{name: blur, c: abc}]", says=("family 'blur'",)),
    "family: compose of a number": override("evaluation.families=[{name: compose, families: 3}]",
                                            says=("family 'compose'",)),
    "family: compose of an unknown": override("evaluation.families=[{name: compose, families: [bogus]}]",
                                              says=("family 'compose'", "bogus")),
    "family: mapping without name": override("evaluation.families=[{snr: 3}]", says=("'name' key",)),
    "family: raw in the sampler": override("regimes=[{name: s, kind: spectrum, sampler: {families: [audio_noise]}}]",
                                           says=("feature-level", "audio_noise")),
    "family: raw bad value": override("evaluation.families=[{name: frame_blur, max_sigma: -2}]",
                                      says=("family 'frame_blur'", "max_sigma")),
    "family: in a validation grid": override("regimes=[{name: s, kind: spectrum, validation: {families: "
                                             "[{name: noise, x: 1}]}}]", says=("regimes.0.validation.families.0",)),
    # ---------------------------------------------------------------- sweeps
    "sweep: repeated modality": override("evaluation.sweeps=[audio+audio]", says=("unknown sweep 'audio+audio'",)),
    "sweep: unknown": override("evaluation.sweeps=[sound]", says=("unknown sweep 'sound'",)),
    "sweep: none": override("evaluation.sweeps=[]", says=("at least one sweep",)),
    "sweep: no family": override("evaluation.families=[]", says=("at least one corruption family",)),
    "sweep: none applies": override("evaluation.families=[audio_noise]", "evaluation.sweeps=[text]",
                                    says=("corrupts only audio",)),
    # ---------------------------------------------------------------- specialist conditions and samplers
    "specialist: no conditions": override("regimes=[{name: s, kind: specialist}]", says=("needs 'conditions'",)),
    "specialist: product sweep": override(SPEC + "[{family: noise, sweep: audio+vision, level: 0.5}]}]",
                                          says=("unknown sweep 'audio+vision'",)),
    "specialist: level above 1": override(SPEC + "[{family: noise, level: 2}]}]", says=("outside [0, 1]",)),
    "specialist: missing level": override(SPEC + "[{family: noise}]}]", says=("missing required key",)),
    "specialist: unknown family": override(SPEC + "[{family: nosie, level: 0.5}]}]", says=("unknown name 'nosie'",)),
    "specialist: conditions on clean": override("regimes=[{name: c, kind: clean, conditions: [{family: noise, "
                                                "level: 0.5}]}]", says=("belong to a specialist regime",)),
    "specialist: unknown kind": override("regimes=[{name: s, kind: specialists}]", says=("key 'regimes.0.kind'",)),
    "sampler: weights length": override("regimes=[{name: s, kind: spectrum, sampler: {weights: [1]}}]",
                                        says=("one entry per family",)),
    "sampler: negative weight": override("regimes=[{name: s, kind: spectrum, sampler: {weights: [-1, 1, 1]}}]",
                                         says=("weights must be >= 0",)),
    "sampler: rho range reversed": override("regimes=[{name: s, kind: spectrum, sampler: {rho_low: 0.9, "
                                            "rho_high: 0.1}}]", says=("must not exceed rho_high",)),
    # ---------------------------------------------------------------- overrides
    "override: no equals sign": override("training.epochs", says=("not of the form key=value",)),
    "override: empty key": override("=3", says=("empty part",)),
    "override: leading dot": override(".a=3", says=("empty part",)),
    "override: double dot": override("training..epochs=3", says=("empty part",)),
    "override: inside a scalar": override("training=3", "training.epochs=2",
                                          says=("inside 'training'", "earlier override set to 3")),
    "override: scalar over keys": override("training.epochs=2", "training=3", says=("replaces 'training'",)),
    "override: unknown key": override("training.epochz=3", says=("unknown key 'training.epochz'",)),
    "override: index into a list": override("models.0.name=qa_moe", says=("key 'models'",)),
    "override: unparsable value": override("seeds=[0", says=("key 'seeds'",)),
    # ---------------------------------------------------------------- names and the report folder
    "name: empty": override("name=", says=("suite name ''",)),
    "name: a path": override("name=a/b", says=("suite name 'a/b'",)),
    "name: hidden": override("name=..", says=("suite name '..'",)),
    "report.dir: a file": Case(args=("report.dir=afile",), says=("key 'report.dir'", "afile is a file"),
                               files={"afile": "x"}),
    "report.dir: under a file": Case(args=("report.dir=afile/reports",), says=("afile is a file",),
                                     files={"afile": "x"}),
    "report.dir: suite folder a file": Case(args=("report.dir=out",), says=("out/bad is a file",),
                                            files={"out/bad": "x"}),
    # ---------------------------------------------------------------- malformed tracking URIs
    "uri: unknown scheme": override("tracking.uri=foo://bar", says=("unknown scheme 'foo'",)),
    "uri: sqlite without file": override("tracking.uri=sqlite://", says=("needs a file",)),
    "uri: sqlite two slashes": override("tracking.uri=sqlite://x.db", says=("needs a file",)),
    "uri: empty": override("tracking.uri=", says=("empty",)),
    "uri: control character": override("tracking.uri='sqlite:///a\tb.db'", says=("control characters",)),
    "uri: http without host": override("tracking.uri=http://", says=("names no host",)),
    "uri: port not a number": override("tracking.uri=http://localhost:port", says=("port",)),
    "uri: port out of range": override("tracking.uri=http://localhost:99999", says=("port",)),
    "uri: scheme without slashes": override("tracking.uri=sqlite:mlflow.db", says=("<scheme>://",)),
    "uri: postgres without host": override("tracking.uri=postgresql:///db", says=("names no host",)),
    # ---------------------------------------------------------------- MMSA pickles
    "pickle: no path": override("datasets=[{name: mmsa}]", says=("params.path is required",)),
    "pickle: missing file": mmsa("nope.pkl", "nope.pkl: file not found"),
    "pickle: a directory": mmsa("d", "not a file", **{"d/x": "x"}),
    "pickle: empty": mmsa("e.pkl", "not a readable pickle", **{"e.pkl": b""}),
    "pickle: garbage": mmsa("g.pkl", "not a readable pickle", **{"g.pkl": b"garbage, not a pickle"}),
    "pickle: truncated": mmsa("t.pkl", "not a readable pickle", **{"t.pkl": _pickle({"train": list(range(99))})[:40]}),
    "pickle: top level list": mmsa("l.pkl", "top level is a list", **{"l.pkl": _pickle([1, 2])}),
    "pickle: splits missing": mmsa("m.pkl", "m.pkl", **{"m.pkl": _pickle({"train": {}})}),
    "pickle: hostile os.system": mmsa("h.pkl", "refused to unpickle",
                                      **{"h.pkl": _pickle(_Reduce(os.system, ("touch pwned",)))}),
    "pickle: hostile eval": mmsa("h.pkl", "refused to unpickle",
                                 **{"h.pkl": _pickle(_Reduce(eval, ("open('pwned', 'w').close()",)))}),
    "pickle: hostile getattr chain": mmsa("h.pkl", "refused to unpickle", **{"h.pkl": (
        b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(Vtouch pwned\ntR.")}),
    # ---------------------------------------------------------------- raw clip folders
    "raw: no path": raw("{}", "params.path is required"),
    "raw: path missing": raw("{path: nope}", "nope does not exist"),
    "raw: empty folder": raw("{path: clips}", "holds no clips", **{"clips/readme.txt": "x"}),
    "raw: manifest lacks columns": raw("{path: m.csv}", "lacks column(s)", **{"m.csv": "id,split,label\nx,train,1\n"}),
    "raw: manifest without rows": raw("{path: m.csv}", "has no rows", **{"m.csv": MANIFEST}),
    "raw: label not a number": raw("{path: m.csv}", "label 'oops' is not a finite number",
                                   **{"m.csv": MANIFEST + "x,train,oops,a.wav,v.mp4,hi\n"}),
    "raw: files missing": raw("{path: m.csv}", "does not exist", **{"m.csv": MANIFEST + "x,train,1,a.wav,v.mp4,hi\n"}),
    "raw: unknown parameter": raw("{path: m.csv, fsp: 3}", "unknown parameter(s) ['fsp']", **{"m.csv": MANIFEST}),
    "raw: bad option": raw("{path: m.csv, fps: -1}", "fps", **{"m.csv": MANIFEST + "x,train,1,a.wav,v.mp4,hi\n"}),
    # ---------------------------------------------------------------- commands: run and report stop before the store
    "run: bad suite": Case(command="run", says=("not valid YAML",), files={"s.yaml": "name: [\n"}),
    "run: duplicate seeds": Case(command="run", args=("seeds=[1, 1]",), says=("seeds must be unique",)),
    "run: data error": Case(command="run", args=("datasets=[{name: mmsa, params: {path: nope.pkl}}]",),
                            says=("nope.pkl: file not found",)),
    "run: report.dir a file": Case(command="run", args=("report.dir=afile",), says=("afile is a file",),
                                   files={"afile": "x"}),
    "run: malformed uri": Case(command="run", args=("tracking.uri=mysql://",), says=("names no host",)),
    "run: directory as suite": Case(command="run", suite="sub", says=("is a directory",), files={"sub/a.yaml": BASE}),
    "report: bad override": Case(command="report", args=("training=3", "training.epochs=1"), says=("inside 'training'",)),
    "report: report.dir a file": Case(command="report", args=("report.dir=afile",), says=("afile is a file",),
                                      files={"afile": "x"}),
    "report: missing suite": Case(command="report", suite="nope.yaml", says=("does not exist",)),
    "report: not UTF-8": Case(command="report", says=("not UTF-8",), files={"s.yaml": b"\xff\xfe"}),
}


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def assert_one_line_error(rc: int, err: str, says: tuple[str, ...] = ()) -> None:
    """Exit 2; stderr is ``error: ...`` on one line, optionally followed by one ``hint: ...`` line."""
    lines = err.strip("\n").splitlines()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
    for part in says:
        assert part in lines[0], (part, lines[0])


def assert_store_untouched(root: Path) -> None:
    """No store, run folder or report was created (the suites point the store at ``root/store.db``)."""
    left = sorted(p.name for p in root.iterdir())
    assert not {"store.db", "mlflow.db", "mlruns", "reports", "pwned"} & set(left), left


def test_the_corpus_is_large_and_covers_every_group() -> None:
    groups = {name.split(":")[0] for name in CASES}
    assert len(CASES) >= 60
    assert {"yaml", "encoding", "include", "type", "unknown", "duplicate", "range", "family", "sweep",
            "specialist", "sampler", "override", "uri", "pickle", "raw", "run", "report"} <= groups


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, {"s.yaml": BASE, **case.files})
    store = () if any(a.startswith("tracking.uri=") for a in case.args) else (f"tracking.uri=sqlite:///{tmp_path}/store.db",)
    argv = [case.command, case.suite, *store, *case.args]
    if case.command == "run":
        argv += ["--backend", "local"]
    rc = main(argv)
    assert_one_line_error(rc, capsys.readouterr().err, case.says)
    assert_store_untouched(tmp_path)


def test_debug_still_raises(tmp_path: Path) -> None:
    from robustmsa.errors import SuiteError

    (tmp_path / "s.yaml").write_text(BASE + "include: 3\n")
    with pytest.raises(SuiteError, match="key 'include'"):
        main(["--debug", "validate", str(tmp_path / "s.yaml")])


def test_an_existing_store_gets_no_new_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A store that exists already: a run refused before running adds no experiment and no run."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/existing.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("other")
    before = [e.name for e in client.search_experiments()]
    (tmp_path / "s.yaml").write_text(BASE)
    capsys.readouterr()  # MLflow's own lines about creating the store
    for args in (["seeds=[0, 0]"], ["datasets=[{name: mmsa, params: {path: nope.pkl}}]"]):
        rc = main(["run", "s.yaml", f"tracking.uri={uri}", "--backend", "local", *args])
        assert_one_line_error(rc, capsys.readouterr().err)
    assert [e.name for e in client.search_experiments()] == before
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_an_argument_parser_error_exits_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """Flags and arguments argparse refuses: one error line naming the command, a hint to -h."""
    for argv in (["validate"], ["frobnicate"], ["run", "s.yaml", "--backend", "slurm"], ["ls", "modelz"],
                 ["validate", "s.yaml", "--allow-partial"], ["report", "s.yaml", "--allow-partial=yes"]):
        assert main(argv) == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: robustmsa") and lines[1].startswith("hint: "), argv


SUBPROCESS = {
    "directory as suite": (["validate", "sub"], "is a directory"),
    "not UTF-8": (["validate", "latin1.yaml"], "not UTF-8"),
    "conflicting overrides": (["validate", "s.yaml", "training=3", "training.epochs=2"], "inside 'training'"),
    "include a number": (["run", "inc.yaml", "--backend", "local"], "key 'include'"),
    "malformed uri on report": (["report", "s.yaml", "tracking.uri=foo://x", "--allow-partial"], "unknown scheme"),
}


@pytest.mark.parametrize("name", list(SUBPROCESS))
def test_real_entry_point(name: str, tmp_path: Path, repo: Path) -> None:
    argv, says = SUBPROCESS[name]
    _write(tmp_path, {"s.yaml": BASE, "sub/a.yaml": BASE, "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
                      "inc.yaml": BASE + "include: 3\n"})
    env = {**os.environ, "PYTHONPATH": str(repo)}
    exe = Path(sys.executable).with_name("robustmsa")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "robustmsa.cli"]
    proc = subprocess.run([*cmd, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, (says,))
    assert {p.name for p in tmp_path.iterdir()} == {"s.yaml", "sub", "latin1.yaml", "inc.yaml"}
