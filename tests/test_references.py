"""Reference predictors (robustmsa.references): the linear probe is exact ridge regression with its
penalty chosen on validation only, and the reference trial evaluates the oracle and the probes
over exactly the grid the models see."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from corruptions.keys import MODALITIES
from robustmsa.data.batch import split_to_batch
from robustmsa.data.synthetic import SyntheticConfig, generate_synthetic
from robustmsa.evaluation import CorruptionContext
from robustmsa.references import ORACLE, PROBE, LinearProbe, probe_label, reference_results
from robustmsa.suite import EvaluationSpec

SMALL = dict(n_train=240, n_valid=80, n_test=160)


@pytest.fixture(scope="module")
def tri():
    return generate_synthetic(SyntheticConfig.from_preset("trimodal", **SMALL))


def _pooled_numpy(batch, modalities) -> np.ndarray:
    cols = []
    for m in modalities:
        i = MODALITIES.index(m)
        mask = getattr(batch, f"{m}_mask").numpy() & ~batch.missing.numpy()[:, i : i + 1]
        x = getattr(batch, m).numpy().astype(np.float64)
        cols.append((x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1))
    return np.concatenate(cols, axis=1)


@pytest.mark.parametrize("modalities", [MODALITIES, ("audio", "vision")])
def test_linear_probe_is_ridge_with_the_penalty_chosen_on_validation(tri, modalities) -> None:
    train, valid = split_to_batch(tri["train"]), split_to_batch(tri["valid"])
    alphas = (0.1, 10.0, 1000.0)
    probe = LinearProbe.fit(train, valid, modalities, alphas=alphas)
    x, xv = _pooled_numpy(train, modalities), _pooled_numpy(valid, modalities)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    z, zv = (x - mu) / sd, (xv - mu) / sd
    y = train.labels.numpy().astype(np.float64)
    maes = {}
    for a in alphas:
        w = np.linalg.solve(z.T @ z + a * np.eye(z.shape[1]), z.T @ (y - y.mean()))
        maes[a] = (np.abs(zv @ w + y.mean() - valid.labels.numpy()).mean(), w)
    best = min(alphas, key=lambda a: (maes[a][0], -a))
    assert probe.alpha == best
    np.testing.assert_allclose(probe.weight.numpy(), maes[best][1], rtol=1e-8, atol=1e-10)
    pred = probe(valid)["pred"].numpy()
    np.testing.assert_allclose(pred, (zv @ maes[best][1] + y.mean()).astype(np.float32), rtol=1e-5, atol=1e-5)


def test_linear_probe_reads_an_absent_modality_as_zero_features(tri) -> None:
    train, valid = split_to_batch(tri["train"]), split_to_batch(tri["valid"])
    probe = LinearProbe.fit(train, valid)
    test = split_to_batch(tri["test"])
    missing = test.missing.clone()
    missing[:, MODALITIES.index("audio")] = True
    gone = dataclasses.replace(test, missing=missing)
    x = _pooled_numpy(test, MODALITIES)
    start = test.text.shape[2]
    x[:, start : start + test.audio.shape[2]] = 0.0  # the absent modality's pooled features
    want = (x - probe.mean.numpy()) / probe.std.numpy() @ probe.weight.numpy() + probe.bias
    np.testing.assert_allclose(probe(gone)["pred"].numpy(), want.astype(np.float32), rtol=1e-5, atol=1e-5)
    assert not np.allclose(probe(gone)["pred"].numpy(), probe(test)["pred"].numpy())


def test_reference_trial_evaluates_oracle_and_probes_over_the_grid(tri) -> None:
    ev = EvaluationSpec(families=["missing", "noise"], levels=[1.0, 0.5, 0.0], sweeps=["audio", "joint"])
    ctx = CorruptionContext(split_to_batch(tri["train"]).modalities(), dataset=tri.name)
    rows, info = reference_results(tri, ctx, ev)
    names = {n for n, _ in rows}
    assert names == {ORACLE, PROBE} | {probe_label(p) for p in [("text", "audio"), ("text", "vision"),
                                                                 ("audio", "vision")]}
    by = {}
    for n, r in rows:
        by.setdefault(n, []).append(r)
    # the probe and the oracle see every point of the grid (2 families x 2 sweeps x 3 levels, clean included)
    assert len(by[ORACLE]) == len(by[PROBE]) == 2 * 2 * 3
    assert all(len(by[probe_label(p)]) == 1 for p in [("audio", "vision")])
    clean = {n: next(r for r in rs if r.grid.point.is_clean).metrics["mae"] for n, rs in by.items()}
    assert clean[ORACLE] < min(v for n, v in clean.items() if n != ORACLE) - 0.2
    # the oracle degrades when audio goes missing, and more when everything does
    miss = {(r.grid.sweep, r.grid.point.as_dict()["audio"]): r.metrics["mae"] for r in by[ORACLE]
            if r.grid.family == "missing"}
    assert clean[ORACLE] < miss[("audio", 0.0)] < miss[("joint", 0.0)]
    assert info["oracle_families"] == ["missing", "noise"] and info["probe_alpha"][PROBE] > 0


def test_no_oracle_for_the_mosi_like_preset() -> None:
    ds = generate_synthetic(SyntheticConfig.from_preset("mosi", n_train=120, n_valid=40, n_test=40))
    ev = EvaluationSpec(families=["noise"], levels=[1.0, 0.0], sweeps=["joint"])
    rows, info = reference_results(ds, CorruptionContext(split_to_batch(ds["train"]).modalities()), ev)
    assert ORACLE not in {n for n, _ in rows} and "oracle_seconds" not in info
