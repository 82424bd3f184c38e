"""The observable oracle of the cue design: the best possible prediction from a corrupted input.

For a dataset generated with ``design: cue`` (:mod:`robustmsa.data.synthetic.cue_design`) the oracle
predicts each test clip from *what its corrupted observation still contains*, exactly:

1. **What survives of each cue.** Every feature family of the corruption engine acts on a
   modality's frames as an affine map along time plus Gaussian noise: ``missing`` removes the
   modality, ``drop`` zeroes elements, ``noise`` mixes towards ``mu + std z``, ``blur`` applies a
   mask-aware kernel, ``compose`` chains them (:func:`time_effect` reproduces the family's own
   draws from its state). With the generator's structure (cue dimensions, loadings, per-dimension
   scale and offset, the AR(1) + speaker background) and the cue positions (privileged: a model
   has to find them), the observed cue dimensions are ``y_d = beta_d h + n_d`` with a known
   template ``h`` and Gaussian ``n_d``; generalised least squares per dimension and then across
   dimensions gives the cue estimate ``c_hat ~ N(c, V)``, a sufficient statistic of the
   observation for the cues (:meth:`CueOracle.measure`). No information is lost: the other
   dimensions of the features are independent of every latent given the positions.
2. **Exact posterior.** The latents are the shared sentiment ``z`` (non-Gaussian prior: neutral
   and polar clips), the conflict flag and one Gaussian private factor per modality. Given ``z``
   and the flag, each modality's cues are Gaussian (jitter + measurement noise + its private
   factor), so the posterior is a sum over a fine grid of ``z`` times the two flags, with the
   private factors integrated in closed form (:meth:`CueOracle.posterior`).
3. **Label distribution.** The annotation process (shared disagreement, rounded and clipped
   ratings of ``n_raters`` raters) gives ``p(label | s_total)``, tabulated once; the posterior
   predictive of the label is a mixture of these. The oracle predicts its **median** (the Bayes
   predictor for the absolute error, hence for MAE) and reports its mean (the Bayes predictor for
   the squared error) as ``mean``.

Exact up to quadrature (a grid of ``grid_points`` values of ``z``, a trapezoid rule over the label noise and
bilinear interpolation in the label table; the closed-form test bounds the error below 1e-4
label units). Under MAE no predictor that sees the same corrupted features, without knowing where
the cues are, can do better in expectation; knowing the positions makes the oracle an *upper
bound*, tight when cues are easy to find (clean inputs: :meth:`CueOracle.burst_posterior` finds
them from the frames alone), looser when heavy noise hides them.
Scope: feature-level families with a :data:`TIME_EFFECTS` entry (missing, drop, noise, blur,
compose of them); other families (raw media) have no oracle. Models that read ``text_ids`` (a
Hugging Face encoder) see words that carry no sentiment in this design, so the bound holds for them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.special import ndtr

from corruptions.base import FeatureCorruption, ModalityBatch

from ..errors import DataError
from .dataset import MSADataset
from .synthetic import SyntheticConfig
from .synthetic.cue_design import (
    CUE_NAMES,
    PRIVATE_CUE,
    build_world,
    private_weights,
    shared_cue_means,
    slot_indicator,
)
from .synthetic.text import context_smooth

__all__ = ["CueOracle", "OraclePrediction", "TimeEffect", "TIME_EFFECTS", "time_effect", "has_oracle",
           "label_pmf_table"]

_MODALITIES = ("text", "audio", "vision")
_F64 = torch.float64


def has_oracle(dataset: MSADataset) -> bool:
    """True when ``dataset`` was generated with the cue design (its info carries the oracle's facts)."""
    return isinstance(dataset.info.get("oracle"), dict) and dataset.info["oracle"].get("design") == "cue"


# --------------------------------------------------------------------------------------------
# what a corruption does to the frames of one modality
# --------------------------------------------------------------------------------------------


@dataclass
class TimeEffect:
    """``x' = L x + mean + e`` on the time axis of one modality, per sample (float64).

    L [B, T, T]; mean [B, T, D] on the oracle's dimensions; e_d ~ N(0, std_d^2 N) with N
    [B, T, T] and ``std`` [D] (None until a noise stage); ``mask``/``missing`` are the batch's mask
    and missing flags as the families see them after the stages so far.
    """

    L: torch.Tensor
    mean: torch.Tensor
    N: torch.Tensor
    std: torch.Tensor | None
    mask: torch.Tensor
    missing: torch.Tensor

    @classmethod
    def identity(cls, data: ModalityBatch, n_dims: int) -> TimeEffect:
        b, t = data.mask.shape
        eye = torch.eye(t, dtype=_F64).expand(b, t, t).clone()
        return cls(eye, torch.zeros(b, t, n_dims, dtype=_F64), torch.zeros(b, t, t, dtype=_F64), None,
                   data.mask.clone(), data.missing.clone())

    def rows(self, keep: torch.Tensor, gain: torch.Tensor) -> None:
        """Scale row t of every sample by ``gain`` [B, T] (0 drops it); the noise follows."""
        g = gain.to(_F64) * keep.to(_F64)
        self.L = self.L * g[:, :, None]
        self.mean = self.mean * g[:, :, None]
        self.N = self.N * g[:, :, None] * g[:, None, :]

    def mix(self, weights: torch.Tensor, active: torch.Tensor) -> None:
        """Replace active rows by ``weights`` [B, T, T] @ (current rows) (a linear map along time)."""
        w = torch.where(active[:, :, None], weights.to(_F64), torch.eye(weights.shape[1], dtype=_F64))
        self.L = w @ self.L
        self.mean = w @ self.mean
        self.N = w @ self.N @ w.transpose(1, 2)

    @property
    def observed(self) -> torch.Tensor:
        """Bool [B, T]: frames the model can read (valid and the modality present)."""
        return self.mask & ~self.missing[:, None]


class _Where(NamedTuple):
    """The oracle's feature dimensions of a modality, and whether it has token ids (drop keeps ends)."""

    dims: torch.Tensor
    token_ids: bool


def _missing_effect(family: Any, rho: torch.Tensor, state: Any, e: TimeEffect, where: _Where) -> None:
    from corruptions.feature.missing import absent_samples

    absent = absent_samples(state.cpu(), rho.cpu())
    e.missing = e.missing | absent
    e.mask = e.mask & ~absent[:, None]


def _drop_effect(family: Any, rho: torch.Tensor, state: Any, e: TimeEffect, where: _Where) -> None:
    from corruptions.feature.drop import droppable_elements, dropped_elements, emptied_samples

    droppable = droppable_elements(e.mask, protect_ends=where.token_ids)
    dropped = dropped_elements(state.cpu(), rho.cpu(), droppable)
    emptied = emptied_samples(droppable, dropped, rho.cpu())
    zero = dropped | emptied[:, None]
    e.rows(~zero, torch.ones_like(zero, dtype=_F64))
    if family.report_mask:
        e.mask = e.mask & ~zero
    e.missing = e.missing | emptied


def _noise_effect(family: Any, rho: torch.Tensor, state: Any, e: TimeEffect, where: _Where) -> None:
    if family.mean is None or family.std is None:
        raise DataError("oracle: the noise family is not fitted")
    std = family.std[where.dims].to(_F64)
    mu = family.mean[where.dims].to(_F64)
    if e.std is not None and not torch.equal(e.std, std):
        raise DataError("oracle: two noise stages with different statistics are not modelled")
    r = rho.cpu().to(_F64)
    active = e.mask & ~e.missing[:, None] & (r < 1)[:, None]
    a = torch.where(active, r.sqrt()[:, None], torch.ones_like(active, dtype=_F64))
    e.rows(torch.ones_like(active), a)
    e.mean = e.mean + (active.to(_F64) * (1 - r.sqrt())[:, None])[:, :, None] * mu
    b2 = torch.where(active, (1 - r).clamp_min(0)[:, None], torch.zeros_like(a))
    e.N = e.N + torch.diag_embed(b2)
    e.std = std


def _blur_effect(family: Any, rho: torch.Tensor, state: Any, e: TimeEffect, where: _Where) -> None:
    from corruptions.feature.blur import blur_weights

    r = rho.cpu().to(torch.float32)
    blurred = r < 1
    safe = torch.where(blurred, r, torch.zeros_like(r))
    inv = safe.square() / (2 * family.c**2 * (1 - safe).square())
    w = blur_weights(e.mask, inv)
    e.mix(w, e.mask & ~e.missing[:, None] & blurred[:, None])


def _compose_effect(family: Any, rho: torch.Tensor, state: Any, e: TimeEffect, where: _Where) -> None:
    for part, part_state in zip(family.families, state, strict=True):
        _stage(part, rho, part_state, e, where)


#: family name -> function(family, rho [B], state, effect, where) updating the effect in place
TIME_EFFECTS: dict[str, Callable[..., None]] = {
    "missing": _missing_effect, "drop": _drop_effect, "noise": _noise_effect, "blur": _blur_effect,
    "compose": _compose_effect,
}


def _stage(family: FeatureCorruption, rho: torch.Tensor, state: Any, e: TimeEffect, where: _Where) -> None:
    fn = TIME_EFFECTS.get(family.name)
    if fn is None:
        raise DataError(f"oracle: corruption family {family.name!r} has no modelled effect",
                        hint=f"the oracle covers {', '.join(TIME_EFFECTS)}")
    fn(family, rho, state, e, where)


def time_effect(family: FeatureCorruption, rho: torch.Tensor, state: Any, clean: ModalityBatch,
                dims: np.ndarray) -> TimeEffect:
    """The :class:`TimeEffect` of ``family`` at per-sample ``rho`` [B] with its drawn ``state`` on
    the ``clean`` modality, on feature dimensions ``dims``."""
    e = TimeEffect.identity(clean, len(dims))
    _stage(family, rho, state, e, _Where(torch.as_tensor(dims), clean.ids is not None))
    return e


# --------------------------------------------------------------------------------------------
# the label given the total latent
# --------------------------------------------------------------------------------------------


def label_values(config: SyntheticConfig) -> np.ndarray:
    """Every value the label can take (mean of integer ratings, in label units), ascending."""
    k, n = config.rating_levels, config.n_raters
    return np.arange(-n * k, n * k + 1) / n * (config.label_range[1] / k)


def label_pmf_table(config: SyntheticConfig, means: np.ndarray, sds: np.ndarray, step: float = 0.01) -> np.ndarray:
    """float64 [len(sds), len(means), V]: P(label = v | x) with x ~ N(mean, sd^2) the shared part of
    the ratings (the total latent plus the raters' shared disagreement), raters independent.

    ``P(ratings sum | x)`` is tabulated on a fine grid of x (spacing ``step``) once, then
    integrated against each Gaussian by the trapezoid rule (one matrix product per sd): the
    integrand is smooth (the raters' own noise smooths the rounding), so the error is far below
    1e-6 for ``step`` <= 0.01 and sd >= 0.1.
    """
    k, n = config.rating_levels, config.n_raters
    lo, hi = means.min() - 8 * sds.max(), means.max() + 8 * sds.max()
    x = np.arange(lo, hi + step, step)
    edges = np.arange(-k, k) + 0.5  # between consecutive ratings
    cdf = ndtr((edges[None, :] - x[:, None]) / max(config.rater_noise, 1e-9))
    one = np.diff(np.concatenate([np.zeros((len(x), 1)), cdf, np.ones((len(x), 1))], axis=1), axis=1)
    total = one
    for _ in range(n - 1):
        total = _convolve_last(total, one)  # [X, V]: the sum of n ratings given x
    out = np.empty((len(sds), len(means), total.shape[1]))
    for j, sd in enumerate(sds):
        w = np.exp(-0.5 * ((x[None, :] - means[:, None]) / sd) ** 2)
        out[j] = (w / w.sum(axis=1, keepdims=True)) @ total
    return out


def _convolve_last(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape[:-1] + (a.shape[-1] + b.shape[-1] - 1,))
    for j in range(b.shape[-1]):
        out[..., j:j + a.shape[-1]] += a * b[..., j:j + 1]
    return out


# --------------------------------------------------------------------------------------------
# the oracle
# --------------------------------------------------------------------------------------------


@dataclass
class OraclePrediction:
    """Per clip: ``pred`` the posterior median of the label (the oracle's prediction), ``mean`` the
    posterior mean, and per modality whether it carried information (``informative`` [N, 3])."""

    pred: np.ndarray
    mean: np.ndarray
    informative: np.ndarray


@dataclass
class _Measurement:
    c_hat: np.ndarray  # [B, k]
    V: np.ndarray  # [B, k, k]
    informative: np.ndarray  # [B] bool


@dataclass
class _Terms:
    """A modality's share of the posterior: log-likelihood and shift of the mean of s_total at each
    grid point [B, G, 2], and the variance its private factor leaves [B]."""

    loglik: np.ndarray
    shift: np.ndarray
    u_var: np.ndarray


class CueOracle:
    """The oracle of a cue-design dataset (see the module docstring). Build once per dataset.

    ``predict(clean, corrupted, split, families, states, rho)``: ``clean`` and ``corrupted`` are
    :class:`~robustmsa.data.batch.Batch` objects of the same clips of ``split`` (``valid`` or
    ``test``, in the split's order); ``families``/``states`` map each corrupted modality to its
    fitted family and drawn state (a :class:`corruptions.Prepared` holds both) and ``rho`` to its
    reliability. Modalities not in ``families`` are clean.
    """

    def __init__(self, dataset: MSADataset, grid_points: int = 801, table_means: int = 1601, table_sds: int = 48):
        if not has_oracle(dataset):
            raise DataError(f"dataset {dataset.name!r} has no oracle (only synthetic presets with design: cue)",
                            hint="use the synthetic_trimodal dataset")
        info = dataset.info
        self.config = SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in info["config"].items()})
        self.world = build_world(self.config)
        self.where = info["oracle"]["where"]
        c = self.config
        self.levels = c.rating_levels
        self.weights = private_weights(c)
        polar_hi = (c.polarity_mean + 6 * c.polarity_sd) / c.rating_levels
        zmax = max(polar_hi, 6 * c.neutral_sd / c.rating_levels, 1e-3)
        self.z = np.linspace(-zmax, zmax, grid_points)
        self.log_prior = np.log(np.maximum(self._prior(self.z), 1e-300))
        self.values = label_values(c)
        smax = c.rating_levels * (zmax + 6 * math.sqrt(sum(w * w for w in self.weights.values())) + 1.0)
        self.table_means = np.linspace(-smax, smax, table_means)
        sd_hi = math.sqrt(c.label_noise**2 + c.rating_levels**2 * sum(w * w for w in self.weights.values())) + 0.5
        self.table_sds = np.linspace(max(c.label_noise, 1e-3), sd_hi, table_sds)
        self.table = label_pmf_table(c, self.table_means, self.table_sds)
        self.means = shared_cue_means(self.z[:, None], np.array([0.0, 1.0])[None, :], c)  # [G, 2, k]
        self._templates: dict[str, dict[str, torch.Tensor]] = {}
        self._clean: dict[tuple, tuple[_Measurement, _Terms]] = {}

    # ---- priors and templates

    def _prior(self, z: np.ndarray) -> np.ndarray:
        c = self.config
        s = z * c.rating_levels
        neutral = np.exp(-0.5 * (s / c.neutral_sd) ** 2) / (c.neutral_sd * math.sqrt(2 * math.pi))
        m = np.abs(s)
        folded = (np.exp(-0.5 * ((m - c.polarity_mean) / c.polarity_sd) ** 2)
                  + np.exp(-0.5 * ((m + c.polarity_mean) / c.polarity_sd) ** 2)) / (c.polarity_sd * math.sqrt(2 * math.pi))
        side = np.where(s < 0, c.negative_share, 1 - c.negative_share)
        return c.neutral_share * neutral + (1 - c.neutral_share) * side * folded

    def templates(self, split: str) -> dict[str, torch.Tensor]:
        """float64 [N, T] per modality: where the cue sits in the clean frames of ``split``."""
        if split not in self._templates:
            if split not in self.where:
                raise DataError(f"oracle: no cue positions for split {split!r}", hint="evaluate valid or test")
            w, c = self.where[split], self.config
            slots = np.asarray(w["text"], np.int64).reshape(len(w["text"]), -1)
            ind = slot_indicator(slots, c.text_len)[:, :, None]
            pad = np.zeros(ind.shape[:2], bool)
            text = context_smooth(ind, pad, c.context_mix, np.empty_like(ind))[:, :, 0]
            out = {"text": torch.from_numpy(text.astype(np.float64))}
            for m in ("audio", "vision"):
                sw = np.asarray(w[m], np.int64).reshape(-1, 2)
                out[m] = torch.from_numpy(_boxes(sw, getattr(c, f"{m}_len")).astype(np.float64))
            self._templates[split] = out
        return self._templates[split]

    def _background(self, m: str, valid: torch.Tensor) -> torch.Tensor | None:
        """[B, T, T] temporal covariance of the unit-scale background on valid frames (None: none)."""
        if m == "text":
            return None
        c, t = self.config, valid.shape[1]
        lag = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs().to(_F64)
        k = c.frame_smoothness ** lag + c.speaker_sd**2
        v = valid.to(_F64)
        return k[None] * v[:, :, None] * v[:, None, :]

    def _frame_model(self, m: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """float64 ``(scale [D], offset [D], A [D, k], marker [D])`` of modality ``m``'s cue dimensions:
        a cue value of 1 adds ``A[:, j]`` to a cue frame, the position marker adds ``marker`` (known:
        part of the mean); the last row of the loadings is the marker's."""
        scale = torch.from_numpy(self.world.scale[m].astype(np.float64))
        offset = torch.from_numpy(self.world.offset[m].astype(np.float64))
        loadings = torch.from_numpy(self.world.loadings[m].astype(np.float64))
        return scale, offset, scale[:, None] * loadings[:-1].T, self.config.cue_marker * scale * loadings[-1]

    def burst_posterior(self, m: str, clean: ModalityBatch, prior_var: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
        """Where the cue burst of frame modality ``m`` sits in each *clean* clip, from the frames
        alone: every (start, width) the generator can draw, and its log posterior [B, P] (-inf
        where impossible) under the generator's own likelihood (the AR(1) + speaker background,
        the loadings and the marker), with the cues integrated under a Gaussian prior
        ``N(0, prior_var I)`` (an approximation: the cues' prior is not Gaussian) and a uniform
        prior over positions. It checks that the positions the oracle is told are observable.

        Returns ``(candidates [P, 2] int64, log_post [B, P] float64)``.
        """
        if m not in ("audio", "vision"):
            raise ValueError(f"burst_posterior: {m!r} has no burst (audio or vision)")
        lo, hi = getattr(self.config, f"{m}_salient_frames")
        t = clean.features.shape[1]
        cands = np.array([(s, w) for w in range(lo, hi + 1) for s in range(t - w + 1)], np.int64)
        valid = clean.mask & ~clean.missing[:, None]
        ends = torch.from_numpy(cands.sum(1))
        possible = ends[None, :] <= valid.sum(1, keepdim=True)  # [B, P]
        H = torch.from_numpy(_boxes(cands, t)).to(_F64)  # [P, T]
        scale, offset, A, marker = self._frame_model(m)
        v = valid.to(_F64)
        r0 = (clean.features.to(_F64) - offset) * v[:, :, None]
        K = self._background(m, valid) + torch.diag_embed(1.0 - v)
        Ki = torch.linalg.inv(K) * v[:, :, None] * v[:, None, :]
        a = torch.where(possible, (torch.einsum("pt,btu->bpu", H, Ki) * H).sum(-1), torch.ones(()))  # h' K^-1 h
        hr = torch.einsum("pt,btd->bpd", H, Ki @ r0)  # h' K^-1 r per dimension
        b = hr - marker * a[..., None]  # h' K^-1 (r - marker h)
        M = torch.einsum("dk,bpd,dl->bpkl", A, a[..., None] / scale**2, A)  # precision of the cue estimate
        c_hat = torch.linalg.solve(M, torch.einsum("dk,bpd->bpk", A, b / scale**2))
        # log p(frames | position), cues integrated, up to a constant shared by every position of a clip:
        # the marker's fit + the cues' fit - the Gaussian integral over the cues
        log_ev = (((hr - 0.5 * marker * a[..., None]) * marker / scale**2).sum(-1)
                  + 0.5 * torch.einsum("bpk,bpkl,bpl->bp", c_hat, M, c_hat))
        C = torch.linalg.inv(M) + prior_var * torch.eye(A.shape[1], dtype=_F64)
        log_ev = log_ev - 0.5 * torch.linalg.slogdet(M @ C)[1] - 0.5 * torch.einsum(
            "bpk,bpkl,bpl->bp", c_hat, torch.linalg.inv(C), c_hat)
        log_ev = torch.where(possible, log_ev, torch.full_like(log_ev, -math.inf))
        norm = torch.logsumexp(log_ev, 1, keepdim=True)
        return cands, torch.where(torch.isfinite(norm), log_ev - norm, torch.full_like(log_ev, -math.inf)).numpy()

    # ---- step 1: measurement

    def measure(self, m: str, clean: ModalityBatch, corrupted: ModalityBatch, template: torch.Tensor,
                effect: TimeEffect | None) -> _Measurement:
        """The cue estimate of modality ``m`` from its corrupted frames (generalised least squares)."""
        dims = self.world.dims[m]
        d_idx = torch.as_tensor(dims)
        scale, offset, A, marker = self._frame_model(m)
        e = effect or TimeEffect.identity(clean, len(dims))
        valid = clean.mask & ~clean.missing[:, None]
        obs = e.observed & valid
        y = corrupted.features.index_select(2, d_idx).to(_F64)
        h = (e.L @ (template.to(_F64) * valid)[:, :, None])[:, :, 0]
        expected = e.L @ (valid.to(_F64)[:, :, None] * offset) + e.mean + h[:, :, None] * marker
        resid = (y - expected) * obs[:, :, None]
        h = h * obs
        K = self._background(m, valid)
        base = None if K is None else e.L @ K @ e.L.transpose(1, 2)
        beta, var = _gls_per_dim(base, e.N if e.std is not None else None, scale, e.std, h, resid, obs)
        info = torch.where(torch.isfinite(var), 1.0 / var, torch.zeros_like(var))  # [B, D]
        M = A.T[None] @ (info[:, :, None] * A[None])  # [B, k, k]
        ok = (torch.linalg.eigvalsh(M)[:, 0] > 1e-9) & ~e.missing.cpu() & obs.any(1)
        Mi = torch.linalg.pinv(torch.where(ok[:, None, None], M, torch.eye(M.shape[1], dtype=_F64)))
        c_hat = (Mi @ (A.T[None] @ (info * torch.nan_to_num(beta))[:, :, None]))[:, :, 0]
        return _Measurement(c_hat.numpy(), Mi.numpy(), ok.numpy())

    # ---- step 2 and 3: posterior and label

    def terms(self, m: str, meas: _Measurement) -> _Terms:
        """What modality ``m``'s measurement adds to the posterior at every (z, flag) of the grid."""
        k = len(CUE_NAMES[m])
        e = np.zeros(k)
        e[PRIVATE_CUE[m]] = 1.0
        C = meas.V + self.config.modality_jitter**2 * np.eye(k) + np.outer(e, e)
        Ci = np.linalg.inv(np.where(meas.informative[:, None, None], C, np.eye(k)))
        resid = meas.c_hat[:, None, None, :] - self.means[m][None]  # [B, G, 2, k]
        on = meas.informative[:, None, None]
        quad = np.einsum("bgfi,bij,bgfj->bgf", resid, Ci, resid, optimize=True) * on
        shift = self.levels * self.weights[m] * np.einsum("bgfi,bi->bgf", resid, Ci @ e) * on
        u_var = np.where(meas.informative, 1.0 - np.einsum("i,bij,j->b", e, Ci, e), 1.0)
        return _Terms(-0.5 * quad, shift, (self.levels * self.weights[m]) ** 2 * u_var)

    def posterior(self, terms: Mapping[str, _Terms]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior median and mean of the label [B] from each modality's :meth:`terms` (a modality
        left out is absent: its private factor stays at its prior)."""
        c = self.config
        n = len(next(iter(terms.values())).u_var)
        flag = np.log([1 - c.conflict_fraction + 1e-300, c.conflict_fraction + 1e-300])
        log_w = self.log_prior[None, :, None] + flag[None, None, :]
        s_mean = np.broadcast_to(self.z[None, :, None] * self.levels, (n, len(self.z), 2))
        s_var = np.zeros(n)
        for m in _MODALITIES:
            t = terms.get(m)
            if t is None:
                s_var = s_var + (self.levels * self.weights[m]) ** 2
                continue
            log_w = log_w + t.loglik
            s_mean = s_mean + t.shift
            s_var = s_var + t.u_var
        log_w = np.broadcast_to(log_w, s_mean.shape)
        w = np.exp(log_w - log_w.max(axis=(1, 2), keepdims=True))
        w /= w.sum(axis=(1, 2), keepdims=True)
        sd = np.sqrt(c.label_noise**2 + s_var)
        pmf = self._mixture(w, s_mean, sd)  # [B, V]
        cdf = np.cumsum(pmf, axis=1)
        median = self.values[np.argmax(cdf >= 0.5 - 1e-12, axis=1)]
        return median, pmf @ self.values

    def _mixture(self, w: np.ndarray, s_mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """sum over (z, flag) of w * P(label | s ~ N(s_mean, ...), sd) by bilinear interpolation."""
        sds, means = self.table_sds, self.table_means
        j = np.clip(np.searchsorted(sds, sd) - 1, 0, len(sds) - 2)
        fj = np.clip((sd - sds[j]) / (sds[j + 1] - sds[j]), 0.0, 1.0)
        x = np.clip(s_mean, means[0], means[-1])
        i = np.clip(np.searchsorted(means, x) - 1, 0, len(means) - 2)
        fi = (x - means[i]) / (means[i + 1] - means[i])
        out = np.zeros((len(w), self.table.shape[2]))
        for b in range(len(w)):
            t = self.table[j[b]] * (1 - fj[b]) + self.table[j[b] + 1] * fj[b]  # [M, V]
            ib, fb, wb = i[b].ravel(), fi[b].ravel(), w[b].ravel()
            out[b] = (wb * (1 - fb)) @ t[ib] + (wb * fb) @ t[ib + 1]
        return out

    def predict(self, clean: Any, corrupted: Any, split: str, families: Mapping[str, FeatureCorruption],
                states: Mapping[str, Any], rho: Mapping[str, float]) -> OraclePrediction:
        """The oracle's predictions for the clips of ``split`` (see the class docstring)."""
        templates = self.templates(split)
        terms: dict[str, _Terms] = {}
        informative = []
        for m in _MODALITIES:
            cm, xm = clean.modality(m), corrupted.modality(m)
            if len(templates[m]) != len(cm.mask):
                raise DataError(f"oracle: {split} has {len(templates[m])} clips, the batch {len(cm.mask)}")
            if m in families and float(rho.get(m, 1.0)) < 1.0:
                r = torch.full((len(cm.mask),), float(rho[m]), dtype=torch.float32)
                effect = time_effect(families[m], r, states[m], cm, self.world.dims[m])
                meas = self.measure(m, cm, xm, templates[m], effect)
                terms[m] = self.terms(m, meas)
            else:  # a clean modality: the same terms at every point of a sweep of another one
                key = (split, m, cm.features.data_ptr(), cm.features._version)
                if key not in self._clean:
                    meas = self.measure(m, cm, cm, templates[m], None)
                    self._clean[key] = (meas, self.terms(m, meas))
                meas, terms[m] = self._clean[key]
            informative.append(meas.informative)
        pred, mean = self.posterior(terms)
        return OraclePrediction(pred, mean, np.stack(informative, axis=1))


def _boxes(start_width: np.ndarray, length: int) -> np.ndarray:
    """bool [N, length]: True on the frames ``start <= t < start + width`` of each row (start, width)."""
    t = np.arange(length)[None, :]
    return (t >= start_width[:, :1]) & (t < start_width[:, :1] + start_width[:, 1:2])


def _gls_per_dim(base: torch.Tensor | None, noise: torch.Tensor | None, scale: torch.Tensor,
                 std: torch.Tensor | None, h: torch.Tensor, resid: torch.Tensor, obs: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per dimension d: beta_d = h' S_d^-1 r_d / h' S_d^-1 h and its variance 1 / h' S_d^-1 h, with
    S_d = scale_d^2 base + std_d^2 noise on the observed frames (identity elsewhere).

    When one of the two terms is absent every dimension shares the covariance up to a factor, and
    one solve per sample serves them all; otherwise one solve per sample and dimension, in chunks.
    """
    b, t, d = resid.shape
    o = obs.to(_F64)
    outside = torch.diag_embed(1.0 - o)
    eps = 1e-10 * torch.diag_embed(o)
    if base is None or noise is None:  # S_d = factor_d * shared
        shared, factor = (base, scale**2) if noise is None else (noise, std**2)
        if shared is None:
            shared = torch.zeros(b, t, t, dtype=_F64)
        S = shared * o[:, :, None] * o[:, None, :] + outside + eps
        q = torch.linalg.solve(S, h[:, :, None])[:, :, 0]
        hq = (q * h).sum(1)
        beta = (q[:, :, None] * resid).sum(1) / hq[:, None]
        var = factor[None, :] / hq[:, None]
        return beta, torch.where(hq[:, None] > 1e-12, var, torch.full_like(var, math.inf))
    betas, hqs = [], []
    for lo in range(0, b, 64):
        sl = slice(lo, lo + 64)
        S = scale[None, :, None, None] ** 2 * base[sl, None] + std[None, :, None, None] ** 2 * noise[sl, None]
        S = S * (o[sl, None, :, None] * o[sl, None, None, :]) + outside[sl, None] + eps[sl, None]
        n = S.shape[0]
        rhs = torch.stack([h[sl, None, :].expand(n, d, t), resid[sl].transpose(1, 2)], dim=-1)  # [n, D, T, 2]
        sol = torch.linalg.solve(S, rhs)
        hqs.append((sol[..., 0] * h[sl, None, :]).sum(-1))  # [n, D]
        betas.append((sol[..., 1] * h[sl, None, :]).sum(-1) / hqs[-1])
    hq, beta = torch.cat(hqs), torch.cat(betas)
    return beta, torch.where(hq > 1e-12, 1.0 / hq, torch.full_like(hq, math.inf))
