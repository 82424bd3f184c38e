"""What EMOE means, beyond the registry contract: router weights (temperature, absent modalities),
target weights and entropy balance, the paper's losses, and the router reading the raw features."""
from __future__ import annotations

import dataclasses
import math

import torch

from corruptions.keys import MODALITIES
from robustmsa.models.emoe import EMOE, EMOERouter, entropy_balance, target_weights
from robustmsa.models.layers import masked_softmax

from helpers import ModelKit, run

DIMS = {"text": 6, "audio": 4, "vision": 5}
KIT = ModelKit(DIMS, {"text": 8, "audio": 8, "vision": 8})


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
    model = KIT.build("emoe", d_model=32, num_heads=4, head_hidden=32)
    assert isinstance(model, EMOE)
    missing = torch.zeros(8, 3, dtype=torch.bool)
    missing[0, 2] = True
    batch = KIT.batch(8, seed=8, missing=missing)
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
    assert set(run(KIT.build("emoe", d_model=32, num_heads=4, fusion="concat"), batch, train=True)["losses"]) == {
        "unimodal", "router"}
    ev = run(model, batch)
    assert ev["losses"] == {}
    torch.testing.assert_close(ev["pred"], run(model, dataclasses.replace(batch, labels=-y))["pred"])


def test_emoe_router_input_raw_reads_pooled_raw_features() -> None:
    """The default router sees the masked means of the raw input features, not the encoders."""
    batch = KIT.batch(6, seed=9)
    model = KIT.build("emoe", d_model=32, num_heads=4)
    assert isinstance(model, EMOE) and model.router.fc1.in_features == sum(DIMS.values())
    raw = torch.cat([(getattr(batch, m) * getattr(batch, f"{m}_mask").unsqueeze(-1)).sum(1)
                     / getattr(batch, f"{m}_mask").sum(1, keepdim=True) for m in MODALITIES], dim=1)
    with torch.no_grad():
        expected = model.router(raw, torch.ones(6, 3, dtype=torch.bool))
        for p in model.encoders.parameters():
            p.add_(0.5)  # the encoders do not feed the raw router
    torch.testing.assert_close(run(model, batch)["extras"]["modality_weights"], expected)
    assert KIT.build("emoe", d_model=32, num_heads=4, router_input="encoded").router.fc1.in_features == 96
