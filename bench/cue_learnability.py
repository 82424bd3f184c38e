"""How much of the oracle's lead is fusion, how much is extraction: an MLP on the *true* cues.

On the cue-design benchmark (``synthetic_trimodal``) the oracle extracts each modality's cues from
the frames with privileged knowledge (where they are, the generator's loadings). This script
gives a learner the cue values themselves (the generator's intermediate variables, before they
are written into the features) and trains a small MLP on the training split (L1 loss, Adam,
early stopping on the validation MAE): the gap between it and the oracle is what *fusion* costs a
learner with 1,284 clips; the gap between the zoo and it is what *extraction* costs.

    python bench/cue_learnability.py [--seeds 0,1,2] [--n-train 1284]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from robustmsa.data.batch import split_to_batch
from robustmsa.data.oracle import CueOracle
from robustmsa.data.synthetic import SyntheticConfig, generate_synthetic
from robustmsa.data.synthetic.assembly import sample_population
from robustmsa.data.synthetic.cue_design import _cues


def true_cues(config: SyntheticConfig) -> dict[str, np.ndarray]:
    """float32 [N, all cues] per split, in the dataset's order."""
    pop = sample_population(config)
    cues, _ = _cues(config, pop.s / config.rating_levels, pop.conflict)
    x = np.concatenate([cues[m] for m in ("text", "audio", "vision")], axis=1).astype(np.float32)
    return {s: x[pop.split == i] for i, s in enumerate(("train", "valid", "test"))}


def fit_mlp(x: dict[str, np.ndarray], y: dict[str, np.ndarray], seed: int, epochs: int = 300) -> tuple[float, float]:
    """A two-layer MLP (width 64, GELU, L1 loss, Adam lr 3e-3, batch 64) on ``x``, early-stopped on
    the validation MAE (patience 30 epochs): its (best validation, test) MAE."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x["train"].shape[1], 64), torch.nn.GELU(), torch.nn.Linear(64, 64),
                              torch.nn.GELU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    yt = {k: torch.from_numpy(v.astype(np.float32)) for k, v in y.items()}
    g = torch.Generator().manual_seed(seed)
    best, best_state, wait = float("inf"), None, 0
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(t["train"]), generator=g).split(64):
            loss = (net(t["train"][idx]).squeeze(-1) - yt["train"][idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float((net(t["valid"]).squeeze(-1) - yt["valid"]).abs().mean())
        if v < best - 1e-6:
            best, best_state, wait = v, {k: p.clone() for k, p in net.state_dict().items()}, 0
        else:
            wait += 1
            if wait >= 30:
                break
    net.load_state_dict(best_state)
    with torch.no_grad():
        return best, float((net(t["test"]).squeeze(-1) - yt["test"]).abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-train", type=int, default=1284)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = SyntheticConfig.from_preset("trimodal", n_train=args.n_train)
    ds = generate_synthetic(config)
    y = {s: np.asarray(ds[s].labels, np.float64) for s in ("train", "valid", "test")}
    x = true_cues(config)
    test = split_to_batch(ds["test"])
    oracle = CueOracle(ds).predict(test, test, "test", {}, {}, {})
    maes = [fit_mlp(x, y, int(s))[1] for s in args.seeds.split(",")]
    print(f"synthetic_trimodal (n_train {args.n_train}), test MAE")
    print(f"  oracle (observable, from the frames)   {np.abs(oracle.pred - y['test']).mean():.3f}")
    print(f"  MLP on the true cues, seeds {args.seeds}   " + " ".join(f"{m:.3f}" for m in maes)
          + f"  mean {np.mean(maes):.3f}")


if __name__ == "__main__":
    main()
