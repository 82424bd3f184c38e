"""The published protocols (suites/protocols/): each validates, on the synthetic benchmark and on an
MMSA pickle with one override, is listed by ``robustmsa ls suites``, and the smallest runs end to end."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from robustmsa.cli import main
from robustmsa.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = sorted((ROOT / "suites" / "protocols").glob("*.yaml"))
TINY = "datasets=[{name: synthetic_trimodal, params: {seed: 0, n_train: 64, n_valid: 24, n_test: 32, text_dim: 16}}]"


def test_the_protocols_are_shipped_and_documented() -> None:
    names = {p.stem for p in PROTOCOLS}
    assert {"lnln", "mmsa_missing", "multibench", "qa_moe_spectrum"} <= names
    doc = (ROOT / "docs" / "protocols.md").read_text(encoding="utf-8")
    for p in PROTOCOLS:
        assert f"`{p.name}`" in doc, f"docs/protocols.md has no section for {p.name}"


def test_ls_suites_lists_the_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "suites"]) == 0
    out = capsys.readouterr().out
    for p in PROTOCOLS:
        assert f"protocols/{p.name}" in out


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_protocol_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0
    assert "is valid" in capsys.readouterr().out


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_protocol_runs_on_an_mmsa_pickle_with_one_override(path: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from robustmsa.data.synthetic import SyntheticConfig, export_mmsa, generate_synthetic

    pkl = tmp_path / "MOSI" / "unaligned_50.pkl"
    pkl.parent.mkdir()
    export_mmsa(generate_synthetic(SyntheticConfig(n_train=32, n_valid=8, n_test=8, text_dim=16)), pkl)
    override = f"datasets=[{{name: mmsa, params: {{path: {pkl}}}}}]"
    suite = load_suite(path, [override])
    assert [d.display for d in suite.datasets] == ["MOSI/unaligned_50"]
    assert main(["validate", str(path), override]) == 0
    assert "MOSI/unaligned_50" in capsys.readouterr().out


def test_smallest_protocol_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LNLN's protocol with one model, one seed and one epoch: the joint drop sweep r = 0..0.9 lands in
    the rows with rho = 1 - r and the drop rate as the physical parameter."""
    monkeypatch.chdir(tmp_path)
    argv = ["run", str(ROOT / "suites" / "protocols" / "lnln.yaml"), "--backend", "local", "seeds=[1111]",
            "models=[{name: late_fusion}]", "training.epochs=1", TINY, "report.bootstrap=0",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"report.dir={tmp_path}/reports"]
    assert main(argv) == 0
    rows = pd.read_csv(tmp_path / "reports" / "protocol_lnln" / "rows.csv")
    drop = rows[(rows["family"] == "drop") & (rows["metric"] == "mae") & (rows["model"] == "late_fusion")]
    assert sorted(drop["level"].round(1).unique()) == pytest.approx([0.1 * k for k in range(1, 11)])
    assert set(drop["sweep"]) == {"joint"}
    assert (drop["param_audio"] - (1 - drop["rho_audio"])).abs().max() < 1e-6
