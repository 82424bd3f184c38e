"""Suite schema: includes, overrides, and errors that name the file, the key and the allowed values."""
from __future__ import annotations

from pathlib import Path

import pytest

from robustmsa.errors import SuiteError
from robustmsa.plan import expand_trials
from robustmsa.suite import load_suite, parse_overrides


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_main_suite_is_valid(repo: Path) -> None:
    s = load_suite(repo / "suites" / "continuous_spectrum.yaml")
    assert s.name == "continuous_spectrum"
    assert {m.name for m in s.models} >= {"late_fusion", "qa_moe"}
    assert s.evaluation.levels[0] == 1.0  # clean end first
    kinds = {r.kind for r in s.regimes}
    assert kinds == {"clean", "spectrum"}
    trials = expand_trials(s)
    models = [t for t in trials if not t.is_reference]
    assert len(models) == len(s.models) * len(s.regimes) * len(s.seeds)
    assert [t.name for t in trials if t.is_reference] == [f"references/{d.name}" for d in s.datasets]


def test_include_and_overrides(repo: Path) -> None:
    s = load_suite(repo / "suites" / "smoke.yaml", ["training.epochs=1", "seeds=[3,4]"])
    assert s.name == "smoke"
    assert s.training.epochs == 1 and s.seeds == [3, 4]
    assert s.training.batch_size == 64  # inherited from the included file
    assert s.evaluation.sweeps == ["audio", "joint"]


def test_unknown_key_names_file_key_and_allowed(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nmodels: [{name: late_fusion}]\ntraining: {epocs: 3}\n")
    with pytest.raises(SuiteError) as e:
        load_suite(p)
    msg = str(e.value)
    assert str(p) in msg and "training.epocs" in msg and "did you mean epochs" in msg
    assert "batch_size" in msg  # allowed keys listed


def test_unknown_top_level_key(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nmodels: [{name: late_fusion}]\nseedz: [1]\n")
    with pytest.raises(SuiteError, match=r"unknown key 'seedz' \(did you mean seeds\?\)"):
        load_suite(p)


def test_unknown_model_and_family_names_have_close_matches(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moee}]\n")
    with pytest.raises(SuiteError, match=r"models\.0\.name.*'qa_moee'.*did you mean qa_moe"):
        load_suite(p)
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nevaluation: {families: [nois]}\n")
    with pytest.raises(SuiteError, match=r"evaluation\.families\.0.*did you mean noise"):
        load_suite(p)
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\ndatasets: [{name: mosy}]\n")
    with pytest.raises(SuiteError, match=r"datasets\.0\.name.*allowed: .*mmsa, .*synthetic"):
        load_suite(p)


def test_bad_values(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nevaluation: {levels: [1.0, 1.5]}\n")
    with pytest.raises(SuiteError, match=r"evaluation\.levels.*outside \[0, 1\]"):
        load_suite(p)
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nregimes: [warm]\n")
    with pytest.raises(SuiteError, match="regime 'warm'"):
        load_suite(p)
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\ntraining: {loss: huber}\n")
    with pytest.raises(SuiteError, match=r"training\.loss.*'l1' or 'mse'"):
        load_suite(p)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "nope.yaml")
    p = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(p)


def test_parse_overrides() -> None:
    assert parse_overrides(["a.b=3", "c=[1, 2]", "d=text"]) == {"a": {"b": 3}, "c": [1, 2], "d": "text"}
    with pytest.raises(SuiteError, match="key=value"):
        parse_overrides(["oops"])


def test_product_sweeps_and_metrics(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\n"
                        "evaluation: {levels: [1.0, 0.5, 0.0], sweeps: [audio, audio+vision]}\n")
    ev = load_suite(p).evaluation
    assert ev.points() == (3 + 9) * len(ev.families)
    for bad in ("audio+audio", "audio+smell", "audio+"):
        p = write(tmp_path, f"name: x\nmodels: [{{name: qa_moe}}]\nevaluation: {{sweeps: ['{bad}']}}\n")
        with pytest.raises(SuiteError, match=r"evaluation\.sweeps.*unknown sweep"):
            load_suite(p)
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nmetrics: [mae, acc8]\n")
    with pytest.raises(SuiteError, match=r"metrics.*unknown metric 'acc8'.*allowed: mae"):
        load_suite(p)


def test_every_shipped_suite_is_valid() -> None:
    suites = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))
    assert len(suites) >= 4
    from robustmsa.models import model_config

    for path in suites:
        suite = load_suite(path)
        for model in suite.models:  # a registered model, its overrides valid keys and values, and applied
            config = model_config(model.name, **model.overrides)
            for key, value in model.overrides.items():
                assert config[key] == (tuple(value) if isinstance(value, list) else value), (path.name, model.name, key)


def test_families_are_swept_where_they_apply(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\n"
                        "evaluation: {families: [noise, audio_noise], levels: [1.0, 0.0], sweeps: [text, audio, joint]}\n")
    assert load_suite(p).evaluation.points() == 3 * 2 + 1 * 2  # audio_noise: the audio sweep only
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nevaluation: {families: [audio_noise], sweeps: [text]}\n")
    with pytest.raises(SuiteError, match=r"evaluation.*'audio_noise' corrupts only audio"):
        load_suite(p)


def test_levels_off_the_mlflow_step_grid_are_refused_naming_the_level(tmp_path: Path) -> None:
    """Curves are logged at MLflow step round(1000 rho): a level off the 1/1000 grid would share a
    step with another one or lie about its rho, so the suite refuses it when it loads."""
    from robustmsa.suite import rho_step

    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nevaluation: {levels: [1.0, 0.3333, 0.0]}\n")
    with pytest.raises(SuiteError, match=r"evaluation\.levels.*level 0\.3333 is not on the 1/1000 grid.*use 0\.333"):
        load_suite(p)
    p = write(tmp_path, "name: x\nmodels: [{name: qa_moe}]\nevaluation: {levels: [1.0, 0.125, 0.001, 0.0]}\n")
    levels = load_suite(p).evaluation.levels
    assert [rho_step(v) for v in levels] == [1000, 125, 1, 0]  # increasing with rho, no collisions
    assert rho_step(0.3) == 300 and rho_step(0.7) == 700  # binary floating point does not shift a step
