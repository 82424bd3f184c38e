"""``face_hog``: per-frame face descriptors (face region, then gradient-orientation histograms).

Face region
    ``detector: fixed`` takes the relative box ``crop`` (x0, y0, x1, y1) of every frame (the
    generated benchmark places the face there). ``detector: haar`` runs OpenCV's frontal-face Haar
    cascade (shipped inside opencv-python < 5) on each frame, on the frames as given (corrupted
    ones included, as a real pipeline would) and keeps the largest face; a frame without a
    detection reuses the previous frame's box, and the fixed ``crop`` before the first detection.

Descriptor (``grid`` x ``grid`` x ``bins`` + ``grid`` x ``grid`` values, 144 by default)
    The region is converted to grey, resized to ``size`` x ``size`` (area interpolation) and
    described by
    - histograms of unsigned gradient orientation (Sobel 3x3, ``cv2.cartToPolar``; ``bins`` bins over [0, pi), linear
      vote interpolation between neighbouring bins) in each of ``grid`` x ``grid`` cells, weighted
      by gradient magnitude, divided by the region's intensity standard deviation (contrast
      normalisation that blur leaves almost unchanged, so blurred faces give weaker histograms
      rather than re-normalised noise), square-rooted;
    - the mean intensity of each cell, z-scored by the region's mean and standard deviation.
    A flat region (e.g. a frame replaced by its mean colour) gives all zeros.
Frames beyond ``max_frames`` are dropped; missing frames are zero with mask False.

A landmark model would be more precise, but none ships inside a package that installs offline
here, so the descriptor stays model-free.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .features import Extractor, FeatureRow, pad_rows, register_extractor

__all__ = ["FaceDescriptor", "orientation_histograms"]


def orientation_histograms(gray: np.ndarray, grid: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of square grey regions ``[T, S, S]`` in [0, 1].

    Returns ([T, grid*grid*bins] contrast-normalised, square-rooted orientation histograms,
    [T, grid*grid] z-scored cell means); a flat region gives zeros.
    """
    import cv2

    g = np.ascontiguousarray(gray, dtype=np.float32)
    n, size = g.shape[0], g.shape[1]
    gx = np.concatenate([cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3) for f in g])  # [T*S, S]
    gy = np.concatenate([cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3) for f in g])
    mag, deg = cv2.cartToPolar(gx, gy, angleInDegrees=True)  # deg in [0, 360)
    mag = mag.reshape(g.shape)
    deg = deg.reshape(g.shape)
    ang = np.where(deg >= 180.0, deg - 180.0, deg) * (bins / 180.0)  # unsigned, in [0, bins]
    lo = ang.astype(np.int64)
    frac = ang - lo
    lo %= bins
    cell = size // grid
    used = cell * grid
    rows = np.minimum(np.arange(size) // cell, grid - 1)
    cell_of = (rows[:, None] * grid + rows[None, :])[None, :, :] * bins + np.arange(n)[:, None, None] * grid * grid * bins
    inside = np.zeros((size, size), dtype=bool)
    inside[:used, :used] = True
    sel = np.broadcast_to(inside, g.shape)
    width = n * grid * grid * bins
    hist = np.bincount((cell_of + lo)[sel], (mag * (1.0 - frac))[sel], minlength=width)
    hist += np.bincount((cell_of + (lo + 1) % bins)[sel], (mag * frac)[sel], minlength=width)
    hist = hist.reshape(n, grid * grid * bins)
    std = g.reshape(n, -1).std(axis=1).astype(np.float64)
    flat = std < 1e-3
    safe = np.where(flat, 1.0, std)[:, None]
    hist = np.where(flat[:, None], 0.0, np.sqrt(hist / (safe * cell * cell)))
    means = g[:, :used, :used].reshape(n, grid, cell, grid, cell).mean(axis=(2, 4)).reshape(n, -1)
    z = np.where(flat[:, None], 0.0, (means - g.reshape(n, -1).mean(axis=1)[:, None]) / safe)
    return hist, z


@register_extractor
class FaceDescriptor(Extractor):
    """Face region (fixed box or Haar cascade) -> orientation histograms + cell intensities."""

    name = "face_hog"
    version = "1"
    modality = "vision"
    description = "face box (fixed or Haar), grey 48x48, 4x4 cells: 8-bin gradient orientation + mean intensity"
    accepts = ("max_frames",)

    def __init__(
        self,
        detector: str = "fixed",
        crop: Sequence[float] = (0.0, 0.0, 1.0, 1.0),
        size: int = 48,
        grid: int = 4,
        bins: int = 8,
        max_frames: int = 16,
        min_face: float = 0.2,
    ):
        if detector not in ("fixed", "haar"):
            raise DataError(f"face_hog: detector must be 'fixed' or 'haar', got {detector!r}")
        box = tuple(float(v) for v in crop)
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise DataError(f"face_hog: crop must be (x0, y0, x1, y1) with 0 <= x0 < x1 <= 1, got {crop!r}")
        if int(grid) < 1 or int(bins) < 2 or int(size) < 2 * int(grid) or int(max_frames) < 1:
            raise DataError("face_hog: need grid >= 1, bins >= 2, size >= 2 grid, max_frames >= 1")
        self.detector, self.crop = detector, box
        self.size, self.grid, self.bins = int(size), int(grid), int(bins)
        self.max_frames, self.min_face = int(max_frames), float(min_face)
        self._cascade: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cascade": None}

    @property
    def dim(self) -> int:
        return self.grid * self.grid * (self.bins + 1)

    @property
    def length(self) -> int:
        return self.max_frames

    def _fixed_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = self.crop
        return int(round(x0 * w)), int(round(y0 * h)), max(1, int(round(x1 * w))), max(1, int(round(y1 * h)))

    def _detect(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        import cv2

        if self._cascade is None:
            self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            if self._cascade.empty():
                raise DataError("face_hog: OpenCV's Haar face cascade is missing (opencv-python >= 5 dropped it)",
                                hint="install opencv-python-headless<5 or use detector: fixed")
        side = min(gray.shape)
        faces = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3,
                                               minSize=(max(8, int(self.min_face * side)),) * 2)
        if len(faces) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
        return x, y, x + w, y + h

    def extract(self, frames: np.ndarray) -> FeatureRow:
        import cv2

        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4):
            raise TypeError("face_hog takes uint8 RGB frames [T, H, W, 3]")
        frames = frames[: self.max_frames]
        regions = np.zeros((len(frames), self.size, self.size), dtype=np.float32)
        box = None
        for t, frame in enumerate(frames):
            gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            if self.detector == "haar":
                box = self._detect(gray) or box
            x0, y0, x1, y1 = box or self._fixed_box(*gray.shape)
            region = gray[y0:y1, x0:x1]
            if region.size:
                regions[t] = cv2.resize(region, (self.size, self.size), interpolation=cv2.INTER_AREA) / 255.0
        hist, means = orientation_histograms(regions, self.grid, self.bins)
        return pad_rows(np.concatenate([hist, means], axis=1).astype(np.float32), self.max_frames)

    def config(self) -> dict[str, Any]:
        return {"detector": self.detector, "crop": list(self.crop), "size": self.size, "grid": self.grid,
                "bins": self.bins, "max_frames": self.max_frames, "min_face": self.min_face}
