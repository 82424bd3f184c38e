"""Raw corruption families in the evaluation path: monotone damage of the extracted features for
every registered raw family (registry-driven), agreement of the raw and feature paths at rho = 1,
the CorruptionContext hook and its errors, and a tiny raw suite run through the CLI.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from corruptions import FAMILIES, CorruptionSource, ReliabilityPoint
from robustmsa.cli import main
from robustmsa.data.batch import split_to_batch
from robustmsa.datasets import load_dataset
from robustmsa.errors import DataError
from robustmsa.evaluation import CorruptionContext, GridRun, evaluate_grid
from robustmsa.media import RawPrepared, load_synthetic_raw
from robustmsa.models import create_model
from robustmsa.suite import GridSpec

RAW = [n for n in FAMILIES.names() if FAMILIES.get(n).level == "raw"]
LEVELS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
TINY = {"n_train": 24, "n_valid": 8, "n_test": 12, "clips_per_video": [2, 4]}


@pytest.fixture(scope="module")
def tiny():
    return load_synthetic_raw(seed=0, **TINY)


def damage(clean, corrupted, modality: str) -> float:
    """Mean relative distance of the corrupted features from the clean ones.

    Audio and vision keep their frame alignment: frame-wise L2 over the clip. Text re-tokenises
    (a dropped word shifts every later token), so it is compared as a bag of token features
    (masked sum over positions).
    """
    if modality == "text":
        a = (clean.features * clean.mask[..., None]).sum(1)
        b = (corrupted.features * corrupted.mask[..., None]).sum(1)
    else:
        a, b = clean.features.reshape(len(clean.features), -1), corrupted.features.reshape(len(clean.features), -1)
    return float(np.mean(np.linalg.norm(b - a, axis=1) / np.maximum(np.linalg.norm(a, axis=1), 1e-9)))


@pytest.mark.parametrize("family", RAW)
def test_damage_grows_as_reliability_falls(tiny, family: str) -> None:
    cls = FAMILIES.get(family)
    m = cls.modalities[0]
    src = tiny.raw
    clean = src.features("test", m)
    d = [damage(clean, src.features("test", m, family, seed=11, rho=r), m) for r in LEVELS]
    assert d[0] == 0.0
    assert all(x > 0 for x in d[1:]), d
    slack = max(cls.monotone_tolerance, 0.01)
    for hi, lo in zip(d[:-1], d[1:]):
        assert lo >= hi * (1 - slack) - 1e-6, (family, d)
    assert d[-1] > 1.5 * d[1] or d[-1] > 0.5, (family, d)  # the far end hurts clearly more


@pytest.mark.parametrize("family", RAW)
def test_raw_path_at_rho_one_is_the_clean_features(tiny, family: str) -> None:
    m = FAMILIES.get(family).modalities[0]
    clean = tiny["test"]
    one = tiny.raw.features("test", m, family, seed=3, rho=1.0)  # corrupted at rho = 1, re-extracted
    assert np.array_equal(one.features, getattr(clean, m)) and np.array_equal(one.mask, getattr(clean, f"{m}_mask"))
    if m == "text":
        assert np.array_equal(one.ids, clean.text_ids)


def test_context_hook_and_grid(tiny) -> None:
    test = split_to_batch(tiny["test"])
    ctx = CorruptionContext(split_to_batch(tiny["train"]).modalities(), raw=tiny.raw, dataset="synthetic_raw")
    prepared = ctx.prepared("audio_noise", 1234, test, "test")
    assert isinstance(prepared, RawPrepared) and ctx.prepared("audio_noise", 1234, test, "test") is prepared
    assert isinstance(prepared, CorruptionSource)
    at1 = prepared.at(ReliabilityPoint.only("audio", 1.0))
    assert all(at1[m].features is test.modality(m).features for m in ("text", "audio", "vision"))
    half = prepared.at(ReliabilityPoint.only("audio", 0.5))
    assert half["vision"].features is test.vision and not torch.equal(half["audio"].features, test.audio)
    # per-sample rho: each row as if corrupted alone
    rho = torch.tensor([1.0, 0.5] * (len(test) // 2))
    mixed = prepared.at({"audio": rho})["audio"].features
    assert torch.equal(mixed[0], test.audio[0]) and torch.equal(mixed[1], half["audio"].features[1])
    with pytest.raises(ValueError, match="raw family 'audio_noise' corrupts audio only"):
        prepared.at(ReliabilityPoint.only("vision", 0.5))

    model = create_model("late_fusion", dims=tiny.dims, lengths=tiny.lengths, seed=0)
    def over(family: str) -> GridRun:
        return GridRun(GridSpec(families=[family], levels=[1.0, 0.0], sweeps=["audio"]), seed=1234,
                       metric_family="mosi", batch_size=64)

    feature_pts = evaluate_grid(model, test, ctx, over("noise"))
    raw_pts = evaluate_grid(model, test, ctx, over("audio_noise"))
    f_clean, (r_clean, r_zero) = feature_pts[0], raw_pts[:2]
    assert r_clean.grid.level == 1.0 and np.array_equal(f_clean.pred, r_clean.pred)  # the paths agree at rho = 1
    assert not np.array_equal(r_zero.pred, r_clean.pred)


def test_raw_family_without_raw_clips_is_a_clear_error() -> None:
    ds = load_dataset("synthetic", {"n_train": 16, "n_valid": 8, "n_test": 8, "text_dim": 16})
    test = split_to_batch(ds["test"])
    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities(), dataset="synthetic")
    with pytest.raises(DataError, match=r"'frame_blur' is raw-level .* dataset 'synthetic' has no raw clips"):
        ctx.prepared("frame_blur", 0, test, "test")
    with pytest.raises(DataError, match=r"'text_typos' is raw-level"):
        ctx.corrupter("text_typos", 0)
    ctx.prepared("noise", 0, test, "test")  # feature families are unaffected


def test_raw_families_are_evaluation_only(tiny) -> None:
    ctx = CorruptionContext(split_to_batch(tiny["train"]).modalities(), raw=tiny.raw, dataset="synthetic_raw")
    with pytest.raises(DataError, match="evaluation and validation grids only"):
        ctx.corrupter("audio_noise", 0)


def test_tiny_raw_suite_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "raw_tiny.yaml"
    suite.write_text(f"""
name: raw_tiny
datasets:
  - name: synthetic_raw
    params: {{seed: 0, n_train: 24, n_valid: 8, n_test: 12, clips_per_video: [2, 4]}}
models: [{{name: late_fusion}}]
regimes: [clean]
seeds: [0]
training: {{epochs: 2, batch_size: 8, patience: 2}}
evaluation: {{families: [audio_noise], levels: [1.0, 0.5, 0.0], sweeps: [audio], seed: 1234}}
tracking: {{uri: "sqlite:///{tmp_path / 'mlflow.db'}"}}
report: {{dir: "{tmp_path / 'reports'}", reference_model: late_fusion}}
""", encoding="utf-8")
    assert main(["run", str(suite), "--backend", "local"]) == 0
    assert "2 trials run" in capsys.readouterr().out  # the model and the references (linear probes)
    rows = pd.read_csv(tmp_path / "reports" / "raw_tiny" / "rows.csv")
    assert set(rows[rows.regime_kind == "reference"]["model"]) >= {"linear probe"}  # no oracle on raw data
    assert "oracle" not in set(rows["model"])
    rows = rows[rows.regime_kind != "reference"]
    mae = rows[(rows.metric == "mae") & (rows.family == "audio_noise")].set_index("level")["value"]
    assert sorted(mae.index) == [0.0, 0.5, 1.0]
    clean = rows[(rows.metric == "mae") & (rows.family == "clean")]["value"]
    if len(clean):
        assert mae[1.0] == pytest.approx(float(clean.iloc[0]))
    assert mae[0.0] != mae[1.0]
