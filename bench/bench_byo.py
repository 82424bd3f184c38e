"""The evaluation overhead of an external model: ``robustmsa eval`` against a plain loop, side by side.

An external model (your own ``nn.Module``, given as ``module:attribute``, docs/byo_model.md) is
evaluated over a suite's grid twice in one process, on one torch thread:

- ``robustmsa eval <entry> --data <dataset> --spectrum <suite> --backend local --no-report`` (the
  CLI's ``main``, in-process, timed end to end: planning with the data hash, the probe on one batch,
  the trial, the tracking of its rows, curves and predictions in a fresh MLflow store);
- a plain loop: the same model, the same corrupted batches (the same grid points, the clean point
  once, as the harness shares it), only the forward passes timed (``torch.no_grad``, eval mode,
  chunks of ``evaluation.batch_size``); building the corrupted batches is not timed.

The two sides alternate in order from round to round; the medians are reported, with the load average.

overhead = eval wall time / forward time of the plain loop (target <= 1.2). The default model is a
small transformer over the three modalities (2 layers, width 128); the
default data and grid are the main suite's (synthetic_trimodal, 686 test samples, 72 points).

    python bench/bench_byo.py [--spectrum continuous_spectrum] [--data synthetic_trimodal] [--width 128]
        [--layers 2] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

USER_MODEL = '''
import torch
from torch import nn


class Transformer(nn.Module):
    """Project each modality to WIDTH, one sequence of a summary token and all three, LAYERS transformer
    blocks, the summary token's output to the score (it stays valid when every modality is gone)."""

    def __init__(self, dims):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], WIDTH) for m in ("text", "audio", "vision")})
        self.kind = nn.Parameter(torch.randn(3, WIDTH) * 0.02)
        self.summary = nn.Parameter(torch.randn(1, 1, WIDTH) * 0.02)
        block = nn.TransformerEncoderLayer(WIDTH, 4, 2 * WIDTH, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, 1)

    def forward(self, batch):
        n = len(batch)
        seqs = [self.summary.expand(n, 1, -1)]
        masks = [torch.ones(n, 1, dtype=torch.bool, device=batch.text.device)]
        for i, m in enumerate(("text", "audio", "vision")):
            mask = getattr(batch, f"{m}_mask") & ~batch.missing[:, i:i + 1]
            seqs.append(self.proj[m](getattr(batch, m)) + self.kind[i])
            masks.append(mask)
        x, mask = torch.cat(seqs, 1), torch.cat(masks, 1)
        h = self.encoder(x, src_key_padding_mask=~mask)
        return self.head(h[:, 0])[:, 0]


def build(dims):
    return Transformer(dims)
'''


def plain_loop(entry_module: str, suite, threads: int) -> tuple[float, float, int]:
    """(forward seconds, corruption seconds, forward passes) of the model over the suite's grid."""
    import importlib

    import torch

    from robustmsa.data.batch import split_to_batch
    from robustmsa.datasets import load_dataset
    from robustmsa.evaluation import CorruptionContext, build_grid

    torch.set_num_threads(threads)
    spec, ev = suite.datasets[0], suite.evaluation
    ds = load_dataset(spec.name, spec.params)
    test = split_to_batch(ds[ev.split])
    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities(), dataset=spec.name)
    model = importlib.import_module(entry_module).build(ds.dims).eval()
    points = build_grid(ev, qmc_seed=ev.seed)
    forward, corrupt, passes, clean_done = 0.0, 0.0, 0, False
    for f in ev.families:
        t = time.perf_counter()
        prepared = ctx.prepared(f, ev.seed, test, ev.split)
        corrupt += time.perf_counter() - t
        for g in [p for p in points if p.family == f.name]:
            if g.point.is_clean and clean_done:
                continue
            t = time.perf_counter()
            batch = test if g.point.is_clean else test.with_modalities(prepared.at(g.point))
            corrupt += time.perf_counter() - t
            clean_done |= g.point.is_clean
            t = time.perf_counter()
            with torch.no_grad():
                for s in range(0, len(batch), ev.batch_size):
                    model(batch.slice(s, min(len(batch), s + ev.batch_size)))
            forward += time.perf_counter() - t
            passes += 1
    return forward, corrupt, passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectrum", default="continuous_spectrum")
    ap.add_argument("--data", default="synthetic_trimodal:{seed: 0}")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="measurements of each side (the median is reported)")
    args = ap.parse_args()
    import torch

    from robustmsa.api import data_spec, model_spec, spectrum_file
    from robustmsa.cli import main as cli
    from robustmsa.suite import load_eval_suite

    tmp = Path(tempfile.mkdtemp(prefix="bench_byo_"))
    (tmp / "bench_byo_user.py").write_text(textwrap.dedent(USER_MODEL).replace("WIDTH", str(args.width))
                                           .replace("LAYERS", str(args.layers)))
    sys.path.insert(0, str(tmp))
    suite = load_eval_suite(spectrum_file(args.spectrum), model_spec("bench_byo_user:build"), data_spec(args.data),
                            {"evaluation": {"references": False}})
    evals, loops = [], []
    for i in range(args.repeat):  # the order alternates between rounds: load from others falls on both sides
        uri = f"sqlite:///{tmp / f'mlflow{i}.db'}"
        if i % 2:
            loops.append(plain_loop("bench_byo_user", suite, threads=1))
        t = time.perf_counter()
        code = cli(["eval", "bench_byo_user:build", "--data", args.data, "--spectrum", args.spectrum, "--backend",
                    "local", "--no-report", "evaluation.references=false", "resources.cpus_per_trial=1",
                    f"tracking.uri={uri}"])
        evals.append(time.perf_counter() - t)
        assert code == 0, code
        if not i % 2:
            loops.append(plain_loop("bench_byo_user", suite, threads=1))
        print(f"[{i + 1}/{args.repeat}] eval {evals[-1]:.2f} s, plain loop forward {loops[-1][0]:.2f} s "
              f"(+ corruption {loops[-1][1]:.2f} s)", file=sys.stderr)
    ev, fw = statistics.median(evals), statistics.median(x[0] for x in loops)
    cor = statistics.median(x[1] for x in loops)
    n_params = sum(p.numel() for p in __import__("bench_byo_user").build({"text": 768, "audio": 5, "vision": 20})
                   .parameters())
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"model: transformer width {args.width}, {args.layers} layers, {n_params:,} parameters; data {args.data}; "
          f"grid {suite.evaluation.points()} points ({loops[0][2]} forward passes of the split); torch "
          f"{torch.__version__}, 1 thread")
    print(f"robustmsa eval: {ev:.2f} s | plain loop: forward {fw:.2f} s, corruption {cor:.2f} s | "
          f"overhead eval/forward = {ev / fw:.3f} | eval/(forward + corruption) = {ev / (fw + cor):.3f}")


if __name__ == "__main__":
    main()
