"""What TFN means, beyond the registry contract: the tensor fusion is the outer product of
[z_m; 1], its size is the product, and an absent modality keeps only its constant slice."""
from __future__ import annotations

import torch

from robustmsa.models.tfn import TFN, tensor_fusion

from helpers import ModelKit

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 8, "vision": 8})


def test_tensor_fusion_is_the_outer_product() -> None:
    zt, za, zv = torch.tensor([[2.0]]), torch.tensor([[3.0, 5.0]]), torch.tensor([[7.0]])
    fused = tensor_fusion([zt, za, zv])
    ref = torch.einsum("bi,bj,bk->bijk", torch.tensor([[2.0, 1.0]]), torch.tensor([[3.0, 5.0, 1.0]]),
                       torch.tensor([[7.0, 1.0]])).flatten(1)
    torch.testing.assert_close(fused, ref)
    assert fused[0, -1] == 1  # the constant term
    assert set(fused[0].tolist()) >= {2.0, 3.0, 5.0, 7.0, 42.0, 70.0}  # unimodal, bimodal, trimodal


def test_tfn_fused_dimension_is_the_product() -> None:
    model = KIT.build("tfn", text_proj=5, audio_proj=3, vision_proj=2)
    assert isinstance(model, TFN)
    fused, _ = model.fuse(KIT.batch(4, seed=10))
    assert fused.shape == (4, 6 * 4 * 3) and model.post[0].in_features == 72 == model.config.fused_dim


def test_tfn_absent_modality_keeps_only_its_constant_slice() -> None:
    model = KIT.build("tfn", text_proj=5, audio_proj=3, vision_proj=2)
    missing = torch.tensor([[False, False, True]]).repeat(4, 1)
    with torch.no_grad():
        fused, norms = model.fuse(KIT.batch(4, seed=11, missing=missing))
    cube = fused.view(4, 6, 4, 3)
    assert (cube[..., :2] == 0).all() and (cube[..., 2] != 0).any()
    assert (norms[:, 2] == 0).all()
