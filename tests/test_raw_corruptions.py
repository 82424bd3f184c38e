"""Contract tests of the raw-level corruption families (audio clips, video frames, transcripts).

Driven by the registry: every family with ``level == "raw"`` is picked up automatically by the
property tests (identity at rho = 1, damage growing as rho falls, shapes/dtypes, determinism from
keys, global RNGs untouched, no warnings). What ``rho = 0`` means and which library call a family
must equal are per-family facts: the tables ``ABSENT`` and ``LIBRARY`` below must name every raw
family (a coverage test fails otherwise).
"""
from __future__ import annotations

import random
import string
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from audiomentations import AddGaussianSNR, ClippingDistortion, LowPassFilter, TimeMask

import corruptions.raw  # noqa: F401  (registers the raw families)
from corruptions._families import FAMILIES
from corruptions.keys import derive_keys, sample_keys
from corruptions.raw import AudioClip, RawCorruption, corrupt_many
from corruptions.raw.text_typos import KEYBOARD_NEIGHBOURS

RAW = [n for n in FAMILIES.names() if FAMILIES.get(n).level == "raw"]
LEVELS = [round(0.1 * i, 1) for i in range(11)]
#: one 0-d int64 key per clip (the key convention of corruptions.base.Corruption)
KEYS = list(derive_keys(1111, sample_keys(["v0$_$0", "v0$_$1", "v1$_$0", "v2$_$3"]), "any", "raw"))
KEY0 = torch.tensor(0)
SENTENCES = [
    "I really loved this movie, the acting was great!",
    "well um it was okay I guess but way too long",
    "The plot made no sense at all and the ending was terrible.",
]


def voice(seconds: float = 0.5, sr: int = 16000) -> AudioClip:
    """A voiced synthetic signal: 10 harmonics of a gliding 140 Hz f0 under a 4 Hz syllable envelope."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(140.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 11))
    return AudioClip((0.3 * (0.55 - 0.45 * np.cos(2 * np.pi * 4 * t)) * wave).astype(np.float32), sr)


def face(frames: int = 4, size: int = 64) -> np.ndarray:
    """Frames [T, S, S, 3] uint8 of a face-like drawing (head, eyes, a mouth that moves)."""
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        img = np.ascontiguousarray(np.broadcast_to(np.linspace(40, 90, size, dtype=np.uint8)[:, None, None],
                                                   (size, size, 3)))
        cx, cy, s = size // 2 + t, size // 2, size
        cv2.ellipse(img, (cx, cy), (s // 4, s // 3), 0, 0, 360, (224, 172, 105), -1)
        for dx in (-s // 9, s // 9):
            cv2.circle(img, (cx + dx, cy - s // 10), s // 20, (40, 40, 40), -1)
        cv2.ellipse(img, (cx, cy + s // 7), (s // 8, s // 24 + t % 2), 0, 0, 360, (150, 50, 60), -1)
        out[t] = img
    return out


INPUTS: dict[str, list[Any]] = {"audio": [voice(), voice(0.4, 8000)], "vision": [face(), face(2, 96)],
                                "text": SENTENCES}


def word_distance(a: str, b: str) -> float:
    """Word-level Levenshtein distance divided by the number of words of ``a``."""
    x, y = a.split(), b.split()
    row = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(y) + 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x[i - 1] != y[j - 1]))
    return row[-1] / max(1, len(x))


def damage(x: Any, y: Any) -> float:
    """Relative L2 distance for audio and frames, fraction of words changed for text."""
    if isinstance(x, str):
        return word_distance(x, y)
    a, b = (x.samples, y.samples) if isinstance(x, AudioClip) else (x, y)
    return float(np.linalg.norm(b.astype(np.float64) - a) / np.linalg.norm(a.astype(np.float64)))


def same(x: Any, y: Any) -> bool:
    if isinstance(x, AudioClip):
        return x.sample_rate == y.sample_rate and np.array_equal(x.samples, y.samples)
    return np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y


@contextmanager
def preserved_globals() -> Iterator[None]:
    """Restore the global random/numpy/torch states after calling a library's randomising path."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def make(name: str) -> RawCorruption:
    return FAMILIES.get(name)()


# --- what rho = 0 means, per family -----------------------------------------------------------------
def _mean_colour(x: np.ndarray, y: np.ndarray) -> None:
    expected = np.rint(x.mean(axis=(1, 2), keepdims=True))
    assert np.abs(y.astype(np.float64) - expected).max() <= 1.0


def _noise_only(fam: Any) -> Callable[[AudioClip, AudioClip], None]:
    def check(x: AudioClip, y: AudioClip) -> None:
        assert abs(np.corrcoef(x.samples, y.samples)[0, 1]) < 0.1
        ratio = np.sqrt(np.mean(y.samples.astype(np.float64) ** 2) / np.mean(x.samples.astype(np.float64) ** 2))
        assert ratio == pytest.approx(10 ** (-fam.min_snr_db / 20), rel=0.05)
    return check


def _all_words(word: str) -> Callable[[str, str], None]:
    def check(x: str, y: str) -> None:
        assert y.split() == [word] * len(x.split())
    return check


def _every_word_typoed(x: str, y: str) -> None:
    pairs = list(zip(x.split(" "), y.split(" "), strict=True))  # typos never touch spaces
    assert all(a != b for a, b in pairs if any(c in string.ascii_letters for c in a))


def _pure_noise_frames(x: np.ndarray, y: np.ndarray) -> None:
    assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.1
    assert abs(y.mean() - 128) < 4 and y.std() > 80


ABSENT: dict[str, Callable[[Any, Any], None]] = {
    "audio_noise": _noise_only(FAMILIES.get("audio_noise")()),
    "audio_lowpass": lambda x, y: np.testing.assert_array_equal(y.samples, 0.0),
    "audio_dropout": lambda x, y: np.testing.assert_array_equal(y.samples, 0.0),
    "audio_clipping": lambda x, y: np.testing.assert_array_equal(
        y.samples, np.float32(np.percentile(x.samples, 50))),
    "frame_blur": _mean_colour,
    "frame_motion_blur": _mean_colour,
    "frame_compression": _mean_colour,
    "frame_downscale": _mean_colour,
    "frame_noise": _pure_noise_frames,
    "frame_occlusion": lambda x, y: np.testing.assert_array_equal(y, 0),
    "text_word_drop": lambda x, y: (y == "") or pytest.fail(f"expected an empty transcript, got {y!r}"),
    "text_substitution": _all_words("[UNK]"),
    "text_typos": _every_word_typoed,
}


# --- the library called directly with the same fixed parameters --------------------------------------
def _lib_audio_noise(fam: Any, x: AudioClip, rho: float, p: dict) -> AudioClip:
    snr = fam.parameter(rho)
    # AddGaussianSNR draws its noise with the global np.random.normal: hand it the key's noise
    def normal(loc: float = 0.0, scale: float = 1.0, size: Any = None) -> np.ndarray:
        return loc + scale * p["noise"]
    with preserved_globals(), mock.patch.object(np.random, "normal", normal):
        return AudioClip(AddGaussianSNR(min_snr_db=snr, max_snr_db=snr, p=1.0)(x.samples, x.sample_rate),
                         x.sample_rate)


def _lib_audio_lowpass(fam: Any, x: AudioClip, rho: float, p: dict) -> AudioClip:
    c = fam.parameter(rho)
    t = LowPassFilter(min_cutoff_freq=c, max_cutoff_freq=c, min_rolloff=fam.rolloff, max_rolloff=fam.rolloff,
                      zero_phase=True, p=1.0)
    with preserved_globals():
        return AudioClip(t(x.samples, x.sample_rate), x.sample_rate)


def _lib_audio_dropout(fam: Any, x: AudioClip, rho: float, p: dict) -> AudioClip:
    chunk, n = fam.chunk_length(x.sample_rate), len(x.samples)
    y, mask = x.samples, TimeMask(min_band_part=0.0, max_band_part=1.0, fade_duration=0.0, p=1.0)
    for c in p["order"][: int(np.floor((1 - rho) * len(p["order"]) + 0.5))]:  # one chunk at a time
        mask.parameters = {"should_apply": True, "t": min(chunk, n - c * chunk), "t0": int(c * chunk)}
        mask.freeze_parameters()
        y = mask(y, x.sample_rate)
    return AudioClip(y, x.sample_rate)


def _lib_audio_clipping(fam: Any, x: AudioClip, rho: float, p: dict) -> AudioClip:
    pt = int(fam.parameter(rho))
    with preserved_globals():
        y = ClippingDistortion(min_percentile_threshold=pt, max_percentile_threshold=pt, p=1.0)(
            x.samples, x.sample_rate)
    return AudioClip(y, x.sample_rate)


def _lib_frame_noise(fam: Any, x: np.ndarray, rho: float, p: dict) -> np.ndarray:
    # GaussNoise's own path draws with cv2.randn (OpenCV's global RNG); apply is its fixed-noise path
    t, s = A.GaussNoise(p=1.0), np.float32(fam.parameter(rho) * 255)
    return np.stack([t.apply(f, noise_map=p["noise"][i] * s) for i, f in enumerate(x)])


def _lib_frame_occlusion(fam: Any, x: np.ndarray, rho: float, p: dict) -> np.ndarray:
    g, (h, w) = fam.grid, x.shape[1:3]
    cells = p["order"][: int(np.floor((1 - rho) * g * g + 0.5))]
    holes = np.array([[c % g * w // g, c // g * h // g, (c % g + 1) * w // g, (c // g + 1) * h // g] for c in cells])
    return A.CoarseDropout(fill=fam.fill, p=1.0).apply_to_images(x, holes=holes.reshape(-1, 4), seed=0)


def _lib_images(build: Callable[[Any, float, dict], A.BasicTransform]) -> Callable[..., np.ndarray]:
    def call(fam: Any, x: np.ndarray, rho: float, p: dict) -> np.ndarray:
        return build(fam, rho, p)(images=x)["images"]
    return call


LIBRARY: dict[str, Callable[..., Any] | None] = {
    "audio_noise": _lib_audio_noise,
    "audio_lowpass": _lib_audio_lowpass,
    "audio_dropout": _lib_audio_dropout,
    "audio_clipping": _lib_audio_clipping,
    "frame_blur": _lib_images(lambda f, r, p: A.GaussianBlur(
        sigma_limit=(f.parameter(r),) * 2, blur_limit=0, p=1.0)),
    "frame_motion_blur": _lib_images(lambda f, r, p: A.MotionBlur(
        blur_limit=(int(f.parameter(r)),) * 2, angle_range=(p["angle"],) * 2, direction_range=(0.0, 0.0),
        allow_shifted=False, p=1.0)),
    "frame_compression": _lib_images(lambda f, r, p: A.ImageCompression(
        compression_type="jpeg", quality_range=(int(f.parameter(r)),) * 2, p=1.0)),
    "frame_downscale": _lib_images(lambda f, r, p: A.Downscale(
        scale_range=(f.parameter(r),) * 2, p=1.0,
        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR})),
    "frame_noise": _lib_frame_noise,
    "frame_occlusion": _lib_frame_occlusion,
    "text_word_drop": None,  # no library: plain Python
    "text_substitution": None,
    "text_typos": None,
}


def test_every_raw_family_is_described() -> None:
    assert len(RAW) >= 12
    assert set(ABSENT) == set(RAW) and set(LIBRARY) == set(RAW)


@pytest.mark.parametrize("name", RAW)
def test_metadata(name: str) -> None:
    cls = FAMILIES.get(name)
    fam = cls()
    assert fam.level == "raw" and len(fam.modalities) == 1 and fam.modality in ("audio", "vision", "text")
    prefix = {"audio": "audio_", "vision": "frame_", "text": "text_"}[fam.modality]
    assert name.startswith(prefix) and cls.name == name
    assert isinstance(fam.version, str) and fam.version
    assert fam.parameter_name and fam.mapping and fam.absent and cls.__doc__ and 0 <= fam.monotone_tolerance < 0.2
    assert cls(**fam.config()).config() == fam.config() and repr(fam).startswith(cls.__name__)
    assert all(isinstance(fam.parameter(r), float) for r in LEVELS)
    assert all(np.isfinite(fam.parameter(r)) for r in LEVELS[1:-1])


@pytest.mark.parametrize("name", RAW)
def test_identity_at_rho_one(name: str) -> None:
    fam = make(name)
    for x in INPUTS[fam.modality]:
        for key in KEYS:
            y = fam(x, 1.0, key)
            assert same(x, y)
            if not isinstance(x, str):
                assert y is not x


@pytest.mark.parametrize("name", RAW)
def test_absent_at_rho_zero(name: str) -> None:
    fam = make(name)
    for x in INPUTS[fam.modality]:
        for key in KEYS:
            ABSENT[name](x, fam(x, 0.0, key))


@pytest.mark.parametrize("name", RAW)
def test_damage_grows_as_rho_falls(name: str) -> None:
    fam = make(name)
    tol = fam.monotone_tolerance
    for x in INPUTS[fam.modality]:
        for key in KEYS if fam.sample(KEYS[0], x) else KEYS[:1]:  # one key if nothing is drawn
            params = fam.sample(key, x)
            d = [damage(x, fam.apply(x, r, params)) for r in LEVELS]
            assert d[-1] == 0.0
            for lo, hi in zip(d[:-1], d[1:]):  # d at rho_i versus d at rho_{i+1}
                assert lo >= hi * (1 - tol) - 1e-12, (name, np.round(d, 4))
            assert d[1] > d[9], (name, np.round(d, 4))
            assert d[0] >= max(d) * (1 - tol)


@pytest.mark.parametrize("name", RAW)
def test_types_shapes_and_finite(name: str) -> None:
    fam = make(name)
    for x in INPUTS[fam.modality]:
        for r in (0.0, 0.03, 0.37, 0.5, 0.93, 0.999, 1.0):
            y = fam(x, r, KEYS[0])
            assert type(y) is type(x)
            if isinstance(x, AudioClip):
                assert y.samples.dtype == np.float32 and y.samples.shape == x.samples.shape
                assert y.sample_rate == x.sample_rate and np.isfinite(y.samples).all()
            elif isinstance(x, np.ndarray):
                assert y.dtype == np.uint8 and y.shape == x.shape and y.flags.c_contiguous


EDGE_INPUTS: dict[str, list[Any]] = {
    "audio": [AudioClip(voice().samples[:200], 16000), AudioClip(voice(0.25, 8000).samples, 8000)],
    "vision": [face(1, 64)[:, 20:25, 10:17].copy(), face(2, 33)],
    "text": ["", "   ", "42 !!", "a", "Zz"],
}


@pytest.mark.parametrize("name", RAW)
def test_edge_inputs(name: str) -> None:
    """Tiny clips, odd frame sizes, empty or letter-free transcripts: same types, no crash."""
    fam = make(name)
    for x in EDGE_INPUTS[fam.modality]:
        assert same(fam(x, 1.0, KEYS[0]), x)
        for r in (0.0, 0.3, 0.8):
            y = fam(x, r, KEYS[0])
            assert type(y) is type(x) and same(y, fam(x, r, KEYS[0]))
            if isinstance(x, AudioClip):
                assert y.samples.shape == x.samples.shape and np.isfinite(y.samples).all()
            elif isinstance(x, np.ndarray):
                assert y.shape == x.shape and y.dtype == np.uint8


@pytest.mark.parametrize("name", RAW)
def test_deterministic_from_keys_only(name: str) -> None:
    x = INPUTS[make(name).modality][0]
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    first = [make(name)(x, r, k) for k in KEYS[:2] for r in (0.2, 0.6)]
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    cv2.setRNGSeed(2)
    second = [make(name)(x, r, k) for k in KEYS[:2] for r in (0.2, 0.6)]
    assert all(same(a, b) for a, b in zip(first, second))
    fam = make(name)
    if fam.sample(KEYS[0], x):  # a family with randomness: another key, another draw
        assert not same(fam(x, 0.5, KEYS[0]), fam(x, 0.5, KEYS[1]))
    else:
        assert same(fam(x, 0.5, KEYS[0]), fam(x, 0.5, KEYS[1]))


def _cv2_draw() -> np.ndarray:
    out = np.zeros(8, np.float64)
    cv2.randu(out, 0.0, 1.0)
    return out


@pytest.mark.parametrize("name", RAW)
def test_global_rngs_untouched_and_no_warnings(name: str) -> None:
    fam = make(name)
    x = INPUTS[fam.modality][0]
    py, (npname, npkeys, *nprest), th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cv2.setRNGSeed(77)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = fam.sample(KEYS[0], x)
        ys = [fam.apply(x, r, params) for r in LEVELS] + [fam(x, 0.5, KEYS[1])]
    assert not caught, [str(w.message) for w in caught]
    after = np.random.get_state()
    assert random.getstate() == py and torch.equal(torch.get_rng_state(), th)
    assert after[0] == npname and np.array_equal(after[1], npkeys) and tuple(after[2:]) == tuple(nprest)
    probe = _cv2_draw()
    cv2.setRNGSeed(77)
    assert np.array_equal(probe, _cv2_draw()), "OpenCV's global RNG was used"
    assert len(ys) == len(LEVELS) + 1


@pytest.mark.parametrize("name", RAW)
def test_apply_is_pure(name: str) -> None:
    fam = make(name)
    x = INPUTS[fam.modality][0]
    before = AudioClip(x.samples.copy(), x.sample_rate) if isinstance(x, AudioClip) else (
        x.copy() if isinstance(x, np.ndarray) else x)
    params = fam.sample(KEYS[2], x)
    a, b = fam.apply(x, 0.4, params), fam.apply(x, 0.4, params)
    assert same(a, b) and same(x, before)
    assert same(fam.apply(x, 0.4, fam.sample(KEYS[2], x)), a)


@pytest.mark.parametrize("name", [n for n in RAW if LIBRARY.get(n) is not None])
def test_equals_library_with_fixed_parameters(name: str) -> None:
    fam = make(name)
    for x in INPUTS[fam.modality]:
        for key in KEYS[:2]:
            params = fam.sample(key, x)
            for r in (0.05, 0.3, 0.5, 0.8, 0.9):
                assert same(fam.apply(x, r, params), LIBRARY[name](fam, x, r, params)), (name, r)


def test_wrapped_library_paths_use_global_rngs() -> None:
    """Why the families never call these paths: they read and advance global RNGs."""
    x = voice()
    with preserved_globals():
        state = np.random.get_state()[1].copy()
        AddGaussianSNR(p=1.0)(x.samples, x.sample_rate)
        assert not np.array_equal(state, np.random.get_state()[1])
    cv2.setRNGSeed(5)
    first = _cv2_draw()
    cv2.setRNGSeed(5)
    A.GaussNoise(p=1.0)(image=face()[0])
    assert not np.array_equal(first, _cv2_draw())


def test_corrupt_many_uses_one_key_per_clip() -> None:
    fam, items = make("text_word_drop"), SENTENCES
    keys = derive_keys(1111, sample_keys(["a", "b", "c"]), "text", fam.name)
    out = corrupt_many(fam, items, 0.5, keys)
    assert out == [fam(s, 0.5, k) for s, k in zip(items, keys)]
    assert corrupt_many(fam, items, [1.0, 0.0, 1.0], keys) == [items[0], "", items[2]]
    with pytest.raises(ValueError):
        corrupt_many(fam, items, 0.5, keys[:2])


def test_input_validation() -> None:
    fam = make("audio_noise")
    with pytest.raises(TypeError):
        AudioClip(np.zeros(10, np.float64), 16000)
    with pytest.raises(ValueError):
        AudioClip(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError):
        fam(voice(), 1.5, KEY0)
    with pytest.raises(ValueError):
        fam(voice(), 0.5, torch.tensor(-1))
    with pytest.raises(TypeError):
        make("frame_blur")(face().astype(np.float32), 0.5, KEY0)
    with pytest.raises(TypeError):
        make("text_typos")(["not", "a", "str"], 0.5, KEY0)
    with pytest.raises(ValueError):
        FAMILIES.get("frame_motion_blur")(max_length=4)


def test_keys_follow_the_shared_convention() -> None:
    """A clip's key is a 0-d int64 tensor (corruptions.base.Corruption), never a Python int."""
    fam, x = make("text_word_drop"), SENTENCES[0]
    for bad in (0, np.int64(0), torch.tensor([0]), torch.tensor(0, dtype=torch.int32)):
        with pytest.raises(TypeError):
            fam.sample(bad, x)
    with pytest.raises(TypeError):
        corrupt_many(fam, [x], 0.5, [0])
    assert same(fam.corrupt(x, 0.4, KEYS[0]), fam.apply(x, 0.4, fam.sample(KEYS[0], x)))


# --- the meaning of each family ---------------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9])
def test_audio_noise_reaches_its_snr(rho: float) -> None:
    fam, x = make("audio_noise"), voice(2.0)
    y = fam(x, rho, KEYS[0])
    noise = (y.samples - x.samples).astype(np.float64)
    snr = 10 * np.log10(np.mean(x.samples.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10 * np.log10(rho / (1 - rho)), abs=0.2)


def test_audio_lowpass_removes_energy_above_cutoff() -> None:
    fam, v = make("audio_lowpass"), voice(1.0)
    hiss = np.random.default_rng(0).standard_normal(len(v.samples)).astype(np.float32)
    x = AudioClip(v.samples + np.float32(0.01) * hiss, v.sample_rate)  # broadband input
    y = fam(x, 0.3, KEY0)
    freqs = np.fft.rfftfreq(len(x.samples), 1 / x.sample_rate)
    above = freqs > 2 * fam.parameter(0.3)
    power = np.abs(np.fft.rfft(y.samples)) ** 2, np.abs(np.fft.rfft(x.samples)) ** 2
    assert power[0][above].sum() < 1e-3 * power[1][above].sum()
    assert fam.parameter(0.5) == pytest.approx(1768.0, rel=0.01)


@pytest.mark.parametrize("n", [16000, 16111])
def test_audio_dropout_silences_nested_chunks(n: int) -> None:
    fam, x = make("audio_dropout"), AudioClip(np.ones(n, np.float32), 16000)
    params = fam.sample(KEYS[0], x)
    silent = [fam.apply(x, r, params).samples == 0 for r in LEVELS]
    for r, s in zip(LEVELS, silent):
        assert s.mean() == pytest.approx(1 - r, abs=0.021)
    assert all((lo >= hi).all() for lo, hi in zip(silent[:-1], silent[1:]))


def test_audio_clipping_clips_the_stated_percentage() -> None:
    fam, x = make("audio_clipping"), voice(1.0)
    y = fam(x, 0.6, KEY0)
    assert fam.parameter(0.6) == 40.0
    assert np.mean(y.samples != x.samples) == pytest.approx(0.40, abs=0.01)


def test_frame_occlusion_is_static_and_nested() -> None:
    fam, x = make("frame_occlusion"), np.full((3, 40, 56, 3), 200, np.uint8)
    params = fam.sample(KEYS[1], x)
    masks = [fam.apply(x, r, params)[..., 0] == 0 for r in LEVELS]
    for r, m in zip(LEVELS, masks):
        assert (m == m[:1]).all()  # the same cells in every frame
        assert m.mean() == pytest.approx(round((1 - r) * 64) / 64, abs=0.02)
    assert all((lo >= hi).all() for lo, hi in zip(masks[:-1], masks[1:]))


def test_keyed_order_is_a_uniform_permutation_of_the_key_alone() -> None:
    """frame_occlusion's ranking: a permutation, the same for the same key, different across keys,
    and every cell equally likely first (chi-square over 6,400 keys, 63 degrees of freedom)."""
    from corruptions.raw.base import keyed_order

    keys = [torch.tensor(k, dtype=torch.int64) for k in range(6400)]
    orders = np.stack([keyed_order(k, 64) for k in keys])
    assert all(sorted(o.tolist()) == list(range(64)) for o in orders[:50])
    np.testing.assert_array_equal(keyed_order(keys[7], 64), orders[7])
    assert len({o.tobytes() for o in orders}) == len(keys)
    counts = np.bincount(orders[:, 0], minlength=64)
    chi2 = float(((counts - 100.0) ** 2 / 100.0).sum())
    assert chi2 < 110  # p < 1e-4 under uniformity for 63 degrees of freedom
    with pytest.raises(ValueError, match="non-negative"):
        keyed_order(torch.tensor(-1, dtype=torch.int64), 4)


def test_frame_noise_is_independent_per_frame() -> None:
    fam, x = make("frame_noise"), np.full((2, 32, 32, 3), 128, np.uint8)
    y = fam(x, 0.6, KEYS[0]).astype(np.float64) - 128
    assert y.std() == pytest.approx(0.2 * 255, rel=0.05)
    assert abs(np.corrcoef(y[0].ravel(), y[1].ravel())[0, 1]) < 0.1


def test_text_word_drop_keeps_nested_subsequences() -> None:
    fam, x = make("text_word_drop"), " ".join(f"w{i}" for i in range(200))
    params = fam.sample(KEYS[0], x)
    kept = [set(fam.apply(x, r, params).split()) for r in LEVELS]
    assert all(lo <= hi for lo, hi in zip(kept[:-1], kept[1:]))
    assert len(kept[5]) == pytest.approx(100, abs=20)


def test_text_substitution_with_vocabulary() -> None:
    fam = FAMILIES.get("text_substitution")(vocabulary=["alpha", "beta"])
    y = fam(SENTENCES[0], 0.0, KEYS[0]).split()
    assert len(y) == len(SENTENCES[0].split()) and set(y) <= {"alpha", "beta"}
    with pytest.raises(ValueError):
        FAMILIES.get("text_substitution")(filler="two words")


def test_text_typos_edit_letters_with_keyboard_neighbours() -> None:
    fam = FAMILIES.get("text_typos")(weights=(1.0, 0.0, 0.0))  # substitutions only
    x = "Hello, world 42!"
    y = fam(x, 0.0, KEYS[0])
    assert len(y) == len(x)
    for a, b in zip(x, y):
        if a.isalpha():
            assert b.lower() in KEYBOARD_NEIGHBOURS[a.lower()] and a.isupper() == b.isupper()
        else:
            assert a == b
    assert KEYBOARD_NEIGHBOURS["g"] == "bfhtvy"
    rate = np.mean([a != b for a, b in zip(x * 20, fam(x * 20, 0.7, KEYS[1]))])
    assert rate == pytest.approx(0.3 * 10 / 16, abs=0.1)
