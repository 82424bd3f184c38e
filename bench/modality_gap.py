"""Where the zoo loses to the oracle: each modality alone, against the oracle on that modality alone.

On the cue-design benchmark (``synthetic_trimodal``) the best model's clean test MAE is about 1.4x
the observable oracle's. This script splits that gap: for each single modality (the other two
removed from every split: zero features, no valid frame) it trains a model on that modality alone
with the main suite's recipe and compares its clean test MAE with the oracle given the same
modality alone (the other two ``missing`` at rho = 0). If every single-modality ratio is far
below the three-modality ratio, what the learner loses is mostly in *fusing* noisy evidence (the
oracle weighs each clip's cues by their exact posterior uncertainty; a learned head sees point
estimates), not in extracting each modality's cues.

    python bench/modality_gap.py [--models qa_moe,late_fusion] [--seeds 0] [--threads 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from corruptions import get_family
from robustmsa.data.batch import split_to_batch
from robustmsa.data.dataset import MSADataset
from robustmsa.data.oracle import CueOracle
from robustmsa.models import create_model
from robustmsa.plan import TrainingRun, plan_suite
from robustmsa.suite import RegimeSpec, load_suite
from robustmsa.training import train_model
from robustmsa.trial import _load_checked

MODALITIES = ("text", "audio", "vision")
SUITE = "suites/continuous_spectrum.yaml"


def only(dataset: MSADataset, keep: tuple[str, ...]) -> MSADataset:
    """``dataset`` with every modality outside ``keep`` removed from every split."""
    splits = {}
    for name, sp in dataset.splits.items():
        gone = {}
        for m in MODALITIES:
            if m not in keep:
                gone[m] = np.zeros_like(getattr(sp, m))
                gone[f"{m}_mask"] = np.zeros_like(getattr(sp, f"{m}_mask"))
        splits[name] = dataclasses.replace(sp, **gone)
    return dataclasses.replace(dataset, splits=splits)


def oracle_mae(dataset: MSADataset, keep: tuple[str, ...]) -> float:
    """The oracle's clean test MAE with the modalities outside ``keep`` missing (rho = 0)."""
    test = split_to_batch(dataset["test"])
    families, states, rho, mods = {}, {}, {}, {}
    for m in MODALITIES:
        cm = test.modality(m)
        if m in keep:
            mods[m] = cm
            continue
        fam = get_family("missing")
        states[m], families[m], rho[m] = fam.sample(test.keys, cm), fam, 0.0
        mods[m] = fam.apply(cm, torch.zeros(len(test)), states[m])
    pred = CueOracle(dataset).predict(test, test.with_modalities(mods), "test", families, states, rho).pred
    return float(np.abs(pred - dataset["test"].labels).mean())


def model_mae(name: str, dataset: MSADataset, spec, seed: int) -> float:
    """Clean-trained ``name`` (the main suite's recipe) on ``dataset``: its clean test MAE."""
    from robustmsa.corruption_context import CorruptionContext

    ctx = CorruptionContext(split_to_batch(dataset["train"]).modalities(), dataset=spec.dataset.name)
    model = create_model(name, dims=dataset.dims, lengths=dataset.lengths, seed=seed)
    run = TrainingRun(RegimeSpec(name="clean", kind="clean"), spec.training, seed)
    train_model(model, dataset, run, device=torch.device("cpu"), ctx=ctx)
    model.eval()
    test = split_to_batch(dataset["test"])
    with torch.no_grad():
        pred = model(test)["pred"].reshape(-1)
    return float((pred - test.labels.reshape(-1)).abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qa_moe,late_fusion")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = next(p.spec for p in plan_suite(load_suite(SUITE)) if not p.spec.is_reference)
    dataset, _, _ = _load_checked(spec, None)
    subsets = [(m,) for m in MODALITIES] + [MODALITIES]
    print(f"synthetic_trimodal, clean test MAE (models: {spec.training.epochs} epochs, batch "
          f"{spec.training.batch_size}, lr {spec.training.lr}, patience {spec.training.patience}; seeds {args.seeds})")
    print(f"{'modalities':<22}{'oracle':>8}" + "".join(f"{n:>14}{'ratio':>7}" for n in args.models.split(",")))
    for keep in subsets:
        data = only(dataset, keep)
        ref = oracle_mae(dataset, keep)
        line = f"{'+'.join(keep):<22}{ref:8.3f}"
        for name in args.models.split(","):
            t0 = time.perf_counter()
            maes = [model_mae(name, data, spec, int(s)) for s in args.seeds.split(",")]
            line += f"{np.mean(maes):14.3f}{np.mean(maes) / ref:7.2f}"
            print(f"  ({name} {'+'.join(keep)}: {' '.join(f'{v:.3f}' for v in maes)}, "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)
        print(line, flush=True)


if __name__ == "__main__":
    main()
