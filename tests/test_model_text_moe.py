"""What TEXT means, beyond the registry contract: the clue path and its switch, clues that cannot
bypass absent modalities, causal cross-gated temporal alignment, resampling of valid frames, keyed
training-only router noise, unaligned inputs and the ablations."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from robustmsa.errors import RobustMSAError
from robustmsa.models.text_moe import TEXT, TemporalAlignment, resample_valid

from helpers import ModelKit, absent, run

KIT = ModelKit({"text": 10, "audio": 4, "vision": 6}, {"text": 9, "audio": 9, "vision": 9}, min_valid=2, clue_len=8)


def test_text_clue_path_is_used_only_with_clues() -> None:
    model = KIT.build("text_moe")
    assert isinstance(model, TEXT)
    batch = KIT.batch()
    with_clues, without = run(model, batch), run(model, dataclasses.replace(batch, clues={}))
    assert (with_clues["extras"]["clues_used"] == 1).all() and (without["extras"]["clues_used"] == 0).all()
    assert not torch.allclose(with_clues["pred"], without["pred"])
    other = dataclasses.replace(batch, clues={m: torch.where(c > 2, 3 + (c + 5) % 20, c) for m, c in batch.clues.items()})
    assert not torch.allclose(run(model, other)["pred"], with_clues["pred"])  # clue content matters
    only_audio = dataclasses.replace(batch, clues={"audio": batch.clues["audio"]})
    torch.testing.assert_close(run(model, only_audio)["pred"], without["pred"])  # needs both clue streams
    off = KIT.build("text_moe", use_clues=False)
    torch.testing.assert_close(run(off, batch)["pred"], run(off, dataclasses.replace(batch, clues={}))["pred"])
    with pytest.raises(RobustMSAError, match="clue_vocab"):
        run(KIT.build("text_moe", clue_vocab=8), batch)


def test_text_clues_cannot_bypass_absent_modalities() -> None:
    """Without the clue residual, clue *content* reaches the prediction only through reading the
    features: with audio and vision absent, other clue words (same padding) change nothing."""
    batch = absent(KIT.batch(seed=1), "audio", "vision")
    swapped = dataclasses.replace(batch, clues={m: torch.where(c > 2, 3 + (c + 7) % 20, c) for m, c in batch.clues.items()})
    model = KIT.build("text_moe")
    torch.testing.assert_close(run(model, swapped)["pred"], run(model, batch)["pred"])
    leaky = KIT.build("text_moe", clue_residual=True)
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
    batch = KIT.batch(8, seed=2)
    a, b = KIT.build("text_moe").train(), KIT.build("text_moe").train()
    rng = torch.random.get_rng_state()
    with torch.no_grad():
        pa = a(batch)
        pb = b(batch)
        assert torch.equal(torch.random.get_rng_state(), rng)  # no global RNG draw
        torch.testing.assert_close(pa["pred"], pb["pred"])  # same seed, same keys, same call index
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
        c = KIT.build("text_moe").train()
        pc = c(batch.index(perm))  # noise follows each sample's key, not its batch position
        torch.testing.assert_close(pc["pred"], pa["pred"][perm])
        torch.testing.assert_close(pc["extras"]["expert_weights"], pa["extras"]["expert_weights"][perm])
        second = a(batch)  # the next training call draws fresh noise ...
        salted = KIT.build("text_moe", noise_seed=1).train()(batch)  # ... and so does another salt
        quiet = KIT.build("text_moe", router_noise=False).train()(batch)
        ev1, ev2 = a.eval()(batch), a.eval()(batch)  # no noise at evaluation
    assert not torch.equal(second["extras"]["expert_weights"], pa["extras"]["expert_weights"])
    assert not torch.equal(salted["extras"]["expert_weights"], pa["extras"]["expert_weights"])
    torch.testing.assert_close(ev1["pred"], ev2["pred"])
    assert not torch.allclose(ev1["pred"], pa["pred"])
    quiet_eval = run(KIT.build("text_moe", router_noise=False), batch)
    torch.testing.assert_close(quiet["pred"], quiet_eval["pred"])
    w = ev1["extras"]["expert_weights"]
    assert w.shape == (8, 2, 5) and ((w > 0).sum(-1) == 3).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(8, 2))
    torch.testing.assert_close(ev1["extras"]["fusion_weights"].sum(-1), torch.ones(8))


def test_text_unaligned_and_ablations_run() -> None:
    lengths = {"text": 7, "audio": 13, "vision": 5}
    batch = KIT.batch(4, seed=3, clue_len=0, lengths=lengths)
    for overrides in ({}, {"temporal_alignment": False}, {"gated_fusion": False}, {"balance_weight": 0.01}):
        model = KIT.build("text_moe", lengths=lengths, **overrides).train()
        out = model(batch)
        assert torch.isfinite(out["pred"]).all() and (("load_balance" in out["losses"]) == bool(overrides.get("balance_weight")))
    fused = run(KIT.build("text_moe", lengths=lengths, gated_fusion=False), batch)["extras"]["fusion_weights"]
    torch.testing.assert_close(fused, torch.full((4, 3), 1 / 3))
