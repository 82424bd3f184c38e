"""The evaluation grid: sweeps, products and the per-point results of one checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corruptions import ReliabilityPoint
from corruptions.keys import MODALITIES
from robustmsa.data.batch import split_to_batch
from robustmsa.datasets import load_dataset
from robustmsa.evaluation import CorruptionContext, GridRun, build_grid, evaluate_grid
from robustmsa.models import MODELS, create_model
from robustmsa.models.layers import encoding_cache
from robustmsa.suite import GridSpec

TINY = {"seed": 0, "n_train": 64, "n_valid": 16, "n_test": 40, "text_dim": 16}


def test_build_grid_sweeps_and_products() -> None:
    grid = build_grid(GridSpec(families=["noise", {"name": "drop"}], levels=[1.0, 0.5, 0.0],
                               sweeps=["audio", "joint", "audio+vision"]))
    assert len(grid) == 2 * (3 + 3 + 9)
    prod = [g for g in grid if g.family == "noise" and g.sweep == "audio+vision"]
    assert [g.index for g in prod] == list(range(9))
    assert prod[0].point.is_clean and prod[-1].point.audio == 0.0 and prod[-1].point.vision == 0.0
    assert all(g.point.text == 1.0 for g in prod)
    assert {(g.point.audio, g.point.vision) for g in prod} == {(a, v) for a in (1.0, 0.5, 0.0) for v in (1.0, 0.5, 0.0)}
    single = [g for g in grid if g.family == "drop" and g.sweep == "audio"]
    assert [g.level for g in single] == [1.0, 0.5, 0.0]
    assert all(g.point.of(m) == 1.0 for g in single for m in MODALITIES if m != "audio")


def test_evaluate_grid_product_points_match_direct_prediction() -> None:
    ds = load_dataset("synthetic", TINY)
    model = create_model("late_fusion", dims=ds.dims, lengths=ds.lengths, seed=0)
    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities())
    test = split_to_batch(ds["test"])
    run = GridRun(GridSpec(families=["noise"], levels=[1.0, 0.0], sweeps=["audio+vision", "joint"]), seed=7,
                  metric_family="mosi", batch_size=16)
    res = evaluate_grid(model, test, ctx, run)
    by = {(r.grid.sweep, r.grid.index): r for r in res}
    assert set(by) == {("audio+vision", i) for i in range(4)} | {("joint", 0), ("joint", 1)}
    # the all-corrupted product point differs from clean; (audio=0, vision=0) with text clean is
    # not the joint point (text is corrupted there)
    assert not torch.equal(torch.from_numpy(by[("audio+vision", 3)].pred), torch.from_numpy(by[("audio+vision", 0)].pred))
    assert not torch.equal(torch.from_numpy(by[("audio+vision", 3)].pred), torch.from_numpy(by[("joint", 1)].pred))
    assert (by[("audio+vision", 0)].pred == by[("joint", 0)].pred).all()


def test_qmc_sweep_is_deterministic_and_covers_the_joint_space() -> None:
    qmc = GridSpec(families=["noise"], levels=[1.0], sweeps=["qmc"], qmc_points=8)
    a = build_grid(qmc, qmc_seed=3)
    b = build_grid(qmc, qmc_seed=3)
    c = build_grid(qmc, qmc_seed=4)
    assert [g.point for g in a] == [g.point for g in b] != [g.point for g in c]
    assert [g.index for g in a] == list(range(8)) and {g.sweep for g in a} == {"qmc"}
    rhos = torch.tensor([[g.point.of(m) for m in MODALITIES] for g in a])
    assert ((rhos >= 0) & (rhos <= 1)).all() and (rhos.std(0) > 0.15).all()


def _grid(model, ds, ctx, reuse: bool):
    test = split_to_batch(ds["test"])
    grid = GridSpec(families=["missing", "noise"], levels=[1.0, 0.0], sweeps=["text", "audio", "joint"])
    return evaluate_grid(model, test, ctx, GridRun(grid, seed=3, metric_family="mosi", batch_size=16,
                                                   reuse_encodings=reuse))


@pytest.mark.parametrize("name", [n for n in MODELS.names() if not MODELS.get(n).brings_weights])
def test_reusing_clean_encodings_changes_no_number(name: str) -> None:
    ds = load_dataset("synthetic", TINY)
    model = create_model(name, dims=ds.dims, lengths=ds.lengths, seed=0)
    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities())
    a, b = _grid(model, ds, ctx, True), _grid(model, ds, ctx, False)
    assert [r.grid for r in a] == [r.grid for r in b]
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.pred, rb.pred), ra.grid
        assert ra.extras.keys() == rb.extras.keys()
        assert all(np.array_equal(ra.extras[k], rb.extras[k]) for k in ra.extras)


def test_encoding_cache_hits_only_unchanged_clean_inputs() -> None:
    ds = load_dataset("synthetic", TINY)
    model = create_model("late_fusion", dims=ds.dims, lengths=ds.lengths, seed=0).eval()
    test = split_to_batch(ds["test"])
    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities())
    noisy_audio = test.with_modalities(ctx.prepared("noise", 0, test, "test").at(ReliabilityPoint.only("audio", 0.5)))
    with torch.no_grad(), encoding_cache(test) as cache:
        clean = model(test)["pred"]
        assert (cache.hits, cache.misses) == (0, 3)
        noisy = model(noisy_audio)["pred"]  # text and vision reused, audio encoded
        assert (cache.hits, cache.misses) == (2, 3)
        test.vision.mul_(1.0)  # an in-place write bumps the version counter: no stale reuse
        model(test)
        assert (cache.hits, cache.misses) == (4, 4)
    assert not torch.equal(clean, noisy)
    with encoding_cache(test) as cache:  # never while gradients are recorded
        model(test)
        assert (cache.hits, cache.misses) == (0, 0)


def test_corruption_context_serves_feature_families_as_a_corruption_source() -> None:
    """The context lives in robustmsa.corruption_context (re-exported by robustmsa.evaluation) and
    picks the source by the family's declared level: feature families give a corruptions.Prepared."""
    from corruptions import CorruptionSource, Prepared
    from robustmsa import corruption_context

    assert corruption_context.CorruptionContext is CorruptionContext
    ds = load_dataset("synthetic", TINY)
    test = split_to_batch(ds["test"])
    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities())
    prepared = ctx.prepared({"name": "drop"}, 3, test, "test")
    assert isinstance(prepared, Prepared) and isinstance(prepared, CorruptionSource)
    assert ctx.prepared({"name": "drop"}, 3, test, "test") is prepared
    assert sorted(prepared.data) == sorted(MODALITIES)
