"""Contract tests for every registered model (picked up from the registry) and the shared layers.

Every model must: give a finite [B] prediction and finite gradients on aligned and unaligned
inputs with ragged masks, under every missing-modality combination and at rho = 0 everywhere;
ignore masked-out elements; be built deterministically from its seed without touching the global
RNG; reject unknown config keys loudly; keep its defaults in its config dataclass only; declare
its extras; and clearly beat the mean predictor after a few epochs on a small synthetic set.
"""
from __future__ import annotations

import dataclasses
import itertools
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from corruptions.keys import MODALITIES
from corruptions.registry import UnknownNameError
from robustmsa.data.batch import Batch, split_to_batch
from robustmsa.data.synthetic import load_synthetic
from robustmsa.errors import RobustMSAError
from robustmsa.evaluation import predict
from robustmsa.metrics import compute_metrics
from robustmsa.models import MODELS, MSAModel, count_parameters, create_model, model_config
from robustmsa.models.layers import (
    EncoderSpec,
    ExpertMixture,
    GatedRouter,
    SequenceEncoder,
    dense_routing,
    load_balance_loss,
    masked_mean,
    random_routing,
    topk_routing,
)
from robustmsa.suite import RegimeSpec, TrainingSpec
from robustmsa.training import TrainingRun, train_model

from helpers import ModelKit, with_missing

DIMS = {"text": 16, "audio": 5, "vision": 7}
ALIGNED = {"text": 12, "audio": 12, "vision": 12}
UNALIGNED = {"text": 10, "audio": 30, "vision": 20}
B = 6
NAMES = [n for n in MODELS.names() if not MODELS.get(n).brings_weights]  # trained here


KIT = ModelKit(DIMS, ALIGNED)


def forward_backward(model: MSAModel, batch: Batch) -> dict[str, typing.Any]:
    """Train-mode forward + backward; checks output shapes and finiteness of everything."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(batch)
    pred = out["pred"]
    assert pred.shape == (len(batch),) and pred.dtype == torch.float32
    assert torch.isfinite(pred).all()
    assert isinstance(out["losses"], dict)
    for key, value in out["losses"].items():
        assert value.ndim == 0 and torch.isfinite(value), key
    for key, value in (out.get("extras") or {}).items():
        assert value.shape[0] == len(batch) and not value.requires_grad, key
    loss = (pred - batch.labels).pow(2).mean() + sum(out["losses"].values(), torch.zeros(()))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lengths", [ALIGNED, UNALIGNED], ids=["aligned", "unaligned"])
def test_forward_backward(name: str, lengths: dict[str, int]) -> None:
    model = KIT.build(name, lengths=lengths)
    forward_backward(model, KIT.batch(lengths=lengths, seed=1))
    nonzero = sum(bool((p.grad is not None) and p.grad.abs().sum() > 0) for p in model.parameters())
    assert nonzero > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("missing", list(itertools.product([False, True], repeat=3)),
                         ids=lambda m: "".join("TAV"[i] if not x else "-" for i, x in enumerate(m)))
def test_missing_combinations(name: str, missing: tuple[bool, bool, bool]) -> None:
    """Every sample of the batch has the same missing modalities (batch-level statistics included)."""
    forward_backward(KIT.build(name, lengths=UNALIGNED), KIT.batch(lengths=UNALIGNED, seed=2, missing=missing))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_missing_in_one_batch(name: str) -> None:
    """All eight combinations in one batch of eight samples."""
    batch = KIT.batch(lengths=UNALIGNED, seed=3, n=8)
    combos = torch.tensor(list(itertools.product([False, True], repeat=3)))
    forward_backward(KIT.build(name, lengths=UNALIGNED), with_missing(batch, combos))


@pytest.mark.parametrize("name", NAMES)
def test_rho_zero_everywhere(name: str) -> None:
    """Zeros, all-False masks and missing flags on every modality: finite, no NaN anywhere."""
    batch = KIT.batch(lengths=ALIGNED, seed=4, missing=(True, True, True))
    assert not any(getattr(batch, f"{m}_mask").any() for m in MODALITIES)
    assert all(getattr(batch, m).abs().sum() == 0 for m in MODALITIES)
    forward_backward(KIT.build(name), batch)


@pytest.mark.parametrize("name", NAMES)
def test_masked_elements_are_ignored(name: str) -> None:
    model = KIT.build(name, lengths=UNALIGNED).eval()
    batch = KIT.batch(lengths=UNALIGNED, seed=5)
    g = torch.Generator().manual_seed(6)
    changes = {m: torch.where(getattr(batch, f"{m}_mask").unsqueeze(-1), getattr(batch, m),
                              100 * torch.randn(getattr(batch, m).shape, generator=g)) for m in MODALITIES}
    garbage = dataclasses.replace(batch, **changes)
    assert not torch.equal(garbage.audio, batch.audio)
    with torch.no_grad():
        torch.testing.assert_close(model(garbage)["pred"], model(batch)["pred"])


@pytest.mark.parametrize("name", NAMES)
def test_clean_is_not_a_model_input(name: str) -> None:
    model = KIT.build(name).eval()
    batch, other = KIT.batch(lengths=ALIGNED, seed=7), KIT.batch(lengths=ALIGNED, seed=8)
    with torch.no_grad():
        torch.testing.assert_close(model(batch, clean=other)["pred"], model(batch)["pred"])


@pytest.mark.parametrize("name", NAMES)
def test_creation_is_deterministic(name: str) -> None:
    a, b, c = KIT.build(name, seed=3), KIT.build(name, seed=3), KIT.build(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    batch = KIT.batch(lengths=ALIGNED, seed=9)
    with torch.no_grad():
        assert torch.equal(a.eval()(batch)["pred"], b.eval()(batch)["pred"])
        assert not torch.equal(a(batch)["pred"], c.eval()(batch)["pred"])


@pytest.mark.parametrize("name", NAMES)
def test_creation_leaves_global_rng_untouched(name: str) -> None:
    before = torch.random.get_rng_state()
    KIT.build(name, seed=11)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name: str) -> None:
    model = KIT.build(name)
    n = count_parameters(model)
    print(f"{name}: {n} parameters")
    n_train = count_parameters(model, trainable_only=True)
    assert 0 < n_train <= n
    groups = model.param_groups(1e-3, 1e-4)
    assert sum(p.numel() for g in groups for p in g["params"]) == n_train
    # frozen parameters only inside a pretrained backbone (EGMF's language model under LoRA)
    frozen = [k for k, p in model.named_parameters() if not p.requires_grad]
    assert all("llm" in k or "lora" in k or "backbone" in k for k in frozen), frozen[:5]
    assert all(g["lr"] == 1e-3 and g["weight_decay"] == 1e-4 for g in groups)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_override_names_key_and_allowed(name: str) -> None:
    with pytest.raises(RobustMSAError) as err:
        KIT.build(name, d_modle=32)
    msg = str(err.value)
    assert f"model {name!r}: config key 'd_modle'" in msg and "did you mean d_model" in msg
    for key in model_config(name):
        assert key in msg


@pytest.mark.parametrize("name", NAMES)
def test_bad_override_type(name: str) -> None:
    with pytest.raises(RobustMSAError, match="d_model.*integer"):
        KIT.build(name, d_model="wide")
    with pytest.raises(RobustMSAError, match="encoder.*'conv'"):
        KIT.build(name, encoder="lstm")


@pytest.mark.parametrize("name", NAMES)
def test_defaults_live_in_the_dataclass(name: str, repo: Path) -> None:
    """A model's defaults are written once, in its config dataclass (no per-model default files)."""
    defaults = dataclasses.asdict(MODELS.get(name).config_cls())
    assert model_config(name) == defaults
    assert not (repo / "configs" / "models").exists()


@pytest.mark.parametrize("name", NAMES)
def test_overrides_apply_and_change_model(name: str) -> None:
    assert model_config(name, d_model=32)["d_model"] == 32
    assert count_parameters(KIT.build(name, d_model=32)) < count_parameters(KIT.build(name))
    forward_backward(KIT.build(name, encoder="attention", num_heads=2, lengths=UNALIGNED), KIT.batch(lengths=UNALIGNED))


def test_unknown_override_key_names_the_close_match() -> None:
    with pytest.raises(RobustMSAError, match=r"model 'late_fusion': config key 'head_hiden': unknown key.*did you mean head_hidden\?"):
        model_config("late_fusion", head_hiden=8)
    assert model_config("late_fusion", d_model=32)["d_model"] == 32
    assert model_config("late_fusion", d_model=16)["d_model"] == 16


def test_unknown_model_and_bad_dims() -> None:
    with pytest.raises(UnknownNameError, match="qa_moe"):
        create_model("qa_mo", DIMS)
    with pytest.raises(RobustMSAError, match="dims"):
        create_model("late_fusion", {"text": 16, "audio": 5})


@pytest.mark.parametrize("name", NAMES)
def test_extras_are_declared(name: str) -> None:
    """Every extra a model returns (eval or training mode) is declared, and every declaration is used."""
    model = KIT.build(name)
    batch = KIT.batch(lengths=ALIGNED, seed=12)
    with torch.no_grad():
        seen = set(model.eval()(batch).get("extras") or {}) | set(model.train()(batch).get("extras") or {})
    declared = [e.name for e in type(model).extras]
    assert seen == set(declared), (sorted(seen), declared)


def test_extra_declarations_drive_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's declaration alone decides its prediction-table columns and metric rows."""
    from robustmsa import trial
    from robustmsa.models import extras as extras_module
    from robustmsa.models.extras import Extra, declare_extras

    monkeypatch.setattr(extras_module, "_DECLARED", dict(extras_module._DECLARED))
    declare_extras("new_model", (Extra("confidence", columns=("low", "high"), summary=True), Extra("gate")))
    values = {"confidence": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
              "gate": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32),
              "wide": np.zeros((2, 17), dtype=np.float32), "scalar": np.float32(1.0)}
    cols = trial._extra_columns(values, 2)
    assert list(cols) == ["confidence_low", "confidence_high", "gate_0", "gate_1", "gate_2"]
    assert cols["confidence_high"] == [0.75, 0.5] and cols["gate_2"] == [3.0, 6.0]
    rows = trial._quality_rows({"model": "m"}, values)
    assert rows == [{"model": "m", "metric": "confidence_low", "value": 0.375},
                    {"model": "m", "metric": "confidence_high", "value": 0.625}]
    with pytest.raises(TypeError, match="one name must have one layout"):
        declare_extras("other_model", (Extra("confidence"),))
    with pytest.raises(TypeError, match="twice"):
        declare_extras("third_model", (Extra("x"), Extra("x")))


def test_qa_moe_quality_reaches_tracking_as_before() -> None:
    """QA-MoE's quality: columns quality_text/audio/vision and their means as metric rows."""
    from robustmsa import trial

    model = KIT.build("qa_moe").eval()
    with torch.no_grad():
        ex = {k: v.float().numpy() for k, v in model(KIT.batch(lengths=ALIGNED, seed=13))["extras"].items()}
    cols = trial._extra_columns(ex, B)
    assert list(cols) == [*(f"expert_weights_{j}" for j in range(8)), "quality_text", "quality_audio",
                          "quality_vision", "sigma2_0", "sigma2_1", "sigma2_2"]
    assert cols["quality_audio"] == ex["quality"][:, 1].astype(np.float64).tolist()
    rows = trial._quality_rows({"seed": 0}, ex)
    assert rows == [{"seed": 0, "metric": f"quality_{m}", "value": float(ex["quality"][:, i].mean())}
                    for i, m in enumerate(MODALITIES)]


# --- learning: every registered model clearly beats the mean predictor -------------------------

LEARNING_DATA = {"n_train": 256, "n_valid": 64, "n_test": 160, "text_dim": 32,
                 "text_len": 24, "audio_len": 24, "vision_len": 24}
LEARNING_BUDGET = {  # model -> (overrides, epochs, lr); a model not listed: its defaults, 8 epochs, lr 1e-3
    "tfn": ({}, 8, 1e-3),
    "mult": ({"d_model": 32}, 6, 1e-3),
    "ca_moe": ({}, 10, 2e-3),
    "emoe": ({"d_model": 128, "head_hidden": 128}, 8, 1e-3),
    "text_moe": ({}, 4, 2e-3),
    "mmolre": ({}, 6, 2e-3),
    "egmf": ({}, 8, 2e-3),  # cheap steps, but it learns slowly through the LM
}


@pytest.fixture(scope="module")
def small_synthetic():
    return load_synthetic("mosi", seed=0, **LEARNING_DATA)


@pytest.mark.parametrize("name", NAMES)
def test_learns_better_than_the_mean(name: str, small_synthetic) -> None:
    """A few epochs on a small synthetic set (1-8 s per model on one thread)."""
    overrides, epochs, lr = LEARNING_BUDGET.get(name, ({}, 8, 1e-3))
    ds = small_synthetic
    model = create_model(name, ds.dims, ds.lengths, seed=0, **overrides)
    training = TrainingSpec(epochs=epochs, batch_size=32, lr=lr, patience=epochs, device="cpu")
    train_model(model, ds, TrainingRun(RegimeSpec(name="clean", kind="clean"), training, seed=0),
                device=torch.device("cpu"))
    test = split_to_batch(ds["test"])
    pred, _ = predict(model, test, 512, torch.device("cpu"))
    y = test.labels.numpy()
    mean_mae = float(np.abs(y - ds["train"].labels.mean()).mean())
    metrics = compute_metrics(pred, y, ds.metric_family)
    print(f"{name}: test MAE {metrics['mae']:.3f} corr {metrics['corr']:.3f}; mean predictor MAE {mean_mae:.3f}")
    assert metrics["mae"] < 0.8 * mean_mae
    assert metrics["corr"] > 0.4


# --- shared layers -----------------------------------------------------------------------------

def test_masked_mean_ignores_masked_and_gives_zeros_when_empty() -> None:
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0], [0.0]]))


@pytest.mark.parametrize("kind", ["conv", "attention"])
def test_sequence_encoder_empty_rows(kind: str) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = SequenceEncoder(5, EncoderSpec(8, kind, num_heads=2))
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])
    seq, pooled, _ = enc(x, mask)
    assert seq.shape == (3, 4, 8) and pooled.shape == (3, 8)
    assert torch.isfinite(seq).all() and (seq[1] == 0).all() and (pooled[1] == 0).all()
    assert (seq[0, 2:] == 0).all()
    pooled.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all() and (x.grad[0, 2:] == 0).all()


def test_topk_dense_random_routing() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 8, generator=g)
    r = topk_routing(logits, 3)
    assert (r.selected.sum(1) == 3).all() and ((r.weights > 0) == r.selected).all()
    torch.testing.assert_close(r.weights.sum(1), torch.ones(10))
    top = logits.topk(3).indices
    assert r.selected.gather(1, top).all()
    d = dense_routing(logits)
    assert (d.weights > 0).all() and d.selected.all()
    keys = torch.arange(10, dtype=torch.int64) * 7919
    a, b = random_routing(keys, 8, 3), random_routing(keys.flip(0), 8, 3)
    assert (a.selected.sum(1) == 3).all() and torch.equal(a.selected, b.selected.flip(0))
    assert not torch.equal(a.selected, random_routing(keys, 8, 3, seed=1).selected)
    torch.testing.assert_close(a.weights.sum(1), torch.ones(10))


def test_load_balance_loss() -> None:
    uniform = torch.full((8, 4), 0.25)
    sel = torch.eye(4, dtype=torch.bool).repeat(2, 1)
    torch.testing.assert_close(load_balance_loss(uniform, sel), torch.tensor(1.0))
    skewed = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(8, 1)
    all_first = torch.zeros(8, 4, dtype=torch.bool)
    all_first[:, 0] = True
    torch.testing.assert_close(load_balance_loss(skewed, all_first), torch.tensor(4.0))


def test_expert_mixture_runs_only_selected_experts() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mix = ExpertMixture(4, 6, 12)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    w = torch.zeros(5, 4)
    w[:, 1] = 1.0
    out = mix(x, w)
    torch.testing.assert_close(out, mix.experts[1](x))
    out.sum().backward()
    assert mix.experts[0].w_in.weight.grad is None and mix.experts[1].w_in.weight.grad is not None


def test_gated_router_side_input() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain, sided = GatedRouter(6, 4), GatedRouter(6, 4, side_dim=3)
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(1))
    assert plain(x).shape == (2, 4)
    assert not torch.equal(sided(x, torch.zeros(2, 3)), sided(x, torch.ones(2, 3)))
    with pytest.raises(ValueError, match="side input"):
        sided(x)
