"""The emotion preset (``synthetic_emotion``): MELD-style emotion classification from the cue design.

The clips, features and cues are those of the cue design (:mod:`.cue_design`, here with no
private factor in the valence: ``*_private = 0``); each clip's class is a fixed function of its
latents, so every modality carries part of the answer:

* **valence**: the clip's sentiment label ``y`` (the mean rating of :func:`.latent.annotate`, in
  [-3, 3]; it includes the raters' noise, as real annotations do). ``|y| <`` :data:`NEUTRAL_BAND`
  is *neutral*; text states it, pitch and the face follow it (sarcastic clips included);
* **arousal**: the audio-only private factor ``u_a`` (the energy cue). Positive clips are
  *surprise* when aroused, else *joy*; negative clips split into aroused (*anger*, *fear*) and
  calm (*sadness*, *disgust*);
* aroused negative clips are *fear* when the text-only factor ``u_t`` is low, else *anger*; calm
  negative clips are *disgust* when the vision-only factor ``u_v`` (expressivity) is high, else
  *sadness*.

Every ``u ~ N(0, 1)``, so each threshold is the normal quantile of a class share: within
positive, negative, aroused and calm clips the shares are those of MELD's training split
(:data:`MELD_TRAIN_COUNTS`: neutral 4710, joy 1743, surprise 1205, anger 1109, sadness 683,
disgust 271, fear 268 of 9989 utterances). The neutral, positive and negative shares come from
the preset's latent parameters (``neutral_share``, ``negative_share``) and the band; with the
preset's defaults they are close to MELD's 47 / 30 / 23 %. The class shares of every split are in
``info["class_shares"]``; the rule in ``info["emotion_rule"]``. Deterministic from the seed: no
draw is added to the cue design's streams.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
from scipy.special import ndtri

from ..dataset import CLASSIFICATION, SPLITS, MSADataset
from .config import SyntheticConfig
from .cue_design import cue_design_with_private

__all__ = ["EMOTIONS", "MELD_TRAIN_COUNTS", "NEUTRAL_BAND", "emotion_thresholds", "emotion_classes",
           "generate_emotion"]

#: MELD's seven classes, in class-index order
EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
#: utterances per class in MELD's training split (Poria et al., ACL 2019)
MELD_TRAIN_COUNTS = MappingProxyType({"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109,
                                      "sadness": 683, "disgust": 271, "fear": 268})
#: a valence label with ``|y|`` below it is neutral (three raters on -3..3: |y| <= 2/3, a rating sum within +-2)
NEUTRAL_BAND = 0.7


def emotion_thresholds() -> dict[str, float]:
    """The latent thresholds of the rule (module docstring): normal quantiles of MELD's shares."""
    c = MELD_TRAIN_COUNTS
    aroused = c["anger"] + c["fear"]
    calm = c["sadness"] + c["disgust"]
    return {
        "surprise_arousal": float(ndtri(1 - c["surprise"] / (c["joy"] + c["surprise"]))),
        "negative_arousal": float(ndtri(1 - aroused / (aroused + calm))),
        "fear_text": float(ndtri(c["fear"] / aroused)),
        "disgust_vision": float(ndtri(1 - c["disgust"] / calm)),
    }


def emotion_classes(valence: np.ndarray, private: np.ndarray) -> np.ndarray:
    """int64 [N]: the class index (:data:`EMOTIONS`) of clips with valence labels ``valence`` [N]
    and private factors ``private`` [3, N] (text, audio, vision)."""
    t = emotion_thresholds()
    u_t, u_a, u_v = private
    e = {name: i for i, name in enumerate(EMOTIONS)}
    positive = np.where(u_a > t["surprise_arousal"], e["surprise"], e["joy"])
    aroused = np.where(u_t < t["fear_text"], e["fear"], e["anger"])
    calm = np.where(u_v > t["disgust_vision"], e["disgust"], e["sadness"])
    negative = np.where(u_a > t["negative_arousal"], aroused, calm)
    polar = np.where(valence > 0, positive, negative)
    return np.where(np.abs(valence) < NEUTRAL_BAND, e["neutral"], polar).astype(np.int64)


def generate_emotion(config: SyntheticConfig) -> MSADataset:
    """The emotion dataset of ``config`` (``metric_family: classification``, ``design: cue``)."""
    base, private = cue_design_with_private(dataclasses.replace(config, metric_family="mosi"))
    splits, shares = {}, {}
    for s in SPLITS:
        split = base.splits[s]
        classes = emotion_classes(split.labels.astype(np.float64), private[s])
        splits[s] = dataclasses.replace(split, labels=classes.astype(np.float32))
        shares[s] = {name: round(float(np.mean(classes == i)), 4) for i, name in enumerate(EMOTIONS)}
    info = {k: v for k, v in base.info.items() if k not in ("ceiling", "ceiling_predictor", "oracle",
                                                             "zero_label_share", "private_share")}
    info.update({
        "config": config.to_dict(),
        "description": f"robustmsa synthetic emotion benchmark (MELD-style classes), seed {config.seed}: the cue "
                       "design's clips with classes from valence (text, pitch, face), arousal (audio energy) "
                       "and the text- and vision-only factors",
        "class_shares": shares,
        "emotion_rule": {"neutral_band": NEUTRAL_BAND, **emotion_thresholds()},
    })
    return MSADataset(name=config.dataset_name, splits=splits, label_range=(0.0, float(len(EMOTIONS) - 1)),
                      metric_family=CLASSIFICATION, info=info, task="classification", classes=EMOTIONS)
