"""CLI: main(argv) over the library; input errors are one line plus a hint, not a traceback."""
from __future__ import annotations

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
