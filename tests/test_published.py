"""Published reference numbers, recognition of the public MMSA releases, and the fixed mCE reference."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_mmsa import make_split
from test_report import synthetic

from robustmsa.data.mmsa import RELEASE_SIZES, file_sha256, load_mmsa_pickle, recognise_release
from robustmsa.published import PublishedError, load_mce_references, load_published
from robustmsa.reports import Settings, from_frames, write_report_data
from robustmsa.reports.leaderboard import write_leaderboard
from robustmsa.reports.mce_reference import reference_document
from robustmsa.robustness import corruption_error

# ---------------------------------------------------------------------------- the shipped table


def test_shipped_table_validates_and_every_row_has_its_source() -> None:
    t = load_published()
    assert t.schema_version == 1 and t.rows
    for r in t.rows:
        assert r.dataset in RELEASE_SIZES and r.paper and r.where and r.table and r.caveats
        assert all(isinstance(v, str) and float(v) == float(v) for _, v in r.metrics)
    lnln = next(r for r in t.rows if r.model == "LNLN")
    assert dict(lnln.metrics)["MAE"] == "0.515"  # exactly as printed, trailing digits kept
    assert t.rows_for("SIMS", "protocol_lnln") and not t.rows_for("MOSI", "protocol_lnln")
    assert t.rows_for(None, "protocol_lnln") == []


def _table_text(**row_changes: object) -> str:
    row = {"source": "p", "table": "Table 2", "model": "M", "dataset": "MOSI", "protocol": "protocol_lnln",
           "condition": "r = 0.5", "metrics": {"MAE": "0.700"}, "caveats": []}
    row.update(row_changes)
    doc = {"schema_version": 1, "version": 1, "releases": {n: {"sha256": []} for n in RELEASE_SIZES},
           "sources": {"p": {"paper": "P", "venue": "V", "arxiv": "1", "where": "W"}}, "rows": [row]}
    return json.dumps(doc)  # JSON is YAML


@pytest.mark.parametrize("change, words", [
    ({"metrics": {"MAE": 0.7}}, ["rows[0].metrics.MAE", "as printed"]),
    ({"dataset": "MOSII"}, ["rows[0].dataset", "MOSI, MOSEI, SIMS"]),
    ({"source": "q"}, ["rows[0].source", "allowed: p"]),
    ({"extra": 1}, ["unknown keys ['extra']"]),
])
def test_a_bad_table_names_the_file_the_key_and_the_allowed_values(tmp_path: Path, change, words) -> None:
    f = tmp_path / "pub.yaml"
    f.write_text(_table_text(**change))
    with pytest.raises(PublishedError) as e:
        load_published(f)
    assert str(f) in str(e.value) and all(w in str(e.value) for w in words)


# ---------------------------------------------------------------------------- recognition


def _pickle(tmp_path: Path, sizes: tuple[int, int, int], ids: str = "mmsa", name: str = "x.pkl") -> Path:
    rng = np.random.default_rng(0)
    raw = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        raw[split] = make_split(split, n, rng, ta=2, tv=2, da=2, dv=2)
        if ids == "plain":
            raw[split]["id"] = np.array([f"{split}{i}" for i in range(n)], dtype=object)
        elif ids == "none":
            del raw[split]["id"]
    path = tmp_path / name
    path.write_bytes(pickle.dumps(raw, protocol=4))
    return path


@pytest.mark.parametrize("release", sorted(RELEASE_SIZES))
def test_release_counts_and_mmsa_ids_are_recognised(tmp_path: Path, release: str) -> None:
    ds = load_mmsa_pickle(_pickle(tmp_path, RELEASE_SIZES[release]))
    assert recognise_release(ds) == release


def test_other_counts_other_ids_or_generated_ids_are_not_a_release(tmp_path: Path) -> None:
    mosi = RELEASE_SIZES["MOSI"]
    assert recognise_release(load_mmsa_pickle(_pickle(tmp_path, (mosi[0] - 1, mosi[1], mosi[2])))) is None
    assert recognise_release(load_mmsa_pickle(_pickle(tmp_path, mosi, ids="plain", name="p.pkl"))) is None
    assert recognise_release(load_mmsa_pickle(_pickle(tmp_path, mosi, ids="none", name="n.pkl"))) is None
    assert recognise_release(load_mmsa_pickle(_pickle(tmp_path, (mosi[1], mosi[0], mosi[2]), name="s.pkl"))) is None


def test_a_listed_file_hash_recognises_the_file_whatever_its_counts(tmp_path: Path) -> None:
    path = _pickle(tmp_path, (5, 3, 4))
    ds = load_mmsa_pickle(path)
    assert recognise_release(ds) is None
    assert recognise_release(ds, {file_sha256(path): "SIMS"}) == "SIMS"


# ---------------------------------------------------------------------------- published rows in reports


def _sims_data(suite: str = "protocol_lnln", release: str | None = "SIMS"):
    rows, preds, trials = synthetic(seeds=(0,), models=(("late_fusion", "late_fusion"),), regimes=(("clean", "clean"),))
    rows["suite"] = suite
    data = from_frames(rows, preds, trials)
    data.suite = suite
    data.releases = {"synthetic": release} if release else {}
    return data


def test_report_shows_published_rows_apart_and_the_results_json_marks_them(tmp_path: Path) -> None:
    write_report_data(_sims_data(), tmp_path, Settings(bootstrap=0), figures=False)
    md = (tmp_path / "published.md").read_text()
    assert "34.68" in md and "0.515" in md and "not measured here" in md
    assert pd.read_csv(tmp_path / "published.csv", dtype=str)["emphasis"].isna().all()  # never marked best
    assert "LNLN" not in (tmp_path / "main.md").read_text()  # never mixed with the measured rows
    doc = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert doc["schema_version"] == "1.1"
    assert {r["model"] for r in doc["published"]} == {"LNLN", "ALMT"}
    assert all(r["published"] is True for r in doc["published"])
    out = write_leaderboard(sorted((tmp_path / "results").glob("*.json")), tmp_path / "board")
    board = out["markdown"].read_text()
    ranked, published = board.split("## Published numbers")
    assert "LNLN" not in ranked and "LNLN (published)" in published and "| 1 |" in ranked


@pytest.mark.parametrize("suite, release", [("protocol_lnln", None), ("protocol_lnln", "MOSI"), ("other", "SIMS")])
def test_no_published_table_without_a_release_or_rows_for_the_protocol(tmp_path: Path, suite, release) -> None:
    write_report_data(_sims_data(suite, release), tmp_path, Settings(bootstrap=0), figures=False)
    assert not (tmp_path / "published.md").exists()
    doc = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert doc["published"] == []


# ---------------------------------------------------------------------------- the fixed mCE reference


def _store(folder: Path, rows: pd.DataFrame, **prov: object) -> dict:
    doc = reference_document(rows, {"code_versions": ["test"], "regime": "clean", **prov})
    folder.mkdir(exist_ok=True)
    (folder / "ref.json").write_text(json.dumps(doc))
    return doc


def _robustness(out: Path) -> tuple[pd.DataFrame, str]:
    df = pd.read_csv(out / "robustness.csv")
    return df, (out / "robustness.md").read_text()


def test_a_model_equal_to_the_fixed_reference_has_mce_one_and_others_are_measured(tmp_path: Path) -> None:
    rows, preds, trials = synthetic(regimes=(("clean", "clean"),), seeds=(0,))
    lf = rows[rows["model"] == "late_fusion"]
    _store(tmp_path / "refs", lf)
    out = tmp_path / "report"
    s = Settings(reference_model="qa_moe", bootstrap=0, mce_references=str(tmp_path / "refs"))
    write_report_data(from_frames(rows, preds, trials), out, s, figures=False)
    df, md = _robustness(out)
    mce = df[df["column"] == "mce"].set_index("row")
    assert float(mce.loc["late_fusion (clean)", "mean"]) == pytest.approx(1.0, abs=1e-12)
    qa = rows[(rows["model"] == "qa_moe") & (rows["metric"] == "mae") & (rows["level"] != 1.0)]
    ref = lf[(lf["metric"] == "mae") & (lf["level"] != 1.0)]
    key = ["family", "sweep", "level_index"]
    errs = {f"{f}/{sw}": g.sort_values("level_index")["value"].tolist() for (f, sw), g in qa.groupby(key[:2])}
    refs = {f"{f}/{sw}": g.sort_values("level_index")["value"].tolist() for (f, sw), g in ref.groupby(key[:2])}
    assert float(mce.loc["qa_moe (clean)", "mean"]) == pytest.approx(corruption_error(errs, refs)["mce"], rel=1e-12)
    assert "fixed reference late_fusion" in md and "ref.json" in md


def test_the_reference_of_several_seeds_is_their_mean_curve(tmp_path: Path) -> None:
    rows, _, _ = synthetic(models=(("late_fusion", "late_fusion"),), regimes=(("clean", "clean"),))
    doc = _store(tmp_path, rows)
    mae = rows[(rows["metric"] == "mae") & (rows["family"] == "noise") & (rows["sweep"] == "joint")]
    curve = next(c for c in doc["curves"] if c["family"] == "noise" and c["sweep"] == "joint")
    assert curve["metrics"]["mae"] == pytest.approx(mae.groupby("level_index")["value"].mean().tolist(), rel=1e-15)
    assert doc["provenance"]["seeds"] == [0, 1, 2] and doc["match"]["data_hash"] == "abc123"
    with pytest.raises(ValueError, match="one model on one dataset in one regime"):
        reference_document(synthetic()[0], {})


@pytest.mark.parametrize("change, words", [
    ({"data_hash": "other"}, "no stored reference for this data"),
    ({"protocol_id": "0000"}, "another evaluated grid"),
    ({"corruption_versions": {"noise": "9"}}, "another corruption versions"),
])
def test_a_mismatching_reference_falls_back_to_the_in_suite_one_and_says_why(tmp_path: Path, change, words) -> None:
    rows, preds, trials = synthetic(regimes=(("clean", "clean"),), seeds=(0,))
    doc = reference_document(rows[rows["model"] == "late_fusion"], {"code_versions": [], "regime": "clean"})
    doc["match"].update(change)
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "ref.json").write_text(json.dumps(doc))
    s = Settings(reference_model="late_fusion", bootstrap=0, mce_references=str(tmp_path / "refs"))
    write_report_data(from_frames(rows, preds, trials), tmp_path / "r", s, figures=False)
    df, md = _robustness(tmp_path / "r")
    assert f"Fixed mCE reference not used: {words}" in md.replace("\n", " ") or words in md
    assert "in-suite reference" in md
    ref_row = df[(df["row"] == "late_fusion (clean)") & (df["column"] == "mce")]
    assert ref_row["display"].iloc[0] == "reference"
    s2 = Settings(reference_model="late_fusion", bootstrap=0, mce_reference="suite", mce_references=str(tmp_path / "refs"))
    write_report_data(from_frames(rows, preds, trials), tmp_path / "r2", s2, figures=False)
    assert "Fixed mCE reference not used" not in _robustness(tmp_path / "r2")[1]


def test_the_shipped_references_cover_the_main_suite_and_match_its_grid(tmp_path: Path) -> None:
    docs = {d["suite"]: d for d in load_mce_references()}
    assert {"continuous_spectrum", "protocol_lnln"} <= set(docs)
    main = docs["continuous_spectrum"]
    assert main["model"] == "late_fusion" and main["provenance"]["seeds"] == [0, 1, 2]
    assert len(main["curves"]) == 12 and all(len(c["levels"]) == 6 for c in main["curves"])
    assert set(main["match"]["corruption_versions"]) == {"missing", "drop", "noise"}
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(PublishedError, match="not a readable JSON file"):
        load_mce_references(tmp_path)
