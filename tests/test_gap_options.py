"""Optional model and trainer techniques (off by default): each changes behaviour when on, and with
it off the model and the trainer are what they are without the option.

Model options: ``input_rank`` (a low-rank input projection), ``local_contrast`` (a temporal
high-pass channel of the frame modalities), ``frame_deltas`` (their first differences as a
channel), ``frame_readout`` (a linear readout of the frame modalities beside the attention
pooling), ``encoder_pooling: attention_max``, QA-MoE's
``aux_weight`` and late fusion's ``unimodal_weight`` (a loss on per-modality predictions), and
``input_sparsity`` of both (a group-lasso penalty on the input projections). Trainer options
(:class:`TrainerOptions`): weight averaging (EMA, SWA), the proximal group-lasso step
(``input_prox``) and a cosine learning-rate schedule.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from corruptions.keys import MODALITIES
from robustmsa.data.synthetic import load_synthetic
from robustmsa.errors import ModelConfigError
from robustmsa.models import create_model
from robustmsa.models.layers import (
    EncoderSpec,
    SequenceEncoder,
    frame_deltas,
    input_group_norm,
    local_contrast,
    shrink_input_groups,
    unimodal_loss,
)
from robustmsa.suite import RegimeSpec, TrainingSpec
from robustmsa.training import TrainingRun, train_model
from robustmsa.training.trainer import TrainerOptions, _Averager

from helpers import ModelKit, run

KIT = ModelKit({"text": 40, "audio": 4, "vision": 5}, {"text": 10, "audio": 12, "vision": 12})
SMALL = {"n_train": 96, "n_valid": 32, "n_test": 32, "text_dim": 16, "text_len": 12, "audio_len": 12,
         "vision_len": 12}
CLEAN = RegimeSpec(name="clean", kind="clean")
OFF = {"input_rank": 0, "local_contrast": 0, "frame_deltas": False, "frame_readout": False, "clamp_output": False}


@pytest.fixture(scope="module")
def small():
    return load_synthetic("trimodal", seed=0, **SMALL)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- off: nothing changes


@pytest.mark.parametrize(("name", "off"), [("qa_moe", {**OFF, "aux_weight": 0.0, "input_sparsity": 0.0}),
                                           ("late_fusion", {**OFF, "unimodal_weight": 0.0, "input_sparsity": 0.0})])
def test_options_off_build_and_predict_as_the_defaults(name: str, off: dict) -> None:
    default, explicit = KIT.build(name, seed=3), KIT.build(name, seed=3, **off)
    assert _same_state(default, explicit)
    batch = KIT.batch(8, seed=1)
    assert torch.equal(run(default, batch)["pred"], run(explicit, batch)["pred"])
    assert run(explicit, batch, train=True)["losses"].keys() == run(default, batch, train=True)["losses"].keys()


@pytest.mark.parametrize("name", ["qa_moe", "late_fusion"])
def test_trainer_options_off_train_as_no_options(small, name: str) -> None:
    run_ = TrainingRun(CLEAN, TrainingSpec(epochs=3, batch_size=32), seed=2)
    models = [create_model(name, small.dims, small.lengths, seed=1) for _ in range(2)]
    a = train_model(models[0], small, run_, device=torch.device("cpu"))
    b = train_model(models[1], small, run_, device=torch.device("cpu"), options=TrainerOptions())
    assert _same_state(*models)
    assert (a.best_epoch, a.best_score) == (b.best_epoch, b.best_score)
    assert [r["lr"] for r in a.history] == [r["lr"] for r in b.history]


# ---- model options, on


def test_input_rank_bottlenecks_wide_inputs_only() -> None:
    full, low = KIT.build("qa_moe"), KIT.build("qa_moe", input_rank=8)
    proj = low.encoders.text.encoder.proj
    assert isinstance(proj, torch.nn.Sequential) and proj[0].weight.shape == (8, 40)
    assert isinstance(low.encoders.audio.proj, torch.nn.Linear)  # 4 dims: narrower than the rank
    n_full = sum(p.numel() for p in full.encoders.text.parameters())
    n_low = sum(p.numel() for p in low.encoders.text.parameters())
    assert n_low < n_full
    batch = KIT.batch(6, seed=2)
    assert not torch.allclose(run(full, batch)["pred"], run(low, batch)["pred"])
    with pytest.raises(ModelConfigError, match="input_rank"):
        KIT.build("qa_moe", input_rank=-1)


def test_local_contrast_removes_a_constant_and_keeps_a_burst() -> None:
    mask = torch.ones(1, 11, dtype=torch.bool)
    flat = torch.full((1, 11, 2), 3.0)
    assert torch.allclose(local_contrast(flat, mask, 2), torch.zeros_like(flat), atol=1e-6)
    burst = flat.clone()
    burst[0, 5] += 5.0
    out = local_contrast(burst, mask, 2)
    assert out[0, 5, 0] == pytest.approx(5.0 - 5.0 / 5)  # the burst minus its share of the window mean
    assert out[0, 0, 0] == pytest.approx(0.0, abs=1e-6)  # outside the window of the burst
    # masked positions: never counted, zero output
    mask2 = mask.clone()
    mask2[0, 8:] = False
    garbage = burst.clone()
    garbage[0, 8:] = 1e4
    out2 = local_contrast(garbage, mask2, 2)
    assert torch.equal(out2[0, 8:], torch.zeros(3, 2))
    assert torch.allclose(out2, local_contrast(burst, mask2, 2), atol=1e-6)


def test_local_contrast_feeds_the_frame_encoders_only() -> None:
    model = KIT.build("late_fusion", local_contrast=2)
    assert model.encoders.audio.proj.weight.shape[1] == 2 * 4
    assert model.encoders.vision.proj.weight.shape[1] == 2 * 5
    assert model.encoders.text.encoder.proj.weight.shape[1] == 40
    base = KIT.build("late_fusion")
    batch = KIT.batch(6, seed=3)
    assert not torch.allclose(run(base, batch)["pred"], run(model, batch)["pred"])
    with pytest.raises(ModelConfigError, match="local_contrast"):
        KIT.build("late_fusion", local_contrast=-2)


def test_frame_deltas_are_steps_between_valid_neighbours() -> None:
    x = torch.tensor([[[1.0], [1.0], [4.0], [4.0], [9.0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    assert frame_deltas(x, mask)[0, :, 0].tolist() == [0.0, 0.0, 3.0, 0.0, 0.0]
    model = KIT.build("late_fusion", frame_deltas=True)
    assert model.encoders.audio.proj.weight.shape[1] == 2 * 4
    assert model.encoders.vision.proj.weight.shape[1] == 2 * 5
    assert model.encoders.text.encoder.proj.weight.shape[1] == 40


def test_frame_readout_is_the_attention_weighted_sum_of_frames_and_steps() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(3, EncoderSpec(8, pooling="attention", num_heads=2, frame_readout=True), source="audio")
    assert enc.readout is not None and enc.readout.weight.shape == (8, 2 * 3 * 2)
    assert not enc.readout.weight.any() and not enc.readout.bias.any()  # starts as the plain pooling
    torch.nn.init.normal_(enc.readout.weight)
    enc.eval()
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = enc(x, mask)
    a = enc.pool.weights(out.seq, mask)  # [B, T, H]
    both = torch.cat([x, frame_deltas(x, mask)], dim=-1) * mask[..., None]
    r = torch.stack([torch.cat([a[b, :, j] @ both[b] for j in range(2)]) for b in range(2)])
    torch.testing.assert_close(out.pooled, enc.pool(out.seq, mask) + enc.readout(r))
    x2 = x.clone()
    x2[1, 4:] = 100.0  # padding is never read
    torch.testing.assert_close(enc(x2, mask).pooled, out.pooled)
    assert SequenceEncoder(3, EncoderSpec(8, pooling="attention", frame_readout=True), source="text").readout is None
    with pytest.raises(ModelConfigError, match="frame_readout"):
        KIT.build("qa_moe", frame_readout=True, encoder_pooling="mean")


def test_frame_options_on_change_the_prediction() -> None:
    batch = KIT.batch(6, seed=3)
    base = run(KIT.build("qa_moe"), batch)["pred"]
    assert not torch.allclose(base, run(KIT.build("qa_moe", frame_deltas=True), batch)["pred"])
    readout = KIT.build("qa_moe", frame_readout=True)
    torch.testing.assert_close(run(readout, batch)["pred"], base)  # zero-initialised: the same function at first
    for enc in (readout.encoders.audio, readout.encoders.vision):
        torch.nn.init.normal_(enc.readout.weight)
    assert not torch.allclose(base, run(readout, batch)["pred"])


@pytest.mark.parametrize("name", ["qa_moe", "late_fusion", "tfn"])
def test_clamp_output_clamps_pred_to_the_fitted_label_range(name: str) -> None:
    batch = KIT.batch(16, seed=4)
    base, clamped = KIT.build(name, seed=2), KIT.build(name, seed=2, clamp_output=True)
    raw = run(base, batch)["pred"]
    torch.testing.assert_close(run(clamped, batch)["pred"], raw)  # not fitted yet: unbounded, the same function
    lo, hi = float(raw.quantile(0.25)), float(raw.quantile(0.75))
    clamped.fit_outputs((lo, hi))
    for train in (False, True):
        torch.manual_seed(0)
        want = run(base, batch, train=train)["pred"].clamp(lo, hi)
        torch.manual_seed(0)
        torch.testing.assert_close(run(clamped, batch, train=train)["pred"], want)
    assert not torch.equal(want, run(base, batch)["pred"])  # the range bites on this batch
    # the range is a buffer: a checkpoint keeps it
    fresh = KIT.build(name, seed=5, clamp_output=True)
    fresh.load_state_dict(clamped.state_dict())
    assert fresh.output_range.tolist() == pytest.approx([lo, hi])
    with pytest.raises(ValueError, match="low < high"):
        clamped.fit_outputs((1.0, -1.0))


def test_clamp_output_outputs_beyond_the_range_get_no_task_gradient() -> None:
    model = KIT.build("late_fusion", clamp_output=True)
    model.fit_outputs((-0.001, 0.001))
    batch = KIT.batch(8, seed=6)
    out = run(model, batch, train=True)
    (out["pred"] - batch.labels).abs().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(float(g.abs().max()) == 0.0 for g in grads)  # every prediction is beyond the tiny range


def test_clamp_output_is_set_by_the_trainer_and_refused_for_classification(small) -> None:
    model = create_model("late_fusion", small.dims, small.lengths, seed=0, clamp_output=True)
    train_model(model, small, TrainingRun(CLEAN, TrainingSpec(epochs=1, batch_size=32), seed=0),
                device=torch.device("cpu"))
    assert model.output_range.tolist() == list(small.label_range)
    assert "output_range" not in create_model("late_fusion", small.dims, small.lengths, seed=0).state_dict()
    with pytest.raises(ModelConfigError, match="clamp_output"):
        create_model("late_fusion", small.dims, small.lengths, seed=0, classes=3, clamp_output=True)


def test_attention_max_pooling_reads_the_max_and_ignores_masked_frames() -> None:
    torch.manual_seed(0)
    enc = SequenceEncoder(3, EncoderSpec(8, pooling="attention_max", num_heads=2)).eval()
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = enc(x, mask)
    assert enc.pool_mix is not None and enc.pool_mix.weight.shape == (8, 16)
    h = out.seq
    expected_max = torch.stack([h[0].amax(0), h[1, :4].amax(0)])
    expected = enc.pool_mix(torch.cat([enc.pool(h, mask), expected_max], dim=-1))
    torch.testing.assert_close(out.pooled, expected)
    x2 = x.clone()
    x2[1, 4:] = 100.0
    torch.testing.assert_close(enc(x2, mask).pooled, out.pooled)


def test_qa_moe_aux_heads_add_a_unimodal_loss_in_training_only() -> None:
    model = KIT.build("qa_moe", aux_weight=0.5)
    missing = torch.tensor([[False, False, False], [True, False, False]] * 3)
    batch = KIT.batch(6, seed=4, missing=missing)
    out = run(model, batch, train=True)
    h = model._encode(batch)
    preds = torch.stack([model.aux_heads[m](h[:, i]).squeeze(-1) for i, m in enumerate(MODALITIES)], dim=1)
    present = ~missing
    expected = 0.5 * ((preds - batch.labels[:, None]).abs() * present).sum() / present.sum()
    torch.testing.assert_close(out["losses"]["unimodal"], expected)
    out["losses"]["unimodal"].backward()
    assert model.encoders.audio.proj.weight.grad.abs().sum() > 0
    assert "unimodal" not in run(model, batch)["losses"]
    # the prediction does not read the auxiliary heads
    base = KIT.build("qa_moe")
    assert torch.equal(run(model, batch)["pred"], run(base, batch)["pred"])


def test_late_fusion_unimodal_weight_supervises_each_head() -> None:
    model = KIT.build("late_fusion", unimodal_weight=0.3)
    batch = KIT.batch(6, seed=5, missing=(False, True, False))
    out = run(model, batch, train=True)
    uni, present = out["extras"]["unimodal"], out["extras"]["present"]
    expected = 0.3 * ((uni - batch.labels[:, None]).abs() * present).sum() / present.sum()
    torch.testing.assert_close(out["losses"]["unimodal"], expected)
    assert run(model, batch)["losses"] == {}


def test_unimodal_loss_classification_and_empty() -> None:
    logits = torch.randn(4, 3, 5)
    labels = torch.tensor([0.0, 4.0, 2.0, 1.0])
    present = torch.ones(4, 3, dtype=torch.bool)
    expected = torch.nn.functional.cross_entropy(logits.reshape(12, 5), labels.long().repeat_interleave(3))
    torch.testing.assert_close(unimodal_loss(logits, labels, present), expected)
    assert unimodal_loss(logits, labels, torch.zeros(4, 3, dtype=torch.bool)) == 0


@pytest.mark.parametrize("name", ["qa_moe", "late_fusion"])
def test_input_sparsity_adds_the_group_lasso_of_the_input_projections(name: str) -> None:
    model = KIT.build(name, input_sparsity=0.2, input_rank=8)
    batch = KIT.batch(6, seed=6)
    out = run(model, batch, train=True)
    cols = [model.encoders.text.encoder.proj[0].weight, model.encoders.audio.proj.weight,
            model.encoders.vision.proj.weight]
    expected = 0.2 * sum(w.norm(dim=0).sum() for w in cols)
    torch.testing.assert_close(out["losses"]["input_sparsity"], expected)
    torch.testing.assert_close(input_group_norm(model), expected / 0.2)
    assert "input_sparsity" not in run(model, batch)["losses"]
    with pytest.raises(ModelConfigError, match="input_sparsity"):
        KIT.build(name, input_sparsity=-1.0)


def test_shrink_input_groups_zeroes_small_columns_and_shrinks_the_others() -> None:
    enc = SequenceEncoder(3, EncoderSpec(4))
    with torch.no_grad():
        enc.proj.weight.copy_(torch.tensor([[3.0, 0.1, 0.0], [4.0, 0.1, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    other = enc.blocks[0].conv.weight.clone()
    shrink_input_groups(enc, 0.5)
    w = enc.proj.weight
    torch.testing.assert_close(w[:, 0], torch.tensor([3.0, 4.0, 0.0, 0.0]) * (1 - 0.5 / 5))  # norm 5 -> 4.5
    assert torch.equal(w[:, 1], torch.zeros(4))  # norm 0.14 < 0.5: the input dimension is dropped
    torch.testing.assert_close(w[:, 2], torch.tensor([0.0, 0.5, 0.0, 0.0]))  # norm 1 -> 0.5
    assert torch.equal(enc.blocks[0].conv.weight, other)  # only the input projection


# ---- trainer options, on


def test_ema_averages_the_steps_then_forgets_with_its_decay() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    avg = _Averager(model, TrainerOptions(average="ema", ema_decay=0.5))
    values = [1.0, 2.0, 4.0, 8.0]
    for v in values:
        model.weight.data.fill_(v)
        avg.step()
    # decay min(0.5, n/(1+n)): the first step copies the weights, 0.5 from the second on
    expected = 1.0
    for v in values[1:]:
        expected = 0.5 * expected + 0.5 * v
    assert avg.scored() is avg.copy
    assert avg.copy.weight.item() == pytest.approx(expected)
    slow = _Averager(model, TrainerOptions(average="ema", ema_decay=0.99))
    for v in values:
        model.weight.data.fill_(v)
        slow.step()
    assert slow.copy.weight.item() == pytest.approx(sum(values) / len(values))  # the plain mean at first


def test_swa_is_the_mean_of_the_epoch_ends_from_its_start() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    avg = _Averager(model, TrainerOptions(average="swa", swa_start=1))
    for epoch, v in enumerate([10.0, 1.0, 2.0, 6.0]):
        model.weight.data.fill_(v)
        avg.step()  # no per-step update for SWA
        avg.epoch_end(epoch)
        if epoch == 0:
            assert avg.scored() is model
    assert avg.copy.weight.item() == pytest.approx(3.0)


def test_averaged_training_keeps_averaged_weights(small) -> None:
    run_ = TrainingRun(CLEAN, TrainingSpec(epochs=3, batch_size=32), seed=2)
    plain = create_model("late_fusion", small.dims, small.lengths, seed=1)
    ema = create_model("late_fusion", small.dims, small.lengths, seed=1)
    train_model(plain, small, run_, device=torch.device("cpu"))
    res = train_model(ema, small, run_, device=torch.device("cpu"), options=TrainerOptions(average="ema"))
    assert not _same_state(plain, ema)
    assert all(torch.equal(ema.state_dict()[k], v) for k, v in res.best_state.items())


def test_cosine_schedule_decays_the_lr_to_zero(small) -> None:
    epochs = 3
    run_ = TrainingRun(CLEAN, TrainingSpec(epochs=epochs, batch_size=32, patience=10, lr=1e-3), seed=0)
    model = create_model("late_fusion", small.dims, small.lengths, seed=0)
    res = train_model(model, small, run_, device=torch.device("cpu"), options=TrainerOptions(schedule="cosine"))
    steps = math.ceil(len(small["train"].labels) / 32)
    lrs = [r["lr"] for r in res.history]
    for epoch, lr in enumerate(lrs):
        i = (epoch + 1) * steps
        assert lr == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * i / (epochs * steps))), abs=1e-12)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_input_prox_drops_input_dimensions_in_training(small) -> None:
    run_ = TrainingRun(CLEAN, TrainingSpec(epochs=2, batch_size=32), seed=0)
    plain = create_model("late_fusion", small.dims, small.lengths, seed=0)
    prox = create_model("late_fusion", small.dims, small.lengths, seed=0)
    train_model(plain, small, run_, device=torch.device("cpu"))
    train_model(prox, small, run_, device=torch.device("cpu"), options=TrainerOptions(input_prox=1000.0))
    zero = (prox.encoders.text.encoder.proj.weight.norm(dim=0) == 0).sum()
    assert zero > 0
    assert (plain.encoders.text.encoder.proj.weight.norm(dim=0) == 0).sum() == 0


@pytest.mark.parametrize(("change", "message"), [({"average": "mean"}, "average"), ({"schedule": "step"}, "schedule"),
                                                 ({"ema_decay": 1.0}, "ema_decay"), ({"swa_start": -1}, "swa_start"),
                                                 ({"input_prox": -1.0}, "input_prox")])
def test_bad_trainer_options_are_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainerOptions(), **change)


# ---- from a suite


def test_suite_training_keys_choose_the_trainer_options(small) -> None:
    """``training.average`` etc. train exactly as the same TrainerOptions passed by hand; a trial's
    identity holds the later keys only away from their defaults."""
    from robustmsa.plan import LATER_TRAINING_KEYS, _without_later_defaults

    spec = TrainingSpec(epochs=3, batch_size=32, average="ema", ema_decay=0.98)
    assert TrainerOptions.of(spec) == TrainerOptions(average="ema", ema_decay=0.98)
    models = [create_model("late_fusion", small.dims, small.lengths, seed=1) for _ in range(2)]
    train_model(models[0], small, TrainingRun(CLEAN, spec, seed=2), device=torch.device("cpu"))
    train_model(models[1], small, TrainingRun(CLEAN, TrainingSpec(epochs=3, batch_size=32), seed=2),
                device=torch.device("cpu"), options=TrainerOptions(average="ema", ema_decay=0.98))
    assert _same_state(*models)
    dumped = TrainingSpec().model_dump(mode="json")
    assert set(dumped) - set(_without_later_defaults(dumped, LATER_TRAINING_KEYS)) == set(LATER_TRAINING_KEYS)
    assert _without_later_defaults(spec.model_dump(mode="json"), LATER_TRAINING_KEYS)["ema_decay"] == 0.98
    with pytest.raises(ValueError, match="average"):
        TrainingSpec(average="mean")


def test_workers_keep_freed_memory() -> None:
    """After ``keep_freed_memory`` freed 200 MB blocks are mostly reused without faulting their pages in
    again (measured: one of five later allocations faulted); without it
    (``ROBUSTMSA_KEEP_FREED_MEMORY=0``) every allocation faults them all again. Minor page faults of
    a fresh process (getrusage), so no other test's memory interferes."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from robustmsa.runner import keep_freed_memory\n"
        "print(keep_freed_memory())\n"
        "def faults():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    x = torch.empty(50_000_000).fill_(1.0)\n"
        "    del x\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "print(*[faults() for _ in range(6)])\n"
    )

    def run_child(keep: str) -> tuple[str, int, int]:  # (kept, faults of the first, sum of the next five)
        env = {**os.environ, "ROBUSTMSA_KEEP_FREED_MEMORY": keep}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        kept, counts = out.stdout.splitlines()
        first, *rest = map(int, counts.split())
        return kept, first, sum(rest)

    kept, first, later = run_child("1")
    assert kept == "True" and first > 40_000 and later < 2.5 * first  # 200 MB = 48,828 pages of 4 KiB
    kept, first, later = run_child("0")
    assert kept == "False" and later > 4 * first
