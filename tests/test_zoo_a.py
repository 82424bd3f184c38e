"""What CA-MoE, EMOE, TFN and MulT mean, beyond the registry contract: the maths of each (affinity,
routing losses, angular margin, class binning, router weights, target weights, tensor fusion,
cross-modal attention on unaligned sequences), and that each one learns the synthetic benchmark."""
from __future__ import annotations

import dataclasses
import itertools
import math
import typing

import numpy as np
import pytest
import torch

from robustmsa.data.batch import Batch, split_to_batch
from robustmsa.data.synthetic import load_synthetic
from robustmsa.evaluation import predict
from robustmsa.metrics import compute_metrics
from robustmsa.models import MSAModel, create_model
from robustmsa.models.ca_moe import (
    CAMoE,
    angular_logits,
    bin_labels,
    g2_affinity,
    gaussian_soft_labels,
    hyperspherical,
    js_divergence,
    symmetric_kl,
)
from robustmsa.models.emoe import EMOE, EMOERouter, entropy_balance, target_weights
from robustmsa.models.layers import CrossAttentionBlock, masked_softmax
from robustmsa.models.mult import MulT, masked_last
from robustmsa.models.tfn import TFN, tensor_fusion
from robustmsa.suite import RegimeSpec, TrainingSpec
from robustmsa.training import TrainingRun, train_model

DIMS = {"text": 6, "audio": 4, "vision": 5}
MODS = ("text", "audio", "vision")


def make_batch(n: int, seed: int, lengths: dict[str, int] | None = None,
               missing: torch.Tensor | None = None) -> Batch:
    """Random features with ragged valid prefixes (padding zeroed); labels in [-3, 3]."""
    lengths = lengths or {"text": 8, "audio": 8, "vision": 8}
    g = torch.Generator().manual_seed(seed)
    miss = torch.zeros(n, 3, dtype=torch.bool) if missing is None else missing
    parts: dict[str, torch.Tensor] = {}
    for i, m in enumerate(MODS):
        t = lengths[m]
        mask = (torch.arange(t).unsqueeze(0) < torch.randint(1, t + 1, (n, 1), generator=g)) & ~miss[:, i : i + 1]
        parts[m] = torch.randn(n, t, DIMS[m], generator=g) * mask.unsqueeze(-1)
        parts[f"{m}_mask"] = mask
    return Batch(missing=miss, labels=torch.rand(n, generator=g) * 6 - 3,
                 keys=torch.randint(0, 2**62, (n,), generator=g), **parts)


def build(name: str, seed: int = 0, lengths: dict[str, int] | None = None, **overrides: typing.Any) -> MSAModel:
    return create_model(name, DIMS, lengths or {"text": 8, "audio": 8, "vision": 8}, seed=seed, **overrides)


def run(model: MSAModel, batch: Batch, train: bool = False) -> dict[str, typing.Any]:
    model.train(train)
    if train:
        return model(batch)
    with torch.no_grad():
        return model(batch)


# --- CA-MoE ------------------------------------------------------------------------------------

def test_hyperspherical_map() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    h = hyperspherical(x)
    torch.testing.assert_close(h, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    h.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_g2_affinity_range_symmetry_and_beta() -> None:
    g = torch.Generator().manual_seed(0)
    h = hyperspherical(torch.randn(5, 3, 8, generator=g))
    grads = torch.randn(5, 3, 8, generator=g)
    grads[0, 1] = 0.0  # a zero gradient counts as cos = 0
    a = g2_affinity(h, grads, beta=0.6)
    assert a.shape == (5, 3, 3) and (a >= 0).all() and (a <= 1).all()
    torch.testing.assert_close(a, a.transpose(1, 2))
    torch.testing.assert_close(a[1:].diagonal(dim1=1, dim2=2), torch.ones(4, 3))
    torch.testing.assert_close(a[0, 1, 1], torch.tensor(0.6 + 0.4 * 0.5))
    geo = 0.5 * (1 + torch.einsum("bmd,bnd->bmn", h, h))
    torch.testing.assert_close(g2_affinity(h, grads, beta=1.0), geo)
    # opposite gradients: A_Gr = 0; equal: 1
    same = torch.ones(1, 3, 8)
    same[0, 2] = -1
    only_grad = g2_affinity(torch.zeros(1, 3, 8), same, beta=0.0)
    torch.testing.assert_close(only_grad[0], torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def test_task_gradients_are_per_sample_and_label_scale_free() -> None:
    """The gradient affinity uses dL/dh of each sample's own loss; MSE and L1 give the same cosine."""
    model = build("ca_moe")
    assert isinstance(model, CAMoE)
    batch = make_batch(6, seed=1)
    model.train()
    h = model._features(batch).detach()
    present = torch.ones(6, 3, dtype=torch.bool)
    grads = model._task_gradients(h, present, batch.labels)
    # reference: the same gradient from a single sample run alone
    for i in (0, 4):
        hi = h[i : i + 1].clone().requires_grad_(True)
        pred = model._fuse(hi, present[i : i + 1])["pred"]
        (ref,) = torch.autograd.grad((pred - batch.labels[i]).pow(2).sum(), hi)
        torch.testing.assert_close(grads[i], ref[0])
    l1 = build("ca_moe", affinity_loss="l1").train()._task_gradients(h, present, batch.labels)
    torch.testing.assert_close(g2_affinity(h, grads, 0.0), g2_affinity(h, l1, 0.0))
    assert not any(p.grad is not None for p in model.parameters())  # nothing leaks into .grad


def test_affinity_extras_and_eval_has_no_losses() -> None:
    model = build("ca_moe")
    batch = make_batch(8, seed=2)
    out = run(model, batch, train=True)
    a = out["extras"]["affinity"]
    assert a.shape == (8, 3) and (a >= 0).all() and (a <= 1).all()
    geo = out["extras"]["geometric_affinity"]
    beta_one = run(build("ca_moe", beta=1.0), batch, train=True)["extras"]["affinity"]
    torch.testing.assert_close(beta_one, geo)
    assert not torch.allclose(a, geo)
    assert set(out["losses"]) == {"attraction", "repulsion", "confidence", "load_balance"}
    ev = run(model, batch)
    assert ev["losses"] == {} and "affinity" not in ev["extras"]


def test_divergences() -> None:
    g = torch.Generator().manual_seed(3)
    lp, lq = torch.randn(4, 6, generator=g).log_softmax(-1), torch.randn(4, 6, generator=g).log_softmax(-1)
    kl = lambda a, b: (a.exp() * (a - b)).sum(-1)  # noqa: E731
    torch.testing.assert_close(symmetric_kl(lp, lq), kl(lp, lq) + kl(lq, lp))
    torch.testing.assert_close(symmetric_kl(lp, lp), torch.zeros(4))
    js = js_divergence(lp, lq)
    assert ((js > 0) & (js <= math.log(2))).all()
    torch.testing.assert_close(js, js_divergence(lq, lp))
    one_hot = torch.tensor([[0.0, -1e4], [-1e4, 0.0]])
    torch.testing.assert_close(js_divergence(one_hot[:1], one_hot[1:]), torch.tensor([math.log(2)]))


def test_routing_losses_signs_and_weights() -> None:
    batch = make_batch(10, seed=4)
    losses = run(build("ca_moe"), batch, train=True)["losses"]
    assert losses["attraction"] >= 0
    assert -3 * math.log(2) <= losses["repulsion"] <= 0
    assert losses["confidence"] >= 0 and losses["load_balance"] > 0
    doubled = run(build("ca_moe", attraction_weight=2.0, repulsion_weight=2.0), batch, train=True)["losses"]
    torch.testing.assert_close(doubled["attraction"], 2 * losses["attraction"])
    torch.testing.assert_close(doubled["repulsion"], 2 * losses["repulsion"])
    off = run(build("ca_moe", attraction_weight=0.0, confidence_weight=0.0), batch, train=True)["losses"]
    assert set(off) == {"repulsion", "load_balance"}


def test_routing_losses_skip_pairs_with_an_absent_modality() -> None:
    """With audio and vision absent no pair is complete: both routing losses are exactly 0."""
    missing = torch.tensor([[False, True, True]]).repeat(6, 1)
    losses = run(build("ca_moe"), make_batch(6, seed=5, missing=missing), train=True)["losses"]
    assert losses["attraction"] == 0 and losses["repulsion"] == 0


def test_margin_only_in_training_and_labels_never_reach_pred() -> None:
    cos = torch.tensor([[[0.5, 0.2, -0.1]]])
    classes = torch.tensor([0])
    plain, margin = angular_logits(cos, 30.0), angular_logits(cos, 30.0, 0.3, classes)
    torch.testing.assert_close(margin[..., 1:], plain[..., 1:])
    torch.testing.assert_close(margin[0, 0, 0], torch.tensor(30 * math.cos(math.acos(0.5) + 0.3)))
    assert margin[0, 0, 0] < plain[0, 0, 0]
    # theta + nu beyond pi is held at pi (monotone)
    torch.testing.assert_close(angular_logits(torch.tensor([[[-0.999]]]), 1.0, 0.3, classes), torch.tensor([[[-1.0]]]))
    model = build("ca_moe")
    batch = make_batch(8, seed=6)
    flipped = dataclasses.replace(batch, labels=-batch.labels)
    a, b = run(model, batch, train=True), run(model, flipped, train=True)
    torch.testing.assert_close(a["pred"], b["pred"])
    assert not torch.allclose(a["losses"]["confidence"], b["losses"]["confidence"])
    # margin affects only the confidence loss
    no_margin = run(build("ca_moe", margin=0.0), batch, train=True)
    torch.testing.assert_close(no_margin["pred"], a["pred"])
    assert no_margin["losses"]["confidence"] < a["losses"]["confidence"]


def test_class_binning_and_soft_labels() -> None:
    y = torch.tensor([-3.4, -2.6, -0.49, 0.0, 0.5, 1.5, 2.49, 3.7])
    assert bin_labels(y).tolist() == [0, 0, 3, 3, 3, 5, 5, 6]  # round half to even: 0.5 -> 0, 1.5 -> 2
    assert bin_labels(torch.tensor([0.4, -1.0]), scale=3.0).tolist() == [4, 0]  # SIMS range
    for kind in ("softmax", "normalized"):
        soft = gaussian_soft_labels(torch.tensor([0, 3, 6]), 7, 1.0, kind)
        torch.testing.assert_close(soft.sum(-1), torch.ones(3))
        assert soft.argmax(-1).tolist() == [0, 3, 6]
    flat = gaussian_soft_labels(torch.tensor([3]), 7, 1.0, "softmax")
    peaked = gaussian_soft_labels(torch.tensor([3]), 7, 1.0, "normalized")
    assert flat.max() < peaked.max()
    torch.testing.assert_close(flat, torch.exp(-(torch.arange(7.0) - 3) ** 2 / 2).softmax(-1).unsqueeze(0))


def test_ca_moe_routing_and_expert_selection() -> None:
    combos = torch.tensor(list(itertools.product([False, True], repeat=3)))
    batch = make_batch(8, seed=7, missing=combos)
    ex = run(build("ca_moe"), batch)["extras"]
    routing, weights, active = ex["routing"], ex["expert_weights"], ex["active"]
    assert routing.shape == (8, 3, 6) and weights.shape == (8, 6)
    present = ~combos
    assert ((routing > 0).sum(-1) == 3 * present.long()).all()  # top-3 per present modality
    torch.testing.assert_close(routing.sum(-1), present.float())
    torch.testing.assert_close(active, (routing > 0).any(1))
    has_any = present.any(1)
    torch.testing.assert_close(weights.sum(-1), has_any.float())
    assert (weights[~active] == 0).all() and (weights[active] > 0).all()
    everyone = run(build("ca_moe", inactive_experts="include"), batch)["extras"]["expert_weights"]
    assert (everyone > 0).all()


# --- EMOE --------------------------------------------------------------------------------------

def test_emoe_router_weights_temperature_and_absent() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        router = EMOERouter(12, 3, temperature=0.1)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    present = torch.ones(5, 3, dtype=torch.bool)
    w = router(x, present)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    torch.testing.assert_close(w, (router.logits(x) / 0.1).softmax(-1))
    router.temperature = 1.0
    soft = router(x, present)
    assert (w.max(-1).values >= soft.max(-1).values).all() and not torch.allclose(w, soft)
    present[0, 1] = False
    present[1] = False
    w2 = router(x, present)
    assert w2[0, 1] == 0 and (w2[1] == 0).all()
    torch.testing.assert_close(w2[0].sum(), torch.tensor(1.0))
    torch.testing.assert_close(masked_softmax(torch.zeros(1, 3), torch.tensor([[True, False, True]])),
                               torch.tensor([[0.5, 0.0, 0.5]]))


def test_emoe_target_weights_and_entropy() -> None:
    err = torch.tensor([[0.0, 0.9, 1.9], [0.0, 0.9, 1.9]])
    present = torch.tensor([[True, True, True], [True, False, True]])
    t = target_weights(err, present, 0.1)
    torch.testing.assert_close(t[0], torch.tensor([10.0, 1.0, 0.5]) / 11.5)
    torch.testing.assert_close(t[1], torch.tensor([10.0, 0.0, 0.5]) / 10.5)
    uniform = torch.full((2, 3), 1 / 3)
    torch.testing.assert_close(entropy_balance(uniform), torch.tensor(-3 * math.log(3)))
    assert entropy_balance(torch.tensor([[1.0, 0.0, 0.0]])) == 0  # least entropy, largest loss


def test_emoe_losses_match_the_paper() -> None:
    model = build("emoe", d_model=32, num_heads=4, head_hidden=32)
    assert isinstance(model, EMOE)
    missing = torch.zeros(8, 3, dtype=torch.bool)
    missing[0, 2] = True
    batch = make_batch(8, seed=8, missing=missing)
    out = run(model, batch, train=True)
    ex, y = out["extras"], batch.labels
    present = ex["present"]
    assert not present[0, 2] and ex["modality_weights"][0, 2] == 0
    torch.testing.assert_close(ex["modality_weights"].sum(-1), torch.ones(8))
    err = (ex["unimodal"] - y[:, None]).abs()
    torch.testing.assert_close(out["losses"]["unimodal"], err[present].mean())
    w = ex["modality_weights"]
    expected = 0.1 * (entropy_balance(w) + 0.1 * (w - target_weights(err.pow(2), present)).pow(2).mean())
    torch.testing.assert_close(out["losses"]["router"], expected)
    assert out["losses"]["distill"] >= 0
    assert set(run(build("emoe", d_model=32, num_heads=4, fusion="concat"), batch, train=True)["losses"]) == {
        "unimodal", "router"}
    ev = run(model, batch)
    assert ev["losses"] == {}
    torch.testing.assert_close(ev["pred"], run(model, dataclasses.replace(batch, labels=-y))["pred"])


def test_emoe_router_input_raw_reads_pooled_raw_features() -> None:
    """The default router sees the masked means of the raw input features, not the encoders."""
    batch = make_batch(6, seed=9)
    model = build("emoe", d_model=32, num_heads=4)
    assert isinstance(model, EMOE) and model.router.fc1.in_features == sum(DIMS.values())
    raw = torch.cat([(getattr(batch, m) * getattr(batch, f"{m}_mask").unsqueeze(-1)).sum(1)
                     / getattr(batch, f"{m}_mask").sum(1, keepdim=True) for m in MODS], dim=1)
    with torch.no_grad():
        expected = model.router(raw, torch.ones(6, 3, dtype=torch.bool))
        for p in model.encoders.parameters():
            p.add_(0.5)  # the encoders do not feed the raw router
    torch.testing.assert_close(run(model, batch)["extras"]["modality_weights"], expected)
    assert build("emoe", d_model=32, num_heads=4, router_input="encoded").router.fc1.in_features == 96


# --- TFN ---------------------------------------------------------------------------------------

def test_tensor_fusion_is_the_outer_product() -> None:
    zt, za, zv = torch.tensor([[2.0]]), torch.tensor([[3.0, 5.0]]), torch.tensor([[7.0]])
    fused = tensor_fusion([zt, za, zv])
    ref = torch.einsum("bi,bj,bk->bijk", torch.tensor([[2.0, 1.0]]), torch.tensor([[3.0, 5.0, 1.0]]),
                       torch.tensor([[7.0, 1.0]])).flatten(1)
    torch.testing.assert_close(fused, ref)
    assert fused[0, -1] == 1  # the constant term
    assert set(fused[0].tolist()) >= {2.0, 3.0, 5.0, 7.0, 42.0, 70.0}  # unimodal, bimodal, trimodal


def test_tfn_fused_dimension_is_the_product() -> None:
    model = build("tfn", text_proj=5, audio_proj=3, vision_proj=2)
    assert isinstance(model, TFN)
    fused, _ = model.fuse(make_batch(4, seed=10))
    assert fused.shape == (4, 6 * 4 * 3) and model.post[0].in_features == 72 == model.config.fused_dim


def test_tfn_absent_modality_keeps_only_its_constant_slice() -> None:
    model = build("tfn", text_proj=5, audio_proj=3, vision_proj=2)
    missing = torch.tensor([[False, False, True]]).repeat(4, 1)
    with torch.no_grad():
        fused, norms = model.fuse(make_batch(4, seed=11, missing=missing))
    cube = fused.view(4, 6, 4, 3)
    assert (cube[..., :2] == 0).all() and (cube[..., 2] != 0).any()
    assert (norms[:, 2] == 0).all()


# --- MulT --------------------------------------------------------------------------------------

UNALIGNED = {"text": 7, "audio": 23, "vision": 13}


def test_mult_unaligned_lengths_and_padding_is_ignored() -> None:
    model = build("mult", lengths=UNALIGNED)
    assert isinstance(model, MulT)
    batch = make_batch(5, seed=12, lengths=UNALIGNED)
    out = run(model, batch)
    assert out["pred"].shape == (5,) and torch.isfinite(out["pred"]).all()
    # the same samples padded to longer sequences, padding filled with garbage
    g = torch.Generator().manual_seed(13)
    changes: dict[str, torch.Tensor] = {}
    for m in MODS:
        x, mask = getattr(batch, m), getattr(batch, f"{m}_mask")
        extra = 9
        changes[m] = torch.cat([torch.where(mask.unsqueeze(-1), x, 50 * torch.randn(x.shape, generator=g)),
                                50 * torch.randn(5, extra, x.shape[2], generator=g)], dim=1)
        changes[f"{m}_mask"] = torch.cat([mask, torch.zeros(5, extra, dtype=torch.bool)], dim=1)
    padded = dataclasses.replace(batch, **changes)
    torch.testing.assert_close(run(model, padded)["pred"], out["pred"])
    for pooling in ("mean", "last"):
        torch.testing.assert_close(run(build("mult", pooling=pooling), padded)["pred"],
                                   run(build("mult", pooling=pooling), batch)["pred"])


def test_mult_uses_every_source() -> None:
    """Each source reaches the prediction through the cross-modal blocks (not only its own stream)."""
    model = build("mult", lengths=UNALIGNED)
    batch = make_batch(5, seed=14, lengths=UNALIGNED)
    base = run(model, batch)["pred"]
    with torch.no_grad():
        for block in model.cross["audio_to_text"]:
            block.attn.out.weight.mul_(3.0)
    assert not torch.allclose(run(model, batch)["pred"], base)


def test_cross_attention_block_masks() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = CrossAttentionBlock(8, 2)
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    ctx_mask = torch.tensor([[True, True, True, False, False], [False] * 5])
    out = block(x, mask, ctx, ctx_mask)
    assert out.shape == (2, 3, 8) and (out[0, 2] == 0).all()
    other = ctx.clone()
    other[0, 3:] = 99.0
    other[1] = -99.0  # no valid source position in row 1
    torch.testing.assert_close(block(x, mask, other, ctx_mask), out)
    torch.testing.assert_close(out[1], x[1] + block.mlp(block.norm2(x[1])))


def test_masked_last() -> None:
    x = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_last(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


# --- learning: clearly better than the mean predictor -----------------------------------------

SMALL_DATA = {"n_train": 256, "n_valid": 64, "n_test": 160, "text_dim": 32,
              "text_len": 24, "audio_len": 24, "vision_len": 24}

LEARNING = {  # model -> (overrides, epochs, lr); sized to finish in well under 20 s on one thread
    "tfn": ({}, 8, 1e-3),
    "mult": ({"d_model": 32}, 6, 1e-3),
    "ca_moe": ({}, 10, 2e-3),
    "emoe": ({"d_model": 128, "head_hidden": 128}, 8, 1e-3),
}


@pytest.fixture(scope="module")
def small_synthetic():
    return load_synthetic("mosi", seed=0, **SMALL_DATA)


@pytest.mark.parametrize("name", list(LEARNING))
def test_learns_better_than_the_mean(name: str, small_synthetic) -> None:
    overrides, epochs, lr = LEARNING[name]
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
