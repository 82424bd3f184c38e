"""The Hugging Face text encoder: loads offline from a local path, trains or freezes, has its own
learning rate, respects masks, and sees token-level corruptions through the ids.

A tiny BERT (hidden 32, 2 layers) and its tokenizer are built from configs and saved to a temporary
directory; every model loads them from there (HF_HUB_OFFLINE=1, set in conftest)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from corruptions.feature.drop import Drop
from robustmsa.data.batch import Batch
from robustmsa.errors import RobustMSAError
from robustmsa.models import create_model
from robustmsa.models.text_encoders import HFTextEncoder

from helpers import ModelKit

assert os.environ.get("HF_HUB_OFFLINE") == "1"

DIMS = {"text": 8, "audio": 4, "vision": 5}
T = 12
KIT = ModelKit(DIMS, {m: T for m in DIMS})
SENTENCES = ["the movie was really great", "i did not like it at all", "bad acting and boring plot",
             "good", "what a wonderful and moving film", "it was fine i guess"]
WORDS = ("the movie was really great i did not like it at all bad acting and boring plot good what a "
         "wonderful moving film fine guess").split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT-layout vocabulary ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103), saved with its model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    assert (tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.mask_token_id) == (100, 101, 103)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tokenized_batch(path: Path, seed: int = 0) -> Batch:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    enc = tok(SENTENCES, padding="max_length", max_length=T, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    assert (ids[:, 0] == 101).all() and not (ids[mask] == 100).any()  # every word is in the vocabulary
    g = torch.Generator().manual_seed(seed)
    n = len(SENTENCES)
    parts = {m: torch.randn(n, T, DIMS[m], generator=g) * mask.unsqueeze(-1) for m in DIMS}
    return Batch(text_mask=mask, audio_mask=mask.clone(), vision_mask=mask.clone(),
                 missing=torch.zeros(n, 3, dtype=torch.bool), labels=torch.randn(n, generator=g),
                 keys=torch.arange(n, dtype=torch.int64) * 7919, text_ids=ids, **parts)


def hf_model(path: Path, name: str = "late_fusion", **overrides) -> torch.nn.Module:
    """Model ``name`` with the tiny BERT at ``path`` as its text encoder."""
    return KIT.build(name, text_encoder="hf", text_model=str(path), **overrides)


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    enc = model.encoders.text
    assert isinstance(enc, HFTextEncoder)
    return enc.backbone


def test_loads_from_path_and_trains(tiny_bert: Path) -> None:
    model = hf_model(tiny_bert).train()
    batch = tokenized_batch(tiny_bert)
    out = model(batch)
    assert out["pred"].shape == (len(batch),) and torch.isfinite(out["pred"]).all()
    (out["pred"] - batch.labels).pow(2).mean().backward()
    grads = [p.grad for p in backbone(model).parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.requires_grad for p in backbone(model).parameters())
    text_features = dataclasses.replace(batch, text=torch.randn_like(batch.text))
    with torch.no_grad():  # the ids are read, the precomputed text features are not
        model.eval()
        torch.testing.assert_close(model(text_features)["pred"], model(batch)["pred"])


def test_creation_is_deterministic(tiny_bert: Path) -> None:
    a, b = hf_model(tiny_bert), hf_model(tiny_bert)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_frozen_encoder(tiny_bert: Path) -> None:
    model = hf_model(tiny_bert, freeze_text=True).train()
    bb = backbone(model)
    assert not any(p.requires_grad for p in bb.parameters()) and not bb.training  # no dropout either
    batch = tokenized_batch(tiny_bert)
    first = model(batch)["pred"]
    first.sum().backward()
    assert all(p.grad is None for p in bb.parameters())
    assert model.encoders.text.proj.weight.grad is not None  # the projection still trains
    torch.testing.assert_close(model(batch)["pred"], first)  # train mode, yet deterministic: dropout off
    groups = model.param_groups(1e-3, 1e-4)
    assert len(groups) == 1
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert not in_groups & {id(p) for p in bb.parameters()}


@pytest.mark.parametrize("name", ["late_fusion", "qa_moe", "text_moe", "egmf", "mmolre"])
def test_param_groups_give_the_encoder_its_own_lr(tiny_bert: Path, name: str) -> None:
    model = hf_model(tiny_bert, name, text_lr=1e-5)
    groups = model.param_groups(1e-3, 0.0)
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]
    text_ids = {id(p) for p in backbone_of(model).parameters()}
    assert {id(p) for p in groups[1]["params"]} == text_ids
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in trainable)
    if name != "late_fusion":
        return
    # one AdamW step moves each weight by about its group's lr (Adam's first step is lr * sign(grad))
    before = {id(p): p.detach().clone() for p in trainable}
    opt = torch.optim.AdamW(groups)
    model.train()
    batch = tokenized_batch(tiny_bert)
    (model(batch)["pred"] - batch.labels).pow(2).mean().backward()
    opt.step()
    text_step = max(float((p.detach() - before[id(p)]).abs().max()) for p in groups[1]["params"])
    rest_step = max(float((p.detach() - before[id(p)]).abs().max()) for p in groups[0]["params"])
    assert 0 < text_step <= 1.01e-5 and 0.5e-3 < rest_step <= 1.01e-3


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    encs = [m for m in model.modules() if isinstance(m, HFTextEncoder)]
    assert len(encs) == 1
    return encs[0].backbone


@pytest.mark.parametrize("token", ["unk", "mask"])
def test_token_drop_changes_the_output(tiny_bert: Path, token: str) -> None:
    model = hf_model(tiny_bert).eval()
    batch = tokenized_batch(tiny_bert)
    text = batch.modality("text")
    drop = Drop(report_mask=False, text_token=token)  # MMSA protocol: the model is not told
    state = drop.sample(batch.keys, text)
    with torch.no_grad():
        ref = model(batch)["pred"]
        same = batch.with_modality("text", drop.apply(text, torch.ones(len(batch)), state))
        assert torch.equal(same.text_ids, batch.text_ids)
        torch.testing.assert_close(model(same)["pred"], ref)
        dropped = batch.with_modality("text", drop.apply(text, torch.full((len(batch),), 0.3), state))
        changed = dropped.text_ids != batch.text_ids
        assert changed.any() and (dropped.text_ids[changed] == {"unk": 100, "mask": 103}[token]).all()
        diff = (model(dropped)["pred"] - ref).abs()
    rows = changed.any(1)
    assert (diff[rows] > 1e-6).all() and (diff[~rows] == 0).all()


def test_masked_tokens_and_missing_text_are_ignored(tiny_bert: Path) -> None:
    model = hf_model(tiny_bert).eval()
    batch = tokenized_batch(tiny_bert)
    enc = model.encoders.text
    garbage = batch.text_ids.masked_fill(~batch.text_mask, 104)
    assert not torch.equal(garbage, batch.text_ids)
    with torch.no_grad():
        torch.testing.assert_close(model(dataclasses.replace(batch, text_ids=garbage))["pred"], model(batch)["pred"])
        missing = torch.zeros(len(batch), 3, dtype=torch.bool)
        missing[:2, 0] = True
        empty = enc(batch, batch.text_mask & ~missing[:, :1])
    assert torch.isfinite(empty.seq).all()
    assert (empty.seq[:2] == 0).all() and (empty.pooled[:2] == 0).all() and (empty.pooled[2:] != 0).any()


def test_errors_are_loud(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(RobustMSAError, match="text_model"):
        create_model("late_fusion", DIMS, seed=0, text_encoder="hf")
    with pytest.raises(RobustMSAError, match="offline"):
        create_model("late_fusion", DIMS, seed=0, text_encoder="hf", text_model=str(tmp_path / "nothing"))
    model = hf_model(tiny_bert)
    batch = tokenized_batch(tiny_bert)
    with pytest.raises(RobustMSAError, match="vocabulary"):
        model(dataclasses.replace(batch, text_ids=batch.text_ids.masked_fill(batch.text_mask, 5000)))
    with pytest.raises(RobustMSAError, match="text_ids"):
        model(dataclasses.replace(batch, text_ids=None))


def test_text_moe_encodes_clues_with_the_shared_encoder(tiny_bert: Path) -> None:
    model = hf_model(tiny_bert, "text_moe").eval()
    assert model.clue_embed is None
    batch = tokenized_batch(tiny_bert)
    g = torch.Generator().manual_seed(1)
    clues = {m: torch.cat([torch.ones(len(batch), 1, dtype=torch.long),
                           torch.randint(3, 27, (len(batch), 7), generator=g)], 1) for m in ("audio", "vision")}
    with torch.no_grad():
        out = model(dataclasses.replace(batch, clues=clues))
        plain = model(batch)
    assert (out["extras"]["clues_used"] == 1).all() and (plain["extras"]["clues_used"] == 0).all()
    assert not torch.allclose(out["pred"], plain["pred"])


def test_transformers_is_imported_lazily() -> None:
    code = ("import sys, robustmsa.models, robustmsa.models.text_encoders, robustmsa.models.egmf; "
            "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
