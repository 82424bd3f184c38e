"""What LNLN means, beyond the registry contract: the completeness estimate falls as the language
is corrupted once trained with its loss; the losses appear in training (the adversarial and
reconstruction ones only with a clean batch), none in eval; ``clean`` feeds targets only; the
correction mixes the language and the proxy by the completeness; the gradient reversal."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_text_encoders import tiny_bert, tokenized_batch  # noqa: F401  (tiny_bert is a fixture)

from corruptions.keys import MODALITIES
from robustmsa.data.batch import Batch
from robustmsa.models.lnln import LNLN, grad_reverse

from helpers import ModelKit, absent, run

DIMS = {"text": 6, "audio": 4, "vision": 5}
T = 8
KIT = ModelKit(DIMS, {m: T for m in MODALITIES})


def test_losses_in_training_none_in_eval() -> None:
    model = KIT.build("lnln")
    assert isinstance(model, LNLN)
    batch, clean = KIT.batch(6, seed=1), KIT.batch(6, seed=2)
    assert set(run(model, batch, train=True)["losses"]) == {"completeness"}
    out = run(model, batch, train=True, clean=clean)
    assert set(out["losses"]) == {"completeness", "adversarial", "reconstruction"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out["losses"].values())
    assert run(model, batch, clean=clean)["losses"] == {}
    weighted = KIT.build("lnln", reconstruction_weight=0.2, adversarial_weight=1.6, completeness_weight=1.8)
    double = run(weighted, batch, train=True, clean=clean)["losses"]
    for key in out["losses"]:
        torch.testing.assert_close(double[key], 2 * out["losses"][key])


def test_clean_feeds_targets_only() -> None:
    """Without clean: no reconstruction or adversarial loss, no gradient into their modules, no crash;
    with clean: the prediction is the same, and no gradient reaches the clean input."""
    model = KIT.build("lnln").train()
    batch = KIT.batch(6, seed=3)
    out = model(batch)
    sum(out["losses"].values(), out["pred"].pow(2).mean()).backward()
    assert all(p.grad is None for p in [*model.reconstructor.parameters(), *model.discriminator.parameters()])
    clean = KIT.batch(6, seed=4)
    clean = dataclasses.replace(clean, **{m: getattr(clean, m).clone().requires_grad_() for m in MODALITIES})
    with_clean = model(batch, clean=clean)
    torch.testing.assert_close(with_clean["pred"], out["pred"])
    sum(with_clean["losses"].values()).backward()
    assert all(getattr(clean, m).grad is None for m in MODALITIES)
    assert all(p.grad is not None for p in model.reconstructor.parameters())
    assert model.discriminator[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="clean batch"):
        model(batch, clean=KIT.batch(4, seed=5))


def test_correction_mixes_language_and_proxy_by_completeness() -> None:
    model = KIT.build("lnln").eval()
    batch = KIT.batch(5, seed=6)
    w = run(model, batch)["extras"]["completeness"]
    assert w.shape == (5,) and ((w > 0) & (w < 1)).all()
    no_text = absent(batch, "text")
    assert (run(model, no_text)["extras"]["completeness"] == 0).all()
    with torch.no_grad():
        h = model.tokens(batch)
        _, h_d, h_p = model._correct(h, torch.zeros(5, dtype=torch.bool))
        torch.testing.assert_close(h_d, w[:, None, None] * h["text"] + (1 - w[:, None, None]) * h_p)
    # the text absent, the dominant representation is the proxy built from audio and vision
    with torch.no_grad():
        h = model.tokens(no_text)
        _, h_d, h_p = model._correct(h, torch.ones(5, dtype=torch.bool))
    torch.testing.assert_close(h_d, h_p)


def test_gradient_reversal() -> None:
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, -1.0, -1.5]))
    # the adversarial loss trains the proxy generator against the discriminator
    model = KIT.build("lnln").train()
    batch, clean = KIT.batch(6, seed=7), KIT.batch(6, seed=8)
    proxy = model.proxy.proxy

    def proxy_grad(**overrides) -> torch.Tensor:
        m = KIT.build("lnln", **overrides).train()
        m.load_state_dict(model.state_dict())
        m(batch, clean=clean)["losses"]["adversarial"].backward()
        return m.proxy.proxy.grad

    plain, reversed_twice = proxy_grad(grl_scale=1.0), proxy_grad(grl_scale=2.0)
    assert proxy.shape == plain.shape and plain.abs().sum() > 0
    torch.testing.assert_close(reversed_twice, 2 * plain)


def _corrupted_text(n: int, g: torch.Generator, proj: dict[str, torch.Tensor]) -> tuple[Batch, Batch]:
    """(corrupted batch with its reliability, clean batch): features driven by a 2-d latent, the text
    mixed with white noise at a per-sample rho uniform in [0, 1] (``rho x + (1 - rho) noise``)."""
    z = torch.randn(n, 2, generator=g)
    parts: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        parts[m] = (z @ proj[m]).unsqueeze(1).expand(n, T, DIMS[m]) + 0.1 * torch.randn(n, T, DIMS[m], generator=g)
        parts[f"{m}_mask"] = torch.ones(n, T, dtype=torch.bool)
    clean = Batch(missing=torch.zeros(n, 3, dtype=torch.bool), labels=(1.5 * z[:, 0] + z[:, 1]).clamp(-3, 3),
                  keys=torch.arange(n, dtype=torch.int64), **parts)
    rho = torch.rand(n, generator=g)
    r = rho[:, None, None]
    text = r * clean.text + (1 - r) * 1.5 * torch.randn(clean.text.shape, generator=g)
    reliability = torch.stack([rho, torch.ones(n), torch.ones(n)], dim=1)
    return dataclasses.replace(clean, text=text, reliability=reliability), clean


def test_completeness_falls_as_the_language_is_corrupted() -> None:
    """Trained with its losses on text corrupted at random rho, the completeness estimate ranks the
    samples by rho at test time, without any clean input or reliability."""
    g = torch.Generator().manual_seed(0)
    proj = {m: torch.randn(2, DIMS[m], generator=g) for m in MODALITIES}
    model = KIT.build("lnln", d_model=32, num_heads=4).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        batch, clean = _corrupted_text(64, g, proj)
        out = model(batch, clean=clean)
        loss = (out["pred"] - batch.labels).pow(2).mean() + sum(out["losses"].values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    test, _ = _corrupted_text(400, g, proj)
    rho = test.reliability[:, 0]
    w = run(model, dataclasses.replace(test, reliability=None))["extras"]["completeness"]
    bins = [w[(rho >= lo) & (rho < lo + 0.25)].mean().item() for lo in (0.0, 0.25, 0.5, 0.75)]
    print(f"completeness by rho quartile: {[round(b, 3) for b in bins]}")
    assert bins == sorted(bins) and bins[-1] - bins[0] > 0.4
    assert (w - rho).abs().mean() < 0.15


def test_bert_text_encoder(tiny_bert: Path) -> None:  # noqa: F811
    model = KIT.build("lnln", text_encoder="hf", text_model=str(tiny_bert)).train()
    batch = tokenized_batch(tiny_bert)
    out = model(batch, clean=batch)
    assert set(out["losses"]) == {"completeness", "adversarial", "reconstruction"}
    sum(out["losses"].values(), (out["pred"] - batch.labels).pow(2).mean()).backward()
    assert model.encoders.text.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0
