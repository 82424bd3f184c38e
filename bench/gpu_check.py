"""GPU check: the core on a bare accelerator machine (no Ray, no MLflow, nothing downloaded).

Two models are trained on the synthetic MOSI preset (``synthetic``, seed 0) under the main suite's
spectrum regime (suites/continuous_spectrum.yaml: its recipe, ``--epochs`` epochs, no early stop),
then evaluated over the main suite's full grid (3 families x 4 sweeps x 6 levels = 72 points):

- ``qa_moe`` on the precomputed text features;
- ``late_fusion+bert-base``: late fusion whose text encoder is a BERT-base-sized Hugging Face model
  (``transformers.BertConfig()`` defaults: 12 layers, hidden 768, 110 M parameters) built from its
  config with seeded random weights and saved to a temporary folder, reading the dataset's token ids.

Printed per model: seconds per epoch (median, the epoch's validation included), training samples/s
(train split / s per epoch), evaluation samples/s over the grid (points x test split / seconds),
peak GPU memory (``torch.cuda.max_memory_allocated``; CUDA only) and, on CUDA, the largest absolute
difference between the grid metrics of the same seed trained and evaluated on the CPU and on the
device (NaN where both are NaN counts as equal). ``--bf16`` runs training and evaluation under
bf16 autocast. ``--small`` shrinks the data (64/16/32 samples) and the BERT (2 layers, hidden 32)
for a CPU smoke run: ``python bench/gpu_check.py --device cpu --small --epochs 1``.

    python bench/gpu_check.py [--device cuda] [--bf16] [--epochs 3] [--small] [--threads 4]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SMALL_DATA = {"n_train": 64, "n_valid": 16, "n_test": 32}
SMALL_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SERVICES = ("ray", "mlflow")


@dataclass
class Measured:
    """One model trained and evaluated on one device."""

    s_per_epoch: float
    train_samples_s: float
    eval_samples_s: float
    peak_mib: float | None
    metrics: dict[tuple[str, str], float]  # (grid point label, metric) -> value


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu (default cuda)")
    ap.add_argument("--bf16", action="store_true", help="train and evaluate under bf16 autocast")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny data and BERT, for a CPU smoke run")
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of the models, the training order and the BERT init")
    return ap.parse_args(argv)


def _save_bert(folder: Path, small: bool, seed: int) -> Path:
    """A BERT-base-sized (or, ``small``, tiny) encoder from its config, seeded, saved for ``text_model``."""
    from transformers import BertConfig, BertModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(BertConfig(**(SMALL_BERT if small else {}))).save_pretrained(folder)
    return folder


def _measure(name: str, overrides: dict[str, Any], data: Any, suite: Any, device: torch.device,
             bf16: bool) -> Measured:
    """Train ``name`` on ``data`` under the suite's spectrum regime on ``device``, then the full grid."""
    from robustmsa.data.batch import split_to_batch
    from robustmsa.evaluation import CorruptionContext, GridRun, evaluate_grid
    from robustmsa.models import create_model
    from robustmsa.training import TrainingRun, train_model

    regime = next(r for r in suite.regimes if r.kind == "spectrum")
    ctx = CorruptionContext(split_to_batch(data["train"]).modalities(), dataset=data.name)
    model = create_model(name, dims=data.dims, lengths=data.lengths, seed=suite.seeds[0], **overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        trained = train_model(model, data, TrainingRun(regime, suite.training, suite.seeds[0]), device=device, ctx=ctx)
        test = split_to_batch(data[suite.evaluation.split])
        t0 = time.perf_counter()
        points = evaluate_grid(model, test, ctx, GridRun.of(suite.evaluation, data.metric_family, device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        eval_s = time.perf_counter() - t0
    per_epoch = statistics.median(h["epoch_seconds"] for h in trained.history)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    metrics = {(p.grid.key, k): v for p in points for k, v in p.metrics.items()}
    return Measured(per_epoch, len(data["train"]) / per_epoch, len(points) * len(test) / eval_s, peak, metrics)


def max_abs_difference(a: dict[tuple[str, str], float], b: dict[tuple[str, str], float]) -> float:
    """The largest |a - b| over the metrics of both runs; NaN on both sides is equal, on one side inf."""
    if a.keys() != b.keys():
        raise ValueError(f"the runs have different grid points or metrics: {sorted(a.keys() ^ b.keys())[:4]}")
    worst = 0.0
    for k, x in a.items():
        y = b[k]
        if math.isnan(x) and math.isnan(y):
            continue
        worst = max(worst, abs(x - y) if not (math.isnan(x) or math.isnan(y)) else math.inf)
    return worst


def _line(label: str, m: Measured) -> str:
    peak = f"{m.peak_mib:,.0f} MiB" if m.peak_mib is not None else "n/a (cpu)"
    return (f"{label:24s} {m.s_per_epoch:9.2f} {m.train_samples_s:12,.0f} {m.eval_samples_s:12,.0f}  {peak}")


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    """The main suite (``--epochs``, no early stop) and the synthetic MOSI preset (tiny with ``--small``)."""
    from robustmsa.datasets import load_dataset
    from robustmsa.suite import load_suite

    suite = load_suite(ROOT / "suites" / "continuous_spectrum.yaml",
                       [f"training.epochs={args.epochs}", f"training.patience={args.epochs + 1}", "seeds=[0]"])
    data = load_dataset("synthetic", {"seed": 0, **(SMALL_DATA if args.small else {})})
    return suite, data


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device: no CUDA device is visible; use --device cpu (with --small for a smoke run)",
              file=sys.stderr)
        return 2
    suite, data = _setup(args)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}, {args.threads} "
          f"thread(s), load {os.getloadavg()[0]:.1f}; device {device} ({gpu}); bf16 autocast {args.bf16}")
    print(f"data: {data.summary()}; {args.epochs} epoch(s) spectrum regime; grid {suite.evaluation.points()} points")
    print(f"{'model':24s} {'s/epoch':>9s} {'train smp/s':>12s} {'eval smp/s':>12s}  peak GPU memory")
    with tempfile.TemporaryDirectory(prefix="gpu-check-bert-") as tmp:
        bert = _save_bert(Path(tmp), args.small, args.seed)
        models = {"qa_moe": ("qa_moe", {}),
                  f"late_fusion+bert{'-tiny' if args.small else '-base'}":
                      ("late_fusion", {"text_encoder": "hf", "text_model": str(bert)})}
        for label, (name, overrides) in models.items():
            measured = _measure(name, overrides, data, suite, device, args.bf16)
            print(_line(label, measured), flush=True)
            if device.type == "cuda":
                on_cpu = _measure(name, overrides, data, suite, torch.device("cpu"), args.bf16)
                print(f"{'':24s} max |CPU - {device.type}| over {len(measured.metrics)} grid metrics (same seed): "
                      f"{max_abs_difference(on_cpu.metrics, measured.metrics):.3g}")
    if device.type != "cuda":
        print("CPU-vs-GPU metric difference: not measured, the comparison needs --device cuda")
    loaded = [m for m in SERVICES if m in sys.modules]
    print(f"services imported: {', '.join(loaded) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
