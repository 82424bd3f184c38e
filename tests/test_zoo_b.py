"""What TEXT, MMoLRE and EGMF mean, beyond the registry contract: the clue path and its switch,
causal temporal alignment, keyed router noise, the training-only classification task, the frozen
LM with LoRA, the hierarchical gate; and each model learns on a small synthetic dataset."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from robustmsa.data.batch import Batch, split_to_batch
from robustmsa.data.synthetic import CLUE_VOCAB, SyntheticConfig, generate_synthetic
from robustmsa.errors import RobustMSAError
from robustmsa.evaluation import predict
from robustmsa.models import MSAModel, count_parameters, create_model
from robustmsa.models.egmf import EGMF
from robustmsa.models.mmolre import MMoLRE, sentiment_classes
from robustmsa.models.text_moe import TEXT, TemporalAlignment, resample_valid
from robustmsa.suite import RegimeSpec, TrainingSpec
from robustmsa.training import train_model

DIMS = {"text": 10, "audio": 4, "vision": 6}
T = 9
CLUE_LEN = 8
MODS = ("text", "audio", "vision")


def make_batch(n: int = 6, seed: int = 0, clues: bool = True, lengths: dict[str, int] | None = None) -> Batch:
    """Random features with ragged prefix masks, and (optionally) clue ids like the synthetic data's."""
    lengths = lengths or {m: T for m in MODS}
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, torch.Tensor] = {}
    for m in MODS:
        mask = torch.arange(lengths[m]).unsqueeze(0) < torch.randint(2, lengths[m] + 1, (n, 1), generator=g)
        parts[m] = torch.randn(n, lengths[m], DIMS[m], generator=g) * mask.unsqueeze(-1)
        parts[f"{m}_mask"] = mask
    clue_ids: dict[str, torch.Tensor] = {}
    if clues:
        for m in ("audio", "vision"):
            body = torch.randint(3, len(CLUE_VOCAB), (n, CLUE_LEN), generator=g)
            body = body * (torch.arange(CLUE_LEN) < torch.randint(3, CLUE_LEN + 1, (n, 1), generator=g))
            clue_ids[m] = torch.cat([torch.ones(n, 1, dtype=torch.long), body], dim=1)
    return Batch(missing=torch.zeros(n, 3, dtype=torch.bool), labels=torch.rand(n, generator=g) * 6 - 3,
                 keys=torch.randint(0, 2**62, (n,), generator=g), clues=clue_ids, **parts)


def absent(batch: Batch, *modalities: str) -> Batch:
    """Flag ``modalities`` missing (features zeroed, masks all False)."""
    changes: dict[str, typing.Any] = {"missing": batch.missing.clone()}
    for m in modalities:
        i = MODS.index(m)
        changes["missing"][:, i] = True
        changes[m] = torch.zeros_like(getattr(batch, m))
        changes[f"{m}_mask"] = torch.zeros_like(getattr(batch, f"{m}_mask"))
    return dataclasses.replace(batch, **changes)


def build(name: str, seed: int = 0, **overrides: typing.Any) -> MSAModel:
    return create_model(name, DIMS, {m: T for m in MODS}, seed=seed, **overrides)


def run(model: MSAModel, batch: Batch) -> dict[str, typing.Any]:
    with torch.no_grad():
        return model.eval()(batch)


# --------------------------------------------------------------------------------------------- TEXT

def test_text_clue_path_is_used_only_with_clues() -> None:
    model = build("text_moe")
    assert isinstance(model, TEXT)
    batch = make_batch()
    with_clues, without = run(model, batch), run(model, dataclasses.replace(batch, clues={}))
    assert (with_clues["extras"]["clues_used"] == 1).all() and (without["extras"]["clues_used"] == 0).all()
    assert not torch.allclose(with_clues["pred"], without["pred"])
    other = dataclasses.replace(batch, clues={m: torch.where(c > 2, 3 + (c + 5) % 20, c) for m, c in batch.clues.items()})
    assert not torch.allclose(run(model, other)["pred"], with_clues["pred"])  # clue content matters
    only_audio = dataclasses.replace(batch, clues={"audio": batch.clues["audio"]})
    torch.testing.assert_close(run(model, only_audio)["pred"], without["pred"])  # needs both clue streams
    off = build("text_moe", use_clues=False)
    torch.testing.assert_close(run(off, batch)["pred"], run(off, dataclasses.replace(batch, clues={}))["pred"])
    with pytest.raises(RobustMSAError, match="clue_vocab"):
        run(build("text_moe", clue_vocab=8), batch)


def test_text_clues_cannot_bypass_absent_modalities() -> None:
    """Without the clue residual, clue *content* reaches the prediction only through reading the
    features: with audio and vision absent, other clue words (same padding) change nothing."""
    batch = absent(make_batch(seed=1), "audio", "vision")
    swapped = dataclasses.replace(batch, clues={m: torch.where(c > 2, 3 + (c + 7) % 20, c) for m, c in batch.clues.items()})
    model = build("text_moe")
    torch.testing.assert_close(run(model, swapped)["pred"], run(model, batch)["pred"])
    leaky = build("text_moe", clue_residual=True)
    assert not torch.allclose(run(leaky, swapped)["pred"], run(leaky, batch)["pred"])


def test_temporal_alignment_is_causal_and_cross_gated() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = TemporalAlignment(8, 16, kernel=4)
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(2, 10, 8, generator=g), torch.randn(2, 10, 8, generator=g)
    mask = torch.ones(2, 10, dtype=torch.bool)
    ya, yv = block(a, v, mask, mask)
    t = 5
    a2, v2 = a.clone(), v.clone()
    a2[:, t + 1:] += 3.0
    v2[:, t + 1:] -= 3.0
    za, zv = block(a2, v2, mask, mask)
    torch.testing.assert_close(za[:, : t + 1], ya[:, : t + 1])
    torch.testing.assert_close(zv[:, : t + 1], yv[:, : t + 1])
    assert not torch.allclose(za[:, t + 1:], ya[:, t + 1:])
    v3 = v.clone()
    v3[:, t] += 1.0  # vision at t gates audio at t, and reaches audio at t..t+3 through nothing else
    wa, _ = block(a, v3, mask, mask)
    torch.testing.assert_close(wa[:, :t], ya[:, :t])
    assert not torch.allclose(wa[:, t], ya[:, t]) and torch.equal(wa[:, t + 1:], ya[:, t + 1:])
    holes = mask.clone()
    holes[:, 2] = False
    garbage = a.clone()
    garbage[:, 2] = 100.0
    torch.testing.assert_close(block(garbage, v, holes, mask)[0], block(a, v, holes, mask)[0])


def test_resample_valid_spreads_valid_frames() -> None:
    x = torch.arange(1.0, 7.0).view(1, 6, 1).repeat(3, 1, 1)
    mask = torch.tensor([[True, True, True, False, False, False],
                         [True, False, True, False, True, True],
                         [False] * 6])
    y, m = resample_valid(x, mask, 8)
    assert y[0, :, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3]
    assert y[1, :, 0].tolist() == [1, 1, 3, 3, 5, 5, 6, 6]
    assert (y[2] == 0).all() and m[:2].all() and not m[2].any()


def test_text_router_noise_is_keyed_and_training_only() -> None:
    batch = make_batch(8, seed=2)
    a, b = build("text_moe").train(), build("text_moe").train()
    rng = torch.random.get_rng_state()
    with torch.no_grad():
        pa = a(batch)
        pb = b(batch)
        assert torch.equal(torch.random.get_rng_state(), rng)  # no global RNG draw
        torch.testing.assert_close(pa["pred"], pb["pred"])  # same seed, same keys, same call index
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
        c = build("text_moe").train()
        pc = c(batch.index(perm))  # noise follows each sample's key, not its batch position
        torch.testing.assert_close(pc["pred"], pa["pred"][perm])
        torch.testing.assert_close(pc["extras"]["expert_weights"], pa["extras"]["expert_weights"][perm])
        second = a(batch)  # the next training call draws fresh noise ...
        salted = build("text_moe", noise_seed=1).train()(batch)  # ... and so does another salt
        quiet = build("text_moe", router_noise=False).train()(batch)
        ev1, ev2 = a.eval()(batch), a.eval()(batch)  # no noise at evaluation
    assert not torch.equal(second["extras"]["expert_weights"], pa["extras"]["expert_weights"])
    assert not torch.equal(salted["extras"]["expert_weights"], pa["extras"]["expert_weights"])
    torch.testing.assert_close(ev1["pred"], ev2["pred"])
    assert not torch.allclose(ev1["pred"], pa["pred"])
    quiet_eval = run(build("text_moe", router_noise=False), batch)
    torch.testing.assert_close(quiet["pred"], quiet_eval["pred"])
    w = ev1["extras"]["expert_weights"]
    assert w.shape == (8, 2, 5) and ((w > 0).sum(-1) == 3).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(8, 2))
    torch.testing.assert_close(ev1["extras"]["fusion_weights"].sum(-1), torch.ones(8))


def test_text_unaligned_and_ablations_run() -> None:
    lengths = {"text": 7, "audio": 13, "vision": 5}
    batch = make_batch(4, seed=3, clues=False, lengths=lengths)
    for overrides in ({}, {"temporal_alignment": False}, {"gated_fusion": False}, {"balance_weight": 0.01}):
        model = create_model("text_moe", DIMS, lengths, seed=0, **overrides).train()
        out = model(batch)
        assert torch.isfinite(out["pred"]).all() and (("load_balance" in out["losses"]) == bool(overrides.get("balance_weight")))
    fused = run(create_model("text_moe", DIMS, lengths, gated_fusion=False), batch)["extras"]["fusion_weights"]
    torch.testing.assert_close(fused, torch.full((4, 3), 1 / 3))


# ------------------------------------------------------------------------------------------- MMoLRE

def test_mmolre_classification_loss_only_in_training() -> None:
    model = build("mmolre")
    assert isinstance(model, MMoLRE)
    batch = make_batch(seed=4)
    out = model.train()(batch)
    loss = out["losses"]["classification"]
    logits = torch.log(out["extras"]["class_probs"])
    expected = 0.3 * torch.nn.functional.cross_entropy(logits, sentiment_classes(batch.labels))
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
    assert run(model, batch)["losses"] == {}
    relabelled = dataclasses.replace(batch, labels=-batch.labels)
    ev, ev2 = run(model, batch), run(model, relabelled)  # labels are never read at evaluation
    torch.testing.assert_close(ev["pred"], ev2["pred"])
    torch.testing.assert_close(ev["extras"]["class_probs"], ev2["extras"]["class_probs"])
    assert build("mmolre", cls_weight=0.0).train()(batch)["losses"] == {}


def test_mmolre_sentiment_classes() -> None:
    y = torch.tensor([-3.2, -2.6, -0.4, 0.2, 1.4, 2.9, 5.0])
    assert sentiment_classes(y).tolist() == [0, 0, 3, 3, 4, 6, 6]
    assert sentiment_classes(torch.tensor([-1.0, -0.2, 0.6]), scale=3.0).tolist() == [0, 2, 5]


def test_mmolre_ignores_vision_and_gates_sum_to_one() -> None:
    model = build("mmolre")
    batch = make_batch(seed=5)
    ref = run(model, batch)
    for other in (dataclasses.replace(batch, vision=torch.randn_like(batch.vision)), absent(batch, "vision")):
        torch.testing.assert_close(run(model, other)["pred"], ref["pred"])
    assert not torch.allclose(run(model, absent(batch, "audio"))["pred"], ref["pred"])
    gates = ref["extras"]["gates"]
    assert gates.shape == (6, 2, 2, 5)
    torch.testing.assert_close(gates.sum(-1), torch.ones(6, 2, 2))
    assert not torch.allclose(gates[:, :, 0], gates[:, :, 1])  # each task has its own router
    assert count_parameters(build("mmolre", num_shared=8)) > count_parameters(model)


def test_mmolre_experts_do_not_straddle_modalities() -> None:
    model = build("mmolre")
    bank = model.blocks[0].shared
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 64, generator=g)
    mask = torch.ones(2, 10, dtype=torch.bool)
    bounds = [(0, 6), (6, 10)]
    y = bank(x, mask, bounds)
    assert y.shape == (2, 4, 10, 64)
    x2 = x.clone()
    x2[:, 6:] += 1.0
    y2 = bank(x2, mask, bounds)
    torch.testing.assert_close(y2[:, :, :6], y[:, :, :6])
    assert not torch.allclose(y2[:, :, 6:], y[:, :, 6:])
    assert not torch.allclose(bank(x2, mask, [(0, 10)])[:, :, :6], y[:, :, :6])  # one segment would mix them
    # the bank computes the experts independently: expert e = Conv1d(k=3, d -> r), GELU, Conv1d(k=1, r -> d)
    r = bank.down.out_channels // 4
    for e in range(4):
        down = torch.nn.functional.conv1d(x.transpose(1, 2)[:, :, :6], bank.down.weight[e * r:(e + 1) * r],
                                          bank.down.bias[e * r:(e + 1) * r], padding=1)
        up = torch.nn.functional.conv1d(torch.nn.functional.gelu(down), bank.up.weight[e * 64:(e + 1) * 64],
                                        bank.up.bias[e * 64:(e + 1) * 64])
        torch.testing.assert_close(y[:, e, :6], up.transpose(1, 2))


# --------------------------------------------------------------------------------------------- EGMF

def lora_report(model: EGMF) -> tuple[list[str], list[str]]:
    llm_trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    frozen_own = [n for n, p in model.named_parameters() if not n.startswith("llm.") and not p.requires_grad]
    return llm_trainable, frozen_own


def test_egmf_only_lora_and_own_parameters_train() -> None:
    model = build("egmf")
    assert isinstance(model, EGMF)
    llm_trainable, frozen_own = lora_report(model)
    assert llm_trainable and all(".lora_A." in n or ".lora_B." in n for n in llm_trainable)
    assert frozen_own == []
    assert any(".q_proj." in n for n in llm_trainable) and any(".v_proj." in n for n in llm_trainable)
    groups = model.param_groups(1e-3, 0.0)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    frozen = sum(p.numel() for p in model.llm.parameters() if not p.requires_grad)
    assert frozen > 0 and count_parameters(model, trainable_only=True) == count_parameters(model) - frozen
    targeted = build("egmf", lora_targets="o_proj")
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora_report(targeted)[0]} == {"o_proj"}
    # a training step changes LoRA and own weights, never the frozen LM weights
    batch = make_batch(seed=6)
    frozen_before = {n: p.detach().clone() for n, p in model.llm.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW(groups)
    for _ in range(2):
        opt.zero_grad()
        (model.train()(batch)["pred"] - batch.labels).pow(2).mean().backward()
        opt.step()
    assert all(torch.equal(p, frozen_before[n]) for n, p in model.llm.named_parameters() if not p.requires_grad)
    lora_b = [p for n, p in model.llm.named_parameters() if ".lora_B." in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # zero-initialised, moved by training


def test_egmf_hierarchical_gate() -> None:
    model = build("egmf")
    batch = make_batch(8, seed=7)
    ex = run(model, batch)["extras"]
    alpha, w = ex["expert_weights"], ex["gate_weights"]
    assert alpha.shape == w.shape == (8, 3) and (alpha > 0).all() and (w > 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(8))
    torch.testing.assert_close(w.sum(-1), torch.ones(8))
    assert not torch.allclose(alpha, w)  # the refinement stage changes the first-stage weights
    hidden = [e.net[0].out_features for e in model.experts]
    acts = [type(e.net[1]).__name__ for e in model.experts]
    assert hidden == [8, 16, 32] and acts == ["Mish", "GELU", "SiLU"]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_egmf_loads_a_causal_lm_from_a_path(tmp_path: Path, arch: str) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if arch == "llama":
            lm = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
        else:
            lm = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=48, n_layer=2, n_head=4, n_positions=32,
                                            bos_token_id=0, eos_token_id=0))
    lm.save_pretrained(tmp_path)
    model = build("egmf", llm=str(tmp_path))
    assert model.llm.config.hidden_size == 48 and model.head.net[0].in_features == 48
    saved = {k.removeprefix("model.").removeprefix("transformer."): v for k, v in lm.state_dict().items()}
    loaded = {n.replace(".base_layer", ""): p for n, p in model.llm.named_parameters() if not p.requires_grad}
    assert loaded and all(torch.equal(p, saved[n]) for n, p in loaded.items())  # the checkpoint's weights
    llm_trainable, frozen_own = lora_report(model)
    assert llm_trainable and all(".lora_" in n for n in llm_trainable) and frozen_own == []
    batch = make_batch(seed=8)
    out = model.train()(batch)
    (out["pred"] - batch.labels).pow(2).mean().backward()
    assert torch.isfinite(out["pred"]).all()
    assert all(p.grad is None for p in model.llm.parameters() if not p.requires_grad)
    again = build("egmf", llm=str(tmp_path))
    torch.testing.assert_close(run(again, batch)["pred"], run(model, batch)["pred"])
    with pytest.raises(RobustMSAError, match="offline"):
        build("egmf", llm=str(tmp_path / "missing"))


# ------------------------------------------------------------------------------- learning on data

@pytest.fixture(scope="module")
def small_mosi():
    return generate_synthetic(SyntheticConfig.from_preset("mosi", n_train=256, n_valid=128, n_test=192, clips_per_video=(2, 6)))


@pytest.mark.parametrize(("name", "epochs"), [("text_moe", 4), ("mmolre", 6), ("egmf", 8)])
def test_learns_on_small_synthetic(small_mosi, name: str, epochs: int) -> None:
    """Each run takes 10-25 s on one thread; EGMF steps are cheap but learn slowly through the LM."""
    ds = small_mosi
    model = create_model(name, ds.dims, ds.lengths, seed=0)
    regime = RegimeSpec(name="clean", kind="clean")
    training = TrainingSpec(epochs=epochs, batch_size=32, lr=2e-3, patience=epochs, device="cpu")
    train_model(model, ds, regime, training, seed=0, device=torch.device("cpu"))
    test = split_to_batch(ds["test"])
    pred, _ = predict(model, test, 256, torch.device("cpu"))
    y = test.labels.numpy()
    mae = float(np.abs(pred - y).mean())
    mean_mae = float(np.abs(y - ds["train"].labels.mean()).mean())
    print(f"{name}: test MAE {mae:.3f} vs mean predictor {mean_mae:.3f}")
    assert mae < 0.85 * mean_mae
