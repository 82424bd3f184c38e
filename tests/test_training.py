"""The trainer's epoch (robustmsa.training.trainer): the same batches and the same updates as a plain
loop over mini-batches, and a non-finite loss that stops training naming its epoch and step."""
from __future__ import annotations

import pytest
import torch

from robustmsa.data.batch import batches, split_to_batch
from robustmsa.data.synthetic import load_synthetic
from robustmsa.errors import NonFiniteError
from robustmsa.evaluation import CorruptionContext
from robustmsa.models import create_model
from robustmsa.suite import RegimeSpec, SamplerSpec, TrainingSpec
from robustmsa.training import RegimeCorruption, TrainingRun, train_model
from robustmsa.training.trainer import optimizer, train_epoch

SMALL = {"n_train": 96, "n_valid": 32, "n_test": 32, "text_dim": 16, "text_len": 12, "audio_len": 12,
         "vision_len": 12}
SPECTRUM = RegimeSpec(name="spectrum", kind="spectrum",
                      sampler=SamplerSpec(families=["missing", "drop", "noise"], p_clean_sample=0.2))


@pytest.fixture(scope="module")
def small():
    return load_synthetic("mosi", seed=0, **SMALL)


def _plain_epoch(model, train, corrupt, opt, run, epoch) -> float:
    """The reference: a gather per mini-batch, the loss read every step, per-tensor clipping."""
    model.train()
    total = 0.0
    for b in batches(train, run.training.batch_size, shuffle_seed=run.seed * 100003 + epoch):
        xb, clean = corrupt(b, epoch)
        out = model(xb, clean=clean)
        task = torch.nn.functional.l1_loss(out["pred"], xb.labels)
        loss = task + sum(out["losses"].values(), torch.zeros(()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.training.grad_clip, foreach=False)
        opt.step()
        total += float(task.detach()) * len(xb)
    return total / len(train)


@pytest.mark.parametrize("name", ["qa_moe", "mult"])
def test_an_epoch_updates_exactly_as_a_plain_loop(small, name: str) -> None:
    """Same seed, same data: bit-identical parameters and mean loss after two spectrum epochs."""
    train = split_to_batch(small["train"])
    ctx = CorruptionContext(train.modalities())
    run = TrainingRun(SPECTRUM, TrainingSpec(epochs=2, batch_size=32), seed=3)
    models = [create_model(name, small.dims, small.lengths, seed=1) for _ in range(2)]
    for m in models:
        m.fit_inputs(train)
    opt = optimizer(models[0], run.training)
    ref_opt = torch.optim.AdamW(models[1].param_groups(run.training.lr, run.training.weight_decay), foreach=False)
    for epoch in range(2):
        ours = train_epoch(models[0], train, RegimeCorruption(run, ctx), opt, run, epoch, torch.device("cpu"))
        ref = _plain_epoch(models[1], train, RegimeCorruption(run, ctx), ref_opt, run, epoch)
        assert ours == ref
    a, b = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_non_finite_loss_stops_training_naming_epoch_and_step(small) -> None:
    model = create_model("late_fusion", small.dims, small.lengths, seed=0)
    training = TrainingSpec(epochs=2, batch_size=32, lr=1e30, grad_clip=None, device="cpu")
    with pytest.raises(NonFiniteError, match=r"non-finite training loss at epoch 0 \(step [12], task (nan|inf)"):
        train_model(model, small, TrainingRun(RegimeSpec(name="clean", kind="clean"), training, seed=0),
                    device=torch.device("cpu"))
