"""What Self-MM means, beyond the registry contract: the relative-distance rule, generated unimodal
labels that move with momentum toward the rule's target at each training pass and stay fixed in eval
mode, unimodal losses (weighted by tanh |y_s - y_m|) only in training, absent modalities skipped, the
representations read from the clean batch when ``label_source`` is "clean", and the HF text option."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from test_text_encoders import hf_model, tiny_bert, tokenized_batch  # noqa: F401 (fixture)

from robustmsa.models import create_model
from robustmsa.models.self_mm import SelfMM, relative_distance, rule_labels

from helpers import ModelKit, run, with_missing

KIT = ModelKit({"text": 6, "audio": 4, "vision": 5}, {"text": 8, "audio": 10, "vision": 9})
N = 10


def _centres(feat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return feat[y > 0].mean(0), feat[y < 0].mean(0)


def _distance(f: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    d_p, d_n = (f - pos).norm(dim=-1), (f - neg).norm(dim=-1)
    return (d_n - d_p) / (d_p + 1e-8)


def test_rule_hand_computed() -> None:
    d = relative_distance(torch.zeros(1, 2), torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(d, torch.tensor([-0.8]))  # (1 - 5) / 5
    # ratio rule 2 * 0.5 / 0.25 = 4, difference rule 2 + 0.5 - 0.25 = 2.25: mean 3.125
    y = rule_labels(torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.25]), bound=4.0)
    torch.testing.assert_close(y, torch.tensor([3.125]))
    assert rule_labels(torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.25]), bound=3.0) == 3.0


def _model_and_batch(**overrides) -> tuple[SelfMM, object]:
    model = KIT.build("self_mm", **overrides)
    assert isinstance(model, SelfMM)
    batch = KIT.batch(N, seed=1)
    assert (batch.labels > 0).any() and (batch.labels < 0).any()
    return model, batch


def test_labels_move_with_momentum_toward_the_rule() -> None:
    """No optimiser step between passes: the representations stay the same, so the centres and the
    rule's target are computed here by hand from them."""
    model, batch = _model_and_batch()
    y = batch.labels
    with torch.no_grad():
        _, feats = model.tasks(batch)
    run(model, batch, train=True)  # pass 1: labels initialised to y_m, representations stored
    rows = model.ulgm.rows(batch.keys, batch.labels)
    assert (model.ulgm.passes[rows] == 1).all()
    torch.testing.assert_close(model.ulgm.labels[rows], y.unsqueeze(1).repeat(1, 4))
    bound = float(y.abs().max())
    labels = y.unsqueeze(1).repeat(1, 4)
    for n in (2, 3):
        delta_m = _distance(feats[0], *_centres(feats[0], y))
        expected = labels.clone()
        for t in (1, 2, 3):
            target = rule_labels(y, _distance(feats[t], *_centres(feats[t], labels[:, t])), delta_m, bound)
            expected[:, t] = (n - 1) / (n + 1) * labels[:, t] + 2 / (n + 1) * target
        run(model, batch, train=True)
        torch.testing.assert_close(model.ulgm.labels[rows], expected)
        labels = expected
    assert (model.ulgm.passes[rows] == 3).all()
    assert not torch.equal(labels[:, 1:], y.unsqueeze(1).repeat(1, 3))  # they did move


def test_eval_mode_changes_nothing_and_has_no_losses() -> None:
    model, batch = _model_and_batch()
    run(model, batch, train=True)
    run(model, batch, train=True)
    state = {k: v.clone() for k, v in model.ulgm.named_buffers()}
    out = run(model, batch)
    assert out["losses"] == {} and out["extras"]["unimodal"].shape == (N, 3)
    assert all(torch.equal(v, dict(model.ulgm.named_buffers())[k]) for k, v in state.items())
    assert not any("ulgm" in k for k in model.state_dict())  # training state, not checkpoint state


def test_unimodal_losses_only_in_training_weighted_by_label_gap() -> None:
    model, batch = _model_and_batch(unimodal_weight=0.5)
    first = run(model, batch, train=True)["losses"]
    assert set(first) == {"unimodal_text", "unimodal_audio", "unimodal_vision"}
    assert all(v == 0 for v in first.values())  # y_s = y_m: tanh(0) = 0, as in the paper's first epoch
    run(model, batch, train=True)
    rows = model.ulgm.rows(batch.keys, batch.labels)
    labels = model.ulgm.labels[rows].clone()
    out = run(model, batch, train=True)
    for i, m in enumerate(("text", "audio", "vision")):
        w = torch.tanh((labels[:, i + 1] - labels[:, 0]).abs())
        expected = 0.5 * (w * (out["extras"]["unimodal"][:, i] - labels[:, i + 1]).abs()).mean()
        torch.testing.assert_close(out["losses"][f"unimodal_{m}"], expected)
        assert out["losses"][f"unimodal_{m}"] > 0 and out["losses"][f"unimodal_{m}"].requires_grad


def test_absent_modality_is_skipped() -> None:
    model, batch = _model_and_batch()
    missing = torch.zeros(N, 3, dtype=torch.bool)
    missing[:3, 1] = True  # audio absent in the first three samples
    batch = with_missing(batch, missing)
    for _ in range(3):
        run(model, batch, train=True)
    rows = model.ulgm.rows(batch.keys, batch.labels)
    assert not model.ulgm.stored[rows[:3], 2].any() and model.ulgm.stored[rows[3:], 2].all()
    torch.testing.assert_close(model.ulgm.labels[rows[:3], 2], batch.labels[:3])
    assert not torch.equal(model.ulgm.labels[rows[3:], 2], batch.labels[3:])


def test_label_source_clean_or_input() -> None:
    batch = KIT.batch(N, seed=1)
    other = KIT.batch(N, seed=2)
    clean = dataclasses.replace(other, keys=batch.keys, labels=batch.labels)
    for source, read in (("clean", clean), ("input", batch)):
        model = KIT.build("self_mm", label_source=source)
        with torch.no_grad():
            _, feats = model.tasks(read)
        out = run(model, batch, train=True, clean=clean)
        rows = model.ulgm.rows(batch.keys, batch.labels)
        torch.testing.assert_close(model.ulgm.feat_text[rows], feats[1])
        torch.testing.assert_close(model.ulgm.feat_fusion[rows], feats[0])
        torch.testing.assert_close(out["pred"], run(model, batch)["pred"])  # clean never feeds the prediction


def test_fit_inputs_allocates_every_training_sample() -> None:
    model = KIT.build("self_mm", label_bound=2.5)
    train = KIT.batch(N, seed=3)
    model.fit_inputs(train)
    ulgm = model.ulgm
    assert torch.equal(ulgm.keys, train.keys.sort().values)
    rows = ulgm.rows(train.keys, train.labels)
    assert len(ulgm.keys) == N and (ulgm.passes == 0).all() and not ulgm.stored.any()
    torch.testing.assert_close(ulgm.labels[rows], train.labels.unsqueeze(1).repeat(1, 4))
    assert ulgm.label_bound() == 2.5
    run(model, KIT.batch(4, seed=4), train=True)  # unseen keys get rows of their own
    assert len(ulgm.keys) == N + 4


def test_hf_text_encoder(tiny_bert: Path) -> None:  # noqa: F811 (fixture)
    model = hf_model(tiny_bert, "self_mm").train()
    batch = tokenized_batch(tiny_bert)
    for _ in range(2):
        model.zero_grad()
        out = model(batch)
        (out["pred"].pow(2).mean() + sum(out["losses"].values())).backward()
    assert model.encoders.text.backbone.embeddings.word_embeddings.weight.grad is not None
    assert [g["lr"] for g in model.param_groups(1e-3, 0.0)] == [1e-3, 1e-5]


def test_spectrum_training_generates_labels_for_every_training_sample() -> None:
    """Through the trainer's corrupted (spectrum) batches, with the clean batch as ULGM's source or not."""
    from robustmsa.data.synthetic import load_synthetic
    from robustmsa.suite import RegimeSpec, TrainingSpec
    from robustmsa.training import TrainingRun, train_model

    ds = load_synthetic("mosi", seed=0, n_train=64, n_valid=16, n_test=16, text_dim=8,
                        text_len=12, audio_len=12, vision_len=12)
    regime = RegimeSpec(name="spectrum", kind="spectrum")
    for source in ("clean", "input"):
        model = create_model("self_mm", ds.dims, ds.lengths, seed=0, label_source=source)
        training = TrainingSpec(epochs=3, batch_size=16, patience=3, device="cpu")
        train_model(model, ds, TrainingRun(regime, training, seed=0), device=torch.device("cpu"))
        ulgm = model.ulgm
        assert len(ulgm.keys) == 64 and (ulgm.passes == 3).all() and torch.isfinite(ulgm.labels).all()
        assert (ulgm.labels[:, 1:] != ulgm.labels[:, :1]).any()
