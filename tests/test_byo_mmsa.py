"""A model trained by MMSA (its own API), evaluated across the spectrum by ``robustmsa eval``; its
clean numbers against MMSA's own test numbers for the same checkpoint (docs/byo_model.md).

Definitional difference: MMSA reports every metric rounded to 4 decimals (``round(x, 4)``, MAE the
float32 mean), robustmsa the float64 value. So robustmsa's clean metrics rounded to 4 decimals must
equal MMSA's to the last digit, and the predictions themselves must be equal.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("MMSA", reason="MMSA is not installed: pip install 'robustmsa[mmsa]'")

from robustmsa.cli import main  # noqa: E402
from robustmsa.data.synthetic import export_mmsa  # noqa: E402
from robustmsa.datasets import load_dataset  # noqa: E402

TINY = {"seed": 0, "n_train": 96, "n_valid": 32, "n_test": 48, "text_dim": 32}
#: MMSA's mosi keys -> robustmsa's metric names
KEYS = {"Has0_acc_2": "has0_acc2", "Has0_F1_score": "has0_f1", "Non0_acc_2": "non0_acc2", "Non0_F1_score": "non0_f1",
        "Mult_acc_5": "acc5", "Mult_acc_7": "acc7", "MAE": "mae", "Corr": "corr"}


def train_mmsa_tfn(pkl: Path, ds, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, Path]:
    """MMSA's TFN trained with MMSA_run (early stop after 1 epoch without improvement); its test results."""
    import MMSA

    monkeypatch.setenv("TQDM_DISABLE", "1")
    mrun = sys.modules["MMSA.run"]
    results: list[dict] = []
    orig_run, orig_set_device = mrun._run, torch.cuda.set_device

    def keep(*a, **k):
        results.append(orig_run(*a, **k))
        return results[-1]

    monkeypatch.setattr(mrun, "_run", keep)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: orig_set_device(d) if torch.device(d).type == "cuda" else None)
    monkeypatch.setattr(mrun.time, "sleep", lambda s: None)
    config = {"featurePath": str(pkl), "need_data_aligned": True, "use_bert": False, "early_stop": 1,
              "seq_lens": [ds.lengths[m] for m in ("text", "audio", "vision")],
              "feature_dims": [ds.dims[m] for m in ("text", "audio", "vision")]}
    logger = logging.getLogger("MMSA")
    before = list(logger.handlers)
    try:
        MMSA.MMSA_run("tfn", "mosi", config=config, seeds=[1111], gpu_ids=[], num_workers=0, model_save_dir=out,
                      res_save_dir=out, log_dir=out, verbose_level=0)
    finally:
        for h in [h for h in logger.handlers if h not in before]:
            logger.removeHandler(h)
            h.close()
    return results[0], out / "tfn-mosi.pth"


def test_mmsa_tfn_checkpoint_across_the_spectrum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("synthetic", TINY)
    pkl = tmp_path / "mosi.pkl"
    export_mmsa(ds, pkl)
    mmsa_results, ckpt = train_mmsa_tfn(pkl, ds, tmp_path / "mmsa", monkeypatch)
    assert ckpt.is_file()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["eval", f"mmsa:tfn:{ckpt}", "--data", f"mmsa:{{path: {pkl}}}", "--spectrum", "smoke",
                 "--backend", "local", "--no-report", "evaluation.references=false", f"tracking.uri={uri}"])
    assert code == 0, capsys.readouterr().err
    import robustmsa

    res = robustmsa.load_results(uri, "eval_smoke")
    rows = res.rows
    assert set(rows["regime_kind"]) == {"evaluate"} and {"missing", "noise"} <= set(rows["family"])
    clean = rows[(rows["level_index"] == 0) & (rows["family"] == "missing") & (rows["sweep"] == "audio")]
    ours = dict(zip(clean["metric"], clean["value"]))
    for mmsa_key, key in KEYS.items():  # to the last digit MMSA prints
        assert round(ours[key], 4) == mmsa_results[mmsa_key], (key, ours[key], mmsa_results[mmsa_key])
    # the predictions: MMSA's model on MMSA's own test loader against robustmsa's clean predictions
    theirs, mine = _mmsa_predictions(ckpt, pkl, ds), _our_clean_predictions(uri, res)
    assert sorted(theirs) == sorted(mine)  # MMSA's loader shuffles even the test split: by sample id
    diff = max(abs(theirs[k] - mine[k]) for k in theirs)
    assert diff <= 1e-6, diff
    # a corrupted point differs from the clean one (the adapter feeds the corrupted features)
    gone = rows[(rows["family"] == "missing") & (rows["sweep"] == "joint") & (rows["level"] == 0.0)]
    assert dict(zip(gone["metric"], gone["value"]))["mae"] != ours["mae"]


def _mmsa_predictions(ckpt: Path, pkl: Path, ds) -> dict[str, float]:
    from MMSA.config import get_config_regression
    from MMSA.data_loader import MMDataLoader
    from MMSA.models import AMIO

    args = get_config_regression("tfn", "mosi")
    args.update({"featurePath": str(pkl), "need_data_aligned": True, "use_bert": False, "custom_feature": None,
                 "feature_T": None, "feature_A": None, "feature_V": None, "train_mode": "regression",
                 "device": torch.device("cpu"), "seq_lens": [ds.lengths[m] for m in ("text", "audio", "vision")],
                 "feature_dims": [ds.dims[m] for m in ("text", "audio", "vision")]})
    model = AMIO(args)
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    model.eval()
    preds: dict[str, float] = {}
    with torch.no_grad():
        for b in MMDataLoader(args, num_workers=0)["test"]:
            out = model(b["text"], b["audio"], b["vision"])["M"].reshape(-1)
            preds.update(zip(map(str, b["id"]), out.tolist()))
    return preds


def _our_clean_predictions(uri: str, res) -> dict[str, float]:
    import mlflow

    run_id = next(iter(res.trial_runs.values()))
    path = mlflow.MlflowClient(uri).download_artifacts(run_id, "predictions.csv.gz", os.getcwd())
    p = pd.read_csv(path)
    p = p[p["grid"] == "missing/audio/0"]
    return dict(zip(p["sample_id"].astype(str), p["pred"].astype(float)))


@pytest.mark.parametrize("name", ["tfn", "lf_dnn", "lmf", "mfn", "mult"])
def test_every_supported_mmsa_model_loads_and_predicts_as_mmsa(name: str, tmp_path: Path) -> None:
    """Each supported MMSA model, saved untrained by MMSA's own class, loads into the adapter and
    gives MMSA's own output on MMSA's inputs (time means where its config normalises)."""
    from MMSA.models import AMIO

    from robustmsa.data.batch import split_to_batch
    from robustmsa.models import create_model
    from robustmsa.models.mmsa_model import MMSAConfig, _time_mean, mmsa_args

    ds = load_dataset("synthetic", TINY)
    cfg = MMSAConfig(model=name, checkpoint=str(tmp_path / f"{name}.pth"))
    args = mmsa_args(cfg, ds.dims, ds.lengths)
    torch.manual_seed(0)
    theirs = AMIO(args).eval()
    torch.save(theirs.state_dict(), cfg.checkpoint)
    ours = create_model("mmsa", dims=ds.dims, lengths=ds.lengths, model=name, checkpoint=cfg.checkpoint).eval()
    batch = split_to_batch(ds["test"]).slice(0, 6)
    audio, vision = batch.audio, batch.vision
    if args.get("need_normalized"):
        audio, vision = _time_mean(audio), _time_mean(vision)
    with torch.no_grad():
        expected = theirs(batch.text, audio, vision)["M"].reshape(-1)
        got = ours(batch)["pred"]
    assert got.shape == (6,) and torch.equal(got, expected)
