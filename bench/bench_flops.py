"""FLOP rate of a training epoch against a plain matmul of comparable size, on CPU.

For each model (``--models``, default QA-MoE and MulT) on the main suite's dataset
(``synthetic_trimodal``, seed 0: 1284 training clips of 50 steps, text 768, audio 5, vision 20),
clean regime, batch 64, the suite's lr:

1. FLOPs of one training epoch, forward and backward of every batch, counted by
   ``torch.utils.flop_counter.FlopCounterMode`` around the trainer's own epoch
   (:func:`robustmsa.training.trainer.train_epoch`). Matmuls, convolutions and attention count
   (CPU attention, which the counter does not know, is counted with its own formulas);
   elementwise ops, norms and softmax count zero, so the rate is one of useful matmul-class work;
2. the model's largest linear layer, by FLOPs per batch (forward hooks on one training batch):
   its shape ``[batch*seq, d_in] x [d_in, d_out]`` is the "comparable" matmul;
3. for each torch thread count (``--threads``), ``--rounds`` rounds, each timing in turn: one
   training epoch through ``train_epoch`` (corruption of the regime, forward, loss, backward,
   clipping, AdamW step), one epoch of the previous loop (a host sync per step, per-tensor AdamW
   and clipping; kept here as the yardstick, same FLOPs), and
   ``torch.matmul`` of the comparable shape. Medians.

Printed per model and thread count: epoch FLOP/s, matmul FLOP/s, their ratio (target >= 0.3), and
the previous loop's time over the current one. ``--profile``: one profiled epoch per model (one
thread): the share of CPU time in matmul-class kernels, the largest other ops, aten calls per step
and the measured cost of one tiny op (what each call costs in Python and dispatch alone).

    python bench/bench_flops.py [--models qa_moe,mult] [--threads 1,2] [--rounds 3] [--profile]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution_backward",
              "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def _setup(name: str, ds, threads: int):
    """(model, optimiser, training batch, regime corruption, run): as ``train_model`` sets them up."""
    import torch

    from robustmsa.data.batch import split_to_batch
    from robustmsa.evaluation import CorruptionContext
    from robustmsa.models import create_model
    from robustmsa.suite import RegimeSpec, TrainingSpec
    from robustmsa.training import RegimeCorruption, TrainingRun
    from robustmsa.training.trainer import optimizer

    torch.set_num_threads(threads)
    train = split_to_batch(ds["train"])
    run = TrainingRun(RegimeSpec(name="clean", kind="clean"), TrainingSpec(epochs=1, batch_size=64, lr=1e-3), 0)
    model = create_model(name, dims=ds.dims, lengths=ds.lengths, seed=0)
    model.fit_inputs(train)
    corrupt = RegimeCorruption(run, CorruptionContext(train.modalities()))
    return model, optimizer(model, run.training), train, corrupt, run


def count_flops(model, opt, train, corrupt, run) -> int:
    """FLOPs of one training epoch (forward + backward), CPU attention included."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    from robustmsa.training.trainer import train_epoch

    aten = torch.ops.aten

    def fwd(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, q, k, v)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: fwd,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        train_epoch(model, train, corrupt, opt, run, 0, torch.device("cpu"))
    return counter.get_total_flops()


def largest_linear(model, batch) -> tuple[int, int, int]:
    """``(rows, d_in, d_out)`` of the linear layer with the most FLOPs on ``batch`` (one forward pass)."""
    import torch

    shapes: list[tuple[int, int, int]] = []

    def hook(module, inputs, output):
        x = inputs[0]
        shapes.append((x.numel() // x.shape[-1], module.in_features, module.out_features))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return max(shapes, key=lambda s: s[0] * s[1] * s[2])


def previous_epoch(model, train, corrupt, opt, run, epoch: int) -> float:
    """The trainer's epoch loop before the current one: a host sync per step
    (finiteness check, loss to float), per-tensor clipping; ``opt`` built with ``foreach=False``."""
    import torch

    from robustmsa.data.batch import batches

    loss_fn = torch.nn.functional.l1_loss
    model.train()
    total, count = 0.0, 0
    for b in batches(train, run.training.batch_size, shuffle_seed=run.seed * 100003 + epoch):
        xb, clean = corrupt(b, epoch)
        out = model(xb, clean=clean)
        task = loss_fn(out["pred"], xb.labels)
        loss = task + sum(out.get("losses", {}).values(), torch.zeros(()))
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at epoch {epoch}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.training.grad_clip, foreach=False)
        opt.step()
        total += float(task.detach()) * len(xb)
        count += len(xb)
    return total / max(count, 1)


def time_matmul(shape: tuple[int, int, int], seconds: float = 0.3) -> float:
    """FLOP/s of ``torch.matmul([rows, d_in], [d_in, d_out])``, repeated for about ``seconds``."""
    import torch

    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    t0 = time.perf_counter()
    torch.matmul(a, b)
    reps = max(3, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * m * k * n * reps / (time.perf_counter() - t0)


def measure(name: str, ds, threads: list[int], rounds: int) -> None:
    """Count, then time the current epoch, the previous loop and the matmul, interleaved; print one row per
    thread count."""
    import torch

    from robustmsa.training.trainer import train_epoch

    model, opt, train, corrupt, run = _setup(name, ds, threads[0])
    flops = count_flops(model, opt, train, corrupt, run)
    shape = largest_linear(model, train.slice(0, run.training.batch_size))
    old_model, _, _, _, _ = _setup(name, ds, threads[0])
    old_opt = torch.optim.AdamW(old_model.param_groups(run.training.lr, run.training.weight_decay), foreach=False)
    cpu, epoch = torch.device("cpu"), 1
    print(f"{name}: {flops / 1e9:.2f} GFLOP per epoch ({flops / len(train) / 1e6:.1f} MFLOP per sample, "
          f"{flops / -(-len(train) // run.training.batch_size) / 1e6:.0f} MFLOP per batch of "
          f"{run.training.batch_size}); largest linear {shape[0]} x {shape[1]} x {shape[2]}", flush=True)
    for t in threads if rounds > 0 else []:
        torch.set_num_threads(t)
        now, before, mm = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            train_epoch(model, train, corrupt, opt, run, epoch, cpu)
            now.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            previous_epoch(old_model, train, corrupt, old_opt, run, epoch)
            before.append(time.perf_counter() - t0)
            mm.append(time_matmul(shape))
            epoch += 1
        s, rate, mm_rate = statistics.median(now), flops / statistics.median(now), statistics.median(mm)
        print(f"  {name:12s} {t} thread(s): epoch {s:.2f} s = {rate / 1e9:.1f} GFLOP/s; matmul {mm_rate / 1e9:.1f} "
              f"GFLOP/s; ratio {rate / mm_rate:.2f} (target >= 0.3: {'met' if rate / mm_rate >= 0.3 else 'not met'}); "
              f"previous loop {statistics.median(before):.2f} s = {statistics.median(before) / s:.2f}x", flush=True)


def profile(name: str, ds) -> None:
    """One profiled epoch (one thread): matmul-class share of CPU time, the largest other ops, calls per step."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from robustmsa.training.trainer import train_epoch

    model, opt, train, corrupt, run = _setup(name, ds, 1)
    train_epoch(model, train, corrupt, opt, run, 0, torch.device("cpu"))
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_epoch(model, train, corrupt, opt, run, 1, torch.device("cpu"))
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    steps = -(-len(train) // run.training.batch_size)
    calls = sum(e.count for e in events)
    others = sorted((e for e in events if e.key not in MATMUL_OPS), key=lambda e: -e.self_cpu_time_total)[:6]
    print(f"  {name} profile: matmul-class kernels {100 * matmul / total:.0f} % of aten self time; "
          f"{calls / steps:.0f} aten calls per step; largest others: "
          + ", ".join(f"{e.key[6:]} {100 * e.self_cpu_time_total / total:.0f} %" for e in others), flush=True)


def tiny_op_seconds(reps: int = 20000) -> float:
    """Seconds of one ``torch.add`` on 1-element tensors: the per-call cost of Python and dispatch alone."""
    import torch

    a = torch.ones(1)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.add(a, a)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qa_moe,mult", help="comma-separated model names (also: tfn, late_fusion)")
    ap.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per thread count (medians; 0: count only)")
    ap.add_argument("--profile", action="store_true", help="also profile one epoch per model")
    args = ap.parse_args()
    import torch

    from robustmsa.datasets import load_dataset

    threads = [int(t) for t in args.threads.split(",") if t]
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f} at start; data: synthetic_trimodal seed 0, clean regime, batch 64", flush=True)
    ds = load_dataset("synthetic_trimodal", {"seed": 0})
    for name in [n for n in args.models.split(",") if n]:
        measure(name, ds, threads, args.rounds)
        if args.profile:
            profile(name, ds)
    if args.profile:
        torch.set_num_threads(1)
        print(f"one tiny op (Python and dispatch alone): {tiny_op_seconds() * 1e6:.1f} us; "
              f"load {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
