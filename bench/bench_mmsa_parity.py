"""robustmsa's TFN, MulT and late fusion against MMSA's TFN, MulT and LF_DNN, on one exported pickle, on CPU.

The embedded synthetic benchmark (``--preset``, seed 0) is exported with ``export_mmsa`` to a
temporary MMSA pickle (aligned: text 50x768, audio 50x5, vision 50x20 for mosi). MMSA 2.2.1 trains
its models through ``MMSA_run`` with its default regression config, pointed at that pickle (no BERT,
aligned data) and its conventional seeds; robustmsa trains its own models on the same pickle, loaded
through the ``mmsa`` dataset loader, with ``train_model`` (clean regime, selection and early
stopping on the validation split). MMSA's LF_DNN runs twice: default config and weight decay 0.

Per model: trainable parameters, test MAE per seed and mean, test Corr mean, wall seconds per seed
(MMSA: one ``_run`` call: loading, training, test and its 1 s pause; robustmsa: ``train_model`` plus
the test pass), epochs run per seed, and for robustmsa the time to accuracy: the training time at
which its test MAE (measured after every epoch, a measurement only) first reached the mean test MAE
of the MMSA model of the same architecture, divided by MMSA's mean wall time per seed, and whether
that ratio meets the target (``met (<= 0.2)``: yes only when every seed reached the MAE and the ratio
is at most 0.2). Selection and early stopping stay on the validation split; the test passes after
each epoch are excluded from our time.
Progress goes to stderr; the table to stdout, one pair at a time (MulT, the slowest, last).

A partial run: ``--models`` picks the pairs, ``--seeds N`` keeps the first N seeds of each side
(MMSA's MulT takes about 50 s per epoch on one CPU thread), ``--max-epochs`` caps robustmsa's epochs.
MMSA always trains to its own early stop: its total time is the denominator of the ratio.

    python bench/bench_mmsa_parity.py [--preset mosi] [--models tfn,late_fusion,mult] [--max-epochs 40]
        [--patience 8] [--seeds-mmsa 1111,1112] [--seeds-ours 0,1] [--seeds N] [--threads 1] [--quick]
        [--markdown]
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # MMSA's trainers wrap every loader in tqdm

# robustmsa model -> MMSA runs of the same architecture: (label, MMSA model name, config overrides)
PAIRS = {
    "tfn": [("TFN", "tfn", {})],
    "late_fusion": [("LF_DNN", "lf_dnn", {}), ("LF_DNN wd=0", "lf_dnn", {"weight_decay": 0.0})],
    "mult": [("MulT", "mult", {})],
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


class _Watch(logging.Handler):
    """Reads MMSA's log: trainable parameters, epochs per seed, progress lines with the elapsed time."""

    def __init__(self, label: str):
        super().__init__(logging.INFO)
        self.label, self.params, self.epochs, self.t0 = label, None, [], time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if m := re.match(r"The model has (\d+) trainable parameters", msg):
            self.params = int(m.group(1))
            self.epochs.append(0)
        elif msg.startswith("TRAIN-(") and self.epochs:
            self.epochs[-1] += 1
        elif msg.startswith("VAL-(") and self.epochs:
            loss = re.search(r"Loss: ([\d.]+)", msg)
            _log(f"  MMSA {self.label}: epoch {self.epochs[-1]} valid loss {loss.group(1) if loss else '?'}, "
                 f"{time.perf_counter() - self.t0:.1f} s since start")


def run_mmsa(label: str, name: str, overrides: dict, pkl: str, ds, seeds: list[int], quick: bool, tmp: str) -> dict:
    import MMSA
    import torch

    mrun = sys.modules["MMSA.run"]  # the package re-exports names that shadow these modules
    mult_trainer = sys.modules["MMSA.trains.singleTask.MULT"]

    family = ds.metric_family
    config = {"featurePath": pkl, "need_data_aligned": True, "use_bert": False,
              "seq_lens": [ds.lengths[m] for m in ("text", "audio", "vision")],
              "feature_dims": [ds.dims[m] for m in ("text", "audio", "vision")], **overrides}
    if quick:
        config["early_stop"] = 1
    results, seconds = [], []
    orig_run, orig_set_device, orig_plateau = mrun._run, torch.cuda.set_device, mult_trainer.ReduceLROnPlateau

    def timed_run(*a, **k):
        t0 = time.perf_counter()
        results.append(orig_run(*a, **k))
        seconds.append(time.perf_counter() - t0)
        return results[-1]

    def plateau(*a, verbose=None, **k):  # torch >= 2.7 dropped the `verbose` argument MULT.py passes
        return orig_plateau(*a, **k)

    def set_device(device):  # run.py calls torch.cuda.set_device even on a CPU device
        if torch.device(device).type == "cuda":
            orig_set_device(device)

    logger = logging.getLogger("MMSA")
    before, watch = list(logger.handlers), _Watch(label)
    logger.addHandler(watch)
    mrun._run, torch.cuda.set_device, mult_trainer.ReduceLROnPlateau = timed_run, set_device, plateau
    try:
        MMSA.MMSA_run(name, family, config=config, seeds=list(seeds), gpu_ids=[], num_workers=0,
                      model_save_dir=tmp, res_save_dir=tmp, log_dir=tmp, verbose_level=0)
    finally:
        mrun._run, torch.cuda.set_device, mult_trainer.ReduceLROnPlateau = orig_run, orig_set_device, orig_plateau
        for h in [h for h in logger.handlers if h not in before]:  # MMSA_run adds two handlers per call
            logger.removeHandler(h)
            h.close()
    return {"side": "MMSA", "model": label, "params": watch.params, "seeds": seeds,
            "mae": [float(r["MAE"]) for r in results], "corr": [float(r["Corr"]) for r in results],
            "seconds": seconds, "epochs": watch.epochs}


def run_ours(name: str, ds, seeds: list[int], epochs: int, patience: int) -> dict:
    import torch

    from robustmsa.data.batch import split_to_batch
    from robustmsa.evaluation import predict
    from robustmsa.metrics import compute_metrics
    from robustmsa.models import count_parameters, create_model
    from robustmsa.suite import RegimeSpec, TrainingSpec
    from robustmsa.training import TrainingRun, train_model

    device = torch.device("cpu")
    test = split_to_batch(ds["test"])
    labels = test.labels.numpy()
    out = {"side": "robustmsa", "model": name, "params": None, "seeds": seeds, "mae": [], "corr": [],
           "seconds": [], "epochs": [], "curves": []}
    for s in seeds:
        model = create_model(name, dims=ds.dims, lengths=ds.lengths, seed=s)
        curve, clock = [], {"eval": 0.0}

        def on_epoch(rec, model=model, curve=curve, clock=clock, s=s):
            t = time.perf_counter()
            mae = compute_metrics(predict(model, test, 512, device)[0], labels, ds.metric_family)["mae"]
            curve.append((t - clock["t0"] - clock["eval"], mae))  # training time so far, test passes excluded
            clock["eval"] += time.perf_counter() - t
            _log(f"  robustmsa {name} seed {s}: epoch {rec['epoch'] + 1} valid MAE {rec['valid_mae']:.4f} "
                 f"test MAE {mae:.4f}, {curve[-1][0]:.1f} s")

        clock["t0"] = time.perf_counter()
        run = TrainingRun(RegimeSpec(name="clean", kind="clean"), TrainingSpec(epochs=epochs, patience=patience), s)
        res = train_model(model, ds, run, device=device, on_epoch=on_epoch)
        t = time.perf_counter()
        m = compute_metrics(predict(model, test, 512, device)[0], labels, ds.metric_family)
        out["seconds"].append(res.train_seconds - clock["eval"] + time.perf_counter() - t)
        out["params"] = count_parameters(model, trainable_only=True)
        out["mae"].append(m["mae"])
        out["corr"].append(m["corr"])
        out["epochs"].append(res.epochs_run)
        out["curves"].append(curve)
    return out


#: the time-to-accuracy target: ours / MMSA's wall time
TARGET_RATIO = 0.2


def time_to(ours: dict, ref: dict) -> tuple[str, str]:
    """When our test MAE first reached ref's mean test MAE, per seed, and mean time / ref's mean wall time
    (the mean over the seeds that reached it; "not reached" for the others); and whether the target is
    met: every seed reached it and the ratio is at most :data:`TARGET_RATIO`."""
    target = statistics.mean(ref["mae"])
    hits = [next((t for t, mae in curve if mae <= target), None) for curve in ours["curves"]]
    reached = [h for h in hits if h is not None]
    times = ", ".join("not reached" if h is None else f"{h:.1f} s" for h in hits)
    if not reached:
        return f"{ref['model']} ({target:.3f}): {times}", f"{ref['model']}: no (not reached)"
    ratio = statistics.mean(reached) / statistics.mean(ref["seconds"])
    scope = "" if len(reached) == len(hits) else f" ({len(reached)}/{len(hits)} seeds)"
    met = "yes" if len(reached) == len(hits) and ratio <= TARGET_RATIO else "no"
    return f"{ref['model']} ({target:.3f}): {times} = {ratio:.3f}x{scope}", f"{ref['model']}: {met}"


def row(r: dict, tta: str, met: str, markdown: bool) -> str:
    cells = [r["side"], r["model"], f"{r['params']:,}" if r["params"] else "?",
             ", ".join(f"{v:.4f}" for v in r["mae"]), f"{statistics.mean(r['mae']):.4f}",
             f"{statistics.mean(r['corr']):.4f}", ", ".join(f"{v:.1f}" for v in r["seconds"]),
             ", ".join(str(e) for e in r["epochs"]), tta, met]
    return "| " + " | ".join(cells) + " |" if markdown else "  ".join(cells)


HEADER = ["side", "model", "params", "test MAE per seed", "MAE mean", "Corr mean", "wall s per seed", "epochs",
          "time to MMSA's MAE (ours/MMSA)", f"met (<= {TARGET_RATIO})"]


def _parse() -> tuple[argparse.Namespace, list[int], list[int], list[str]]:
    """The arguments, the seeds of each side and the pairs to run (cheap pairs first, MulT last)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mosi", help="synthetic preset (mosi-shaped: mosi, trimodal)")
    ap.add_argument("--models", default="tfn,late_fusion,mult", help="robustmsa names: tfn, late_fusion, mult")
    ap.add_argument("--max-epochs", "--epochs", dest="epochs", type=int, default=40,
                    help="robustmsa's epoch cap (early stopping on validation as well)")
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--seeds-mmsa", default="1111,1112",
                    help='MMSA\'s seeds; "" runs robustmsa\'s side only (against MMSA rows measured before)')
    ap.add_argument("--seeds-ours", default="0,1")
    ap.add_argument("--seeds", type=int, default=None, help="keep the first N seeds of each side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs (MMSA: early_stop 1), one seed each")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown rows")
    args = ap.parse_args()
    seeds_mmsa, seeds_ours = _ints(args.seeds_mmsa), _ints(args.seeds_ours)
    if args.seeds is not None:
        if args.seeds < 1:
            ap.error(f"--seeds must be >= 1, got {args.seeds}")
        seeds_mmsa, seeds_ours = seeds_mmsa[: args.seeds], seeds_ours[: args.seeds]
    if args.quick:
        seeds_mmsa, seeds_ours, args.epochs = seeds_mmsa[:1], seeds_ours[:1], 2
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(PAIRS)}")
    return args, seeds_mmsa, seeds_ours, sorted(names, key=list(PAIRS).index)


def main() -> None:
    args, seeds_mmsa, seeds_ours, names = _parse()
    epochs = args.epochs
    try:
        import MMSA  # noqa: F401
    except Exception as exc:  # any import failure means: skip
        print(f"skipped: MMSA is not importable ({type(exc).__name__}: {exc}); pip install 'robustmsa[mmsa]'")
        return
    import torch

    torch.set_num_threads(args.threads)
    from robustmsa.data.synthetic import export_mmsa, load_synthetic
    from robustmsa.datasets import load_dataset

    with tempfile.TemporaryDirectory(prefix="mmsa_parity_") as tmp:
        pkl = os.path.join(tmp, f"{args.preset}.pkl")
        export_mmsa(load_synthetic(args.preset, seed=0), pkl)
        t0 = time.perf_counter()
        ds = load_dataset("mmsa", {"path": pkl})
        load_s = time.perf_counter() - t0
        n = {s: len(ds[s]) for s in ("train", "valid", "test")}
        print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch "
              f"{torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}; data: synthetic "
              f"{args.preset} via MMSA pickle ({n['train']}/{n['valid']}/{n['test']}, dims {dict(ds.dims)}, "
              f"robustmsa load {load_s:.1f} s); robustmsa: {epochs} epochs max, patience {args.patience}, "
              f"seeds {seeds_ours}; MMSA: default config, seeds {seeds_mmsa}" + (" (quick: early_stop 1)" if args.quick else ""),
              flush=True)
        if args.markdown:
            print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER), flush=True)
        else:
            print("  ".join(HEADER), flush=True)
        for name in names:
            _log(f"robustmsa {name}: seeds {seeds_ours}")
            ours = run_ours(name, ds, seeds_ours, epochs, args.patience)
            refs = []
            for label, mmsa_name, overrides in PAIRS[name] if seeds_mmsa else ():
                _log(f"MMSA {label}: seeds {seeds_mmsa}")
                refs.append(run_mmsa(label, mmsa_name, overrides, pkl, ds, seeds_mmsa, args.quick, tmp))
            for ref in refs:
                print(row(ref, "", "", args.markdown), flush=True)
            tta = [time_to(ours, ref) for ref in refs]
            print(row(ours, "; ".join(t for t, _ in tta), "; ".join(m for _, m in tta), args.markdown), flush=True)


if __name__ == "__main__":
    main()
