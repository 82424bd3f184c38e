"""What EGMF means, beyond the registry contract: only LoRA adapters and EGMF's own layers train (the
LM stays frozen), the hierarchical gate, and a causal LM loaded from a local path (Llama, GPT-2)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustmsa.errors import RobustMSAError
from robustmsa.models import count_parameters
from robustmsa.models.egmf import EGMF

from helpers import ModelKit, run

KIT = ModelKit({"text": 10, "audio": 4, "vision": 6}, {"text": 9, "audio": 9, "vision": 9}, min_valid=2, clue_len=8)


def lora_report(model: EGMF) -> tuple[list[str], list[str]]:
    llm_trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    frozen_own = [n for n, p in model.named_parameters() if not n.startswith("llm.") and not p.requires_grad]
    return llm_trainable, frozen_own


def test_egmf_only_lora_and_own_parameters_train() -> None:
    model = KIT.build("egmf")
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
    targeted = KIT.build("egmf", lora_targets="o_proj")
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora_report(targeted)[0]} == {"o_proj"}
    # a training step changes LoRA and own weights, never the frozen LM weights
    batch = KIT.batch(seed=6)
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
    model = KIT.build("egmf")
    batch = KIT.batch(8, seed=7)
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
    model = KIT.build("egmf", llm=str(tmp_path))
    assert model.llm.config.hidden_size == 48 and model.head.net[0].in_features == 48
    saved = {k.removeprefix("model.").removeprefix("transformer."): v for k, v in lm.state_dict().items()}
    loaded = {n.replace(".base_layer", ""): p for n, p in model.llm.named_parameters() if not p.requires_grad}
    assert loaded and all(torch.equal(p, saved[n]) for n, p in loaded.items())  # the checkpoint's weights
    llm_trainable, frozen_own = lora_report(model)
    assert llm_trainable and all(".lora_" in n for n in llm_trainable) and frozen_own == []
    batch = KIT.batch(seed=8)
    out = model.train()(batch)
    (out["pred"] - batch.labels).pow(2).mean().backward()
    assert torch.isfinite(out["pred"]).all()
    assert all(p.grad is None for p in model.llm.parameters() if not p.requires_grad)
    again = KIT.build("egmf", llm=str(tmp_path))
    torch.testing.assert_close(run(again, batch)["pred"], run(model, batch)["pred"])
    with pytest.raises(RobustMSAError, match="offline"):
        KIT.build("egmf", llm=str(tmp_path / "missing"))
