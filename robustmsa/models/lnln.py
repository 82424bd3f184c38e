"""LNLN: Language-dominated Noise-resistant Learning Network (Zhang et al., NeurIPS 2024).

"Towards Robust Multimodal Sentiment Analysis with Incomplete Data". ALMT
(:mod:`robustmsa.models.almt`) is its backbone; LNLN protects the dominant modality, language,
when the data are incomplete. Forward pass:

1. encoders (shared layers) and token compression, as ALMT -> ``H_t, H_a, H_v`` [B, k, d];
2. dominant-modality correction (DMC):
   - completeness estimator: a [CLS] token and ``completeness_layers`` transformer blocks over
     ``H_t``, then ``MLP(d -> d/2 -> 1)`` with LeakyReLU(0.1) and a sigmoid: ``w`` [B] in [0, 1],
     how complete the language is (``w = 0`` exactly when the text is absent, see the config);
   - proxy dominant feature generator: ``k`` learned proxy tokens ``H_p^0`` (ones) and
     ``proxy_layers`` transformer blocks over ``[H_p^0; H_a; H_v]``; the first k outputs are ``H_p``;
   - correction ``H_d = w H_t + (1 - w) H_p``: the less complete the language, the more the
     dominant representation is rebuilt from audio and vision;
3. dominant-modality-based multimodal learning (DMML): ALMT's language encoder, Adaptive
   Hyper-modality Learning and fusion transformer on ``(H_d, H_a, H_v)``; ``pred = Linear(readout)``;
4. reconstructor (training only): per modality ``reconstruct_layers`` transformer blocks map the
   (possibly corrupted) tokens ``H_m`` towards the tokens of the clean input; it does not feed the
   prediction, it makes the token compression keep what is needed to recover the clean features.

Training losses (``out["losses"]``, weighted; the trainer adds the task loss, LNLN's sigma = 1):

- ``completeness`` = alpha * MSE(w, rho_t): the target is the reliability the text was corrupted
  at (``batch.reliability``, the paper's 1 - missing rate), 1 without it (clean training), and 0
  where the text is absent;
- ``adversarial`` = beta * CE(D([H_d; H_t^clean]), [1; 0]) per token (only with ``clean``): an
  effectiveness discriminator D (``Linear(d -> h) - LeakyReLU(0.1) - Linear(h -> 2)``) tells the
  corrected dominant tokens from the clean language tokens; the proxy generator, behind a
  gradient-reversal layer, learns to make them indistinguishable;
- ``reconstruction`` = gamma * MSE(reconstructor(H_m), H_m^clean) over the three modalities
  (only with ``clean``).

``clean`` only feeds these targets (computed without gradient); the prediction never reads it, and
in eval mode no auxiliary loss is computed.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from corruptions.keys import MODALITIES

from ..data.batch import Batch
from .almt import ALMTConfig, ALMTCore, compressors
from .base import MSAModel, check_config, register_model
from .extras import Extra
from .layers import AttentionBlock, modality_absent

__all__ = ["LNLNConfig", "LNLN", "grad_reverse", "CompletenessEstimator", "ProxyGenerator"]


@dataclass(frozen=True)
class LNLNConfig(ALMTConfig):
    """LNLN settings; ALMT's backbone settings in :class:`~robustmsa.models.almt.ALMTConfig`,
    shared encoder settings in ``BaseConfig``.

    readout:              "mean" (the mean of the fusion outputs of the language tokens, as LNLN's
                          code; "cls": ALMT's [CLS] output).
    completeness_layers:  transformer blocks of the completeness estimator (1; the authors' code: 2).
    proxy_layers:         transformer blocks of the proxy dominant feature generator (1; code: 2).
    reconstruct_layers:   transformer blocks of each modality's reconstructor (1; code: 2).
    discriminator_hidden: hidden width of the effectiveness discriminator (64, as the code).
    completeness_weight:  alpha, weight of the completeness loss (0.9, the code's MOSI/SIMS value).
    adversarial_weight:   beta, weight of the adversarial loss (0.8, MOSI; SIMS: 0.6).
    reconstruction_weight: gamma, weight of the reconstruction loss (0.1).
    grl_scale:            gradient-reversal factor (1.0, as the code).
    authors_gradients:    False: only the proxy generator learns from the adversarial loss, through
                          the gradient reversal (the discriminator sees ``w H_t + (1 - w) GRL(H_p)``
                          with w and H_t detached), and the task loss reaches it unreversed. True
                          reproduces the authors' code: the proxy tokens are reversed before the
                          correction (so the task loss also reaches the proxy generator reversed),
                          and the adversarial loss also trains w and the language tokens, unreversed
                          (helping the discriminator: in a test run with the reversal on the
                          adversarial path only, it drove w to 1 whatever the corruption).
    zero_completeness_if_missing: w = 0 exactly when the text is absent (True): the dominant
                          representation is then the proxy alone (the paper zero-fills a missing
                          modality and lets the estimator learn it).

    Against the authors' code (configs/train_mosi.yaml: width 128, 8 heads, token compression depth
    2, fusion depth 2 (SIMS 4), BERT fine-tuned, random missing rates on every modality during
    training, AdamW lr 1e-4, weight decay 1e-4, batch 64, 200 epochs): the ALMT deviations apply
    (d_model 64 with 4 heads, the zoo's shared encoders, sinusoidal sequence positions, MLPs 2 x
    d_model), the DMC and reconstructor stacks are one block deep, the proxy generator has the
    proxy tokens only (the code adds a second set of learned tokens in front of them), the
    completeness target is the harness's reliability rho of the text (the code: 1 - its missing
    rate), and both targets from ``clean`` are computed without gradient (the code also trains
    the projection of the complete input through the reconstruction and adversarial losses). The
    adversarial and reconstruction losses need ``clean`` (spectrum or specialist training); clean
    training has the completeness loss only. For the paper's sizes: overrides ``{d_model: 128,
    num_heads: 8, token_layers: 2, completeness_layers: 2, proxy_layers: 2, reconstruct_layers: 2}``.
    """

    readout: Literal["cls", "mean"] = "mean"
    completeness_layers: int = 1
    proxy_layers: int = 1
    reconstruct_layers: int = 1
    discriminator_hidden: int = 64
    completeness_weight: float = 0.9
    adversarial_weight: float = 0.8
    reconstruction_weight: float = 0.1
    grl_scale: float = 1.0
    authors_gradients: bool = False
    zero_completeness_if_missing: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("completeness_layers", "proxy_layers", "reconstruct_layers", "discriminator_hidden"):
            check_config(getattr(self, key) >= 1, key, "must be >= 1")
        check_config(self.d_model >= 2, "d_model", "must be >= 2 (the completeness MLP halves it)")
        for key in ("completeness_weight", "adversarial_weight", "reconstruction_weight", "grl_scale"):
            check_config(getattr(self, key) >= 0, key, "must be >= 0")


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` on the way back."""
    return _GradReverse.apply(x, scale)


def _blocks(config: LNLNConfig, n: int) -> nn.ModuleList:
    return nn.ModuleList(AttentionBlock(config.d_model, config.num_heads, config.dropout) for _ in range(n))


def _run(blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    for block in blocks:
        x = block(x, mask)
    return x


class CompletenessEstimator(nn.Module):
    """``[CLS; H_t]`` -> transformer blocks -> [CLS] -> ``MLP(d -> d/2 -> 1)`` -> sigmoid: w [B]."""

    def __init__(self, config: LNLNConfig):
        super().__init__()
        d = config.d_model
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = _blocks(config, config.completeness_layers)
        self.mlp = nn.Sequential(nn.Linear(d, d // 2), nn.LeakyReLU(0.1), nn.Linear(d // 2, 1))

    def forward(self, h_text: torch.Tensor) -> torch.Tensor:
        x = _run(self.blocks, torch.cat([self.cls.expand(h_text.shape[0], -1, -1), h_text], dim=1))
        return torch.sigmoid(self.mlp(x[:, 0]).squeeze(-1))


class ProxyGenerator(nn.Module):
    """``[H_p^0; H_a; H_v]`` -> transformer blocks -> the first k outputs: proxy dominant tokens."""

    def __init__(self, config: LNLNConfig):
        super().__init__()
        self.proxy = nn.Parameter(torch.ones(config.tokens, config.d_model))
        self.blocks = _blocks(config, config.proxy_layers)

    def forward(self, h_audio: torch.Tensor, h_vision: torch.Tensor) -> torch.Tensor:
        k = self.proxy.shape[0]
        return _run(self.blocks, torch.cat([self.proxy.expand(h_audio.shape[0], -1, -1), h_audio, h_vision], 1))[:, :k]


@register_model("lnln", LNLNConfig)
class LNLN(MSAModel):
    """Language-dominated noise-resistant learning network; see the module docstring.

    losses (training mode): ``completeness``; ``adversarial`` and ``reconstruction`` when ``clean``
    is given. extras: ``completeness`` [B] = w (its mean is a metric row: completeness vs rho).
    """

    extras = (Extra("completeness", summary=True),)
    supports_classification = True

    def __init__(self, config: LNLNConfig, dims: Mapping[str, int], lengths: Mapping[str, int] | None = None):
        super().__init__(config, dims, lengths)
        c = config
        self.compress = compressors(c)
        self.completeness = CompletenessEstimator(c)
        self.proxy = ProxyGenerator(c)
        self.dmml = ALMTCore(c, self.num_outputs)
        self.reconstructor = nn.ModuleDict({m: _blocks(c, c.reconstruct_layers) for m in MODALITIES})
        self.discriminator = nn.Sequential(nn.Linear(c.d_model, c.discriminator_hidden), nn.LeakyReLU(0.1),
                                           nn.Linear(c.discriminator_hidden, 2))

    def tokens(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The compressed token sequences ``H_m`` [B, k, d] of every modality."""
        enc = self.encoders(batch)
        return {m: self.compress[m](enc[m]) for m in MODALITIES}

    def _correct(self, h: dict[str, torch.Tensor], text_absent: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w [B], H_d [B, k, d], the proxy tokens H_p)."""
        c = self.config
        w = self.completeness(h["text"])
        if c.zero_completeness_if_missing:
            w = w.masked_fill(text_absent, 0.0)
        h_p = self.proxy(h["audio"], h["vision"])
        if c.authors_gradients:
            h_p = grad_reverse(h_p, c.grl_scale)
        return w, self._mix(w, h["text"], h_p), h_p

    @staticmethod
    def _mix(w: torch.Tensor, h_text: torch.Tensor, h_proxy: torch.Tensor) -> torch.Tensor:
        return w[:, None, None] * h_text + (1 - w[:, None, None]) * h_proxy

    def forward(self, batch: Batch, clean: Batch | None = None) -> dict[str, Any]:
        h = self.tokens(batch)
        absent = modality_absent(batch)
        w, h_d, h_p = self._correct(h, absent[:, 0])
        pred = self.dmml(h_d, h["audio"], h["vision"]).pred
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            losses["completeness"] = self.config.completeness_weight * self._completeness_loss(w, batch, absent)
            if clean is not None:
                losses.update(self._clean_losses(h, w, h_d, h_p, clean))
        return {"pred": pred, "losses": losses, "extras": {"completeness": w.detach()}}

    def _completeness_loss(self, w: torch.Tensor, batch: Batch, absent: torch.Tensor) -> torch.Tensor:
        target = torch.ones_like(w) if batch.reliability is None else batch.reliability[:, 0].to(w)
        target = target.clamp(0.0, 1.0).masked_fill(absent[:, 0], 0.0)
        return F.mse_loss(w, target)

    def _clean_losses(self, h: dict[str, torch.Tensor], w: torch.Tensor, h_d: torch.Tensor, h_p: torch.Tensor,
                      clean: Batch) -> dict[str, torch.Tensor]:
        """The adversarial and reconstruction losses against the tokens of the clean input."""
        c = self.config
        if len(clean) != h_d.shape[0]:
            raise ValueError(f"clean batch has {len(clean)} samples, the input batch {h_d.shape[0]}")
        with torch.no_grad():
            target = self.tokens(clean)
        adv_in = h_d if c.authors_gradients else self._mix(w.detach(), h["text"].detach(),
                                                           grad_reverse(h_p, c.grl_scale))
        logits = self.discriminator(torch.cat([adv_in, target["text"]], dim=0).flatten(0, 1))
        labels = torch.cat([torch.ones(adv_in.shape[:2]), torch.zeros(adv_in.shape[:2])]).flatten().long()
        rec = torch.cat([_run(self.reconstructor[m], h[m]) for m in MODALITIES], dim=1)
        rec_target = torch.cat([target[m] for m in MODALITIES], dim=1)
        return {"adversarial": c.adversarial_weight * F.cross_entropy(logits, labels.to(logits.device)),
                "reconstruction": c.reconstruction_weight * F.mse_loss(rec, rec_target)}
