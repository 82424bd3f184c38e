"""The cue design of the synthetic benchmark and its observable oracle (robustmsa.data.oracle).

Meaning tests: the oracle's measurement reproduces what each corruption does to the frames, it
equals a closed form where one exists, it is monotone in rho, and no predictor that sees the
inputs beats it beyond sampling error.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from corruptions import ReliabilityPoint, make_corrupter
from corruptions.feature.compose import build_family
from robustmsa.data.batch import split_to_batch
from robustmsa.data.oracle import TIME_EFFECTS, CueOracle, has_oracle, time_effect
from robustmsa.data.synthetic import SyntheticConfig, generate_synthetic, load_synthetic
from robustmsa.data.synthetic.assembly import sample_population
from robustmsa.data.synthetic.cue_design import PRIVATE_CUE, _cues, build_world, private_weights
from robustmsa.evaluation import CorruptionContext
from robustmsa.metrics import compute_metrics
from robustmsa.references import LinearProbe

SMALL = dict(n_train=300, n_valid=80, n_test=240)


@pytest.fixture(scope="module")
def tri():
    ds = generate_synthetic(SyntheticConfig.from_preset("trimodal", **SMALL))
    return ds, CueOracle(ds)


def _true_cues(config: SyntheticConfig, split: str) -> dict[str, np.ndarray]:
    pop = sample_population(config)
    cues, _ = _cues(config, pop.s / config.rating_levels, pop.conflict)
    idx = np.flatnonzero(pop.split == ("train", "valid", "test").index(split))
    return {m: c[idx] for m, c in cues.items()}


def _mae(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(pred - y).mean())


def test_only_the_cue_design_has_an_oracle(tri) -> None:
    ds, _ = tri
    assert has_oracle(ds) and ds.name == "synthetic_trimodal"
    mosi = generate_synthetic(SyntheticConfig.from_preset("mosi", n_train=40, n_valid=16, n_test=16, text_dim=32))
    assert not has_oracle(mosi)
    with pytest.raises(Exception, match="no oracle"):
        CueOracle(mosi)


def test_every_modality_carries_private_information(tri) -> None:
    ds, _ = tri
    assert 0.2 < ds.info["private_share"] < 0.6
    assert all(w > 0 for w in private_weights(ds.info and SyntheticConfig.from_preset("trimodal")).values())
    assert not any(ds[s].clues for s in ("train", "valid", "test"))  # no second, uncorrupted view of the cues


def test_clean_measurement_recovers_the_text_cues_exactly_and_audio_within_its_variance(tri) -> None:
    ds, orc = tri
    test = split_to_batch(ds["test"])
    truth = _true_cues(orc.config, "test")
    text = orc.measure("text", test.modality("text"), test.modality("text"), orc.templates("test")["text"], None)
    assert np.abs(text.c_hat - truth["text"]).max() < 1e-4 and text.informative.all()
    for m in ("audio", "vision"):
        meas = orc.measure(m, test.modality(m), test.modality(m), orc.templates("test")[m], None)
        z = (meas.c_hat - truth[m]) / np.sqrt(np.einsum("bii->bi", meas.V))
        assert abs(z.mean()) < 0.2 and 0.75 < z.std() < 1.25, (m, z.mean(), z.std())  # unbiased, V is its variance


def test_the_positions_the_oracle_is_told_are_observable_on_clean_inputs(tri) -> None:
    ds, orc = tri
    test = split_to_batch(ds["test"])
    where = {m: np.asarray(ds.info["oracle"]["where"]["test"][m]) for m in ("audio", "vision")}
    for m, true in where.items():
        cands, log_post = orc.burst_posterior(m, test.modality(m))
        assert np.allclose(np.exp(log_post).sum(1), 1.0)
        lengths = test.modality(m).mask.sum(1).numpy()
        assert (log_post[cands.sum(1)[None, :] > lengths[:, None]] == -np.inf).all()  # past the clip's end
        best = cands[log_post.argmax(1)]
        assert np.mean((best == true).all(1)) >= 0.97, m
        shifted = np.asarray(true).copy()
        shifted[:, 0] = np.maximum(shifted[:, 0] - 1, 0)  # one frame early: less probable than the truth
        p_true = log_post[np.arange(len(true)), [np.flatnonzero((cands == t).all(1))[0] for t in true]]
        p_shift = log_post[np.arange(len(true)), [np.flatnonzero((cands == t).all(1))[0] for t in shifted]]
        moved = shifted[:, 0] != true[:, 0]
        assert np.mean(p_true[moved] > p_shift[moved]) >= 0.97
        where[m] = best.tolist()
    info = {**ds.info, "oracle": {**ds.info["oracle"], "where": {**ds.info["oracle"]["where"], "test": {
        **ds.info["oracle"]["where"]["test"], **where}}}}
    told = CueOracle(ds).predict(test, test, "test", {}, {}, {}).pred
    inferred = CueOracle(dataclasses.replace(ds, info=info)).predict(test, test, "test", {}, {}, {}).pred
    y = np.asarray(ds["test"].labels)
    assert abs(_mae(inferred, y) - _mae(told, y)) < 0.01
    with pytest.raises(ValueError, match="no burst"):
        orc.burst_posterior("text", test.modality("text"))


@pytest.mark.parametrize("family", sorted(TIME_EFFECTS))
def test_time_effect_reproduces_each_family(tri, family: str) -> None:
    """x' = L x + mean (+ std * noise on the noise family's active frames), bit for bit up to float32."""
    ds, orc = tri
    train = split_to_batch(ds["train"])
    test = split_to_batch(ds["test"])
    spec = {"name": "compose", "families": ["noise", "drop"]} if family == "compose" else family
    corrupter = make_corrupter(spec, seed=3, train=train.modalities())
    prepared = corrupter.prepare(test.modalities(), test.keys)
    for m in ("text", "audio"):
        dims = orc.world.dims[m]
        clean = test.modality(m)
        rho = torch.full((len(test),), 0.4)
        out = prepared.at({m: 0.4})[m]
        e = time_effect(prepared.families[m], rho, prepared.states[m], clean, dims)
        x = clean.features[:, :, dims].double()
        pred = e.L @ x + e.mean
        diff = out.features[:, :, dims].double() - pred
        obs = e.observed
        assert torch.equal(obs, out.mask & ~out.missing[:, None]), (family, m)
        if e.std is None:
            assert diff[obs].abs().max() < 1e-4, (family, m)
        else:  # what is left is the noise: std times the state's standard normals
            z = diff / e.std
            assert z[obs].std().item() == pytest.approx(math.sqrt(0.6), rel=0.05), (family, m)


def test_oracle_equals_the_closed_form_where_one_exists() -> None:
    """Gaussian shared latent, no conflict clips, text alone: the posterior is Gaussian and
    E[label | observation] is the closed-form expected rating under the total uncertainty."""
    from robustmsa.data.synthetic import expected_label

    config = SyntheticConfig.from_preset("trimodal", neutral_share=1.0, neutral_sd=0.9, conflict_fraction=0.0, **SMALL)
    ds = generate_synthetic(config)
    orc = CueOracle(ds)
    test = split_to_batch(ds["test"])
    train = split_to_batch(ds["train"])
    ctx = CorruptionContext(train.modalities())
    prep = ctx.prepared("missing", 7, test, "test")
    point = ReliabilityPoint(text=1.0, audio=0.0, vision=0.0)
    got = orc.predict(test, test.with_modalities(prep.at(point)), "test", prep.families, prep.states, point.as_dict())
    assert not got.informative[:, 1:].any() and got.informative[:, 0].all()
    y = _true_cues(config, "test")["text"]
    k, j2, lam = config.rating_levels, config.modality_jitter ** 2, private_weights(config)
    tau2 = (config.neutral_sd / k) ** 2
    z_mean, z_var = tau2 / (tau2 + j2) * y[:, 0], tau2 * j2 / (tau2 + j2)
    u_mean, u_var = y[:, PRIVATE_CUE["text"]] / (1 + j2), j2 / (1 + j2)
    s_mean = k * (z_mean + lam["text"] * u_mean)
    s_var = k**2 * (z_var + lam["text"] ** 2 * u_var + lam["audio"] ** 2 + lam["vision"] ** 2)
    noise = math.sqrt(config.label_noise**2 + s_var)
    from dataclasses import replace

    want = expected_label(s_mean, replace(config, label_noise=noise).latent)
    assert np.abs(got.mean - want).max() < 1e-4  # measured 1.5e-5


def test_oracle_is_monotone_in_rho_and_every_modality_matters(tri) -> None:
    ds, orc = tri
    test, train = split_to_batch(ds["test"]), split_to_batch(ds["train"])
    ctx = CorruptionContext(train.modalities())
    y = test.labels.numpy()
    for family in ("missing", "drop", "noise"):
        prep = ctx.prepared(family, 1234, test, "test")
        for m in ("text", "audio", "vision"):
            maes = []
            for rho in (1.0, 0.6, 0.3, 0.0):
                pt = ReliabilityPoint.only(m, rho)
                p = orc.predict(test, test.with_modalities(prep.at(pt)), "test", prep.families, prep.states, pt.as_dict())
                maes.append(_mae(p.pred, y))
            assert all(b >= a - 0.02 for a, b in zip(maes, maes[1:])), (family, m, maes)
            assert maes[-1] > maes[0] + 0.05, (family, m, maes)  # losing any modality costs the oracle


def test_no_predictor_of_the_inputs_beats_the_oracle(tri) -> None:
    """Clean and at a few corrupted points: the linear probe, a probe fitted on ten times the
    training data of the same world and the oracle's own posterior mean stay above the oracle's MAE,
    beyond two standard errors of the paired difference."""
    ds, orc = tri
    test, train, valid = (split_to_batch(ds[s]) for s in ("test", "train", "valid"))
    ctx = CorruptionContext(train.modalities())
    y = test.labels.numpy()
    probe = LinearProbe.fit(train, valid)
    big = generate_synthetic(SyntheticConfig.from_preset("trimodal", n_train=3000, n_valid=300, n_test=20))
    strong = LinearProbe.fit(split_to_batch(big["train"]), split_to_batch(big["valid"]))
    prep = ctx.prepared("noise", 1234, test, "test")
    for pt in (ReliabilityPoint(), ReliabilityPoint.only("audio", 0.3), ReliabilityPoint.joint(0.5)):
        x = test.with_modalities(prep.at(pt))
        o = orc.predict(test, x, "test", prep.families, prep.states, pt.as_dict())
        err_o = np.abs(o.pred - y)
        for name, pred in (("probe", probe(x)["pred"].numpy()), ("10x-data probe", strong(x)["pred"].numpy()),
                           ("posterior mean", o.mean)):
            diff = np.abs(pred - y) - err_o
            assert diff.mean() > -2 * diff.std(ddof=1) / math.sqrt(len(y)), (name, pt, diff.mean())
    assert compute_metrics(o.pred, y, "mosi")["mae"] < 0.8 * _mae(probe(test)["pred"].numpy(), y)


def test_world_is_independent_of_the_sizes() -> None:
    a = build_world(SyntheticConfig.from_preset("trimodal"))
    b = build_world(SyntheticConfig.from_preset("trimodal", **SMALL))
    for m in ("text", "audio", "vision"):
        assert np.array_equal(a.loadings[m], b.loadings[m]) and np.array_equal(a.dims[m], b.dims[m])


def test_main_preset_is_cached_and_documented(tmp_path) -> None:
    ds = load_synthetic("trimodal", cache_dir=tmp_path, **SMALL)
    again = load_synthetic("trimodal", cache_dir=tmp_path, **SMALL)
    assert again.content_hash() == ds.content_hash() and again.info["oracle"] == ds.info["oracle"]
    assert build_family("drop").name in TIME_EFFECTS
