"""Raw-level corruption families: audio clips (audiomentations), video frames (albumentations),
transcripts. Importing this package registers every family in ``corruptions.FAMILIES``.

| family | modality | parameter (unit) | mapping from rho | rho = 0 |
|---|---|---|---|---|
| audio_noise | audio | SNR (dB) | 10 log10(rho / (1 - rho)), >= -20 dB | noise only |
| audio_lowpass | audio | cutoff (Hz) | mel^-1(rho * mel(8000 Hz)), zero phase | silence |
| audio_dropout | audio | silenced fraction | 1 - rho of 20 ms chunks, nested | silence |
| audio_clipping | audio | clipped percent | 2 floor(50 (1 - rho)) | median constant |
| frame_blur | vision | Gaussian sigma (px) | 16 (1 - rho) | mean colour |
| frame_motion_blur | vision | kernel length (px) | 1 + 2 round(15 (1 - rho)), angle per clip | mean colour |
| frame_noise | vision | noise std (x 255) | 0.5 (1 - rho), per frame | grey + noise |
| frame_occlusion | vision | occluded fraction | 1 - rho of 8 x 8 cells, nested | black |
| frame_compression | vision | JPEG quality | max(1, round(100 rho)) | mean colour |
| frame_downscale | vision | resolution scale | max(rho, 1 / min(H, W)) | mean colour |
| text_word_drop | text | drop probability | word kept iff u > 1 - rho, nested | empty |
| text_substitution | text | substitution probability | word replaced iff u < 1 - rho, nested | all [UNK] |
| text_typos | text | edit probability | letter edited iff u < 1 - rho, nested | all letters edited |
"""
from __future__ import annotations

from ..registry import import_submodules
from .base import AudioClip, RawCorruption, RawData, corrupt_many

import_submodules(__name__, __path__, skip={"base"})  # one file per family, registered on import

__all__ = ["AudioClip", "RawCorruption", "RawData", "corrupt_many"]
