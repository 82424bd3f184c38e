"""Results that travel: every report writes results/<model>__<regime>__<dataset>.json in the versioned
schema, and ``robustmsa leaderboard`` ranks such files from separate runs, refusing mixed protocols."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustmsa.cli import main

ROOT = Path(__file__).resolve().parents[1]
SUITE = str(ROOT / "suites" / "protocols" / "lnln.yaml")
TINY = ["seeds=[1111]", "training.epochs=1", "report.bootstrap=0",
        "datasets=[{name: synthetic_trimodal, params: {seed: 0, n_train: 64, n_valid: 24, n_test: 32, text_dim: 16}}]",
        "evaluation.levels=[1.0, 0.5, 0.1]"]


def _run(tmp: Path, name: str, *extra: str) -> list[Path]:
    d = tmp / name
    d.mkdir()
    argv = ["run", SUITE, "--backend", "local", *TINY, *extra, f"tracking.uri=sqlite:///{d}/mlflow.db",
            f"report.dir={d}/reports"]
    assert main(argv) == 0
    return sorted((d / "reports" / "protocol_lnln" / "results").glob("*.json"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    tmp = tmp_path_factory.mktemp("runs")
    return {"a": _run(tmp, "a", "models=[{name: late_fusion}]"),
            "b": _run(tmp, "b", "models=[{name: tfn}]"),
            "other": _run(tmp, "c", "models=[{name: tfn}]", "evaluation.levels=[1.0, 0.2]")}


def test_every_report_writes_a_results_document(runs: dict[str, list[Path]]) -> None:
    (a,) = runs["a"]
    assert a.name == "late_fusion__lnln_random_drop__synthetic_trimodal.json"
    doc = json.loads(a.read_text(encoding="utf-8"))
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "robustmsa" / "schemas" / "results-1.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)
    assert doc["schema_version"] == "1.1" and doc["seeds"] == [1111]
    (curve,) = doc["curves"]
    assert [p["level"] for p in curve["points"]] == [1.0, 0.5, 0.1]
    assert curve["points"][1]["param"]["audio"] == pytest.approx(0.5)  # drop rate = 1 - rho
    assert curve["summary"]["audc"]["mean"] is not None and doc["provenance"]["corruption_versions"] == {"drop": "1"}


def test_leaderboard_ranks_two_runs(runs: dict[str, list[Path]], tmp_path: Path) -> None:
    files = [str(p) for p in runs["a"] + runs["b"]]
    assert main(["leaderboard", *files, "--out", str(tmp_path)]) == 0
    md = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert "| 1 |" in md and "| 2 |" in md and "late_fusion" in md and "tfn" in md
    assert "\\toprule" in (tmp_path / "leaderboard.tex").read_text(encoding="utf-8")
    assert "<table>" in (tmp_path / "leaderboard.html").read_text(encoding="utf-8")


def test_leaderboard_refuses_another_protocol(runs: dict[str, list[Path]], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in runs["a"] + runs["other"]]
    assert main(["leaderboard", *files, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to rank results of different protocol" in err and "Traceback" not in err
    assert not (tmp_path / "leaderboard.md").exists()
