"""What CA-MoE means, beyond the registry contract: hyperspherical features, the G^2 affinity from
per-sample task gradients, the routing losses, the angular margin (training only, labels never reach
the prediction), class binning and soft labels, ACMA routing and RAES expert selection."""
from __future__ import annotations

import dataclasses
import itertools
import math

import torch

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

from helpers import ModelKit, run

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 8, "vision": 8})


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
    model = KIT.build("ca_moe")
    assert isinstance(model, CAMoE)
    batch = KIT.batch(6, seed=1)
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
    l1 = KIT.build("ca_moe", affinity_loss="l1").train()._task_gradients(h, present, batch.labels)
    torch.testing.assert_close(g2_affinity(h, grads, 0.0), g2_affinity(h, l1, 0.0))
    assert not any(p.grad is not None for p in model.parameters())  # nothing leaks into .grad


def test_affinity_extras_and_eval_has_no_losses() -> None:
    model = KIT.build("ca_moe")
    batch = KIT.batch(8, seed=2)
    out = run(model, batch, train=True)
    a = out["extras"]["affinity"]
    assert a.shape == (8, 3) and (a >= 0).all() and (a <= 1).all()
    geo = out["extras"]["geometric_affinity"]
    beta_one = run(KIT.build("ca_moe", beta=1.0), batch, train=True)["extras"]["affinity"]
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
    batch = KIT.batch(10, seed=4)
    losses = run(KIT.build("ca_moe"), batch, train=True)["losses"]
    assert losses["attraction"] >= 0
    assert -3 * math.log(2) <= losses["repulsion"] <= 0
    assert losses["confidence"] >= 0 and losses["load_balance"] > 0
    doubled = run(KIT.build("ca_moe", attraction_weight=2.0, repulsion_weight=2.0), batch, train=True)["losses"]
    torch.testing.assert_close(doubled["attraction"], 2 * losses["attraction"])
    torch.testing.assert_close(doubled["repulsion"], 2 * losses["repulsion"])
    off = run(KIT.build("ca_moe", attraction_weight=0.0, confidence_weight=0.0), batch, train=True)["losses"]
    assert set(off) == {"repulsion", "load_balance"}


def test_routing_losses_skip_pairs_with_an_absent_modality() -> None:
    """With audio and vision absent no pair is complete: both routing losses are exactly 0."""
    missing = torch.tensor([[False, True, True]]).repeat(6, 1)
    losses = run(KIT.build("ca_moe"), KIT.batch(6, seed=5, missing=missing), train=True)["losses"]
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
    model = KIT.build("ca_moe")
    batch = KIT.batch(8, seed=6)
    flipped = dataclasses.replace(batch, labels=-batch.labels)
    a, b = run(model, batch, train=True), run(model, flipped, train=True)
    torch.testing.assert_close(a["pred"], b["pred"])
    assert not torch.allclose(a["losses"]["confidence"], b["losses"]["confidence"])
    # margin affects only the confidence loss
    no_margin = run(KIT.build("ca_moe", margin=0.0), batch, train=True)
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
    batch = KIT.batch(8, seed=7, missing=combos)
    ex = run(KIT.build("ca_moe"), batch)["extras"]
    routing, weights, active = ex["routing"], ex["expert_weights"], ex["active"]
    assert routing.shape == (8, 3, 6) and weights.shape == (8, 6)
    present = ~combos
    assert ((routing > 0).sum(-1) == 3 * present.long()).all()  # top-3 per present modality
    torch.testing.assert_close(routing.sum(-1), present.float())
    torch.testing.assert_close(active, (routing > 0).any(1))
    has_any = present.any(1)
    torch.testing.assert_close(weights.sum(-1), has_any.float())
    assert (weights[~active] == 0).all() and (weights[active] > 0).all()
    everyone = run(KIT.build("ca_moe", inactive_experts="include"), batch)["extras"]["expert_weights"]
    assert (everyone > 0).all()
