"""Classification datasets: the task in the data layer, the metrics against scikit-learn, the models'
class heads, the categorical MMSA layout, the emotion preset and the emotion suite end to end;
CH-SIMS v2.0 as a SIMS variant."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score

from robustmsa.cli import main
from robustmsa.data.batch import split_to_batch
from robustmsa.data.dataset import SPLITS, MSADataset
from robustmsa.data.mmsa import load_mmsa_pickle, save_mmsa_pickle
from robustmsa.data.synthetic import SyntheticConfig, generate_synthetic, load_synthetic
from robustmsa.data.synthetic.emotion import EMOTIONS, MELD_TRAIN_COUNTS
from robustmsa.datasets import load_dataset
from robustmsa.errors import DataError, RobustMSAError
from robustmsa.evaluation import predict
from robustmsa.metrics import classification_metrics, compute_metrics, metric_keys
from robustmsa.models import create_model
from robustmsa.models.base import classification_models
from robustmsa.reports.stats import weighted_metrics

SMALL = {"n_train": 96, "n_valid": 32, "n_test": 48, "text_dim": 32}
TESTED_MODELS = ("qa_moe", "late_fusion", "tfn", "mult")


# ------------------------------------------------------------------ metrics


def _sklearn(y: np.ndarray, p: np.ndarray, k: int) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recall of an absent class: nan by zero_division, not a warning
        recall = recall_score(y, p, labels=list(range(k)), average=None, zero_division=np.nan)
    out = {"weighted_f1": f1_score(y, p, average="weighted"), "accuracy": accuracy_score(y, p),
           "macro_f1": f1_score(y, p, average="macro")}
    out.update({f"class_acc_{c}": float(recall[c]) for c in range(k)})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_metrics_equal_scikit_learn_to_the_last_digit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        k, n = int(rng.integers(2, 9)), int(rng.integers(1, 80))
        y, p = rng.integers(0, k, n), rng.integers(0, k, n)
        if seed % 2:  # classes absent from the truth, from the prediction, or from both
            y[y == 1], p[p == k - 1] = 0, 0
        got = compute_metrics(p.astype(np.float32), torch.from_numpy(y), "classification", k)
        want = _sklearn(y, p, k)
        assert list(got) == metric_keys("classification", k)
        for key, value in want.items():
            assert got[key] == value or (np.isnan(got[key]) and np.isnan(value)), (key, got[key], value)


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0, 1], [-1, 1])
    with pytest.raises(ValueError, match="at most 16 classes"):
        classification_metrics([0, 20], [0, 1])
    with pytest.raises(ValueError, match="lie in 0..2"):
        classification_metrics([0, 1], [0, 3], num_classes=3)
    with pytest.raises(ValueError, match="allowed: 'mosi'"):
        compute_metrics([0], [0], "emotion")


def test_bootstrap_weights_of_ones_give_the_metrics() -> None:
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 5, 60), rng.integers(0, 4, 60)
    w = np.vstack([np.ones(60), rng.multinomial(60, np.full(60, 1 / 60))])
    out = weighted_metrics(p, y, "classification", w)
    exact = classification_metrics(p, y)
    for key, value in exact.items():
        assert out[key][0] == pytest.approx(value, abs=1e-12, nan_ok=True)
    resampled = np.repeat(np.arange(60), w[1].astype(int))
    again = classification_metrics(p[resampled], y[resampled])
    assert out["weighted_f1"][1] == pytest.approx(again["weighted_f1"], abs=1e-12)
    assert out["accuracy"][1] == pytest.approx(again["accuracy"], abs=1e-12)


# ------------------------------------------------------------------ data layer


def test_dataset_task_is_validated() -> None:
    ds = load_dataset("synthetic_emotion", {"seed": 0, **SMALL})
    split = ds["train"]
    bad = split.subset(np.arange(len(split)))
    bad.labels = bad.labels.copy()
    bad.labels[3] = 7.0
    with pytest.raises(DataError, match=r"split 'train' label 7.0 of sample .* not a class index in 0..6"):
        MSADataset("x", {**ds.splits, "train": bad}, metric_family="classification", task="classification",
                   classes=EMOTIONS)
    with pytest.raises(DataError, match="metric_family 'mosi' with a classification task"):
        MSADataset("x", ds.splits, task="classification", classes=EMOTIONS)
    with pytest.raises(DataError, match="classes .* given for a regression task"):
        MSADataset("x", ds.splits, classes=EMOTIONS)
    with pytest.raises(DataError, match="task 'ordinal' is not one of regression, classification"):
        MSADataset("x", ds.splits, task="ordinal")
    with pytest.raises(DataError, match="at least 2 distinct class names"):
        MSADataset("x", ds.splits, metric_family="classification", task="classification", classes=("a", "a"))


def test_emotion_preset_is_meld_like_and_deterministic(tmp_path: Path) -> None:
    params = {"text_dim": 32}
    ds = load_synthetic("emotion", seed=0, cache_dir=tmp_path, **params)
    assert ds.name == "synthetic_emotion" and ds.task == "classification" and ds.classes == EMOTIONS
    assert ds.metric_family == "classification" and ds.num_classes == 7 and "ceiling" not in ds.info
    for s in SPLITS:
        labels = ds[s].labels
        assert labels.dtype == np.float32 and set(np.unique(labels)) <= set(range(7))
    train = ds["train"].labels
    meld = np.array(list(MELD_TRAIN_COUNTS.values())) / sum(MELD_TRAIN_COUNTS.values())
    shares = np.bincount(train.astype(int), minlength=7) / len(train)
    assert np.abs(shares - meld).max() < 0.04, shares  # MELD's imbalance: neutral ~47 %, fear and disgust ~3 %
    assert list(ds.info["class_shares"]["train"]) == list(EMOTIONS)
    cached = load_synthetic("emotion", seed=0, cache_dir=tmp_path, **params)  # read back from the cache
    assert cached.task == "classification" and cached.classes == EMOTIONS
    assert cached.content_hash() == ds.content_hash() == generate_synthetic(
        SyntheticConfig.from_preset("emotion", **params)).content_hash()
    other = load_synthetic("emotion", seed=1, cache_dir=tmp_path, **params)
    assert other.content_hash() != ds.content_hash()


def test_classification_hash_includes_the_class_names() -> None:
    ds = load_dataset("synthetic_emotion", {"seed": 0, **SMALL})
    renamed = MSADataset(ds.name, ds.splits, ds.label_range, "classification", task="classification",
                         classes=tuple(c.upper() for c in EMOTIONS))
    assert renamed.content_hash() != ds.content_hash()


def test_classification_needs_the_cue_design() -> None:
    with pytest.raises(RobustMSAError, match="metric_family"):
        SyntheticConfig.from_preset("mosi", metric_family="classification")


# ------------------------------------------------------------------ models and training


@pytest.mark.parametrize("name", TESTED_MODELS)
def test_models_output_class_logits_and_learn(name: str) -> None:
    from robustmsa.plan import TrainingRun
    from robustmsa.suite import RegimeSpec, TrainingSpec
    from robustmsa.training import train_model

    ds = load_dataset("synthetic_emotion", {"seed": 0, **SMALL})
    model = create_model(name, ds.dims, ds.lengths, seed=0, classes=ds.num_classes)
    train = split_to_batch(ds["train"])
    assert model(train.slice(0, 5))["pred"].shape == (5, 7)

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(train)["pred"], train.labels.long()))

    before = loss()
    run = TrainingRun(RegimeSpec(name="clean", kind="clean"), TrainingSpec(epochs=4, batch_size=32, lr=3e-3, patience=4),
                      seed=0)
    result = train_model(model, ds, run, device=torch.device("cpu"))
    assert {"valid_error", "valid_clean_weighted_f1", "valid_clean_accuracy"} <= set(result.history[0])
    assert loss() < before  # cross-entropy is the task loss
    pred, _ = predict(model, train, 64, torch.device("cpu"))
    assert pred.shape == (len(train),) and set(np.unique(pred)) <= set(range(7))  # argmax class indices


@pytest.mark.parametrize("name", ["self_mm", "emoe", "ca_moe", "mmolre"])
def test_regression_only_models_refuse_classification(name: str) -> None:
    ds = load_dataset("synthetic_emotion", {"seed": 0, **SMALL})
    with pytest.raises(RobustMSAError, match=f"model '{name}' predicts a sentiment score only") as e:
        create_model(name, ds.dims, ds.lengths, classes=7)
    assert "late_fusion" in (e.value.hint or "") and "qa_moe" in (e.value.hint or "")


def test_regression_models_are_built_as_before() -> None:
    ds = load_dataset("synthetic_trimodal", {"seed": 0, **SMALL})
    batch = split_to_batch(ds["test"]).slice(0, 4)
    for name in TESTED_MODELS:
        a = create_model(name, ds.dims, ds.lengths, seed=3)
        b = create_model(name, ds.dims, ds.lengths, seed=3, classes=0)
        assert a.num_classes == 0 and a(batch)["pred"].shape == (4,)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert set(TESTED_MODELS) <= set(classification_models())
    with pytest.raises(RobustMSAError, match="classes must be 0"):
        create_model("tfn", ds.dims, ds.lengths, classes=1)


# ------------------------------------------------------------------ categorical MMSA layout


def _categorical_raw(k: int = 4, seed: int = 0, dims: tuple[int, int] = (6, 10)) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    raw: dict[str, Any] = {}
    for s, n in {"train": 9, "valid": 4, "test": 5}.items():
        raw[s] = {"text": rng.normal(size=(n, 7, 12)), "audio": rng.normal(size=(n, 8, dims[0])),
                  "vision": rng.normal(size=(n, 5, dims[1])), "labels": rng.integers(0, k, n),
                  "id": np.array([f"{s}dia{i}_utt{i % 2}" for i in range(n)], dtype=object)}
    return raw


def _write(tmp_path: Path, obj: Any, name: str = "meld.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_categorical_pickle_loads_as_classification(tmp_path: Path) -> None:
    raw = _categorical_raw()
    raw["classes"] = ["neutral", "happy", "sad", "angry"]
    ds = load_mmsa_pickle(_write(tmp_path, raw))
    assert ds.task == "classification" and ds.classes == ("neutral", "happy", "sad", "angry")
    assert ds.metric_family == "classification" and ds.label_range == (0.0, 3.0)
    np.testing.assert_array_equal(ds["test"].labels, raw["test"]["labels"].astype(np.float32))
    assert ds.info["metric_family_from"] == "categorical labels"
    back = tmp_path / "back.pkl"
    save_mmsa_pickle(ds, back)
    again = load_mmsa_pickle(back)  # the export writes labels as int64 class indices and the names on top
    assert again.task == "classification" and again.classes == ds.classes
    for s in SPLITS:
        np.testing.assert_array_equal(again[s].labels, ds[s].labels)


def test_frozen_test_set_of_a_classification_dataset_keeps_the_categorical_layout(tmp_path: Path) -> None:
    from robustmsa.data.mmsa import categorical_layout, mmsa_split_payload

    raw = _categorical_raw()
    raw["classes"] = ["neutral", "happy", "sad", "angry"]
    ds = load_mmsa_pickle(_write(tmp_path, raw))
    test_only = categorical_layout({"test": mmsa_split_payload("test", ds["test"])}, ds)
    assert "regression_labels" not in test_only["test"] and test_only["classes"] == list(ds.classes)
    assert test_only["test"]["labels"].dtype == np.int64
    np.testing.assert_array_equal(test_only["test"]["labels"], raw["test"]["labels"])


def test_categorical_pickle_errors_name_the_file(tmp_path: Path) -> None:
    raw = _categorical_raw()
    path = _write(tmp_path, raw)
    with pytest.raises(DataError, match="meld.pkl: categorical labels .* no class names") as e:
        load_mmsa_pickle(path)
    assert "classes" in (e.value.hint or "")
    ds = load_dataset("mmsa", {"path": str(path), "classes": ["a", "b", "c", "d"]})
    assert ds.classes == ("a", "b", "c", "d")
    with pytest.raises(DataError, match=r"meld.pkl: .*split 'train' label 3.0 .* not a class index in 0..2"):
        load_mmsa_pickle(path, classes=["a", "b", "c"])
    raw["test"]["regression_labels"] = raw["test"].pop("labels").astype(float)
    with pytest.raises(DataError, match="splits disagree on their label key"):
        load_mmsa_pickle(_write(tmp_path, raw), classes=["a", "b", "c", "d"])
    del raw["test"]["regression_labels"]
    with pytest.raises(DataError, match="split 'test' has no key 'regression_labels' .* or 'labels'"):
        load_mmsa_pickle(_write(tmp_path, raw))
    raw = _categorical_raw()
    raw["train"]["labels"] = raw["train"]["labels"] + 0.5
    with pytest.raises(DataError, match="split 'train' key 'labels' has non-integer values"):
        load_mmsa_pickle(_write(tmp_path, raw), classes=["a", "b", "c", "d", "e"])


# ------------------------------------------------------------------ CH-SIMS v2.0


def _simsv2_raw(dims: tuple[int, int] = (25, 177), unimodal: bool = True) -> dict[str, Any]:
    """A tiny pickle in the layout of MMSA's ch-simsv2s.pkl (unaligned, lengths, SIMS labels)."""
    rng = np.random.default_rng(5)
    raw: dict[str, Any] = {}
    for s, n in {"train": 6, "valid": 3, "test": 4}.items():
        split = {"text": rng.normal(size=(n, 50, 16)), "audio": rng.normal(size=(n, 30, dims[0])),
                 "vision": rng.normal(size=(n, 12, dims[1])), "regression_labels": rng.uniform(-1, 1, n).round(1),
                 "audio_lengths": rng.integers(1, 31, n), "vision_lengths": rng.integers(1, 13, n),
                 "id": np.array([f"{s}v{i}$_${i}" for i in range(n)], dtype=object)}
        if unimodal:
            split.update({f"regression_labels_{m}": rng.uniform(-1, 1, n).round(1) for m in "TAV"})
        raw[s] = split
    return raw


def test_simsv2_is_a_sims_variant(tmp_path: Path) -> None:
    ds = load_mmsa_pickle(_write(tmp_path, _simsv2_raw(), "ch-simsv2s.pkl"))
    assert ds.info["variant"] == "simsv2-a25-v177" and ds.metric_family == "sims"
    assert ds.label_range == (-1.0, 1.0) and set(ds["train"].unimodal_labels) == {"T", "A", "V"}
    assert ds.info["aligned"] is False and ds.info["frame_masks"] == {"audio": "lengths", "vision": "lengths"}
    plain = load_mmsa_pickle(_write(tmp_path, _simsv2_raw(unimodal=False), "v2.pkl"), variant="simsv2")
    assert plain.metric_family == "sims" and plain.info["metric_family_from"] == "variant simsv2-a25-v177"
    with pytest.raises(DataError, match="v1.pkl: variant 'simsv2' has audio dim 25 and vision dim 177, the file has 33"):
        load_mmsa_pickle(_write(tmp_path, _simsv2_raw(dims=(33, 709)), "v1.pkl"), variant="simsv2")
    with pytest.raises(DataError, match="variant='sims3' is not supported"):
        load_mmsa_pickle(tmp_path / "v2.pkl", variant="sims3")


def test_synthetic_sims2_has_the_shapes_of_simsv2() -> None:
    preset = SyntheticConfig.from_preset("sims2")
    assert (preset.n_train, preset.n_valid, preset.n_test) == (2722, 647, 1034)
    ds = load_dataset("synthetic_sims2", {"seed": 0, "n_train": 40, "n_valid": 20, "n_test": 20, "text_dim": 16})
    assert ds.lengths == {"text": 50, "audio": 925, "vision": 232}
    assert ds.dims == {"text": 16, "audio": 25, "vision": 177}
    assert ds.metric_family == "sims" and ds.label_range == (-1.0, 1.0)
    assert set(ds["train"].unimodal_labels) == {"T", "A", "V"} and not ds["train"].audio_mask.all()


# ------------------------------------------------------------------ the emotion suite


def test_emotion_suite_end_to_end(repo: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    argv = ["run", str(repo / "suites" / "emotion.yaml"), "--backend", "local", f"tracking.uri={uri}",
            f"report.dir={workdir / 'reports'}", "training.epochs=2", "evaluation.references=true",
            "datasets=[{name: synthetic_emotion, params: {seed: 0, n_train: 320, n_valid: 96, n_test: 160, text_dim: 32}}]"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "4 trials run" in printed  # references asked for, but none planned for a classification dataset
    assert "incomplete" not in printed
    out = workdir / "reports" / "emotion"
    rows = pd.read_csv(out / "rows.csv")
    assert {"weighted_f1", "accuracy", "macro_f1"} <= set(rows["metric"]) and "mae" not in set(rows["metric"])
    assert {f"class_acc_{c}" for c in range(7)} <= set(rows["metric"])
    assert set(rows["model"]) == {"late_fusion", "qa_moe"}
    main_md = (out / "main.md").read_text()
    assert "Weighted F1 ↑" in main_md and "Accuracy ↑" in main_md and "Has0" not in main_md
    assert (out / "curves_noise.png").stat().st_size > 1000
