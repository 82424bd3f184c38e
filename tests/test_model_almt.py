"""What ALMT means, beyond the registry contract: the hyper-modality attention over audio and vision
is guided by the language, audio and vision reach the prediction only through the hyper-modality,
padding of unaligned sequences is ignored, and BERT can replace the precomputed text features."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from test_text_encoders import tiny_bert, tokenized_batch  # noqa: F401  (tiny_bert is a fixture)

from corruptions.keys import MODALITIES
from robustmsa.models.almt import ALMT

from helpers import ModelKit, run

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 8, "vision": 8})
UNALIGNED = {"text": 7, "audio": 23, "vision": 13}


def _other(batch, modality: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    x, mask = getattr(batch, modality), getattr(batch, f"{modality}_mask")
    return dataclasses.replace(batch, **{modality: torch.randn(x.shape, generator=g) * mask.unsqueeze(-1)})


def test_hyper_attention_is_guided_by_language() -> None:
    model = KIT.build("almt", lengths=UNALIGNED).eval()
    assert isinstance(model, ALMT)
    batch = KIT.batch(5, seed=1, lengths=UNALIGNED)
    with torch.no_grad():
        attn_a, attn_v = model.hyper_attention(batch)
        new_a, new_v = model.hyper_attention(_other(batch, "text", 2))  # audio and vision unchanged
    c = model.config
    assert len(attn_a) == len(attn_v) == c.ahl_layers
    for a in (*attn_a, *attn_v):
        assert a.shape == (5, c.num_heads, c.tokens, c.tokens)
        torch.testing.assert_close(a.sum(-1), torch.ones(5, c.num_heads, c.tokens))
    for old, new in zip([*attn_a, *attn_v], [*new_a, *new_v], strict=True):
        assert (old - new).abs().amax() > 1e-3  # other language, other attention over the same audio/vision


def test_audio_and_vision_reach_the_prediction_only_through_the_hyper_modality() -> None:
    model = KIT.build("almt").eval()
    batch = KIT.batch(5, seed=3)
    base = run(model, batch)["pred"]
    assert not torch.allclose(run(model, _other(batch, "audio", 4))["pred"], base)
    with torch.no_grad():
        for layer in model.core.ahl:
            layer.out.weight.zero_()
            layer.out.bias.zero_()
    base = run(model, batch)["pred"]
    for m in MODALITIES:  # the [CLS] query reads the hyper-modality only: now a constant
        torch.testing.assert_close(run(model, _other(batch, m, 5))["pred"], base)
    model.core.readout = "mean"  # the language tokens' own fusion outputs: the language reaches them
    base = run(model, batch)["pred"]
    for m in ("audio", "vision"):
        torch.testing.assert_close(run(model, _other(batch, m, 5))["pred"], base)
    assert not torch.allclose(run(model, _other(batch, "text", 6))["pred"], base)


def test_padding_of_unaligned_sequences_is_ignored() -> None:
    model = KIT.build("almt", lengths=UNALIGNED)
    batch = KIT.batch(5, seed=7, lengths=UNALIGNED)
    g = torch.Generator().manual_seed(8)
    changes: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        x, mask = getattr(batch, m), getattr(batch, f"{m}_mask")
        changes[m] = torch.cat([torch.where(mask.unsqueeze(-1), x, 50 * torch.randn(x.shape, generator=g)),
                                50 * torch.randn(5, 9, x.shape[2], generator=g)], dim=1)
        changes[f"{m}_mask"] = torch.cat([mask, torch.zeros(5, 9, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(run(model, dataclasses.replace(batch, **changes))["pred"], run(model, batch)["pred"])


def test_readouts_differ_and_the_paper_sizes_build() -> None:
    batch = KIT.batch(4, seed=9)
    cls, mean = run(KIT.build("almt"), batch)["pred"], run(KIT.build("almt", readout="mean"), batch)["pred"]
    assert not torch.allclose(cls, mean)
    paper = KIT.build("almt", d_model=128, num_heads=8)
    assert run(paper, batch)["pred"].shape == (4,)


def test_bert_text_encoder(tiny_bert: Path) -> None:  # noqa: F811
    model = KIT.build("almt", text_encoder="hf", text_model=str(tiny_bert)).train()
    batch = tokenized_batch(tiny_bert)
    out = model(batch)
    (out["pred"] - batch.labels).pow(2).mean().backward()
    assert model.encoders.text.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    with torch.no_grad():  # the ids are read, the precomputed text features are not
        model.eval()
        torch.testing.assert_close(model(dataclasses.replace(batch, text=torch.randn_like(batch.text)))["pred"],
                                   model(batch)["pred"])
