"""Frozen corrupted test sets (``robustmsa export-corrupted``): MMSA's own loader reads every file, a
re-export is byte-identical, and each file holds what robustmsa's evaluation feeds the model there."""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from corruptions.keys import MODALITIES
from robustmsa.cli import main
from robustmsa.data.batch import split_to_batch
from robustmsa.data.mmsa import load_mmsa_pickle
from robustmsa.datasets import load_dataset
from robustmsa.evaluation import CorruptionContext, GridRun, grid_results
from robustmsa.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["datasets=[{name: synthetic_trimodal, params: {seed: 0, n_train: 48, n_valid: 16, n_test: 24, text_dim: 16}}]",
             "evaluation.families=[missing, drop, noise]", "evaluation.levels=[1.0, 0.5, 0.0]",
             "evaluation.sweeps=[audio, text, joint]"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("frozen")
    assert main(["export-corrupted", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out), *OVERRIDES]) == 0
    return out, json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _files(manifest: dict) -> list[dict]:
    return [f for d in manifest["datasets"] for f in d["files"]]


def test_manifest_names_every_grid_point(exported: tuple[Path, dict]) -> None:
    out, manifest = exported
    files = _files(manifest)
    # clean once + 3 families x (audio, text, joint) x 2 corrupted levels
    assert len(files) == 1 + 3 * 3 * 2
    assert manifest["splits_written"] == ["test"] and manifest["key_seed"] == 1234
    noise = next(f for f in files if f["family"] == "noise" and f["sweep"] == "audio" and f["level_index"] == 1)
    assert noise["rho"] == {"text": 1.0, "audio": 0.5, "vision": 1.0}
    assert noise["parameter_name"] == "SNR" and noise["parameter"]["audio"] == pytest.approx(0.0)
    assert noise["family_version"] == "1" and manifest["corruption_versions"]["noise"] == "1"
    for f in files:
        assert hashlib.sha256((out / f["file"]).read_bytes()).hexdigest() == f["sha256"]


def test_mmsa_loader_reads_every_file(exported: tuple[Path, dict]) -> None:
    data_loader = pytest.importorskip("MMSA.data_loader", reason="the MMSA toolkit is not installed")
    out, manifest = exported
    for f in _files(manifest):
        for use_bert in (False, True):
            args = {"dataset_name": "mosi", "custom_feature": None, "featurePath": str(out / f["file"]),
                    "feature_dims": [0, 0, 0], "feature_T": None, "feature_A": None, "feature_V": None,
                    "need_data_aligned": False, "use_bert": use_bert}
            ds = data_loader.MMDataset(args, mode="test")
            with (out / f["file"]).open("rb") as fh:
                raw = pickle.load(fh)["test"]
            assert len(ds) == len(raw["regression_labels"]) == 24
            np.testing.assert_array_equal(ds.audio, raw["audio"])
            sample = ds[0]
            assert int(sample["audio_lengths"]) == int(raw["audio_lengths"][0])


def test_reexport_is_byte_identical(exported: tuple[Path, dict], tmp_path: Path) -> None:
    _, first = exported
    assert main(["export-corrupted", str(ROOT / "suites" / "smoke.yaml"), "--out", str(tmp_path), *OVERRIDES]) == 0
    again = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert [(f["file"], f["sha256"]) for f in _files(again)] == [(f["file"], f["sha256"]) for f in _files(first)]


def test_files_hold_what_the_evaluation_feeds_the_model(exported: tuple[Path, dict]) -> None:
    out, manifest = exported
    suite = load_suite(ROOT / "suites" / "smoke.yaml", OVERRIDES)
    spec = suite.datasets[0]
    dataset = load_dataset(spec.name, spec.params)
    ctx = CorruptionContext(split_to_batch(dataset["train"]).modalities())
    calls = []

    def capture(batch, prepared, point):  # the batch evaluate_grid hands to the model at each point
        calls.append((prepared, batch))
        return batch.labels.numpy() + np.linspace(0.0, 1.0, len(batch), dtype=np.float32), {}

    results = grid_results(capture, split_to_batch(dataset["test"]), ctx, GridRun.of(suite.evaluation, "mosi"))
    by_name = {(f["family"], f["sweep"], f["level_index"]): f["file"] for f in _files(manifest)}
    corrupted = iter([b for prepared, b in calls if prepared is not None])  # in the order of the results
    batches = {("clean", "clean", 0): next(b for prepared, b in calls if prepared is None)}
    for r in results:
        if not r.grid.point.is_clean:
            batches[(r.grid.family, r.grid.sweep, r.grid.index)] = next(corrupted)
    checked = 0
    for key, file in by_name.items():
        with (out / file).open("rb") as fh:
            test = pickle.load(fh)["test"]
        b = batches[key]
        for m in MODALITIES:
            np.testing.assert_array_equal(test[m], getattr(b, m).numpy(), err_msg=f"{file} {m}")
            np.testing.assert_array_equal(test[f"{m}_mask"], getattr(b, f"{m}_mask").numpy(), err_msg=f"{file} {m}_mask")
        np.testing.assert_array_equal(test["missing"], b.missing.numpy())
        if b.text_ids is not None:
            np.testing.assert_array_equal(np.rint(test["text_bert"][:, 0]).astype(np.int64), b.text_ids.numpy())
        checked += 1
    assert checked == len(by_name)


def test_all_splits_file_reads_back_into_robustmsa(tmp_path: Path) -> None:
    over = [*OVERRIDES[:1], "evaluation.families=[drop]", "evaluation.levels=[1.0, 0.5]", "evaluation.sweeps=[joint]"]
    assert main(["export-corrupted", str(ROOT / "suites" / "smoke.yaml"), "--out", str(tmp_path), "--all-splits",
                 *over]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    file = next(f["file"] for f in _files(manifest) if f["family"] == "drop")
    ds = load_mmsa_pickle(tmp_path / file)
    src = load_dataset("synthetic_trimodal", {"seed": 0, "n_train": 48, "n_valid": 16, "n_test": 24, "text_dim": 16})
    np.testing.assert_array_equal(ds["train"].audio, src["train"].audio)  # train and valid stay clean
    assert not np.array_equal(ds["test"].audio, src["test"].audio)         # the evaluated split is corrupted
