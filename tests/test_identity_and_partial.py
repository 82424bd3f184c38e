"""Trial identities hold what changes the numbers (the thread count), and reports of unfinished
suites say what they lack (a note in every table, ``robustmsa report`` exits 1 unless
``--allow-partial``). Real MLflow on SQLite, trials run in-process; no mocks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustmsa.cli import main
from robustmsa.plan import expand_trials, plan_suite, trial_threads
from robustmsa.suite import load_suite

#: the entries of a resolved configuration at the default (one thread), as they were before the
#: thread count entered the identity: a new entry here would make every stored trial run again
MODEL_KEYS = {"suite", "suite_version", "dataset", "model", "regime", "condition", "seed", "training", "evaluation"}
REFERENCE_KEYS = {"suite", "suite_version", "dataset", "kind", "references", "evaluation"}


@pytest.mark.parametrize("name", ["smoke.yaml", "continuous_spectrum.yaml", "one_checkpoint_vs_specialists.yaml"])
def test_default_identities_are_unchanged(repo: Path, name: str) -> None:
    for t in expand_trials(load_suite(repo / "suites" / name)):
        assert t.threads == 1
        assert set(t.resolved()) == (REFERENCE_KEYS if t.is_reference else MODEL_KEYS), t.name


@pytest.mark.parametrize(("cpus", "threads"), [(0.5, 1), (1, 1), (1.9, 1), (2, 2), (3.5, 3)])
def test_thread_count_enters_the_identity_only_when_not_one(repo: Path, cpus: float, threads: int) -> None:
    base = plan_suite(load_suite(repo / "suites" / "smoke.yaml"))
    suite = load_suite(repo / "suites" / "smoke.yaml", [f"resources.cpus_per_trial={cpus}"])
    assert trial_threads(suite.resources) == threads
    specs = expand_trials(suite)
    assert {t.threads for t in specs} == {threads}
    planned = plan_suite(suite)
    same = [a.trial_id == b.trial_id for a, b in zip(base, planned)]
    assert all(same) if threads == 1 else not any(same)
    for p in planned:
        assert p.spec.resolved().get("threads") == (None if threads == 1 else threads)


def test_duplicate_seeds_and_out_of_range_seeds_are_refused(repo: Path) -> None:
    from robustmsa.errors import SuiteError

    smoke = repo / "suites" / "smoke.yaml"
    with pytest.raises(SuiteError, match="seeds must be unique"):
        load_suite(smoke, ["seeds=[0,0]"])
    with pytest.raises(SuiteError, match="seeds.0"):
        load_suite(smoke, ["seeds=[99999999999999999999]"])
    assert load_suite(smoke, ["seeds=[2147483647]"]).seeds == [2**31 - 1]


# ---------------------------------------------------------------------------- partial suites


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, object]:
    """One late-fusion trial (seed 0) and the reference trial of the smoke suite, run in-process."""
    root = tmp_path_factory.mktemp("partial")
    args = [str(repo_root / "suites" / "smoke.yaml"), f"tracking.uri=sqlite:///{root}/m.db",
            f"report.dir={root}/reports", "models=[{name: late_fusion}]", "regimes=[clean]", "training.epochs=1"]
    assert main(["run", *args, "--backend", "local", "--no-report"]) == 0
    return {"root": root, "args": args}


@pytest.fixture(scope="module")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _note_everywhere(folder: Path, note: str) -> None:
    tables = [p for p in folder.iterdir() if p.suffix in (".md", ".tex", ".csv")
              and p.name not in ("rows.csv", "report.tex") and len(p.read_text().splitlines()) > 1]
    assert len(tables) > 10
    for p in tables:
        text = p.read_text()
        assert note in text or note[:1].upper() + note[1:] in text.replace("\\_", "_"), p.name


def test_complete_report_has_no_note(store: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *store["args"]]) == 0
    folder = Path(store["root"]) / "reports" / "smoke"
    assert "incomplete" not in (folder / "results.md").read_text()
    assert "incomplete" not in json.loads((folder / "provenance.json").read_text())
    capsys.readouterr()


def test_missing_and_failed_cells_are_named_and_exit_1(store: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from robustmsa.tracking import Tracker

    args = [*store["args"], "seeds=[0,1,2]"]
    folder = Path(store["root"]) / "reports" / "smoke"
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err
    note = ("incomplete: 2 of 4 cells missing (late_fusion/clean/synthetic_trimodal/seed1: not run; "
            "late_fusion/clean/synthetic_trimodal/seed2: not run)")
    assert note in err and "--allow-partial" in err
    _note_everywhere(folder, note)
    assert (folder / "results.md").read_text().splitlines()[2] == f"**{note}**"
    assert "seed2: not run" in json.loads((folder / "provenance.json").read_text())["missing_cells"]

    # a failed trial is named as failed; --allow-partial exits 0 with the same note in the files
    suite = load_suite(Path(store["args"][0]), [*store["args"][1:], "seeds=[0,1,2]"])
    seed1 = next(p for p in plan_suite(suite) if p.spec.seed == 1)
    tracker = Tracker(suite.tracking.uri, suite.experiment)
    parent = tracker.start_parent(suite.name, {}, {})
    tracker.log_failure(parent, seed1.spec.name, seed1.trial_id, "boom", {"robustmsa.suite": suite.name})
    tracker.finish(parent, "FAILED")
    assert main(["report", *args, "--allow-partial"]) == 0
    capsys.readouterr()
    failed = note.replace("seed1: not run", "seed1: failed")
    _note_everywhere(folder, failed)
    assert main(["report", *store["args"]]) == 0  # the suite as run is complete again: no note
    assert "incomplete" not in (folder / "main.md").read_text()
