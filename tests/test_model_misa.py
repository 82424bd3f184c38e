"""What MISA means, beyond the registry contract: CMD and the soft-orthogonality loss equal
hand-computed values, one shared encoder serves every modality, the weighted losses exist only in
training, an absent modality leaves the fusion and the losses, and the Hugging Face text option works."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_text_encoders import hf_model, tiny_bert, tokenized_batch  # noqa: F401 (fixture)

from robustmsa.models.misa import MISA, cmd, difference_loss, misa_losses

from helpers import ModelKit, absent, run

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 10, "vision": 9})


def test_cmd_hand_computed() -> None:
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([[0.5, 0.0], [0.5, 1.0]])
    # means [0.5, 1] vs [0.5, 0.5]: 0.5; central moments k: [0.5^k, 0] vs [0, 0.5^k] for even k
    # (0.5^k sqrt 2 apart), 0 for odd k
    expected = 0.5 + 0.25 * math.sqrt(2)
    torch.testing.assert_close(cmd(x, y, 2), torch.tensor(expected))
    torch.testing.assert_close(cmd(x, y, 3), torch.tensor(expected))
    torch.testing.assert_close(cmd(x, y, 5), torch.tensor(expected + 0.0625 * math.sqrt(2)))
    torch.testing.assert_close(cmd(x, y, 1), torch.tensor(0.5))
    # only the first row: means [0, 1] vs [0.5, 0], no central moments
    torch.testing.assert_close(cmd(x, y, 5, torch.tensor([1.0, 0.0])), torch.tensor(math.sqrt(1.25)))
    assert cmd(x, y, 5, torch.zeros(2)) == 0 and cmd(x, x, 5) == 0


def test_difference_loss_hand_computed() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # centred; unit rows [1,0], [0,1], -[1,1]/sqrt 2
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, -1.0]])
    # a^T b = [[0, 1], [0, 0]] + [[0, 0], [1, 0]] + [[.5, .5], [.5, .5]]; mean of the squares
    torch.testing.assert_close(difference_loss(a, b), torch.tensor((0.25 + 2.25 + 2.25 + 0.25) / 4), atol=1e-5, rtol=1e-5)
    # the third row left out: centred over the first two, a^T b = [[-1, 1], [1, -1]]
    torch.testing.assert_close(difference_loss(a, b, torch.tensor([1.0, 1.0, 0.0])), torch.tensor(1.0),
                               atol=1e-5, rtol=1e-5)
    constant = torch.tensor([[0.3, 0.7]]).repeat(3, 1)
    assert difference_loss(a, constant) == 0  # nothing left after centring


def test_one_shared_encoder_and_private_encoders() -> None:
    model = KIT.build("misa")
    assert isinstance(model, MISA)
    with torch.no_grad():
        sp = model.eval().subspaces(KIT.batch(4, seed=1))
        for i, m in enumerate(("text", "audio", "vision")):
            torch.testing.assert_close(sp.shared[:, i], model.shared(sp.utterance[:, i]))
            torch.testing.assert_close(sp.private[:, i], model.private[m](sp.utterance[:, i]))
            torch.testing.assert_close(sp.recon[:, i], model.recon[m](sp.shared[:, i] + sp.private[:, i]))
    assert ((sp.shared > 0) & (sp.shared < 1)).all() and ((sp.private > 0) & (sp.private < 1)).all()


def test_losses_only_in_training_and_weighted() -> None:
    batch = KIT.batch(6, seed=2)
    assert run(KIT.build("misa"), batch)["losses"] == {}
    base = run(KIT.build("misa"), batch, train=True)["losses"]
    assert set(base) == {"similarity", "difference", "reconstruction"} and all(v > 0 for v in base.values())
    scaled = run(KIT.build("misa", sim_weight=0.6, diff_weight=0.0, recon_weight=2.0), batch, train=True)["losses"]
    torch.testing.assert_close(scaled["similarity"], 2 * base["similarity"])
    torch.testing.assert_close(scaled["reconstruction"], 2 * base["reconstruction"])
    assert scaled["difference"] == 0


def test_losses_hand_assembled() -> None:
    model = KIT.build("misa").train()
    sp = model.subspaces(KIT.batch(6, seed=3))
    losses = misa_losses(sp, model.config)
    s, p = sp.shared, sp.private
    sim = (cmd(s[:, 0], s[:, 1]) + cmd(s[:, 0], s[:, 2]) + cmd(s[:, 1], s[:, 2])) / 3
    diff = sum(difference_loss(p[:, i], s[:, i]) for i in range(3)) + sum(
        difference_loss(p[:, i], p[:, j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    recon = (sp.recon - sp.utterance).pow(2).mean()
    torch.testing.assert_close(losses["similarity"], 0.3 * sim)
    torch.testing.assert_close(losses["difference"], 0.1 * diff)
    torch.testing.assert_close(losses["reconstruction"], 1.0 * recon)


def test_absent_modality_leaves_fusion_and_losses() -> None:
    model = KIT.build("misa").train()
    batch = absent(KIT.batch(6, seed=4), "audio")
    sp = model.subspaces(batch)
    assert not sp.present[:, 1].any() and sp.present[:, [0, 2]].all()
    fused = model.fuse(sp).view(6, 6, -1)
    assert (fused[:, [1, 4]] == 0).all() and (fused[:, [0, 2, 3, 5]] != 0).any()
    losses = misa_losses(sp, model.config)
    torch.testing.assert_close(losses["similarity"], 0.3 * cmd(sp.shared[:, 0], sp.shared[:, 2]) / 3)
    recon = (sp.recon - sp.utterance).pow(2).mean(-1)[:, [0, 2]].mean(0).sum() / 3
    torch.testing.assert_close(losses["reconstruction"], recon)
    out = model(batch)
    assert (out["extras"]["shared_gap"][:, 1] == 0).all()


def test_shared_gap_is_the_distance_to_the_mean_shared_vector() -> None:
    model = KIT.build("misa").eval()
    batch = KIT.batch(4, seed=6)
    with torch.no_grad():
        sp = model.subspaces(batch)
        gap = model(batch)["extras"]["shared_gap"]
    torch.testing.assert_close(gap, (sp.shared - sp.shared.mean(1, keepdim=True)).norm(dim=-1))


def test_hf_text_encoder(tiny_bert: Path) -> None:  # noqa: F811 (fixture)
    model = hf_model(tiny_bert, "misa").train()
    batch = tokenized_batch(tiny_bert)
    out = model(batch)
    (out["pred"].pow(2).mean() + sum(out["losses"].values())).backward()
    assert model.encoders.text.backbone.embeddings.word_embeddings.weight.grad is not None
    groups = model.param_groups(1e-3, 0.0)
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]


@pytest.mark.parametrize("d_model,heads", [(64, 3)])
def test_fusion_heads_must_divide_width(d_model: int, heads: int) -> None:
    from robustmsa.errors import RobustMSAError

    with pytest.raises(RobustMSAError, match="fusion_heads"):
        KIT.build("misa", d_model=d_model, fusion_heads=heads)
