"""What MMoLRE means, beyond the registry contract: the training-only classification task, the
sentiment classes, vision ignored, per-task gates, low-rank experts that do not straddle modalities."""
from __future__ import annotations

import dataclasses

import torch

from robustmsa.models import count_parameters
from robustmsa.models.mmolre import MMoLRE, sentiment_classes

from helpers import ModelKit, absent, run

KIT = ModelKit({"text": 10, "audio": 4, "vision": 6}, {"text": 9, "audio": 9, "vision": 9}, min_valid=2, clue_len=8)


def test_mmolre_classification_loss_only_in_training() -> None:
    model = KIT.build("mmolre")
    assert isinstance(model, MMoLRE)
    batch = KIT.batch(seed=4)
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
    assert KIT.build("mmolre", cls_weight=0.0).train()(batch)["losses"] == {}


def test_mmolre_sentiment_classes() -> None:
    y = torch.tensor([-3.2, -2.6, -0.4, 0.2, 1.4, 2.9, 5.0])
    assert sentiment_classes(y).tolist() == [0, 0, 3, 3, 4, 6, 6]
    assert sentiment_classes(torch.tensor([-1.0, -0.2, 0.6]), scale=3.0).tolist() == [0, 2, 5]


def test_mmolre_ignores_vision_and_gates_sum_to_one() -> None:
    model = KIT.build("mmolre")
    batch = KIT.batch(seed=5)
    ref = run(model, batch)
    for other in (dataclasses.replace(batch, vision=torch.randn_like(batch.vision)), absent(batch, "vision")):
        torch.testing.assert_close(run(model, other)["pred"], ref["pred"])
    assert not torch.allclose(run(model, absent(batch, "audio"))["pred"], ref["pred"])
    gates = ref["extras"]["gates"]
    assert gates.shape == (6, 2, 2, 5)
    torch.testing.assert_close(gates.sum(-1), torch.ones(6, 2, 2))
    assert not torch.allclose(gates[:, :, 0], gates[:, :, 1])  # each task has its own router
    assert count_parameters(KIT.build("mmolre", num_shared=8)) > count_parameters(model)


def test_mmolre_experts_do_not_straddle_modalities() -> None:
    model = KIT.build("mmolre")
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
