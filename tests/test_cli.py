"""CLI: main(argv) over the library; input errors are one line plus a hint, not a traceback."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from robustmsa.cli import main


def test_ls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "models"]) == 0
    out = capsys.readouterr().out
    assert "qa_moe" in out and "late_fusion" in out
    assert main(["ls", "datasets"]) == 0
    assert "synthetic" in capsys.readouterr().out
    assert main(["ls", "corruptions"]) == 0
    out = capsys.readouterr().out
    assert "noise" in out and "drop" in out and "missing" in out
    assert main(["ls", "suites"]) == 0
    assert "continuous_spectrum.yaml" in capsys.readouterr().out


def test_validate_prints_grid(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(repo / "suites" / "smoke.yaml")]) == 0
    out = capsys.readouterr().out
    assert "trials: 4" in out
    assert "evaluation points per trial: 12" in out
    assert "estimated cost" in out


def test_unknown_suite_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "missing.yaml" in err and "Traceback" not in err
    assert "hint:" in err


def test_wrong_key_is_one_line_with_allowed_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nmodels: [{name: qa_moe}]\nevaluation: {sweep: [joint]}\n")
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "evaluation.sweep" in err and "sweeps" in err and "Traceback" not in err


def test_bad_override(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(repo / "suites" / "smoke.yaml"), "training.epochz=3"]) == 2
    assert "training.epochz" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path: Path) -> None:
    from robustmsa.errors import SuiteError

    with pytest.raises(SuiteError):
        main(["--debug", "validate", str(tmp_path / "missing.yaml")])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import robustmsa

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"robustmsa {robustmsa.__version__}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_subcommand(tmp_path: Path, where: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Same semantics in both positions: the traceback is raised; without the flag, exit 2 and one line."""
    from robustmsa.errors import SuiteError

    missing = str(tmp_path / "missing.yaml")
    argv = ["--debug", "validate", missing] if where == "before" else ["validate", missing, "--debug"]
    with pytest.raises(SuiteError):
        main(argv)
    argv = ["--debug", "ls", "models"] if where == "before" else ["ls", "models", "--debug"]
    assert main(argv) == 0  # a command that succeeds is unaffected
    capsys.readouterr()
    assert main(["validate", missing]) == 2
    assert "Traceback" not in capsys.readouterr().err


def _walk(parser: argparse.ArgumentParser, prog: str = "robustmsa") -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                out += _walk(sp, f"{prog} {name}")
            out += [(f"{prog} {choice.dest}", choice) for choice in action._choices_actions]
        else:
            out.append((prog, action))
    return out


def test_every_argument_of_every_subcommand_has_help() -> None:
    from robustmsa.cli import build_parser

    actions = _walk(build_parser())
    assert {p for p, _ in actions} >= {"robustmsa", "robustmsa run", "robustmsa validate", "robustmsa ls",
                                       "robustmsa report"}
    missing = [f"{p}: {a.dest}" for p, a in actions if not (a.help and a.help.strip())]
    assert not missing, "arguments without help text: " + ", ".join(missing)


def test_ls_corruptions_is_a_terminal_table(capsys: pytest.CaptureFixture[str]) -> None:
    """A table, not the Markdown of docs/corruptions.md; piped, no row is cut to 80 columns."""
    from corruptions import FAMILIES

    assert main(["ls", "corruptions"]) == 0
    out = capsys.readouterr().out
    assert "|---" not in out and "# Corruption families" not in out and "`" not in out
    lines = out.splitlines()
    for name in FAMILIES.names():
        row = next(line for line in lines if line.split() and line.split()[0] == name)
        assert "…" not in row
    noise = next(line for line in lines if line.split() and line.split()[0] == "noise").split()
    assert noise[-5:] == ["+inf", "4.77", "0", "-4.77", "-inf"]  # the SNR at rho = 1, 0.75, 0.5, 0.25, 0


def test_ls_corruptions_fits_a_narrow_terminal() -> None:
    from rich.console import Console

    from robustmsa.cli import _cmd_ls

    out = Console(width=80, force_terminal=True, color_system=None, soft_wrap=True)
    with out.capture() as cap:
        _cmd_ls(argparse.Namespace(what="corruptions"), out)
    *tables, note = cap.get().rstrip("\n").splitlines()
    assert max(len(line) for line in tables) <= 80 and "docs/corruptions.md" in note
    text = "\n".join(tables)
    assert "4.77" in text and "snr" in text and "…" not in text


BAD_INPUT = {  # argv -> what <where> must name (the file, key, dataset or argument at fault)
    "model config key": (["validate", "{smoke}", "models=[{{name: qa_moe, overrides: {{hiddn: 3}}}}]"],
                         "smoke.yaml", "models.0.overrides.hiddn"),
    "model config value": (["validate", "{smoke}", "models=[{{name: late_fusion, overrides: {{dropout: 3}}}}]"],
                           "smoke.yaml", "models.0.overrides.dropout"),
    "suite key": (["validate", "{smoke}", "training.epochz=3"], "smoke.yaml", "training.epochz"),
    "suite name": (["validate", "{smoke}", "models=[{{name: qa_mo}}]"], "smoke.yaml", "models.0.name"),
    "suite file": (["validate", "{tmp}/missing.yaml"], "missing.yaml", ""),
    "override": (["validate", "{smoke}", "oops"], "override 'oops'", ""),
    "dataset param": (["validate", "{smoke}", "datasets=[{{name: synthetic_trimodal, params: {{n_trin: 3}}}}]"],
                      "dataset 'synthetic_trimodal'", "n_trin"),
    "dataset file": (["validate", "{smoke}", "datasets=[{{name: mmsa, params: {{path: {tmp}/x.pkl}}}}]"],
                     "dataset 'mmsa'", "x.pkl"),
    "dataset path": (["validate", "{smoke}", "datasets=[{{name: mmsa}}]"], "dataset 'mmsa'", "params.path"),
    "subcommand choice": (["ls", "modls"], "robustmsa ls", "what"),
    "unknown flag": (["validate", "{smoke}", "--bogus"], "robustmsa validate", "--bogus"),
    "unknown command": (["bogus"], "robustmsa", "COMMAND"),
    "missing argument": (["run"], "robustmsa run", "suite"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_every_error_starts_with_where(case: str, repo: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``error: <where>: <what>``: <where> names the file, key, dataset or argument; exit 2, no traceback."""
    import re

    argv, where, detail = BAD_INPUT[case]
    argv = [a.format(smoke=repo / "suites" / "smoke.yaml", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error"))
    m = re.match(r"error: (?P<where>[^:]+): \S", line)
    assert m, line
    assert where in m["where"] and detail in line and "Traceback" not in err


def test_an_unknown_registry_name_names_itself() -> None:
    """A registry lookup that fails outside suite validation still prints ``error: <kind> '<name>': ...``."""
    from rich.console import Console

    from corruptions.registry import UnknownNameError
    from robustmsa.cli import _report_error

    err = Console(width=200, color_system=None)
    with err.capture() as cap:
        assert _report_error(err, UnknownNameError("dataset", "synthetik", ["synthetic", "mmsa"])) == 2
    assert cap.get().startswith("error: dataset 'synthetik': unknown dataset 'synthetik' (did you mean synthetic?)")


def test_ls_lists_the_registries_without_importing_them() -> None:
    """``ls models`` and ``ls datasets`` read the declarations from the source: the same as the registries."""
    from robustmsa.cli import PACKAGE, declared, model_names
    from robustmsa.datasets import DATASETS
    from robustmsa.models import MODELS, load_plugins

    load_plugins()
    assert model_names() == MODELS.names()
    assert sorted(declared(PACKAGE / "datasets.py", "register_dataset", 2)) == [
        (n, DATASETS.get(n).help) for n in DATASETS.names()]


def test_short_commands_import_no_torch(repo: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from robustmsa.cli import main\n"
            "for argv in (['--version'], ['ls', 'models'], ['ls', 'datasets'], ['ls', 'suites']): assert main(argv) == 0\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'pandas', 'corruptions', 'mlflow', 'ray') if m in sys.modules)\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "robustmsa " in proc.stdout and "qa_moe" in proc.stdout and "synthetic_trimodal" in proc.stdout


def test_validate_loads_each_dataset_once() -> None:
    """Inside ``reuse_loaded`` (what validate plans in) a dataset is loaded once; outside, afresh."""
    from robustmsa.datasets import load_dataset, reuse_loaded

    params = {"seed": 0, "n_train": 32, "n_valid": 8, "n_test": 8, "text_dim": 8}
    with reuse_loaded():
        first = load_dataset("synthetic_trimodal", params)
        assert load_dataset("synthetic_trimodal", dict(params)) is first
        assert load_dataset("synthetic_trimodal", {**params, "seed": 1}) is not first
    assert load_dataset("synthetic_trimodal", params) is not first
