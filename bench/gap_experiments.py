"""Closing the gap to the oracle on the cue-design benchmark: diagnostics and remedies, side by side.

On ``synthetic_trimodal`` the best models of the main suite first reached a clean test MAE about
1.4x the observable oracle's (0.70 against 0.50); with the options screened here the main suite's
QA-MoE reaches 0.572 over nine seeds (1.14x; docs/benchmark.md). This script measures, with the
main suite's data and recipe (``suites/continuous_spectrum.yaml``: clean training, its batch size
and lr; the variant ``main`` with the suite's own model params, trainer options, epochs and
patience; every other variant with its model and trainer options as named and the suite's earlier
budget, :data:`EARLIER_BUDGET`, with the changes :data:`RECIPES` names, so that the numbers
measured with it stay reproducible):

``diagnose``
    (a) an MLP given the oracle's *estimated* cues (the generalised-least-squares estimates from
    each clean observation, :meth:`CueOracle.measure`, on every split), optionally with their
    variances: how close a learner gets with the sufficient statistics extracted perfectly;
    (b) QA-MoE and late fusion with one modality's frames replaced by its estimated cues (a
    one-element sequence), the other two raw: which modality's learned extraction costs most.
``positions``
    whether the oracle's privileged knowledge of *where* the audio and vision bursts are matters
    on clean inputs: :meth:`CueOracle.burst_posterior` infers them from the frames alone (the
    generator's likelihood); prints how often the most probable position is the true one, the
    mean posterior probability of the truth, and the oracle's MAE told the inferred positions
    against the true ones.
``screen``
    every named variant (model config overrides and trainer options, :data:`VARIANTS`) for each
    model and seed: the best epoch's clean VALIDATION MAE (the only number used to choose), the
    clean test MAE of that checkpoint (reported, never used to choose), the epochs run and the
    training seconds. All variants of one call run in the same process, one after another, so
    their seconds are comparable (ratios to ``default`` are printed).

    python bench/gap_experiments.py diagnose [--seeds 0,1]
    python bench/gap_experiments.py textdims [--seeds 0,1]   (text reduced to its cue dimensions)
    python bench/gap_experiments.py positions
    python bench/gap_experiments.py screen --variants main,default,ema [--models qa_moe,late_fusion] [--seeds 0,1]
                                           [--regime clean|spectrum] [--grid]
    python bench/gap_experiments.py list
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from robustmsa.data.batch import split_to_batch
from robustmsa.data.dataset import MSADataset
from robustmsa.data.oracle import CueOracle
from robustmsa.data.synthetic import SyntheticConfig
from robustmsa.data.synthetic.assembly import sample_population
from robustmsa.data.synthetic.cue_design import _cue_frames, _cue_transcripts, _cues, build_world
from robustmsa.data.synthetic.text import SyntheticTextEncoder
from robustmsa.evaluation import GridRun, evaluate_grid
from robustmsa.models import create_model, model_config
from robustmsa.plan import TrainingRun, plan_suite
from robustmsa.suite import RegimeSpec, load_suite
from robustmsa.training import train_model
from robustmsa.training.trainer import TrainerOptions
from robustmsa.trial import _load_checked

if __package__:  # imported as bench.gap_experiments
    from .cue_learnability import fit_mlp as cue_fit_mlp
else:  # run as a script: bench/ is on sys.path
    from cue_learnability import fit_mlp as cue_fit_mlp

MODALITIES = ("text", "audio", "vision")
SPLITS = ("train", "valid", "test")
SUITE = "suites/continuous_spectrum.yaml"


# --------------------------------------------------------------------------------------------
# the main suite's dataset and recipe, one trial
# --------------------------------------------------------------------------------------------


def main_spec() -> Any:
    """The first model trial of the main suite (its dataset and training recipe)."""
    return next(p.spec for p in plan_suite(load_suite(SUITE)) if not p.spec.is_reference)


#: the main suite's regimes by name
REGIMES: dict[str, RegimeSpec] = {r.name: r for r in load_suite(SUITE).regimes}


@dataclasses.dataclass
class Trial:
    """One trained model: the best epoch's clean validation MAE, its clean test MAE, epochs, seconds."""

    valid: float
    test: float
    epochs: int
    best_epoch: int
    seconds: float
    grid: float | None = None


def run_trial(name: str, dataset: MSADataset, spec: Any, seed: int, overrides: Mapping[str, Any] | None = None,
              options: TrainerOptions | None = None, regime: str = "clean", grid: bool = False) -> Trial:
    """Train ``name`` (config ``overrides``) with the suite's recipe (trainer ``options``) in the main
    suite's ``regime`` ("clean" or "spectrum"); ``valid`` is the kept checkpoint's clean validation MAE
    (for the clean regime, the selection score itself); with ``grid``, ``grid`` is its test MAE
    averaged over every point of the main suite's evaluation grid (not timed)."""
    from robustmsa.corruption_context import CorruptionContext

    t0 = time.perf_counter()
    ctx = CorruptionContext(split_to_batch(dataset["train"]).modalities(), dataset=spec.dataset.name)
    model = create_model(name, dims=dataset.dims, lengths=dataset.lengths, seed=seed, **dict(overrides or {}))
    run = TrainingRun(REGIMES[regime], spec.training, seed)
    res = train_model(model, dataset, run, device=torch.device("cpu"), ctx=ctx, options=options)
    seconds = time.perf_counter() - t0
    valid = res.best_score if regime == "clean" else split_mae(model, dataset, "valid")
    trial = Trial(valid, split_mae(model, dataset, "test"), res.epochs_run, res.best_epoch, seconds)
    if grid:
        points = evaluate_grid(model, split_to_batch(dataset["test"]), ctx, GridRun.of(spec.evaluation, dataset.metric_family))
        trial.grid = float(np.mean([p.metrics["mae"] for p in points]))
    return trial


def split_mae(model: torch.nn.Module, dataset: MSADataset, split: str) -> float:
    """Clean MAE of ``model`` on ``split``."""
    model.eval()
    batch = split_to_batch(dataset[split])
    with torch.no_grad():
        pred = model(batch)["pred"].reshape(-1)
    return float((pred - batch.labels.reshape(-1)).abs().mean())


# --------------------------------------------------------------------------------------------
# diagnostics: the oracle's estimated cues as inputs
# --------------------------------------------------------------------------------------------


def with_train_positions(dataset: MSADataset) -> MSADataset:
    """``dataset`` whose oracle facts also hold the cue positions of the training split (regenerated
    from the dataset's config with the generator's own draws; the dataset stores valid and test only)."""
    info = dataset.info
    config = SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["config"].items()})
    pop = sample_population(config)
    cues, _ = _cues(config, pop.s / config.rating_levels, pop.conflict)
    encoder = SyntheticTextEncoder(config)
    _, n_words, slots = _cue_transcripts(config, encoder, len(pop.s))
    _, _, bursts = _cue_frames(config, pop, n_words + 2, cues, build_world(config))
    index = {s: np.flatnonzero(pop.split == i) for i, s in enumerate(SPLITS)}
    where = {s: {"text": slots[idx].tolist(), "audio": bursts["audio"][idx].tolist(),
                 "vision": bursts["vision"][idx].tolist()} for s, idx in index.items()}
    for s in ("valid", "test"):
        if where[s] != info["oracle"]["where"][s]:
            raise RuntimeError(f"regenerated cue positions of {s} differ from the dataset's")
    oracle = {**info["oracle"], "where": where}
    return dataclasses.replace(dataset, info={**info, "oracle": oracle})


def estimated_cues(dataset: MSADataset) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per split and modality: the oracle's GLS cue estimates [N, k] from the clean frames and
    their variances [N, k] (the diagonal of the estimate's covariance)."""
    oracle = CueOracle(with_train_positions(dataset))
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for split in SPLITS:
        batch = split_to_batch(dataset[split])
        templates = oracle.templates(split)
        out[split] = {}
        for m in MODALITIES:
            meas = oracle.measure(m, batch.modality(m), batch.modality(m), templates[m], None)
            out[split][m] = (meas.c_hat.astype(np.float32), np.diagonal(meas.V, axis1=1, axis2=2).astype(np.float32))
    return out


def fit_mlp(x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], seed: int, epochs: int = 300) -> tuple[float, float]:
    """``bench/cue_learnability.py``'s MLP on inputs standardised with the training split's
    statistics: its (validation, test) MAE."""
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-6
    return cue_fit_mlp({k: ((v - mean) / std).astype(np.float32) for k, v in x.items()}, dict(y), seed, epochs)


def replaced(dataset: MSADataset, m: str, cues: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> MSADataset:
    """``dataset`` whose modality ``m`` is its estimated cues: a one-element sequence [N, 1, k]."""
    splits = {}
    for s, sp in dataset.splits.items():
        c = cues[s][m][0][:, None, :]
        splits[s] = dataclasses.replace(sp, **{m: c, f"{m}_mask": np.ones(c.shape[:2], bool)})
    return dataclasses.replace(dataset, splits=splits)


def text_cue_dims_only(dataset: MSADataset) -> MSADataset:
    """``dataset`` whose text features keep only the dimensions that carry cues (the generator's
    knowledge: what a learner would see if it had found those dimensions among the 768)."""
    config = SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in dataset.info["config"].items()})
    dims = build_world(config).dims["text"]
    splits = {s: dataclasses.replace(sp, text=np.ascontiguousarray(sp.text[:, :, dims])) for s, sp in dataset.splits.items()}
    return dataclasses.replace(dataset, splits=splits)


def diagnose_text_dims(seeds: list[int], models: list[str]) -> None:
    spec = main_spec()
    dataset, _, _ = _load_checked(spec, None)
    data = text_cue_dims_only(dataset)
    for name in models:
        res = [run_trial(name, data, spec, s) for s in seeds]
        print(_row(f"{name}, text = its cue dimensions only", [(t.valid, t.test) for t in res]), flush=True)


def oracle_mae(dataset: MSADataset, split: str) -> float:
    """The oracle's clean MAE on ``split``."""
    batch = split_to_batch(dataset[split])
    pred = CueOracle(dataset).predict(batch, batch, split, {}, {}, {}).pred
    return float(np.abs(pred - dataset[split].labels).mean())


def diagnose(seeds: list[int], models: list[str]) -> None:
    spec = main_spec()
    dataset, _, _ = _load_checked(spec, None)
    cues = estimated_cues(dataset)
    y = {s: np.asarray(dataset[s].labels, np.float64) for s in SPLITS}
    print(f"oracle, clean: valid {oracle_mae(dataset, 'valid'):.3f}  test {oracle_mae(dataset, 'test'):.3f}")
    for label, with_var in (("MLP on the estimated cues", False), ("MLP on the estimated cues and variances", True)):
        x = {s: np.concatenate([np.concatenate(cues[s][m], axis=1) if with_var else cues[s][m][0]
                                for m in MODALITIES], axis=1) for s in SPLITS}
        res = [fit_mlp(x, y, s) for s in seeds]
        print(_row(label, res), flush=True)
    for name in models:
        base = [run_trial(name, dataset, spec, s) for s in seeds]
        print(_row(f"{name}, raw frames", [(t.valid, t.test) for t in base]), flush=True)
        for m in MODALITIES:
            res = [run_trial(name, replaced(dataset, m, cues), spec, s) for s in seeds]
            print(_row(f"{name}, {m} = estimated cues", [(t.valid, t.test) for t in res]), flush=True)


def positions() -> None:
    spec = main_spec()
    dataset, _, _ = _load_checked(spec, None)
    oracle = CueOracle(dataset)
    where = copy.deepcopy(dataset.info["oracle"]["where"])
    for split in ("valid", "test"):
        batch = split_to_batch(dataset[split])
        for m in ("audio", "vision"):
            cands, log_post = oracle.burst_posterior(m, batch.modality(m))
            true = np.asarray(where[split][m], np.int64)
            idx = np.array([np.flatnonzero((cands == t).all(1))[0] for t in true])
            best = cands[log_post.argmax(1)]
            print(f"{split:<6}{m:<7} most probable position = the true one: {np.mean((best == true).all(1)):.3f}; "
                  f"mean posterior of the true one {np.exp(log_post[np.arange(len(idx)), idx]).mean():.3f}")
            where[split][m] = best.tolist()
        told = oracle_mae(dataset, split)
        info = {**dataset.info, "oracle": {**dataset.info["oracle"], "where": where}}
        inferred = oracle_mae(dataclasses.replace(dataset, info=info), split)
        print(f"{split:<6}oracle MAE told the true positions {told:.6f}, the inferred ones {inferred:.6f}", flush=True)


def _row(label: str, res: list[tuple[float, float]]) -> str:
    v, t = np.mean([r[0] for r in res]), np.mean([r[1] for r in res])
    per = " ".join(f"{a:.3f}/{b:.3f}" for a, b in res)
    return f"  {label:<46} valid {v:.3f}  test {t:.3f}   (per seed valid/test: {per})"


# --------------------------------------------------------------------------------------------
# remedies: named variants
# --------------------------------------------------------------------------------------------

#: weight averaging: the main suite's earlier (decay 0.98) and current (0.99)
EMA98 = TrainerOptions(average="ema", ema_decay=0.98)
EMA99 = TrainerOptions(average="ema", ema_decay=0.99)

#: the QA-MoE options chosen at the frame-readout step (the main suite has since added clamp_output)
CHOSEN: dict[str, Any] = {"input_sparsity": 0.1, "frame_readout": True, "aux_weight": 1.0}

#: variant name -> (model config overrides, trainer options); every option is off in "default"
VARIANTS: dict[str, tuple[dict[str, Any], TrainerOptions]] = {
    "default": ({}, TrainerOptions()),
    "ema": ({}, TrainerOptions(average="ema")),
    "ema_0.98": ({}, EMA98),
    "ema_0.995": ({}, TrainerOptions(average="ema", ema_decay=0.995)),
    "swa_2": ({}, TrainerOptions(average="swa", swa_start=2)),
    "cosine": ({}, TrainerOptions(schedule="cosine")),
    "cosine_ema": ({}, TrainerOptions(average="ema", schedule="cosine")),
    "rank16": ({"input_rank": 16}, TrainerOptions()),
    "rank64": ({"input_rank": 64}, TrainerOptions()),
    "contrast3": ({"local_contrast": 3}, TrainerOptions()),
    "contrast7": ({"local_contrast": 7}, TrainerOptions()),
    "attn_max": ({"encoder_pooling": "attention_max"}, TrainerOptions()),
    "aux0.3": ({"aux_weight": 0.3}, TrainerOptions()),
    "unimodal0.3": ({"unimodal_weight": 0.3}, TrainerOptions()),
    "sparse1e-4": ({"input_sparsity": 1e-4}, TrainerOptions()),
    "sparse3e-4": ({"input_sparsity": 3e-4}, TrainerOptions()),
    "sparse1e-3": ({"input_sparsity": 1e-3}, TrainerOptions()),
    "sparse3e-3": ({"input_sparsity": 3e-3}, TrainerOptions()),
    "sparse1e-2": ({"input_sparsity": 1e-2}, TrainerOptions()),
    "sparse3e-2": ({"input_sparsity": 3e-2}, TrainerOptions()),
    "sparse1e-1": ({"input_sparsity": 1e-1}, TrainerOptions()),
    "sparse3e-1": ({"input_sparsity": 3e-1}, TrainerOptions()),
    "sparse1": ({"input_sparsity": 1.0}, TrainerOptions()),
    "sparse3": ({"input_sparsity": 3.0}, TrainerOptions()),
    "sparse5e-2": ({"input_sparsity": 5e-2}, TrainerOptions()),
    "sparse+attn_max": ({"input_sparsity": 0.1, "encoder_pooling": "attention_max"}, TrainerOptions()),
    "sparse+swa_2": ({"input_sparsity": 0.1}, TrainerOptions(average="swa", swa_start=2)),
    "sparse+ema_0.98": ({"input_sparsity": 0.1}, EMA98),
    "sparse+aux0.3": ({"input_sparsity": 0.1, "aux_weight": 0.3}, TrainerOptions()),
    "sparse+unimodal0.3": ({"input_sparsity": 0.1, "unimodal_weight": 0.3}, TrainerOptions()),
    "sparse+ema+attn_max": ({"input_sparsity": 0.1, "encoder_pooling": "attention_max"},
                            EMA98),
    "sparse+ema+aux0.3": ({"input_sparsity": 0.1, "aux_weight": 0.3}, EMA98),
    "sparse+ema_0.98_20ep": ({"input_sparsity": 0.1}, EMA98),
    "sparse+ema_0.99_20ep": ({"input_sparsity": 0.1}, EMA99),
    "default_20ep": ({}, TrainerOptions()),
    "sparse+ema+aux0.3_20ep": ({"input_sparsity": 0.1, "aux_weight": 0.3}, EMA98),
    "sparse+ema_0.98_30ep": ({"input_sparsity": 0.1}, EMA98),
    "sparse+unimodal+ema": ({"input_sparsity": 0.1, "unimodal_weight": 0.3}, EMA98),
    "sparse+ema+contrast3": ({"input_sparsity": 0.1, "local_contrast": 3}, EMA98),
    "sparse0.3+ema": ({"input_sparsity": 0.3}, EMA98),
    "sparse0.05+ema": ({"input_sparsity": 0.05}, EMA98),
    "prox2": ({}, TrainerOptions(input_prox=2.0)),
    "prox4": ({}, TrainerOptions(input_prox=4.0)),
    "prox8": ({}, TrainerOptions(input_prox=8.0)),
    "prox4+ema": ({}, TrainerOptions(input_prox=4.0, average="ema", ema_decay=0.98)),
    "sparse0.05+ema_20ep": ({"input_sparsity": 0.05}, EMA98),
    "sparse+ema_lr2e-3": ({"input_sparsity": 0.1}, EMA98),
    "sparse+ema_lr3e-3": ({"input_sparsity": 0.1}, EMA98),
    "sparse0.2+ema_lr2e-3": ({"input_sparsity": 0.2}, EMA98),
    "sparse+ema0.95_lr2e-3": ({"input_sparsity": 0.1}, TrainerOptions(average="ema", ema_decay=0.95)),
    "sparse+ema+deltas": ({"input_sparsity": 0.1, "frame_deltas": True}, EMA98),
    "sparse+ema+readout": ({"input_sparsity": 0.1, "frame_readout": True}, EMA98),
    "sparse+ema+readout+deltas": ({"input_sparsity": 0.1, "frame_readout": True, "frame_deltas": True},
                                  EMA98),
    "sparse0.05+ema+readout": ({"input_sparsity": 0.05, "frame_readout": True}, EMA98),
    "sparse0.05+ema+readout+deltas": ({"input_sparsity": 0.05, "frame_readout": True, "frame_deltas": True},
                                      EMA98),
    "sparse+ema+readout+aux1": (CHOSEN, EMA98),
    "sparse+ema+deltas+aux1": ({"input_sparsity": 0.1, "frame_deltas": True, "aux_weight": 1.0},
                               EMA98),
    "sparse+ema+aux1": ({"input_sparsity": 0.1, "aux_weight": 1.0}, EMA98),
    **{f"sparse+ema+readout+deltas+aux{w}": ({"input_sparsity": 0.1, "frame_readout": True, "frame_deltas": True,
                                              "aux_weight": float(w)}, EMA98)
       for w in ("0.3", "1", "1.5", "2")},
    "sparse+ema+readout+aux0.7": ({"input_sparsity": 0.1, "frame_readout": True, "aux_weight": 0.7},
                                  EMA98),
    "sparse+ema+readout+aux1+drop0.1": ({**CHOSEN, "dropout": 0.1}, EMA98),
    "sparse+ema+readout+aux1+unc0.03": ({**CHOSEN, "uncertainty_weight": 0.03}, EMA98),
    "sparse+ema+readout+aux1_16ep": (CHOSEN, EMA98),
    "sparse0.15+ema+readout+aux1": ({"input_sparsity": 0.15, "frame_readout": True, "aux_weight": 1.0},
                                    EMA98),
    "sparse0.15+ema+readout+deltas+aux1": ({"input_sparsity": 0.15, "frame_readout": True, "frame_deltas": True,
                                           "aux_weight": 1.0}, EMA98),
    "chosen+dense": ({**CHOSEN, "routing": "dense"}, EMA98),
    "chosen+experts4": ({**CHOSEN, "num_experts": 4, "top_k": 2}, EMA98),
    "chosen+expert256": ({**CHOSEN, "expert_hidden": 256}, EMA98),
    "chosen+head128": ({**CHOSEN, "head_hidden": 128}, EMA98),
    "chosen+balance0": ({**CHOSEN, "balance_weight": 0.0}, EMA98),
    "chosen+topk1": ({**CHOSEN, "top_k": 1}, EMA98),
    "chosen+experts16": ({**CHOSEN, "num_experts": 16, "top_k": 3}, EMA98),
    "chosen+wd0": (CHOSEN, EMA98),
    "chosen+wd1e-3": (CHOSEN, EMA98),
    "chosen+wd1e-2": (CHOSEN, EMA98),
    "chosen+ema0.99": (CHOSEN, EMA99),
    "chosen+b128lr2e-3": (CHOSEN, EMA98),
    "chosen+noclip": (CHOSEN, EMA98),
    "chosen_24ep": (CHOSEN, EMA98),
    "chosen_24ep_lr5e-4": (CHOSEN, EMA98),
    "chosen_24ep_ema0.99": (CHOSEN, EMA99),
    "chosen_20ep_ema0.99": (CHOSEN, EMA99),
    "chosen_32ep_ema0.995": (CHOSEN, TrainerOptions(average="ema", ema_decay=0.995)),
    "chosen_16ep_ema0.99": (CHOSEN, EMA99),
    "sparse0.05+readout_20ep_ema0.99": ({"input_sparsity": 0.05, "frame_readout": True},
                                        EMA99),
    "chosen+dense_20ep_ema0.99": ({**CHOSEN, "routing": "dense"}, EMA99),
    "chosen+deltas_20ep_ema0.99": ({**CHOSEN, "frame_deltas": True}, EMA99),
    "chosen+aux1.5_20ep_ema0.99": ({**CHOSEN, "aux_weight": 1.5}, EMA99),
    "chosen+sparse0.15_20ep_ema0.99": ({**CHOSEN, "input_sparsity": 0.15}, EMA99),
    "chosen_24ep_ema0.995": (CHOSEN, TrainerOptions(average="ema", ema_decay=0.995)),
    "chosen+clamp": ({**CHOSEN, "clamp_output": True}, EMA98),
    "chosen+clamp_20ep_ema0.99": ({**CHOSEN, "clamp_output": True}, EMA99),
    "sparse0.05+readout+clamp": ({"input_sparsity": 0.05, "frame_readout": True, "clamp_output": True}, EMA98),
    "sparse0.05+readout+clamp_20ep_ema0.99": ({"input_sparsity": 0.05, "frame_readout": True, "clamp_output": True},
                                              EMA99),
    "chosen+clamp_16ep_ema0.99": ({**CHOSEN, "clamp_output": True}, EMA99),
    "sparse0.05+readout+clamp_16ep_ema0.99": ({"input_sparsity": 0.05, "frame_readout": True, "clamp_output": True},
                                              EMA99),
    "chosen+readout_deltas+dense": ({**CHOSEN, "frame_deltas": True, "routing": "dense"}, EMA98),
}

#: the main suite's budget before 2026-12-06, which every variant keeps unless RECIPES changes it (so the
#: numbers measured with it in docs/benchmark.md stay reproducible)
EARLIER_BUDGET: dict[str, Any] = {"epochs": 12, "patience": 4}

#: variant name -> its changes to EARLIER_BUDGET and the rest of the suite's training block
RECIPES: dict[str, dict[str, Any]] = {
    "sparse+ema_0.98_20ep": {"epochs": 20, "patience": 6},
    "sparse+ema_0.99_20ep": {"epochs": 20, "patience": 6},
    "default_20ep": {"epochs": 20, "patience": 6},
    "sparse+ema+aux0.3_20ep": {"epochs": 20, "patience": 6},
    "sparse+ema_0.98_30ep": {"epochs": 30, "patience": 8},
    "sparse0.05+ema_20ep": {"epochs": 20, "patience": 6},
    "sparse+ema_lr2e-3": {"lr": 0.002},
    "sparse+ema_lr3e-3": {"lr": 0.003},
    "sparse0.2+ema_lr2e-3": {"lr": 0.002},
    "sparse+ema0.95_lr2e-3": {"lr": 0.002},
    "sparse+ema+readout+aux1_16ep": {"epochs": 16, "patience": 5},
    "chosen+wd0": {"weight_decay": 0.0},
    "chosen+wd1e-3": {"weight_decay": 1e-3},
    "chosen+wd1e-2": {"weight_decay": 1e-2},
    "chosen+b128lr2e-3": {"batch_size": 128, "lr": 0.002},
    "chosen+noclip": {"grad_clip": None},
    "chosen_24ep": {"epochs": 24, "patience": 8},
    "chosen_24ep_lr5e-4": {"epochs": 24, "patience": 8, "lr": 5e-4},
    "chosen_24ep_ema0.99": {"epochs": 24, "patience": 8},
    "chosen_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen_16ep_ema0.99": {"epochs": 16, "patience": 5},
    "chosen+dense_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen+clamp_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen+clamp_16ep_ema0.99": {"epochs": 16, "patience": 5},
    "sparse0.05+readout+clamp_16ep_ema0.99": {"epochs": 16, "patience": 5},
    "sparse0.05+readout+clamp_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen+aux1.5_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen+sparse0.15_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen_24ep_ema0.995": {"epochs": 24, "patience": 8},
    "chosen+deltas_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "sparse0.05+readout_20ep_ema0.99": {"epochs": 20, "patience": 6},
    "chosen_32ep_ema0.995": {"epochs": 32, "patience": 10},
}


def main_variant(name: str) -> tuple[dict[str, Any], TrainerOptions]:
    """The variant "main": model ``name`` as the main suite trains it (its params, its trainer options)."""
    suite = load_suite(SUITE)
    params = next((dict(m.overrides) for m in suite.models if m.name == name), None)
    if params is None:
        raise SystemExit(f"{name} is not a model of {SUITE}")
    return params, TrainerOptions.of(suite.training)


def screen(names: list[str], models: list[str], seeds: list[int], regime: str = "clean", grid: bool = False) -> None:
    spec = main_spec()
    dataset, _, _ = _load_checked(spec, None)
    unknown = [n for n in names if n not in VARIANTS and n != "main"]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; allowed: main, {', '.join(VARIANTS)}")
    t = spec.training
    print(f"{regime} training, batch {t.batch_size}, lr {t.lr}; 'main': the main suite's recipe ({t.epochs} epochs, "
          f"patience {t.patience}); a variant without its own budget: {EARLIER_BUDGET['epochs']} epochs, patience "
          f"{EARLIER_BUDGET['patience']}; seeds {seeds}; valid = best epoch's clean validation MAE")
    for name in models:
        base_seconds = None
        for v in names:
            overrides, options = main_variant(name) if v == "main" else VARIANTS[v]
            recipe = {} if v == "main" else {**EARLIER_BUDGET, **RECIPES.get(v, {})}
            if not set(overrides) <= set(model_config(name)):
                print(f"{name:<12}{v:<28} (not a {name} option)")
                continue
            run_spec = dataclasses.replace(spec, training=spec.training.model_copy(update=recipe)) if recipe else spec
            trials = [run_trial(name, dataset, run_spec, s, overrides, options, regime, grid) for s in seeds]
            seconds = float(np.mean([t.seconds for t in trials]))
            base_seconds = seconds if v == "default" else base_seconds
            ratio = f"{seconds / base_seconds:5.2f}x" if base_seconds else "   -  "
            per = " ".join(f"{t.valid:.3f}/{t.test:.3f}({t.best_epoch}/{t.epochs})" for t in trials)
            if grid:
                per += f"  grid mean test MAE {np.mean([t.grid for t in trials]):.3f}"
            print(f"{name:<12}{v:<28} valid {np.mean([t.valid for t in trials]):.3f} ± "
                  f"{np.std([t.valid for t in trials]):.3f}  test {np.mean([t.test for t in trials]):.3f} ± "
                  f"{np.std([t.test for t in trials]):.3f}  {seconds:6.1f} s {ratio}   {per}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("diagnose", "textdims", "positions", "screen", "list"))
    ap.add_argument("--variants", default="default")
    ap.add_argument("--models", default="qa_moe,late_fusion")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--regime", default="clean", choices=sorted(REGIMES))
    ap.add_argument("--grid", action="store_true", help="also the test MAE averaged over the main suite's grid")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    if args.command == "list":
        for v, (overrides, options) in VARIANTS.items():
            print(f"{v:<28} {overrides} {options} { {**EARLIER_BUDGET, **RECIPES.get(v, {})} }")
    elif args.command == "diagnose":
        diagnose(seeds, models)
    elif args.command == "textdims":
        diagnose_text_dims(seeds, models)
    elif args.command == "positions":
        positions()
    else:
        screen(args.variants.split(","), models, seeds, args.regime, args.grid)


if __name__ == "__main__":
    main()
