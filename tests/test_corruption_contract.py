"""Contract tests for every registered feature-level corruption family (registry-driven).

A new family registered with ``level = "feature"`` is picked up automatically by the parametrised
contract tests (identity at rho = 1, damage growing as rho falls, nested masks, determinism from
keys alone, no global RNG, shapes / dtypes / devices, per-sample rho). It must also declare what
rho = 0 means in ``ABSENT_CHECKS`` below (a test fails until it does). The bottom section tests
the meaning of the built-in families.
"""
from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
import torch

import corruptions
from corruptions import (
    FAMILIES,
    MODALITIES,
    Corruption,
    FeatureCorruption,
    ModalityBatch,
    as_rho,
    derive_keys,
    sample_keys,
)
from corruptions.feature.drop import TEXT_TOKENS, droppable_elements

B, T, D = 16, 12, 7
SEED = 1234
MISSING_ROW = 7
LEFT_PADDED_ROW = 5
LEVELS = torch.linspace(1.0, 0.0, 21).tolist()

FEATURE_FAMILIES = [n for n in FAMILIES.names() if FAMILIES.get(n).level == "feature"]
CASES = [(n, m) for n in FEATURE_FAMILIES for m in FAMILIES.get(n).modalities]
CASE_IDS = [f"{n}-{m}" for n, m in CASES]


# ----------------------------------------------------------------------------- data


def make_batch(modality: str, seed: int = 0, b: int = B, t: int = T, d: int = D) -> ModalityBatch:
    """Ragged right-padded batch (one left-padded row, one missing row, some -0.0), text with ids."""
    g = torch.Generator().manual_seed(seed * 31 + MODALITIES.index(modality))
    x = 2.0 + 1.5 * torch.randn(b, t, d, generator=g)
    length = torch.randint(min(3, t), t + 1, (b,), generator=g)
    length[0] = t
    start = torch.zeros(b, dtype=torch.long)
    start[LEFT_PADDED_ROW] = 2
    length[LEFT_PADDED_ROW] = min(int(length[LEFT_PADDED_ROW]), t - 2)
    pos = torch.arange(t)
    mask = (pos >= start[:, None]) & (pos < (start + length)[:, None])
    missing = torch.zeros(b, dtype=torch.bool)
    missing[MISSING_ROW] = True
    mask[MISSING_ROW] = False
    x = x.masked_fill(~mask[:, :, None], 0.0)
    x[2, 1, :3] = -0.0
    ids = None
    if modality == "text":
        ids = torch.randint(1000, 30000, (b, t), generator=g).masked_fill(~mask, 0)
        first = start
        last = start + length - 1
        ids[torch.arange(b), first] = 101
        ids[torch.arange(b), last] = 102
        ids[MISSING_ROW] = 0
    return ModalityBatch(x, mask, missing, ids)


def batch_keys(b: int = B, prefix: str = "clip") -> torch.Tensor:
    return torch.from_numpy(sample_keys([f"{prefix}{i}" for i in range(b)]))


def family_keys(name: str, modality: str, keys: torch.Tensor) -> torch.Tensor:
    return derive_keys(SEED, keys, modality, name)


def fitted(name: str, modality: str, **params) -> FeatureCorruption:
    return FAMILIES.get(name)(**params).fit(make_batch(modality, seed=99))


def cat(a: ModalityBatch, b: ModalityBatch) -> ModalityBatch:
    ids = None if a.ids is None else torch.cat([a.ids, b.ids])
    return ModalityBatch(
        torch.cat([a.features, b.features]), torch.cat([a.mask, b.mask]), torch.cat([a.missing, b.missing]), ids
    )


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int32) if x.dtype == torch.float32 else x


def assert_same(a: ModalityBatch, b: ModalityBatch) -> None:
    """Bit for bit (so -0.0 and 0.0 differ)."""
    assert torch.equal(bits(a.features), bits(b.features))
    assert torch.equal(a.mask, b.mask)
    assert torch.equal(a.missing, b.missing)
    assert (a.ids is None) == (b.ids is None)
    if a.ids is not None:
        assert torch.equal(a.ids, b.ids)


def removed(clean: ModalityBatch, out: ModalityBatch) -> torch.Tensor:
    """Bool [B, T]: elements valid in ``clean`` that are masked out or missing in ``out``."""
    return clean.mask & (~out.mask | out.missing[:, None])


def distortion(clean: ModalityBatch, out: ModalityBatch, where: torch.Tensor) -> float:
    """Relative L2 distance to clean over the elements ``where`` [B, T]."""
    diff = (out.features - clean.features)[where].double().norm()
    ref = clean.features[where].double().norm()
    return float(diff / ref) if ref > 0 else 0.0


# ----------------------------------------------------------------------------- meaning of rho = 0


def _absent_missing(data: ModalityBatch, out: ModalityBatch, family: FeatureCorruption, state) -> None:
    assert out.missing.all()
    assert not out.mask.any()
    assert not out.features.any()
    if data.ids is not None:
        assert torch.equal(out.ids, data.ids)


def _absent_drop(data: ModalityBatch, out: ModalityBatch, family: FeatureCorruption, state) -> None:
    assert out.missing.all()
    assert not out.features.any()
    if family.report_mask:
        assert not out.mask.any()
    else:
        assert torch.equal(out.mask, data.mask)
    if data.ids is not None:
        droppable = droppable_elements(data.mask, protect_ends=True)
        assert (out.ids[droppable] == TEXT_TOKENS[family.text_token]).all()
        assert torch.equal(out.ids[~droppable], data.ids[~droppable])


def _absent_noise(data: ModalityBatch, out: ModalityBatch, family: FeatureCorruption, state) -> None:
    valid = data.mask & ~data.missing[:, None]
    pure = family.mean + family.std * state
    torch.testing.assert_close(out.features[valid], pure[valid], rtol=1e-5, atol=1e-5)
    assert torch.equal(bits(out.features[~valid]), bits(data.features[~valid]))
    assert torch.equal(out.mask, data.mask) and torch.equal(out.missing, data.missing)


def _absent_blur(data: ModalityBatch, out: ModalityBatch, family: FeatureCorruption, state) -> None:
    valid = data.mask & ~data.missing[:, None]
    m = data.mask[:, :, None].to(data.features.dtype)
    mean = (data.features * m).sum(1) / m.sum(1).clamp_min(1)
    expected = mean[:, None, :].expand_as(data.features)
    torch.testing.assert_close(out.features[valid], expected[valid], rtol=1e-5, atol=1e-5)
    assert torch.equal(bits(out.features[~valid]), bits(data.features[~valid]))


def _absent_compose(data: ModalityBatch, out: ModalityBatch, family: FeatureCorruption, state) -> None:
    expected = data
    zero = as_rho(0.0, data.batch_size, data.features.device)
    for component, part in zip(family.families, state):
        expected = component.apply(expected, zero, part)
    assert_same(out, expected)
    assert out.missing.all()  # the default ends with drop


ABSENT_CHECKS: dict[str, Callable[..., None]] = {
    "missing": _absent_missing,
    "drop": _absent_drop,
    "noise": _absent_noise,
    "blur": _absent_blur,
    "compose": _absent_compose,
}


# ----------------------------------------------------------------------------- the contract


def test_registry_has_the_feature_families():
    assert {"missing", "drop", "noise", "blur", "compose"} <= set(FEATURE_FAMILIES)


@pytest.mark.parametrize("name", FEATURE_FAMILIES)
def test_every_feature_family_declares_its_meaning(name):
    cls = FAMILIES.get(name)
    assert name in ABSENT_CHECKS, f"add a rho = 0 check for {name!r} to ABSENT_CHECKS"
    for attr in ("name", "version", "parameter_name", "mapping", "absent"):
        assert isinstance(getattr(cls, attr), str) and getattr(cls, attr), attr
    family = cls()
    assert get_config_round_trip(name, family) == family.config()
    for rho in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = family.parameter(rho)
        assert isinstance(value, float) and not np.isnan(value)


def get_config_round_trip(name: str, family: FeatureCorruption) -> dict:
    return corruptions.get_family(name, **family.config()).config()


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_identity_at_full_reliability(name, modality):
    data = make_batch(modality)
    family = fitted(name, modality)
    keys = family_keys(name, modality, batch_keys())
    assert_same(family(data, 1.0, keys), data)
    assert_same(family(data, torch.ones(B), keys), data)


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_absent_at_zero_reliability(name, modality):
    data = make_batch(modality)
    family = fitted(name, modality)
    state = family.sample(family_keys(name, modality, batch_keys()), data)
    out = family.apply(data, as_rho(0.0, B, "cpu"), state)
    assert torch.isfinite(out.features).all()
    ABSENT_CHECKS[name](data, out, family, state)


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_damage_grows_as_reliability_falls(name, modality):
    """Removed elements grow, and on elements present at both of two adjacent levels distortion grows."""
    data = make_batch(modality)
    family = fitted(name, modality)
    state = family.sample(family_keys(name, modality, batch_keys()), data)
    outs = [family.apply(data, as_rho(r, B, "cpu"), state) for r in LEVELS]
    fractions = [float(removed(data, o).sum()) / float(data.mask.sum()) for o in outs]
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions
    for hi, lo in zip(outs, outs[1:]):
        common = data.mask & ~removed(data, lo) & ~removed(data, hi)
        assert distortion(data, lo, common) >= distortion(data, hi, common) - 1e-6
    total = [f + distortion(data, o, data.mask & ~removed(data, o)) for f, o in zip(fractions, outs)]
    assert total[0] == 0.0
    assert total[-1] > total[0]


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_masks_nested_across_levels(name, modality):
    data = make_batch(modality)
    family = fitted(name, modality)
    state = family.sample(family_keys(name, modality, batch_keys()), data)
    outs = [family.apply(data, as_rho(r, B, "cpu"), state) for r in LEVELS]
    for hi, lo in zip(outs, outs[1:]):
        assert not (lo.mask & ~hi.mask).any()
        assert not (hi.missing & ~lo.missing).any()
        assert not (lo.mask & ~data.mask).any(), "padding must stay padding"


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_determinism_from_keys_alone(name, modality):
    data = make_batch(modality)
    other = make_batch(modality, seed=5)
    keys = batch_keys()
    big_keys = torch.cat([keys, batch_keys(prefix="other")])
    perm = torch.randperm(2 * B, generator=torch.Generator().manual_seed(3))
    big = cat(data, other).index(perm)
    big_keys = big_keys[perm]
    at = int((perm == 3).nonzero())
    family = fitted(name, modality)
    alone = family(data.index(torch.tensor([3])), 0.5, family_keys(name, modality, keys[[3]]))
    mixed = family(big, 0.5, family_keys(name, modality, big_keys))
    assert_same(alone, mixed.index(torch.tensor([at])))
    again = fitted(name, modality)(big, 0.5, family_keys(name, modality, big_keys))
    assert_same(mixed, again)


@pytest.mark.parametrize("name", FEATURE_FAMILIES)
def test_modalities_draw_independently(name):
    cls = FAMILIES.get(name)
    if len(cls.modalities) < 2:
        pytest.skip(f"{name} supports a single modality")
    m1, m2 = cls.modalities[:2]
    data = make_batch(m2)
    keys = batch_keys()
    first, second = cls().fit(data), cls().fit(data)
    if first.sample(keys, data) is None:
        pytest.skip(f"{name} draws no randomness")
    out1 = first(data, 0.5, derive_keys(SEED, keys, m1, name))
    out2 = second(data, 0.5, derive_keys(SEED, keys, m2, name))
    assert not torch.equal(out1.features, out2.features) or not torch.equal(out1.mask, out2.mask)


def _global_states() -> tuple:
    return random.getstate(), np.random.get_state(), torch.random.get_rng_state()


def _assert_states_equal(a: tuple, b: tuple) -> None:
    assert a[0] == b[0]
    assert a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]
    assert torch.equal(a[2], b[2])


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_no_global_rng_read_or_changed(name, modality):
    saved = _global_states()
    try:
        data = make_batch(modality)
        keys = family_keys(name, modality, batch_keys())
        before = _global_states()
        family = fitted(name, modality)
        out = family(data, 0.4, keys)
        _assert_states_equal(before, _global_states())
        for seed in (1, 2):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            assert_same(fitted(name, modality)(data, 0.4, keys), out)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.random.set_rng_state(saved[2])


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_shapes_dtypes_devices_finite_and_missing_stays_missing(name, modality):
    data = make_batch(modality)
    family = fitted(name, modality)
    state = family.sample(family_keys(name, modality, batch_keys()), data)
    for rho in (0.0, 0.3, 0.7, 1.0):
        out = family.apply(data, as_rho(rho, B, "cpu"), state)
        for field in ("features", "mask", "missing", "ids"):
            a, b = getattr(data, field), getattr(out, field)
            if a is None:
                assert b is None
                continue
            assert (a.shape, a.dtype, a.device) == (b.shape, b.dtype, b.device), field
        assert torch.isfinite(out.features).all()
        assert out.missing[MISSING_ROW] and not out.mask[MISSING_ROW].any()
        assert not out.features[MISSING_ROW].any()


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_per_sample_rho_equals_per_sample_application(name, modality):
    data = make_batch(modality)
    family = fitted(name, modality)
    state = family.sample(family_keys(name, modality, batch_keys()), data)
    rho = torch.tensor([1.0, 0.0, 0.5, 0.05, 0.95, 0.3, 0.7, 0.2, 0.8, 1.0, 0.0, 0.6, 0.4, 0.1, 0.9, 0.55])
    out = family.apply(data, rho, state)
    for b in range(B):
        alone = family.apply(data, as_rho(float(rho[b]), B, "cpu"), state)
        assert_same(out.index(torch.tensor([b])), alone.index(torch.tensor([b])))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_cpu_and_cuda_agree(name, modality):
    data = make_batch(modality)
    gpu = ModalityBatch(*(None if v is None else v.cuda() for v in (data.features, data.mask, data.missing, data.ids)))
    family = fitted(name, modality)
    keys = family_keys(name, modality, batch_keys())
    for rho in (1.0, 0.5, 0.0):
        cpu_out, gpu_out = family(data, rho, keys), family(gpu, rho, keys)
        assert gpu_out.features.device.type == "cuda"
        assert torch.equal(cpu_out.mask, gpu_out.mask.cpu())
        assert torch.equal(cpu_out.missing, gpu_out.missing.cpu())
        torch.testing.assert_close(cpu_out.features, gpu_out.features.cpu(), rtol=1e-5, atol=1e-5)
        if rho == 1.0:
            assert torch.equal(bits(cpu_out.features), bits(gpu_out.features.cpu()))


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_out_of_range_rho_and_bad_keys_are_rejected(name, modality):
    data = make_batch(modality)
    family = fitted(name, modality)
    keys = family_keys(name, modality, batch_keys())
    with pytest.raises(ValueError, match="rho"):
        family(data, 1.5, keys)
    with pytest.raises(ValueError, match="rho"):
        family(data, torch.ones(B + 1), keys)


# ----------------------------------------------------------------------------- meaning of the built-ins


def test_missing_probability_matches_mapping():
    data = make_batch("audio", b=4000, t=2, d=1)
    data = data.replace(missing=torch.zeros(4000, dtype=torch.bool), mask=torch.ones(4000, 2, dtype=torch.bool))
    family = FAMILIES.get("missing")()
    out = family(data, 0.3, family_keys("missing", "audio", batch_keys(4000)))
    assert abs(float(out.missing.float().mean()) - family.parameter(0.3)) < 0.03


def test_drop_rate_matches_mapping_and_keeps_cls_sep():
    data = make_batch("text", b=400, t=40)
    family = FAMILIES.get("drop")()
    out = family(data, 0.25, family_keys("drop", "text", batch_keys(400)))
    droppable = droppable_elements(data.mask, protect_ends=True)
    rate = float((droppable & ~out.mask).sum()) / float(droppable.sum())
    assert abs(rate - family.parameter(0.25)) < 0.03
    assert ((out.ids == 101) == (data.ids == 101)).all() and ((out.ids == 102) == (data.ids == 102)).all()
    assert (out.ids[droppable & ~out.mask] == 100).all()


def test_drop_options():
    data = make_batch("text")
    keys = family_keys("drop", "text", batch_keys())
    masked = FAMILIES.get("drop")(report_mask=False, text_token="mask")(data, 0.5, keys)
    assert torch.equal(masked.mask, data.mask)
    dropped = (masked.ids != data.ids) & data.mask
    assert dropped.any() and (masked.ids[dropped] == 103).all()
    assert not masked.features[dropped].any()
    with pytest.raises(ValueError, match="text_token must be one of"):
        FAMILIES.get("drop")(text_token="pad")
    with pytest.raises(ValueError, match="report_mask"):
        FAMILIES.get("drop")(report_mask="yes")


def test_drop_without_ids_can_drop_every_frame_and_flags_missing_when_empty():
    data = make_batch("audio")
    family = FAMILIES.get("drop")()
    keys = family_keys("drop", "audio", batch_keys())
    state = family.sample(keys, data)
    out = family.apply(data, as_rho(0.0, B, "cpu"), state)
    assert not out.mask.any() and out.missing.all()
    some = family.apply(data, as_rho(0.5, B, "cpu"), state)
    emptied = data.mask.any(1) & ~some.mask.any(1)
    assert torch.equal(some.missing, data.missing | emptied)


def test_noise_requires_fit_and_matching_dimensions():
    data = make_batch("audio")
    keys = family_keys("noise", "audio", batch_keys())
    with pytest.raises(ValueError, match="fit"):
        FAMILIES.get("noise")()(data, 0.5, keys)
    family = FAMILIES.get("noise")().fit(make_batch("audio", d=3))
    with pytest.raises(ValueError, match="dimensions"):
        family(data, 0.5, keys)
    empty = data.replace(mask=torch.zeros_like(data.mask))
    with pytest.raises(ValueError, match="no valid frame"):
        FAMILIES.get("noise")().fit(empty)


def test_noise_snr_and_statistics_match_mapping():
    data = make_batch("vision", b=256, t=20, d=5)
    family = FAMILIES.get("noise")().fit(data)
    keys = family_keys("noise", "vision", batch_keys(256))
    valid = data.mask & ~data.missing[:, None]
    for rho in (0.8, 0.5, 0.2):
        out = family(data, rho, keys)
        signal = data.features[valid] - family.mean
        noise = out.features[valid] - family.mean - rho**0.5 * signal
        snr_db = 10 * torch.log10(rho * signal.var() / noise.var())
        assert abs(float(snr_db) - family.parameter(rho)) < 0.3
        assert torch.allclose(out.features[valid].mean(0), family.mean, atol=0.1)
        assert torch.allclose(out.features[valid].std(0), family.std, rtol=0.08)
    assert family.parameter(1.0) == float("inf") and family.parameter(0.0) == float("-inf")


def test_blur_sigma_mapping_and_chunking():
    family = FAMILIES.get("blur")(c=3.0)
    assert family.parameter(0.5) == 3.0 and family.parameter(1.0) == 0.0
    assert family.parameter(0.0) == float("inf")
    data = make_batch("vision")
    rho = as_rho(0.6, B, "cpu")
    whole = family.apply(data, rho, None)
    chunked = FAMILIES.get("blur")(c=3.0, max_kernel_elements=T * T * 3).apply(data, rho, None)
    torch.testing.assert_close(whole.features, chunked.features, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="c "):
        FAMILIES.get("blur")(c=0.0)
    with pytest.raises(ValueError, match="max_kernel_elements"):
        FAMILIES.get("blur")(max_kernel_elements=0)


def test_blur_never_mixes_padding_into_valid_frames():
    data = make_batch("audio")
    poisoned = data.replace(features=data.features.masked_fill(~data.mask[:, :, None], 1e6))
    family = FAMILIES.get("blur")()
    out = family.apply(poisoned, as_rho(0.3, B, "cpu"), None)
    valid = data.mask & ~data.missing[:, None]
    assert out.features[valid].abs().max() < 100


def test_compose_components_have_their_own_keys_and_validate():
    data = make_batch("audio")
    family = FAMILIES.get("compose")(families=["noise", {"name": "noise"}]).fit(data)
    first, second = family.sample(family_keys("compose", "audio", batch_keys()), data)
    assert not torch.equal(first, second)
    assert family.config() == {"families": [{"name": "noise"}, {"name": "noise"}]}
    with pytest.raises(ValueError, match="non-empty"):
        FAMILIES.get("compose")(families=[])
    with pytest.raises(ValueError, match="'name'"):
        FAMILIES.get("compose")(families=[{"report_mask": True}])
    with pytest.raises(ValueError, match="flat"):
        FAMILIES.get("compose")(families=["compose"])
    with pytest.raises(KeyError, match="Allowed"):
        FAMILIES.get("compose")(families=["nosie"])


# ----------------------------------------------------------------------------- fused and in-place paths


@pytest.fixture
def threaded_draws(monkeypatch):
    """Keyed draws and fused rows split over 2 threads even for the small test batches."""
    monkeypatch.setattr(corruptions.keys, "PARALLEL_MIN_NUMBERS", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("threads", ["one thread", "two threads"])
def test_one_level_corrupt_equals_sample_then_apply(name, modality, threads, request):
    """``corrupt`` (fused draw + application, used for one level and by the training samplers)
    is bit-identical to ``apply(sample())``, at every level and per-sample rho, and never writes
    its input."""
    if threads == "two threads":
        request.getfixturevalue("threaded_draws")
    data = make_batch(modality)
    before = [t.clone() for t in (data.features, data.mask, data.missing)]
    keys = family_keys(name, modality, batch_keys())
    family = fitted(name, modality)
    rhos = [as_rho(r, B, "cpu") for r in (1.0, 0.7, 0.5, 0.0)]
    rhos.append(torch.rand(B, generator=torch.Generator().manual_seed(4)))
    for rho in rhos:
        assert_same(family.corrupt(data, rho, keys), family.apply(data, rho, family.sample(keys, data)))
    for old, new in zip(before, (data.features, data.mask, data.missing)):
        assert torch.equal(bits(old), bits(new))


@pytest.mark.parametrize(("name", "modality"), CASES, ids=CASE_IDS)
def test_apply_inplace_equals_apply(name, modality):
    """``apply_inplace`` (used by compose on its own intermediate results) equals ``apply``."""
    data = make_batch(modality)
    keys = family_keys(name, modality, batch_keys())
    family = fitted(name, modality)
    state = family.sample(keys, data)
    for r in (1.0, 0.6, 0.0):
        rho = as_rho(r, B, "cpu")
        expected = family.apply(data, rho, state)
        owned = data.replace(features=data.features.clone())
        assert_same(family.apply_inplace(owned, rho, state), expected)


class _PassThrough(FeatureCorruption):
    """A family that returns its input unchanged (features not copied)."""

    name = "pass_through"
    version = "test"
    parameter_name = "none"
    mapping = "identity"
    absent = "identity"

    def parameter(self, rho):
        return 0.0

    def sample(self, keys, data):
        return None

    def apply(self, data, rho, state):
        return data


def test_compose_never_writes_its_input_even_when_a_component_returns_it():
    """A component that hands back the input features themselves: the next component must not
    then work in place on them."""
    data = make_batch("audio")
    keys = family_keys("compose", "audio", batch_keys())
    family = FAMILIES.get("compose")(families=[_PassThrough(), "drop"]).fit(data)
    clean = data.features.clone()
    rho = as_rho(0.3, B, "cpu")
    for out in (family.corrupt(data, rho, keys), family.apply(data, rho, family.sample(keys, data))):
        assert torch.equal(bits(data.features), bits(clean))
        assert out.features[data.mask].eq(0).any()


def test_keyed_draws_do_not_depend_on_threads(threaded_draws):
    keys = batch_keys(37)
    torch.set_num_threads(2)
    two = (corruptions.normal(keys, (5, 3)), corruptions.uniform(keys, (4,)))
    torch.set_num_threads(1)
    one = (corruptions.normal(keys, (5, 3)), corruptions.uniform(keys, (4,)))
    for a, b in zip(one, two):
        assert torch.equal(bits(a), bits(b))
    # row b depends on keys[b] alone, whatever the slicing
    assert torch.equal(bits(corruptions.normal(keys[10:11], (5, 3))[0]), bits(one[0][10]))


def test_every_family_speaks_one_vocabulary():
    """Feature and raw families share one base: sample / apply / corrupt and a declared level."""
    for name in FAMILIES.names():
        cls = FAMILIES.get(name)
        assert issubclass(cls, Corruption) and cls.level in corruptions.LEVELS and corruptions.family_level(name) == cls.level
        for verb in ("sample", "apply", "corrupt"):
            assert callable(getattr(cls, verb))
    with pytest.raises(TypeError):
        corruptions.register_family(int)


def test_corrupter_corrupt_equals_prepare_then_at():
    data = {m: make_batch(m) for m in MODALITIES}
    keys = batch_keys()
    for name in FEATURE_FAMILIES:
        corrupter = corruptions.make_corrupter(name, seed=SEED, train={m: make_batch(m, seed=99) for m in MODALITIES})
        prepared = corrupter.prepare(data, keys)
        for point in (corruptions.ReliabilityPoint.joint(0.5), corruptions.ReliabilityPoint(audio=0.2),
                      {"text": torch.linspace(0, 1, B)}):
            one, two = corrupter.corrupt(data, keys, point), prepared.at(point)
            assert sorted(one) == sorted(two)
            for m in one:
                assert_same(one[m], two[m])
