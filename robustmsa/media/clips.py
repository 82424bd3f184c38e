"""Raw clips: the on-disk format of a raw-media dataset, its validation, and lazy per-clip access.

A raw clip is one utterance: an audio file, a video, a transcript and a sentiment label, in one of
the splits ``train``, ``valid``, ``test``. Two layouts are accepted (:func:`load_clip_records`):

Manifest CSV (``manifest.csv`` in a folder, or any ``.csv`` path)
    One row per clip with the columns ``id``, ``split``, ``label``, ``audio``, ``video`` and either
    ``transcript`` (the text itself) or ``transcript_file`` (a UTF-8 text file); optional ``fps``
    (frames per second of a frame folder). Paths are relative to the manifest's folder.

Folder
    ``<root>/<split>/<clip id>/`` holding ``audio.wav``, ``video.mp4`` (or ``frames/`` with PNG/JPEG
    images named in time order), ``transcript.txt`` and ``label.txt`` (one number).

Audio is any file libsndfile reads (wav, flac, ogg), mixed to mono and resampled to
``sample_rate`` (polyphase, :func:`scipy.signal.resample_poly`). Video is an mp4 (or anything
OpenCV's FFmpeg backend decodes) or a folder of frames; it is subsampled to ``fps`` frames per
second and resized so that its shorter side is ``frame_size`` pixels: raw corruptions act on the
frames at that working resolution (their pixel parameters are in those pixels).

Validation (:func:`validate_records`, run when a dataset is loaded) reads every file's header and
fails with one :class:`~robustmsa.errors.DataError` listing each problem with its clip id and path:
missing files, audio or video that cannot be decoded, an empty transcript file, a label that is
not a finite number, duplicate ids, unknown or empty splits, and audio and video durations that
differ by more than ``max(tolerance_s, tolerance_frac x duration)``.

:class:`ClipCorpus` is what the corruption and extraction code reads: one split, clip ``i`` by
index (``audio(i)``, ``frames(i)``, ``transcript(i)``), and a content ``stamp(i)`` that keys the
feature cache. Two implementations: :class:`FileCorpus` (the files above, decoded on demand) and
:class:`ArrayCorpus` (memory-mapped ``.npy`` arrays, used by the generated benchmark). Both pickle
as a description (paths), so worker processes open the media themselves.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from corruptions.raw import AudioClip

from ..data.dataset import SPLITS
from ..errors import DataError

__all__ = [
    "ClipRecord",
    "ClipCorpus",
    "FileCorpus",
    "ArrayCorpus",
    "MediaOptions",
    "load_clip_records",
    "validate_records",
    "read_audio",
    "read_video",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_MAX_LISTED = 12


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a manifest: paths are absolute; ``transcript`` is the text (already read)."""

    id: str
    split: str
    label: float
    audio: Path
    video: Path
    transcript: str
    fps: float | None = None


@dataclass(frozen=True)
class MediaOptions:
    """How media are decoded: target sample rate, video frame rate and working frame size."""

    sample_rate: int = 16000
    fps: float = 6.0
    frame_size: int = 64
    max_seconds: float = 20.0
    default_frame_folder_fps: float = 25.0
    tolerance_s: float = 0.5
    tolerance_frac: float = 0.1

    def __post_init__(self) -> None:
        for key in ("sample_rate", "fps", "frame_size", "max_seconds", "default_frame_folder_fps"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise DataError(f"raw media option {key!r} must be a positive number, got {v!r}")
        if self.tolerance_s < 0 or self.tolerance_frac < 0:
            raise DataError("raw media options tolerance_s and tolerance_frac must be >= 0")


# ----------------------------------------------------------------------------- records


def _fail(problems: list[str], what: str, hint: str) -> None:
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise DataError(f"{what}: {len(problems)} problem(s): {shown}{more}", hint=hint)


def _parse_label(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _manifest_records(path: Path) -> list[ClipRecord]:
    root = path.parent
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            columns = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"raw manifest {path} cannot be read: {e}") from None
    if not rows:
        raise DataError(f"raw manifest {path} has no rows", hint="one row per clip: id,split,label,audio,video,transcript")
    need = {"id", "split", "label", "audio", "video"}
    missing_cols = sorted(need - columns)
    if missing_cols or not ({"transcript", "transcript_file"} & columns):
        if not ({"transcript", "transcript_file"} & columns):
            missing_cols.append("transcript (or transcript_file)")
        raise DataError(f"raw manifest {path} lacks column(s) {', '.join(missing_cols)}; it has {', '.join(sorted(columns))}",
                        hint="columns: id, split, label, audio, video, transcript | transcript_file [, fps]")
    out, problems = [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        cid = (row.get("id") or "").strip()
        where = f"{path.name} line {n} (clip {cid!r})"
        label = _parse_label(row.get("label", ""))
        if not cid:
            problems.append(f"{where}: empty id")
            continue
        if label is None:
            problems.append(f"{where}: label {row.get('label')!r} is not a finite number")
            continue
        text = row.get("transcript")
        tfile = (row.get("transcript_file") or "").strip()
        if tfile:
            tpath = root / tfile
            if not tpath.is_file():
                problems.append(f"{where}: transcript file {tpath} does not exist")
                continue
            text = tpath.read_text(encoding="utf-8", errors="replace")
        if text is None:
            problems.append(f"{where}: neither transcript nor transcript_file is given")
            continue
        fps = _parse_label(row.get("fps") or "") if (row.get("fps") or "").strip() else None
        out.append(ClipRecord(cid, (row.get("split") or "").strip(), label, root / row["audio"].strip(),
                              root / row["video"].strip(), " ".join(text.split()), fps))
    _fail(problems, f"raw manifest {path}", "fix the listed rows")
    return out


def _folder_records(root: Path) -> list[ClipRecord]:
    out, problems = [], []
    for split in SPLITS:
        sdir = root / split
        if not sdir.is_dir():
            continue
        for clip in sorted(p for p in sdir.iterdir() if p.is_dir()):
            where = f"{split}/{clip.name}"
            label_file, text_file = clip / "label.txt", clip / "transcript.txt"
            video = clip / "video.mp4" if (clip / "video.mp4").exists() else clip / "frames"
            if not label_file.is_file():
                problems.append(f"{where}: missing {label_file}")
                continue
            label = _parse_label(label_file.read_text(encoding="utf-8", errors="replace").strip())
            if label is None:
                problems.append(f"{where}: {label_file} does not hold a finite number")
                continue
            if not text_file.is_file():
                problems.append(f"{where}: missing {text_file}")
                continue
            text = " ".join(text_file.read_text(encoding="utf-8", errors="replace").split())
            out.append(ClipRecord(clip.name, split, label, clip / "audio.wav", video, text))
    _fail(problems, f"raw clip folder {root}", "each clip folder needs audio.wav, video.mp4 or frames/, "
          "transcript.txt and label.txt")
    if not out:
        raise DataError(f"raw clip folder {root} holds no clips",
                        hint="expected <root>/train|valid|test/<clip>/ folders, or a manifest.csv")
    return out


def load_clip_records(path: str | Path) -> list[ClipRecord]:
    """The clips of a manifest CSV, a folder with ``manifest.csv``, or a split/clip folder tree."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"raw dataset path {p} does not exist",
                        hint="params.path: a manifest .csv or a folder of train/valid/test clip folders")
    if p.is_file():
        return _manifest_records(p)
    if (p / "manifest.csv").is_file():
        return _manifest_records(p / "manifest.csv")
    return _folder_records(p)


# ----------------------------------------------------------------------------- media readers


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def audio_info(path: Path) -> tuple[float, int]:
    """(duration in seconds, sample rate) from the file header; DataError if unreadable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile raises its own error types for every kind of bad file
        raise DataError(f"audio {path} cannot be read: {e}".replace("\n", " ")) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataError(f"audio {path} is empty")
    return info.frames / info.samplerate, int(info.samplerate)


def read_audio(path: Path, sample_rate: int, max_seconds: float) -> AudioClip:
    """Mono float32 samples at ``sample_rate`` (first ``max_seconds`` only)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise DataError(f"audio {path} cannot be read: {e}".replace("\n", " ")) from None
    x = data.mean(axis=1)[: int(max_seconds * sr)]
    if x.size == 0:
        raise DataError(f"audio {path} is empty")
    if sr != sample_rate:
        ratio = Fraction(sample_rate, int(sr)).limit_denominator(1000)
        x = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator)
    x = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return AudioClip(np.ascontiguousarray(x), int(sample_rate))


def video_info(path: Path, folder_fps: float | None, default_fps: float) -> tuple[float, float, int]:
    """(duration s, fps, frame count) of an mp4 or a frame folder; DataError if unreadable."""
    import cv2

    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise DataError(f"video frame folder {path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        if cv2.imread(str(files[0]), cv2.IMREAD_COLOR) is None:
            raise DataError(f"video frame {files[0]} cannot be decoded")
        fps = float(folder_fps or default_fps)
        return len(files) / fps, fps, len(files)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"video {path} cannot be opened (not a video OpenCV can decode)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, _ = cap.read()
    finally:
        cap.release()
    if not ok or count <= 0 or not math.isfinite(fps) or fps <= 0:
        raise DataError(f"video {path} has no decodable frames (fps {fps:g}, {count} frames)")
    return count / fps, fps, count


def _resize_short_side(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = size / min(h, w)
    if scale == 1.0:
        return frame
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def read_video(path: Path, options: MediaOptions, folder_fps: float | None = None) -> np.ndarray:
    """uint8 RGB frames [T, H, W, 3]: subsampled to ``options.fps``, shorter side ``frame_size``."""
    import cv2

    frames: list[np.ndarray] = []
    if path.is_dir():
        src_fps = float(folder_fps or options.default_frame_folder_fps)
        files = _frame_files(path)
        wanted = _subsample(len(files), src_fps, options)
        for i in wanted:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"video frame {files[i]} cannot be decoded")
            frames.append(img)
    else:
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise DataError(f"video {path} cannot be opened")
            src_fps = float(cap.get(cv2.CAP_PROP_FPS) or options.fps)
            decoded = []
            while len(decoded) < int(options.max_seconds * src_fps) + 1:
                ok, img = cap.read()
                if not ok:
                    break
                decoded.append(img)
        finally:
            cap.release()
        frames = [decoded[i] for i in _subsample(len(decoded), src_fps, options)]
    if not frames:
        raise DataError(f"video {path} has no decodable frames")
    out = [_resize_short_side(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), options.frame_size) for f in frames]
    if len({f.shape for f in out}) != 1:
        raise DataError(f"video {path}: frames of different sizes")
    return np.ascontiguousarray(np.stack(out), dtype=np.uint8)


def _subsample(n: int, src_fps: float, options: MediaOptions) -> list[int]:
    """Indices of the frames nearest to the times k / fps (k = 0, 1, ...) within the clip."""
    duration = min(n / src_fps, options.max_seconds)
    count = max(1, int(math.floor(duration * options.fps + 1e-9)))
    return sorted({min(n - 1, int(round(k * src_fps / options.fps))) for k in range(count)})


def validate_records(records: Sequence[ClipRecord], options: MediaOptions, source: str) -> dict[str, Any]:
    """Check every clip (files, decodability, durations, ids, splits); return per-split facts.

    Returns ``{"max_audio_s": ..., "max_frames": ..., "splits": {split: n}}``; raises one
    :class:`DataError` listing every problem.
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    max_audio, max_frames = 0.0, 0
    counts = dict.fromkeys(SPLITS, 0)
    for r in records:
        where = f"clip {r.id!r}"
        if r.split not in SPLITS:
            problems.append(f"{where}: split {r.split!r} is not one of {', '.join(SPLITS)}")
            continue
        if r.id in seen:
            problems.append(f"{where}: duplicate id (also in {seen[r.id]})")
            continue
        seen[r.id] = r.split
        counts[r.split] += 1
        if not r.audio.is_file():
            problems.append(f"{where}: audio file {r.audio} does not exist")
            continue
        if not r.video.exists():
            problems.append(f"{where}: video {r.video} does not exist (an mp4 or a folder of frames)")
            continue
        if not r.transcript.strip():
            problems.append(f"{where}: empty transcript")
            continue
        try:
            a_dur, _ = audio_info(r.audio)
            v_dur, fps, _ = video_info(r.video, r.fps, options.default_frame_folder_fps)
        except DataError as e:
            problems.append(f"{where}: {e}")
            continue
        tol = max(options.tolerance_s, options.tolerance_frac * max(a_dur, v_dur))
        if abs(a_dur - v_dur) > tol:
            problems.append(f"{where}: audio lasts {a_dur:.2f} s but video {v_dur:.2f} s "
                            f"(mismatch {abs(a_dur - v_dur):.2f} s > tolerance {tol:.2f} s)")
            continue
        max_audio = max(max_audio, min(a_dur, options.max_seconds))
        max_frames = max(max_frames, len(_subsample(max(1, round(v_dur * fps)), fps, options)))
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty and not problems:
        problems.append(f"split(s) {', '.join(empty)} hold no clips (train, valid and test are all required)")
    _fail(problems, f"raw dataset {source}", "fix or remove the listed clips")
    return {"max_audio_s": max_audio, "max_frames": max_frames, "splits": counts}


# ----------------------------------------------------------------------------- corpora


class ClipCorpus(ABC):
    """The clips of one split, read by index. Subclasses pickle as a description (paths)."""

    split: str
    ids: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def audio(self, i: int) -> AudioClip: ...

    @abstractmethod
    def frames(self, i: int) -> np.ndarray: ...

    @abstractmethod
    def transcript(self, i: int) -> str: ...

    @abstractmethod
    def stamp(self, i: int) -> str:
        """A string that changes whenever clip ``i``'s media change (keys the feature cache)."""

    def load(self, i: int, modality: str) -> Any:
        """Clip ``i`` of ``modality`` in the form the raw corruption families take."""
        if modality == "audio":
            return self.audio(i)
        if modality == "vision":
            return self.frames(i)
        if modality == "text":
            return self.transcript(i)
        raise KeyError(f"unknown modality {modality!r}")

    @abstractmethod
    def location(self) -> str:
        """Where the clips live (groups cache shards; content identity is in the stamps)."""

    def fingerprint(self) -> str:
        """Hash of every clip's id and stamp (the corpus part of the dataset's identity)."""
        h = hashlib.sha256(self.split.encode())
        for i, cid in enumerate(self.ids):
            h.update(f"\x1f{cid}\x1e{self.stamp(i)}".encode())
        return h.hexdigest()[:16]


class FileCorpus(ClipCorpus):
    """Clips decoded from their files on demand (see the module docstring for the layouts)."""

    def __init__(self, split: str, records: Sequence[ClipRecord], options: MediaOptions):
        self.split, self.options = split, options
        self.records = [r for r in records if r.split == split]
        self.ids = [r.id for r in self.records]
        self.labels = np.asarray([r.label for r in self.records], dtype=np.float32)
        self._stamps: list[str] | None = None

    def location(self) -> str:
        return str(self.records[0].audio.parent.parent.resolve()) if self.records else ""

    def audio(self, i: int) -> AudioClip:
        return read_audio(self.records[i].audio, self.options.sample_rate, self.options.max_seconds)

    def frames(self, i: int) -> np.ndarray:
        r = self.records[i]
        return read_video(r.video, self.options, r.fps)

    def transcript(self, i: int) -> str:
        return self.records[i].transcript

    def stamp(self, i: int) -> str:
        if self._stamps is None:
            self._stamps = [self._stamp(r) for r in self.records]
        return self._stamps[i]

    def _stamp(self, r: ClipRecord) -> str:
        parts: list[str] = [json.dumps([r.transcript, r.fps, self.options.sample_rate, self.options.fps,
                                        self.options.frame_size, self.options.max_seconds])]
        paths = [r.audio, *(_frame_files(r.video) if r.video.is_dir() else [r.video])]
        for p in paths:
            st = p.stat()
            parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


class ArrayCorpus(ClipCorpus):
    """Clips stored as arrays in ``<root>/<split>/``: ``audio.npy`` float32 [N, S],
    ``frames.npy`` uint8 [N, T, H, W, 3] (memory-mapped) and ``meta.json`` (ids, labels,
    transcripts, per-clip stamps, sample rate)."""

    def __init__(self, root: str | Path, split: str):
        self.root, self.split = Path(root), split
        meta = json.loads((self.root / split / "meta.json").read_text(encoding="utf-8"))
        self.ids = list(meta["ids"])
        self.labels = np.asarray(meta["labels"], dtype=np.float32)
        self.transcripts = list(meta["transcripts"])
        self.stamps = list(meta["stamps"])
        self.sample_rate = int(meta["sample_rate"])
        self._audio: np.ndarray | None = None
        self._frames: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_audio": None, "_frames": None}

    def location(self) -> str:
        return self.root.name

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._audio is None or self._frames is None:
            self._audio = np.load(self.root / self.split / "audio.npy", mmap_mode="r")
            self._frames = np.load(self.root / self.split / "frames.npy", mmap_mode="r")
        return self._audio, self._frames

    def audio(self, i: int) -> AudioClip:
        return AudioClip(np.array(self._arrays()[0][i], dtype=np.float32), self.sample_rate)

    def frames(self, i: int) -> np.ndarray:
        return np.array(self._arrays()[1][i], dtype=np.uint8)

    def transcript(self, i: int) -> str:
        return self.transcripts[i]

    def stamp(self, i: int) -> str:
        return self.stamps[i]
