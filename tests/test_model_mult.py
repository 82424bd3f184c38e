"""What MulT means, beyond the registry contract: unaligned sequences with padding ignored, every
source reaching the prediction through the cross-modal blocks, the cross-attention masks, masked_last."""
from __future__ import annotations

import dataclasses

import torch

from corruptions.keys import MODALITIES
from robustmsa.models.layers import CrossAttentionBlock
from robustmsa.models.mult import MulT, masked_last

from helpers import ModelKit, run

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 8, "vision": 8})
UNALIGNED = {"text": 7, "audio": 23, "vision": 13}


def test_mult_unaligned_lengths_and_padding_is_ignored() -> None:
    model = KIT.build("mult", lengths=UNALIGNED)
    assert isinstance(model, MulT)
    batch = KIT.batch(5, seed=12, lengths=UNALIGNED)
    out = run(model, batch)
    assert out["pred"].shape == (5,) and torch.isfinite(out["pred"]).all()
    # the same samples padded to longer sequences, padding filled with garbage
    g = torch.Generator().manual_seed(13)
    changes: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        x, mask = getattr(batch, m), getattr(batch, f"{m}_mask")
        extra = 9
        changes[m] = torch.cat([torch.where(mask.unsqueeze(-1), x, 50 * torch.randn(x.shape, generator=g)),
                                50 * torch.randn(5, extra, x.shape[2], generator=g)], dim=1)
        changes[f"{m}_mask"] = torch.cat([mask, torch.zeros(5, extra, dtype=torch.bool)], dim=1)
    padded = dataclasses.replace(batch, **changes)
    torch.testing.assert_close(run(model, padded)["pred"], out["pred"])
    for pooling in ("mean", "last"):
        torch.testing.assert_close(run(KIT.build("mult", pooling=pooling), padded)["pred"],
                                   run(KIT.build("mult", pooling=pooling), batch)["pred"])


def test_mult_uses_every_source() -> None:
    """Each source reaches the prediction through the cross-modal blocks (not only its own stream)."""
    model = KIT.build("mult", lengths=UNALIGNED)
    batch = KIT.batch(5, seed=14, lengths=UNALIGNED)
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
