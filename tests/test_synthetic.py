"""Tests of the embedded synthetic benchmark: config, structure, planted properties, cache, export."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from sklearn.linear_model import Ridge

from robustmsa.data.dataset import SPLITS, MSADataset, Split
from robustmsa.data.synthetic import (
    CLS_ID,
    CLUE_VOCAB,
    DATASET_NAMES,
    GENERATOR_VERSION,
    PAD_ID,
    PRESETS,
    SEP_ID,
    LatentModel,
    SyntheticConfig,
    SyntheticTextEncoder,
    cached_summary,
    default_cache_dir,
    expected_label,
    export_mmsa,
    generate_synthetic,
    load_synthetic,
    synthetic_cache_key,
)
from robustmsa.data.synthetic import cache as synthetic_cache
from robustmsa.data.synthetic.latent import annotate
from robustmsa.errors import RobustMSAError

SMALL = {"n_train": 20, "n_valid": 10, "n_test": 10}
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "datasets"
ALPHAS = (1.0, 10.0, 100.0, 1000.0)


@pytest.fixture(scope="module")
def mosi() -> MSADataset:
    return generate_synthetic(SyntheticConfig.from_preset("mosi"))


def pooled(split: Split, modality: str, features: np.ndarray | None = None) -> np.ndarray:
    x = getattr(split, modality) if features is None else features
    m = getattr(split, f"{modality}_mask")[..., None]
    return (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


class Probe:
    """Ridge on masked-mean-pooled features (audio/vision standardised per dimension).

    Fit on train for a few penalties, the penalty chosen on valid, scored on any split.
    """

    def __init__(self, ds: MSADataset, modalities: tuple[str, ...]):
        self.modalities = modalities
        train, valid = ds["train"], ds["valid"]
        self.stats = {m: (pooled(train, m).mean(0), pooled(train, m).std(0) + 1e-6) for m in modalities}
        x, xv = self.features(train), self.features(valid)
        fits = [Ridge(alpha=a, solver="cholesky").fit(x, train.labels) for a in ALPHAS]
        self.model = min(fits, key=lambda f: float(np.abs(f.predict(xv) - valid.labels).mean()))

    def features(self, split: Split, text: np.ndarray | None = None) -> np.ndarray:
        blocks = []
        for m in self.modalities:
            x = pooled(split, m, text if m == "text" else None)
            blocks.append(x if m == "text" else (x - self.stats[m][0]) / self.stats[m][1])
        return np.hstack(blocks)

    def predict(self, split: Split, text: np.ndarray | None = None) -> np.ndarray:
        return self.model.predict(self.features(split, text))

    def mae(self, split: Split, idx: Any = slice(None), text: np.ndarray | None = None) -> float:
        return float(np.abs(self.predict(split, text) - split.labels)[idx].mean())


class Stack:
    """Late fusion of per-modality probes: least squares on their valid-set predictions."""

    def __init__(self, ds: MSADataset, parts: list[Probe]):
        self.parts = parts
        valid = ds["valid"]
        x = np.column_stack([p.predict(valid) for p in parts] + [np.ones(len(valid))])
        self.weights = np.linalg.lstsq(x, valid.labels, rcond=None)[0]

    def predict(self, split: Split) -> np.ndarray:
        return np.column_stack([p.predict(split) for p in self.parts] + [np.ones(len(split))]) @ self.weights

    def mae(self, split: Split, idx: Any = slice(None)) -> float:
        return float(np.abs(self.predict(split) - split.labels)[idx].mean())


@pytest.fixture(scope="module")
def probes(mosi: MSADataset) -> dict[str, Any]:
    out: dict[str, Any] = {k: Probe(mosi, (m,)) for k, m in (("T", "text"), ("A", "audio"), ("V", "vision"))}
    out["TAV"] = Stack(mosi, [out["T"], out["A"], out["V"]])
    return out


# ------------------------------------------------------------------------------------ config


def test_presets_have_the_real_shapes() -> None:
    assert set(PRESETS) == {"mosi", "mosei", "sims", "trimodal", "emotion", "sims2"}
    mosei, sims = PRESETS["mosei"], PRESETS["sims"]
    assert (mosei.n_train, mosei.n_valid, mosei.n_test) == (16326, 1871, 4659)
    assert (mosei.audio_dim, mosei.vision_dim) == (74, 35)
    assert (sims.text_len, sims.audio_len, sims.audio_dim) == (39, 400, 33)
    assert (sims.vision_len, sims.vision_dim) == (55, 709)
    assert sims.label_range == (-1.0, 1.0) and sims.metric_family == "sims" and not sims.aligned
    assert SyntheticConfig.from_preset("mosi") == SyntheticConfig()
    assert SyntheticConfig.from_preset("sims", seed=3).preset == "sims"


def test_unknown_preset_and_key_name_the_allowed_values() -> None:
    with pytest.raises(RobustMSAError, match=r"'mosii'.*mosi, mosei, sims") as e:
        SyntheticConfig.from_preset("mosii")
    assert "mosi" in (e.value.hint or "")
    with pytest.raises(RobustMSAError, match=r"'n_trian'.*allowed keys:.*n_train") as e:
        SyntheticConfig.from_preset("mosi", n_trian=5)
    assert "n_train" in (e.value.hint or "")
    with pytest.raises(RobustMSAError, match="'preset'"):
        SyntheticConfig.from_preset("mosi", preset="sims")


@pytest.mark.parametrize(
    ("key", "value"),
    [("conflict_fraction", 1.5), ("n_train", 0), ("n_train", 2.5), ("label_range", [-3, 2]),
     ("audio_len", 60), ("metric_family", "mosei"), ("clips_per_video", [5, 2]), ("aligned", "yes")],
)
def test_invalid_values_name_the_key(key: str, value: Any) -> None:
    with pytest.raises(RobustMSAError, match=f"'{key}'.*allowed"):
        SyntheticConfig.from_preset("mosi", **{key: value})


def test_to_dict_round_trips_through_json() -> None:
    config = SyntheticConfig.from_preset("sims", seed=4, clips_per_video=[3, 9])
    assert config.clips_per_video == (3, 9)
    again = SyntheticConfig(**json.loads(json.dumps(config.to_dict())))
    assert again == config and synthetic_cache_key(again) == synthetic_cache_key(config)
    assert synthetic_cache_key(config) != synthetic_cache_key(SyntheticConfig.from_preset("sims", seed=5))


def _documented(path: Path) -> dict[str, Any]:
    """The parameter block commented under "Resolved parameters" in a dataset YAML."""
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("# Resolved parameters")) + 1
    block = [ln[len("#   "):] for ln in lines[start:] if ln.startswith("#   ")]
    return yaml.safe_load("\n".join(block))


@pytest.mark.parametrize("file", ["synthetic.yaml", "synthetic_mosei.yaml", "synthetic_sims.yaml",
                                  "synthetic_trimodal.yaml", "synthetic_emotion.yaml", "synthetic_sims2.yaml"])
def test_dataset_yaml_matches_the_code(file: str) -> None:
    spec = yaml.safe_load((CONFIGS / file).read_text())
    assert set(spec) == {"name", "preset", "seed", "overrides"}
    config = SyntheticConfig.from_preset(spec["preset"], seed=spec["seed"], **spec["overrides"])
    assert config.dataset_name == spec["name"] == file.removesuffix(".yaml")
    assert _documented(CONFIGS / file) == config.to_dict()


# ------------------------------------------------------------------------- determinism


def _rng_states() -> tuple[Any, ...]:
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state().clone()
    return (np_state[0], np_state[1].copy(), *np_state[2:], random.getstate(), torch_state)


def _same_states(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, torch.Tensor):
            return torch.equal(x, y)
        return bool(np.array_equal(x, y)) if isinstance(x, np.ndarray) else x == y

    return all(same(x, y) for x, y in zip(a, b))


def test_generation_is_deterministic_and_leaves_global_rngs_alone() -> None:
    before = _rng_states()
    a = generate_synthetic(SyntheticConfig.from_preset("mosi", **SMALL))
    b = generate_synthetic(SyntheticConfig.from_preset("mosi", **SMALL))
    c = generate_synthetic(SyntheticConfig.from_preset("mosi", seed=1, **SMALL))
    assert _same_states(before, _rng_states())
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert a.info == b.info
    assert json.loads(json.dumps(a.info)) == a.info


def test_text_encoder_reproduces_the_features(mosi: MSADataset) -> None:
    encoder = SyntheticTextEncoder(SyntheticConfig.from_preset("mosi"))
    split = mosi["valid"]
    assert np.array_equal(encoder(split.text_ids), split.text)
    unk = split.text_ids.copy()
    unk[:, 3] = np.where(split.text_mask[:, 3], 100, 0)
    assert not np.array_equal(encoder(unk), split.text)
    with pytest.raises(RobustMSAError, match="text ids"):
        encoder(np.full((2, 5), 40000))


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("preset", ["mosi", "mosei", "sims"])
def test_shapes_dtypes_and_ranges(preset: str) -> None:
    config = SyntheticConfig.from_preset(preset, **SMALL)
    ds = generate_synthetic(config)
    assert ds.name == config.dataset_name and ds.metric_family == config.metric_family
    assert ds.label_range == config.label_range
    assert ds.lengths == {"text": config.text_len, "audio": config.audio_len, "vision": config.vision_len}
    assert ds.dims == {"text": config.text_dim, "audio": config.audio_dim, "vision": config.vision_dim}
    for name in SPLITS:
        s = ds[name]
        assert len(s) == config.split_sizes[name]
        for m in ("text", "audio", "vision"):
            x, mask = getattr(s, m), getattr(s, f"{m}_mask")
            assert x.dtype == np.float32 and mask.dtype == bool and np.isfinite(x).all()
            assert mask.any(axis=1).all() and not x[~mask].any()
        assert s.text_ids.dtype == np.int64 and s.labels.dtype == np.float32
        assert s.ids.dtype.kind == "U" and s.raw_text.dtype.kind == "U"
        lo, hi = config.label_range
        assert (s.labels >= lo).all() and (s.labels <= hi).all()
        for m in ("audio", "vision"):
            clue = s.clues[m]
            assert clue.shape == (len(s), config.clue_len) and clue.dtype == np.int64
            assert clue.min() >= 0 and clue.max() < len(CLUE_VOCAB) and (clue[:, 0] == 1).all()
        if config.aligned:
            assert np.array_equal(s.audio_mask, s.text_mask) and np.array_equal(s.vision_mask, s.text_mask)
    if preset == "sims":
        for name in SPLITS:
            s = ds[name]
            assert set(s.unimodal_labels) == {"T", "A", "V"}
            assert all(u.dtype == np.float32 and np.abs(u).max() <= 1 for u in s.unimodal_labels.values())
            assert np.allclose(s.labels * 5, np.rint(s.labels * 5), atol=1e-4)
        lengths = np.concatenate([ds[n].audio_mask.sum(1) for n in SPLITS])
        assert len(np.unique(lengths)) > 10 and lengths.min() >= 0.4 * config.audio_len
    else:
        assert all(not ds[n].unimodal_labels for n in SPLITS)


def test_masks_are_prefixes_with_cls_and_sep(mosi: MSADataset) -> None:
    config = SyntheticConfig.from_preset("mosi")
    for name in SPLITS:
        s = mosi[name]
        n = s.text_mask.sum(axis=1)
        assert np.array_equal(s.text_mask, s.text_ids != PAD_ID)
        assert np.array_equal(s.text_mask, np.arange(config.text_len)[None, :] < n[:, None])
        assert (s.text_ids[:, 0] == CLS_ID).all()
        assert (s.text_ids[np.arange(len(s)), n - 1] == SEP_ID).all()
        inner = s.text_mask.copy()
        inner[:, 0] = False
        inner[np.arange(len(s)), n - 1] = False
        words = s.text_ids[inner]
        assert words.min() >= 1000 and words.max() < 30000
        assert n.min() >= config.min_words + 2 and n.max() <= config.text_len
        assert n.std() > 4
        assert [len(t.split()) for t in s.raw_text[:50]] == (n[:50] - 2).tolist()


def test_ids_unique_and_splits_by_video(mosi: MSADataset) -> None:
    ids = np.concatenate([mosi[n].ids for n in SPLITS])
    assert len(set(ids.tolist())) == len(ids)
    assert all(i.startswith("vid") and "$_$" in i for i in ids[:20])
    videos = {n: {i.split("$_$")[0] for i in mosi[n].ids} for n in SPLITS}
    assert not videos["train"] & videos["valid"] and not videos["train"] & videos["test"]
    assert not videos["valid"] & videos["test"]
    clips_per_video = len(mosi["train"]) / len(videos["train"])
    assert 8 <= clips_per_video <= 40


def test_labels_look_like_annotator_averages(mosi: MSADataset) -> None:
    y = np.concatenate([mosi[n].labels for n in SPLITS])
    assert np.allclose(y * 3, np.rint(y * 3), atol=1e-4)
    assert len(np.unique(np.rint(y * 3))) == 19
    assert 0.02 <= np.mean(y == 0) <= 0.15
    assert -0.4 < y.mean() < 0 and 1.2 < y.std() < 2.0


def test_expected_label_is_the_mean_of_the_annotation_process() -> None:
    config = SyntheticConfig.from_preset("mosi")
    s = np.repeat(np.array([-3.5, -1.2, 0.0, 0.4, 2.6]), 40000)
    labels = annotate(s, config.latent, np.random.default_rng(7))
    empirical = labels.reshape(5, -1).mean(axis=1)
    assert np.allclose(empirical, expected_label(s[::40000], config.latent), atol=0.02)
    assert np.all(np.diff(expected_label(np.linspace(-5, 5, 50), config.latent)) > 0)


# ------------------------------------------------------------------ planted properties


def test_text_beats_audio_beats_the_mean(mosi: MSADataset, probes: dict[str, Any]) -> None:
    test = mosi["test"]
    mean_mae = float(np.abs(test.labels - mosi["train"].labels.mean()).mean())
    t, a, v = (probes[k].mae(test) for k in ("T", "A", "V"))
    assert t < a - 0.1 and a < mean_mae - 0.1
    assert a < v < mean_mae - 0.05
    for k, least in (("A", 0.4), ("V", 0.25)):
        assert np.corrcoef(probes[k].predict(test), test.labels)[0, 1] > least


def test_fusion_helps_on_conflict_samples(mosi: MSADataset, probes: dict[str, Any]) -> None:
    test = mosi["test"]
    conflict = np.array(mosi.info["conflict"]["test"])
    assert probes["TAV"].mae(test, conflict) < probes["T"].mae(test, conflict) - 0.1
    corr = {k: np.corrcoef(probes[k].predict(test), test.labels)[0, 1] for k in ("T", "TAV")}
    assert corr["TAV"] > corr["T"] + 0.02


def test_conflict_fraction_close_to_configured(mosi: MSADataset) -> None:
    n = sum(len(mosi[s]) for s in SPLITS)
    share = sum(len(mosi.info["conflict"][s]) for s in SPLITS) / n
    assert abs(share - 0.15) < 0.03 and share == pytest.approx(mosi.info["conflict_fraction"])


def test_sentiment_lives_in_the_sentiment_words(mosi: MSADataset, probes: dict[str, Any]) -> None:
    test = mosi["test"]
    sentiment = np.isin(test.text_ids, mosi.info["lexicon"]["sentiment_ids"])
    negation = np.isin(test.text_ids, mosi.info["lexicon"]["negation_ids"])
    assert 1.0 <= sentiment.sum(axis=1).mean() <= 3.0
    candidates = test.text_mask & ~sentiment & ~negation & ~np.isin(test.text_ids, [CLS_ID, SEP_ID])
    keys = np.where(candidates, np.random.default_rng(0).random(candidates.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    random_pick = rank < sentiment.sum(axis=1, keepdims=True)
    assert random_pick.sum() == sentiment.sum()
    clean = probes["T"].mae(test)
    hurt_sentiment = probes["T"].mae(test, text=test.text * ~sentiment[..., None]) - clean
    hurt_random = probes["T"].mae(test, text=test.text * ~random_pick[..., None]) - clean
    assert hurt_sentiment > 0.2 and hurt_sentiment > 4 * max(hurt_random, 0.02)


def test_speakers_share_offsets(mosi: MSADataset) -> None:
    split = mosi["train"]
    x = pooled(split, "audio")
    video = np.array([i.split("$_$")[0] for i in split.ids])
    within = np.mean([x[video == v].var(axis=0).mean() for v in np.unique(video)])
    assert within < 0.8 * x.var(axis=0).mean()
    scales = x.std(axis=0)
    assert scales.max() > 3 * scales.min()


def test_planted_ceiling_is_realistic_and_beats_the_probes(mosi: MSADataset, probes: dict[str, Any]) -> None:
    ceiling = mosi.info["ceiling"]
    assert set(ceiling) == {"valid", "test"} and "latent" in mosi.info["ceiling_predictor"]
    test_ceiling = ceiling["test"]
    assert 0.4 <= test_ceiling["mae"] <= 0.6 and 0.85 <= test_ceiling["non0_acc2"] <= 0.97
    assert test_ceiling["mae"] < min(p.mae(mosi["test"]) for p in probes.values()) - 0.3
    assert mosi.info["generator_version"] == GENERATOR_VERSION
    assert mosi.info["config"] == SyntheticConfig.from_preset("mosi").to_dict()
    assert "synthetic" in mosi.info["description"]


def test_clues_describe_the_cues(mosi: MSADataset) -> None:
    split = mosi["train"]
    words = ("very low pitch", "low pitch", "steady pitch", "high pitch", "very high pitch")
    pitch = {CLUE_VOCAB.index(w): v for w, v in zip(words, (-2, -1, 0, 1, 2))}
    clue = split.clues["audio"]
    score = np.vectorize(lambda t: pitch.get(int(t), 0))(clue).sum(axis=1)
    assert np.corrcoef(score, split.labels)[0, 1] > 0.4
    smile = (split.clues["vision"] == CLUE_VOCAB.index("broad smile")).sum(axis=1)
    assert split.labels[smile > 0].mean() > 1.0 > split.labels[smile == 0].mean()


# -------------------------------------------------------------------------------- cache


def test_load_caches_and_second_load_hits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_synthetic("mosi", seed=2, cache_dir=tmp_path, **SMALL)
    files = sorted(p.suffix for p in (tmp_path / "synthetic").iterdir())
    assert files == [".json", ".npz"]

    def refuse(config: SyntheticConfig) -> MSADataset:
        raise AssertionError("cache was not used")

    monkeypatch.setattr(synthetic_cache, "generate_synthetic", refuse)
    second = load_synthetic("mosi", seed=2, cache_dir=tmp_path, **SMALL)
    assert second.content_hash() == first.content_hash()
    assert second.info == first.info and second.name == first.name and second.label_range == first.label_range
    with pytest.raises(AssertionError, match="cache was not used"):
        load_synthetic("mosi", seed=3, cache_dir=tmp_path, **SMALL)


def test_corrupt_or_tampered_cache_is_regenerated(tmp_path: Path) -> None:
    original = load_synthetic("sims", cache_dir=tmp_path, **SMALL)
    reference = original.content_hash()
    (npz,) = (tmp_path / "synthetic").glob("*.npz")
    npz.write_bytes(b"not a zip file")
    assert load_synthetic("sims", cache_dir=tmp_path, **SMALL).content_hash() == reference
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["test/labels"] = arrays["test/labels"] + 1
    np.savez(npz, **arrays)
    assert load_synthetic("sims", cache_dir=tmp_path, **SMALL).content_hash() == reference
    with np.load(npz, allow_pickle=False) as z:
        assert np.array_equal(z["test/labels"], original["test"].labels)
    assert not list((tmp_path / "synthetic").glob("*.tmp"))


def test_planning_summary_is_read_from_the_cache_entry_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cached_summary`` answers from the ``.json`` (no array is read); an entry written before the
    sizes were kept has no summary until its next load adds them; the summary equals the loaded dataset's."""
    from robustmsa.datasets import DatasetSummary, summarise_dataset

    assert cached_summary("emotion", seed=1, cache_dir=tmp_path, **SMALL) is None  # no entry yet
    loaded = load_synthetic("emotion", seed=1, cache_dir=tmp_path, **SMALL)
    (meta,) = (tmp_path / "synthetic").glob("*.json")
    found = cached_summary("emotion", seed=1, cache_dir=tmp_path, **SMALL)
    assert found == {"content_hash": loaded.content_hash(), "sizes": {"train": 20, "valid": 10, "test": 10},
                     "metric_family": loaded.metric_family, "classes": list(loaded.classes)}
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("arrays read")))
    assert cached_summary("emotion", seed=1, cache_dir=tmp_path, **SMALL) == found
    monkeypatch.undo()
    old = json.loads(meta.read_text())
    del old["sizes"]
    meta.write_text(json.dumps(old))
    assert cached_summary("emotion", seed=1, cache_dir=tmp_path, **SMALL) is None
    load_synthetic("emotion", seed=1, cache_dir=tmp_path, **SMALL)  # a hit: the sizes are added
    assert cached_summary("emotion", seed=1, cache_dir=tmp_path, **SMALL) == found
    monkeypatch.setenv("ROBUSTMSA_CACHE", str(tmp_path))
    params = {"seed": 1, **SMALL}
    assert summarise_dataset("synthetic_emotion", params) == DatasetSummary.of(loaded)
    assert DatasetSummary.of(loaded).num_classes == 7
    with pytest.raises(RobustMSAError, match="dataset .synthetic_emotion.: unknown synthetic config key .n_tran."):
        summarise_dataset("synthetic_emotion", {"n_tran": 3})


def test_default_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTMSA_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    load_synthetic("mosi", **SMALL)
    assert len(list((tmp_path / "synthetic").glob("synthetic-*.npz"))) == 1
    monkeypatch.delenv("ROBUSTMSA_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "robustmsa"


# ------------------------------------------------------------------------------- export


@pytest.mark.parametrize("preset", ["mosi", "sims"])
def test_mmsa_export_round_trip(preset: str, tmp_path: Path) -> None:
    from robustmsa.data.mmsa import load_mmsa_pickle

    ds = generate_synthetic(SyntheticConfig.from_preset(preset, **SMALL))
    path = tmp_path / f"{preset}.pkl"
    export_mmsa(ds, path)
    back = load_mmsa_pickle(path, name=ds.name)
    assert back.metric_family == ds.metric_family and back.label_range == ds.label_range
    for name in SPLITS:
        want, got = ds[name].arrays(), back[name].arrays()
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key].dtype.kind == value.dtype.kind, key
            assert np.array_equal(got[key], value), key
    assert back.content_hash() == ds.content_hash()


# ------------------------------------------------------------------------ registry and layers


def test_every_dataset_is_declared_with_its_help_and_every_preset_is_registered() -> None:
    from robustmsa.datasets import DATASETS

    assert set(DATASET_NAMES.values()) <= set(DATASETS.names())
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        assert entry.name == name and callable(entry.load) and len(entry.help) > 20


def test_the_data_layer_imports_no_higher_layer() -> None:
    import ast

    higher = ("raw", "models", "evaluation", "training", "suite", "trial", "runner", "reports", "report", "cli",
              "datasets", "tracking")
    root = Path(__file__).resolve().parents[1] / "robustmsa" / "data"
    for path in root.rglob("*.py"):
        depth = len(path.relative_to(root).parts)  # 1: robustmsa/data/x.py, 2: robustmsa/data/synthetic/x.py
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.level == 0:
                    module = node.module
                else:
                    base = ("robustmsa", "data", *path.relative_to(root).parts[:-1])[: 2 + depth - node.level]
                    module = ".".join((*base, node.module))
                top = module.removeprefix("robustmsa.").split(".")[0]
                assert not (module.startswith("robustmsa.") and top in higher), f"{path.name} imports {module}"


def test_both_generators_share_one_latent_model() -> None:
    from robustmsa.media.generate import RawBenchmarkConfig

    raw, mosi = RawBenchmarkConfig().latent, SyntheticConfig().latent
    assert isinstance(raw, LatentModel) and isinstance(mosi, LatentModel)
    assert (raw.rating_levels, raw.label_max, raw.latent_limit) == (3, 3.0, 3.4)
    assert (mosi.rating_levels, mosi.label_max, mosi.latent_limit) == (3, 3.0, None)
