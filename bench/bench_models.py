"""Every model of the zoo on the MOSI-sized embedded benchmark, on CPU, in one table.

Per model (default config, clean regime, batch 64, one torch thread unless --threads): parameters
(all / trainable), training seconds per epoch (median over the epochs after the first, which also
pays one-time costs; validation included, as the trainer reports it) and inference throughput (a
clean pass over the 686 test samples, median of --repeats), next to what the papers report where
they do. The papers' numbers are on an RTX 3060 with a BERT text encoder (hundreds of millions of
parameters); ours are small CPU models on precomputed features, so the columns are context, not a
like-for-like comparison.

    python bench/bench_models.py [--epochs 3] [--threads 1] [--models a,b,...] [--markdown]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

PAPERS = {  # what the papers report on MOSI (MODELS.md / the issue); where they report none, MMSA's count
    "ca_moe": "122M params, 16 s/epoch (RTX 3060, BERT)",
    "emoe": "317M params, 30 s/epoch (RTX 3060, BERT)",
    # MMSA 2.2.1's implementations with their MOSI config, parameters counted: BERT-base (109.5M) + the rest
    "misa": "MMSA: 110.6M params (BERT-base + 1.14M)",
    "self_mm": "MMSA: 109.6M params (BERT-base + 0.16M)",
    # counted (not quoted) from the authors' code at its MOSI config (width 128, 8 heads of 64,
    # learned positions over 50/375/500 steps), plus BERT-base's 109.5M
    "almt": "2.6M params + BERT-base (authors' code, MOSI config)",
    "lnln": "6.5M params + BERT-base (authors' code, MOSI config)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="", help="comma-separated names (default: every registered model)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown rows")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from robustmsa.data.batch import split_to_batch
    from robustmsa.datasets import load_dataset
    from robustmsa.evaluation import CorruptionContext, predict
    from robustmsa.metrics import compute_metrics
    from robustmsa.models import MODELS, count_parameters, create_model
    from robustmsa.suite import RegimeSpec, TrainingSpec
    from robustmsa.training import TrainingRun, train_model

    device = torch.device("cpu")
    ds = load_dataset("synthetic", {"seed": 0})
    train, test = split_to_batch(ds["train"]), split_to_batch(ds["test"])
    ctx = CorruptionContext(train.modalities())
    names = [n for n in args.models.split(",") if n] or MODELS.names()
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), load {os.getloadavg()[0]:.1f}; data: synthetic MOSI-sized "
          f"({len(train)} train, {len(test)} test); {args.epochs} epochs, clean regime")
    header = "| model | parameters (trainable) | s/epoch | test samples/s | test MAE after the epochs | papers |"
    print(header)
    print("|---|---|---|---|---|---|")
    for name in names:
        model = create_model(name, dims=ds.dims, lengths=ds.lengths, seed=0)
        run = TrainingRun(RegimeSpec(name="clean", kind="clean"),
                          TrainingSpec(epochs=args.epochs, patience=args.epochs + 1), seed=0)
        res = train_model(model, ds, run, device=device, ctx=ctx)
        epochs = [h["epoch_seconds"] for h in res.history]
        per_epoch = statistics.median(epochs[1:] or epochs)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            pred, _ = predict(model, test, 512, device)
            times.append(time.perf_counter() - t0)
        mae = compute_metrics(pred, test.labels.numpy(), ds.metric_family)["mae"]
        print(f"| {name} | {count_parameters(model):,} ({count_parameters(model, trainable_only=True):,}) | "
              f"{per_epoch:.2f} | {len(test) / statistics.median(times):.0f} | {mae:.3f} | {PAPERS.get(name, '')} |",
              flush=True)


if __name__ == "__main__":
    main()
