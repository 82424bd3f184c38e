"""What QA-MoE means: quality in (0, 1] and 0 for absent modalities, each ablation switch changes
behaviour, and the core claim: self-supervised sigma^2 grows on corrupted inputs."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from robustmsa.data.batch import Batch
from robustmsa.models.qa_moe import QAMoE, heteroscedastic_loss, reliability_statistics

from helpers import ModelKit, run

DIMS = {"text": 6, "audio": 4, "vision": 5}
T = 8
MODS = ("text", "audio", "vision")
KIT = ModelKit(DIMS, {m: T for m in MODS}, normal_labels=True)


def test_the_factory_builds_qa_moe() -> None:
    assert isinstance(KIT.build("qa_moe"), QAMoE)


def test_quality_in_unit_interval_and_zero_when_missing() -> None:
    combos = torch.tensor(list(itertools.product([False, True], repeat=3))).repeat(2, 1)
    batch = KIT.batch(len(combos), seed=1, missing=combos)
    ex = run(KIT.build("qa_moe"), batch)["extras"]
    r, s2 = ex["quality"], ex["sigma2"]
    assert r.shape == s2.shape == (16, 3)
    assert (r[combos] == 0).all()
    present = r[~combos]
    assert ((present > 0) & (present <= 1)).all()
    torch.testing.assert_close(present, 1 / (1 + s2[~combos]))
    kept = run(KIT.build("qa_moe", zero_quality_if_missing=False), batch)["extras"]["quality"]
    assert (kept > 0).all()


@pytest.mark.parametrize("k", [1, 3])
def test_topk_picks_exactly_k(k: int) -> None:
    w = run(KIT.build("qa_moe", top_k=k), KIT.batch(12, seed=2))["extras"]["expert_weights"]
    assert w.shape == (12, 8)
    assert ((w > 0).sum(1) == k).all()
    torch.testing.assert_close(w.sum(1), torch.ones(12))


def test_dense_routing_uses_all_experts() -> None:
    out = run(KIT.build("qa_moe", routing="dense"), KIT.batch(12, seed=3))
    assert (out["extras"]["expert_weights"] > 0).all()
    assert "load_balance" not in out["losses"]


def test_random_routing_ignores_the_input() -> None:
    model = KIT.build("qa_moe", routing="random")
    a, b = KIT.batch(12, seed=4), KIT.batch(12, seed=5)
    b = dataclasses.replace(b, keys=a.keys)
    wa, wb = run(model, a)["extras"]["expert_weights"], run(model, b)["extras"]["expert_weights"]
    assert torch.equal(wa, wb)
    assert ((wa > 0).sum(1) == 3).all() and torch.allclose(wa[wa > 0], torch.tensor(1 / 3))
    other = run(model, dataclasses.replace(a, keys=a.keys + 1))["extras"]["expert_weights"]
    assert not torch.equal(wa, other)
    topk = run(KIT.build("qa_moe"), a)["extras"]["expert_weights"]
    assert not torch.equal(topk, run(KIT.build("qa_moe"), b)["extras"]["expert_weights"])


@pytest.mark.parametrize("quality_gate", [True, False])
def test_quality_gate_is_the_only_path_from_r_to_routing(quality_gate: bool) -> None:
    """With fused features fixed (no prior fallback), changing r changes routing iff the gate is on."""
    model = KIT.build("qa_moe", quality_gate=quality_gate, prior_fallback=False)
    batch = KIT.batch(12, seed=6)
    before = run(model, batch)["extras"]
    with torch.no_grad():
        for head in model.uncertainty.values():
            head.log_var.net[-1].bias.add_(4.0)
    after = run(model, batch)["extras"]
    assert not torch.allclose(before["quality"], after["quality"])
    flat = torch.randn(12, 3 * 64, generator=torch.Generator().manual_seed(0))
    r1, r2 = torch.zeros(12, 3), torch.ones(12, 3)
    logits_differ = not torch.allclose(model.router(flat, r1 if quality_gate else None),
                                       model.router(flat, r2 if quality_gate else None))
    assert logits_differ == quality_gate
    assert torch.equal(before["expert_weights"], after["expert_weights"]) != quality_gate


@pytest.mark.parametrize("prior_fallback", [True, False])
def test_prior_fallback_switch(prior_fallback: bool) -> None:
    model = KIT.build("qa_moe", prior_fallback=prior_fallback)
    batch = KIT.batch(8, seed=7, missing=torch.tensor([[False, True, False]]).repeat(8, 1))
    before = run(model, batch)["pred"]
    with torch.no_grad():
        model.prior[1].add_(5.0)
    changed = not torch.allclose(before, run(model, batch)["pred"])
    assert changed == prior_fallback


@pytest.mark.parametrize("flag", [True, False])
def test_uncertainty_loss_switch(flag: bool) -> None:
    model = KIT.build("qa_moe", uncertainty_loss=flag)
    batch, clean = KIT.batch(8, seed=8), KIT.batch(8, seed=9)
    self_target, clean_target = run(model, batch), run(model, batch, clean=clean)
    assert ("uncertainty" in self_target["losses"]) == flag
    assert "quality" in self_target["extras"]
    torch.testing.assert_close(self_target["pred"], clean_target["pred"])
    if flag:
        assert self_target["losses"]["uncertainty"] < clean_target["losses"]["uncertainty"]


def test_load_balance_loss_present_and_weighted() -> None:
    batch = KIT.batch(16, seed=10)
    lb = run(KIT.build("qa_moe"), batch)["losses"]["load_balance"]
    lb2 = run(KIT.build("qa_moe", balance_weight=0.02), batch)["losses"]["load_balance"]
    assert lb > 0 and torch.isfinite(lb)
    torch.testing.assert_close(lb2, 2 * lb)
    assert "load_balance" not in run(KIT.build("qa_moe", balance_weight=0.0), batch)["losses"]
    assert "load_balance" not in run(KIT.build("qa_moe", routing="random"), batch)["losses"]


@pytest.mark.parametrize("detach", [True, False])
def test_detach_quality_keeps_task_gradient_out_of_sigma(detach: bool) -> None:
    model = KIT.build("qa_moe", detach_quality=detach).train()
    out = model(KIT.batch(8, seed=11))
    out["pred"].sum().backward()
    grads = [p.grad for p in model.uncertainty.parameters() if p.grad is not None]
    assert any(g.abs().sum() > 0 for g in grads) != detach


def test_heteroscedastic_loss_values() -> None:
    mu, t = torch.zeros(2, 3), torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    s = torch.tensor([0.0, 1.0])
    # row 0: 0.5 * 4 * e^0 + 0 = 2; row 1: 0 + 0.5 = 0.5
    torch.testing.assert_close(heteroscedastic_loss(mu, s, t, torch.ones(2)), torch.tensor(1.25))
    torch.testing.assert_close(heteroscedastic_loss(mu, s, t, torch.tensor([0.0, 1.0])), torch.tensor(0.5))
    assert heteroscedastic_loss(mu, s, t, torch.zeros(2)) == 0


def _spectrum_data(n: int, g: torch.Generator, proj: dict[str, torch.Tensor]) -> tuple[Batch, torch.Tensor, Batch]:
    """(corrupted batch, noisy flags [n], clean batch): features driven by a 2-d latent z (constant
    over time + small noise), label from z; audio replaced by white noise in about half the samples."""
    z = torch.randn(n, 2, generator=g)
    parts: dict[str, torch.Tensor] = {}
    for m in MODS:
        base = (z @ proj[m]).unsqueeze(1).expand(n, T, DIMS[m])
        parts[m] = base + 0.1 * torch.randn(n, T, DIMS[m], generator=g)
        parts[f"{m}_mask"] = torch.ones(n, T, dtype=torch.bool)
    labels = (1.5 * z[:, 0] + z[:, 1]).clamp(-3, 3)
    clean = Batch(missing=torch.zeros(n, 3, dtype=torch.bool), labels=labels,
                  keys=torch.arange(n, dtype=torch.int64), **parts)
    noisy = torch.rand(n, generator=g) < 0.5
    audio = torch.where(noisy[:, None, None], 1.5 * torch.randn(n, T, DIMS["audio"], generator=g), clean.audio)
    return dataclasses.replace(clean, audio=audio), noisy, clean


def test_sigma_grows_on_corrupted_inputs() -> None:
    """The core claim: trained with clean targets, sigma^2 of the corrupted modality is larger (r
    smaller) on corrupted samples than on clean ones, at test time without any clean input."""
    g = torch.Generator().manual_seed(0)
    proj = {m: torch.randn(2, DIMS[m], generator=g) for m in MODS}
    model = KIT.build("qa_moe", seed=0, d_model=32, expert_hidden=64, head_hidden=32, uncertainty_hidden=32).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        batch, _, clean = _spectrum_data(64, g, proj)
        out = model(batch, clean=clean)
        loss = (out["pred"] - batch.labels).pow(2).mean() + sum(out["losses"].values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    test, noisy, _ = _spectrum_data(400, g, proj)
    ex = run(model, test)["extras"]
    s2, r = ex["sigma2"][:, 1], ex["quality"][:, 1]
    print(f"audio sigma2 noisy {s2[noisy].mean():.3f} clean {s2[~noisy].mean():.4f}; "
          f"r noisy {r[noisy].mean():.3f} clean {r[~noisy].mean():.3f}")
    assert s2[noisy].mean() > 10 * s2[~noisy].mean()
    assert r[~noisy].mean() - r[noisy].mean() > 0.2
    ranked = (r[noisy].unsqueeze(1) < r[~noisy].unsqueeze(0)).float().mean()
    assert ranked > 0.95  # AUC of "r separates clean from corrupted samples"
    text_r = ex["quality"][:, 0]
    assert (text_r[noisy].mean() - text_r[~noisy].mean()).abs() < 0.05  # only audio was corrupted


def test_reliability_statistics_see_holes_and_white_noise() -> None:
    t = torch.arange(16, dtype=torch.float32)
    smooth = torch.stack([torch.sin(t / 3), torch.cos(t / 3)], dim=-1).unsqueeze(0)  # [1, 16, 2]
    full = torch.ones(1, 16, dtype=torch.bool)
    holes = full.clone()
    holes[0, 4:12:2] = False  # 4 of the 16 positions between the first and the last dropped
    stats = reliability_statistics(smooth.expand(3, 16, 2), torch.cat([full, holes, torch.zeros_like(full)]))
    torch.testing.assert_close(stats[:, 0], torch.tensor([1.0, 0.75, 0.0]))
    assert stats[0, 1] > 0.8 and stats[2, 1] == 0  # a smooth signal: high lag-1 autocorrelation; empty: 0
    noisy = smooth + 3 * torch.randn(1, 16, 2, generator=torch.Generator().manual_seed(0))
    assert reliability_statistics(noisy, full)[0, 1] < stats[0, 1] - 0.3


def test_rho_supervised_quality_variant() -> None:
    """The variant trains r on the applied rho when the batch carries it (spectrum training); the
    paper's heteroscedastic loss otherwise; its default is off (the paper's mechanism)."""
    assert not KIT.build("qa_moe").config.quality_supervision
    model = KIT.build("qa_moe", quality_supervision=True, quality_weight=1.0).train()
    batch = KIT.batch(8, seed=12)
    assert "uncertainty" in model(batch)["losses"] and "quality" not in model(batch)["losses"]
    rho = torch.rand(8, 3, generator=torch.Generator().manual_seed(1))
    out = model(dataclasses.replace(batch, reliability=rho))
    assert set(out["losses"]) >= {"quality"} and "uncertainty" not in out["losses"]
    # the loss is the BCE of r = sigmoid(-log sigma^2) against rho over the present modalities
    r = out["extras"]["quality"]
    manual = -(rho * torch.log(r) + (1 - rho) * torch.log1p(-r)).mean()
    torch.testing.assert_close(out["losses"]["quality"], manual, rtol=1e-4, atol=1e-5)
    out["losses"]["quality"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.uncertainty["audio"].log_var.parameters())
    doubled = KIT.build("qa_moe", quality_supervision=True, quality_weight=2.0).train()(dataclasses.replace(batch, reliability=rho))
    torch.testing.assert_close(doubled["losses"]["quality"], 2 * manual, rtol=1e-4, atol=1e-5)
    # the paper's model ignores the reliability entirely
    paper = KIT.build("qa_moe")
    torch.testing.assert_close(run(paper, batch)["pred"], run(paper, dataclasses.replace(batch, reliability=rho))["pred"])


def test_trainer_hands_the_applied_rho_to_spectrum_and_specialist_batches() -> None:
    from corruptions import TrainingSampler
    from robustmsa.evaluation import CorruptionContext
    from robustmsa.suite import RegimeSpec, TrainingSpec
    from robustmsa.training import RegimeCorruption, TrainingRun

    def corruptor(regime: RegimeSpec) -> RegimeCorruption:
        return RegimeCorruption(TrainingRun(regime, TrainingSpec(), 0, (regime.conditions or [None])[0]), ctx)

    train = KIT.batch(32, seed=13)
    ctx = CorruptionContext(train.modalities())
    spectrum = RegimeSpec(name="spectrum", kind="spectrum")
    corrupted, clean = corruptor(spectrum)(train, epoch=3)
    assert clean is train and corrupted.reliability is not None and corrupted.reliability.shape == (32, 3)
    s = spectrum.sampler
    sampler = TrainingSampler([f.spec() for f in s.families], weights=s.weights, p_clean_sample=s.p_clean_sample,
                              p_clean_modality=s.p_clean_modality, rho_low=s.rho_low, rho_high=s.rho_high, seed=0)
    rho, _ = sampler.draw(train.keys, 3)
    torch.testing.assert_close(corrupted.reliability, torch.stack([rho[m] for m in MODS], dim=1))
    assert (corrupted.reliability < 1).any() and (corrupted.reliability == 1).any()
    specialist = RegimeSpec(name="s", kind="specialist",
                            conditions=[{"family": "noise", "sweep": "audio", "level": 0.25}])
    at, _ = corruptor(specialist)(train, epoch=0)
    assert at.reliability.tolist() == [[1.0, 0.25, 1.0]] * 32
    plain, none = corruptor(RegimeSpec(name="c", kind="clean"))(train, epoch=0)
    assert plain.reliability is None and none is None


def test_input_statistics_variant_feeds_the_damage_statistics_to_the_sigma_head() -> None:
    """quality_statistics: the sigma^2 head reads [h, kept share, lag-1 autocorrelation]; holes in a
    modality's input then change its r even where the encoding is held fixed."""
    model = KIT.build("qa_moe", quality_statistics=True, prior_fallback=False)
    assert model.uncertainty["audio"].log_var.net[0].in_features == model.config.d_model + 2
    assert KIT.build("qa_moe").uncertainty["audio"].log_var.net[0].in_features == model.config.d_model
    batch = KIT.batch(6, seed=14)
    with torch.no_grad():
        h = model._encode(batch)
        absent = torch.zeros(6, 3, dtype=torch.bool)
        holes = batch.audio_mask.clone()
        holes[:, 1::2] = False
        holes[:, 0] = True
        _, _, r_full = model._quality(h, absent, dataclasses.replace(batch, audio_mask=torch.ones_like(holes)))
        _, _, r_holes = model._quality(h, absent, dataclasses.replace(batch, audio_mask=holes))
    assert not torch.allclose(r_full[:, 1], r_holes[:, 1])
    torch.testing.assert_close(r_full[:, 0], r_holes[:, 0])  # text untouched
