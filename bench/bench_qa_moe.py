"""QA-MoE on the MOSI-sized embedded benchmark, on CPU (issue: QA-MoE and one checkpoint for all).

Measured side by side in one run, one torch thread unless --threads:

1. per-epoch training time under the clean and the spectrum regime (median over the epochs run,
   validation included, as the trainer reports it in ``epoch_seconds``);
2. evaluation throughput: one clean pass over the test split (686 samples) and the main job's
   full grid (3 families x 4 sweeps x 6 levels = 72 points), as samples/s per grid point;
3. the cost of the full grid relative to one clean test pass, and relative to 72 clean passes
   (what is left over the bare forward passes: corruption and bookkeeping), with and without
   reusing the encodings of modalities a grid point leaves clean (``reuse_encodings``).

    python bench/bench_qa_moe.py [--epochs 3] [--threads 1] [--model qa_moe]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="qa_moe")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the clean pass and the grid")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from robustmsa.data.batch import split_to_batch
    from robustmsa.datasets import load_dataset
    from robustmsa.evaluation import CorruptionContext

    device = torch.device("cpu")
    ds = load_dataset("synthetic", {"seed": 0})
    train = split_to_batch(ds["train"])
    test = split_to_batch(ds["test"])
    ctx = CorruptionContext(train.modalities())
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}")
    print(f"data: synthetic MOSI-sized, train {len(train)}, test {len(test)}")

    model = _train(args, ds, train, ctx, device)
    _evaluate(args, model, train, test, device)


def _train(args, ds, train, ctx, device):
    """Train one model per regime; print the median epoch time; return the last (spectrum) model."""
    from robustmsa.models import count_parameters, create_model
    from robustmsa.suite import RegimeSpec, SamplerSpec, TrainingSpec
    from robustmsa.training import TrainingRun, train_model

    training = TrainingSpec(epochs=args.epochs, patience=args.epochs + 1, batch_size=64)
    regimes = {
        "clean": RegimeSpec(name="clean", kind="clean"),
        "spectrum": RegimeSpec(name="spectrum", kind="spectrum",
                               sampler=SamplerSpec(families=["missing", "drop", "noise"],
                                                   p_clean_sample=0.2, p_clean_modality=0.2)),
    }
    model = None
    for name, regime in regimes.items():
        model = create_model(args.model, dims=ds.dims, lengths=ds.lengths, seed=0)
        res = train_model(model, ds, TrainingRun(regime, training, seed=0), device=device, ctx=ctx)
        per_epoch = statistics.median(h["epoch_seconds"] for h in res.history)
        print(f"train [{name:8s}] {count_parameters(model):,} parameters: {per_epoch:.2f} s/epoch "
              f"(median of {res.epochs_run}; {len(train) / per_epoch:.0f} train samples/s incl. validation)")
    return model


def _evaluate(args, model, train, test, device) -> None:
    """Time the clean pass and the full grid (with and without reused clean encodings), interleaved."""
    from robustmsa.evaluation import CorruptionContext, GridRun, build_grid, evaluate_grid, predict
    from robustmsa.suite import GridSpec

    grid = GridSpec(families=["missing", "drop", "noise"], levels=[1.0, 0.8, 0.6, 0.4, 0.2, 0.0],
                    sweeps=["text", "audio", "vision", "joint"])
    n_points = len(build_grid(grid))
    clean_times: list[float] = []
    grid_times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):  # interleaved, so that load falls on all alike
        t0 = time.perf_counter()
        predict(model, test, 512, device)
        clean_times.append(time.perf_counter() - t0)
        for reuse in (True, False):
            ctx_eval = CorruptionContext(train.modalities())  # cold: corrupters fitted, states drawn
            t0 = time.perf_counter()
            evaluate_grid(model, test, ctx_eval, GridRun(grid, seed=1234, metric_family="mosi", batch_size=512,
                                                         device=device, reuse_encodings=reuse))
            grid_times[reuse].append(time.perf_counter() - t0)
    clean_s = statistics.median(clean_times)
    print(f"eval clean pass: {clean_s:.3f} s = {len(test) / clean_s:.0f} samples/s")
    for reuse in (False, True):
        grid_s = statistics.median(grid_times[reuse])
        label = "reusing clean encodings" if reuse else "every encoder every point"
        print(f"eval full grid ({n_points} points, cold corruption context, {label}): {grid_s:.2f} s = "
              f"{n_points * len(test) / grid_s:.0f} samples/s per grid point; grid / clean pass = "
              f"{grid_s / clean_s:.1f}; grid / ({n_points} x clean pass) = {grid_s / (n_points * clean_s):.2f}")
    print(f"speed-up from reusing clean encodings: "
          f"{statistics.median(grid_times[False]) / statistics.median(grid_times[True]):.2f}x")

if __name__ == "__main__":
    main()
