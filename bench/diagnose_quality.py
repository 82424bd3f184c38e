"""Why QA-MoE's quality estimate does or does not track the applied reliability: a measurement.

For a trained QA-MoE checkpoint and the dataset it was trained on, over the evaluation grid of
the main suite (sweeps text, audio, vision and joint at levels 1.0 ... 0.0, pooled per family
and modality exactly as the report's ``quality`` table pools them), prints the Spearman
correlation with the applied rho of:

- ``r``: the model's quality estimate (what the report shows);
- ``-err``: minus the clean-representation error ``mean_d (h - h_clean)^2`` of the modality's
  encoding: the quantity the paper's heteroscedastic loss teaches sigma^2 to predict. If the
  encoder's output barely moves under a corruption, the loss has nothing to learn from and r
  cannot track that corruption, however well it is trained;
- ``done``: what was done to the sample, as a perfect detector would see it (drop: the share of
  the sequence's valid elements kept; missing: present or not; noise: the applied rho itself,
  so 1): the bound for an estimator that reads the corrupted input alone is at most this.

    python bench/diagnose_quality.py CHECKPOINT [--dataset synthetic_trimodal] [--seed 1234]

CHECKPOINT: ``checkpoint/model.pt`` of a QA-MoE trial (``mlflow artifacts download`` or the
``mlruns/`` folder of the run).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from corruptions import ReliabilityPoint, make_corrupter
from corruptions.keys import MODALITIES
from robustmsa.data.batch import split_to_batch
from robustmsa.datasets import load_dataset
from robustmsa.models.layers import modality_absent
from robustmsa.trial import load_checkpoint

LEVELS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
SWEEPS = ["text", "audio", "vision", "joint"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--dataset", default="synthetic_trimodal")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1234, help="evaluation seed (keys the corruption draws)")
    ap.add_argument("--families", default="drop,missing,noise")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model = load_checkpoint(args.checkpoint).eval()
    ds = load_dataset(args.dataset, {"seed": args.data_seed})
    train, test = split_to_batch(ds["train"]), split_to_batch(ds["test"])
    h_clean = model._encode(test)
    print(f"{'family':8} {'modality':8} {'r':>7} {'-err':>7} {'done':>7}   mean err at rho 1 / 0.6 / 0.2")
    for fam in args.families.split(","):
        prep = make_corrupter(fam, seed=args.seed, train=train.modalities()).prepare(test.modalities(), test.keys)
        acc = {m: ([], [], [], []) for m in MODALITIES}
        for sweep in SWEEPS:
            for level in LEVELS:
                point = ReliabilityPoint.joint(level) if sweep == "joint" else ReliabilityPoint.only(sweep, level)
                batch = test if point.is_clean else test.with_modalities(prep.at(point))
                h = model._encode(batch)
                absent = modality_absent(batch)
                _, _, r = model._quality(h, absent, batch)
                for i, m in enumerate(MODALITIES):
                    rho = point.of(m)
                    err = ((h[:, i] - h_clean[:, i]) ** 2).mean(-1)
                    err = torch.where(absent[:, i], torch.full_like(err, float("inf")), err)
                    mb, base = batch.modality(m), test.modality(m)
                    if fam == "drop":
                        kept = ((mb.features.abs().sum(-1) > 0) & mb.mask).sum(1) / base.mask.sum(1).clamp(min=1)
                        done = kept.float() * (~mb.missing).float()
                    elif fam == "missing":
                        done = (~mb.missing).float()
                    else:
                        done = torch.full((len(test),), rho)
                    a = acc[m]
                    a[0].append(np.full(len(test), rho))
                    a[1].append(r[:, i].numpy())
                    a[2].append(-err.numpy())
                    a[3].append(done.numpy())
        for m in MODALITIES:
            rho, r, nerr, done = (np.concatenate(x) for x in acc[m])
            fin = np.isfinite(nerr)
            means = [float(-nerr[(rho == lv) & fin].mean()) for lv in (1.0, 0.6, 0.2)]
            print(f"{fam:8} {m:8} {spearmanr(rho, r).statistic:7.3f} "
                  f"{spearmanr(rho, np.where(fin, nerr, -1e30)).statistic:7.3f} "
                  f"{spearmanr(rho, done).statistic if np.ptp(done) > 0 else 1.0:7.3f}   "
                  + " / ".join(f"{v:.4f}" for v in means))


if __name__ == "__main__":
    main()
