"""Tests of the MMSA pickle loader (schema, non-finite policy, hostile files) and exporter."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustmsa.data import mmsa
from robustmsa.data.dataset import SPLITS, MSADataset, Split
from robustmsa.data.mmsa import SafeUnpickler, load_mmsa_pickle, safe_load_pickle, save_mmsa_pickle
from robustmsa.errors import DataError

SIZES = {"train": 5, "valid": 3, "test": 4}
L, DT = 6, 8


def make_split(
    split: str, n: int, rng: np.random.Generator, *, da: int = 5, dv: int = 20, ta: int = 6, tv: int = 6,
    lengths: bool = False, sims: bool = False,
) -> dict[str, Any]:
    """One split of a tiny MMSA-like file (float64 features, like the real pickles)."""
    ids = rng.integers(1000, 2000, (n, L)).astype(np.float64)
    ids[:, 0] = 101
    valid = rng.integers(2, L + 1, n)
    mask = (np.arange(L)[None, :] < valid[:, None]).astype(np.float64)
    ids *= mask
    scale = 1.0 if sims else 3.0
    raw: dict[str, Any] = {
        "text": rng.normal(size=(n, L, DT)),
        "text_bert": np.stack([ids, mask, np.zeros_like(ids)], axis=1),
        "audio": rng.normal(size=(n, ta, da)),
        "vision": rng.normal(size=(n, tv, dv)),
        "regression_labels": rng.uniform(-scale, scale, n).round(1),
        "classification_labels": np.zeros(n),
        "id": np.array([f"{split}vid{i}$_${i % 3}" for i in range(n)], dtype=object),
        "raw_text": np.array([f"sentence {i} of {split}" for i in range(n)], dtype=object),
        "annotations": np.array(["Neutral"] * n, dtype=object),
    }
    if lengths:
        raw["audio_lengths"] = rng.integers(0, ta + 1, n)
        raw["vision_lengths"] = rng.integers(0, tv + 1, n)
    if sims:
        for m in "TAV":
            raw[f"regression_labels_{m}"] = rng.uniform(-1, 1, n).round(1)
    return raw


def make_raw(seed: int = 0, **kwargs: Any) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return {s: make_split(s, n, rng, **kwargs) for s, n in SIZES.items()}


def write(tmp_path: Path, obj: Any, name: str = "mosi.pkl", protocol: int = 4) -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


# ------------------------------------------------------------------ valid files


def test_aligned_mosi_loads(tmp_path: Path) -> None:
    raw = make_raw()
    path = write(tmp_path, raw)
    ds = load_mmsa_pickle(path)
    assert ds.name == "mosi" and ds.metric_family == "mosi" and ds.label_range == (-3.0, 3.0)
    for s, n in SIZES.items():
        sp, r = ds[s], raw[s]
        assert sp.text.shape == (n, L, DT) and sp.text.dtype == np.float32
        assert sp.audio.shape == (n, 6, 5) and sp.vision.shape == (n, 6, 20)
        assert sp.audio_mask.shape == (n, 6)
        np.testing.assert_array_equal(sp.text_mask, r["text_bert"][:, 1] > 0.5)
        # aligned, no length keys: audio and vision share the text's valid length (as MMSA)
        np.testing.assert_array_equal(sp.audio_mask, sp.text_mask)
        np.testing.assert_array_equal(sp.vision_mask, sp.text_mask)
        assert sp.text_ids is not None and sp.text_ids.dtype == np.int64
        np.testing.assert_array_equal(sp.text_ids, r["text_bert"][:, 0].astype(np.int64))
        np.testing.assert_array_equal(sp.labels, r["regression_labels"].astype(np.float32))
        assert sp.labels.dtype == np.float32
        assert sp.ids.dtype.kind == "U" and sp.ids.tolist() == list(r["id"])
        assert sp.raw_text is not None and sp.raw_text.tolist() == list(r["raw_text"])
        assert sp.unimodal_labels == {} and sp.clues == {}
    info = ds.info
    assert info["dims"] == {"text": DT, "audio": 5, "vision": 20}
    assert info["variant"] == "mosi-a5-v20"
    assert info["sizes"] == SIZES and info["aligned"] is True
    assert info["frame_masks"] == {"audio": "text_mask", "vision": "text_mask"}
    assert info["source"] == str(path.resolve())
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["nonfinite"] == {} and info["generated_ids"] == []
    assert info["ignored_keys"] == ["annotations", "classification_labels"]


@pytest.mark.parametrize(
    ("da", "dv", "variant"), [(74, 47, "mosi-a74-v47"), (74, 35, "mosei-a74-v35"), (7, 9, "unknown")]
)
def test_variant_detected_never_assumed(tmp_path: Path, da: int, dv: int, variant: str) -> None:
    ds = load_mmsa_pickle(write(tmp_path, make_raw(da=da, dv=dv)))
    assert ds.info["variant"] == variant
    assert ds.info["dims"] == {"text": DT, "audio": da, "vision": dv}
    assert ds.dims == ds.info["dims"]


def test_unaligned_lengths_give_prefix_masks(tmp_path: Path) -> None:
    raw = make_raw(lengths=True, ta=7, tv=4)
    raw["train"]["audio_lengths"] = np.array([0, 7, 3, 9, -2])  # 9 and -2 are clamped to [0, 7]
    raw["train"]["vision_lengths"] = [1, 4, 0, 2, 3]  # plain list, as some exports store them
    ds = load_mmsa_pickle(write(tmp_path, raw))
    am, vm = ds["train"].audio_mask, ds["train"].vision_mask
    np.testing.assert_array_equal(am.sum(1), [0, 7, 3, 7, 0])
    np.testing.assert_array_equal(vm.sum(1), [1, 4, 0, 2, 3])
    assert am[2].tolist() == [True] * 3 + [False] * 4
    assert vm[4].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(ds["test"].audio_mask.sum(1), raw["test"]["audio_lengths"])
    assert ds.info["aligned"] is False
    assert ds.info["clamped_lengths"] == {"train": {"audio_lengths": 2}}


def test_sims_unimodal_labels(tmp_path: Path) -> None:
    raw = make_raw(sims=True)
    ds = load_mmsa_pickle(write(tmp_path, raw, name="unaligned_39.pkl"))
    assert ds.metric_family == "sims" and ds.label_range == (-1.0, 1.0)
    for s in SPLITS:
        assert set(ds[s].unimodal_labels) == {"T", "A", "V"}
        for m in "TAV":
            got = ds[s].unimodal_labels[m]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, raw[s][f"regression_labels_{m}"].astype(np.float32))


def test_metric_family_from_name_and_argument(tmp_path: Path) -> None:
    raw = make_raw(sims=True)
    for s in SPLITS:
        for m in "TAV":
            del raw[s][f"regression_labels_{m}"]
    assert load_mmsa_pickle(write(tmp_path, raw, name="SIMS_v1.pkl")).metric_family == "sims"
    assert load_mmsa_pickle(write(tmp_path, raw, name="features.pkl")).metric_family == "mosi"
    assert load_mmsa_pickle(tmp_path / "features.pkl", name="my-sims").metric_family == "sims"
    forced = load_mmsa_pickle(tmp_path / "SIMS_v1.pkl", metric_family="mosi", name="x")
    assert forced.metric_family == "mosi" and forced.label_range == (-3.0, 3.0) and forced.name == "x"
    with pytest.raises(DataError, match="metric_family='mosei'.*'mosi', 'sims'"):
        load_mmsa_pickle(tmp_path / "SIMS_v1.pkl", metric_family="mosei")


def test_mosi_labels_in_sims_named_file_stay_mosi(tmp_path: Path) -> None:
    raw = make_raw()
    raw["train"]["regression_labels"][0] = -2.6
    assert load_mmsa_pickle(write(tmp_path, raw, name="sims_like.pkl")).metric_family == "mosi"


def test_string_arrays_of_every_kind(tmp_path: Path) -> None:
    raw = make_raw()
    raw["train"]["id"] = [f"v{i}$_$0" for i in range(5)]  # a list
    raw["valid"]["id"] = np.array([b"a$_$1", b"b$_$2", "café$_$3".encode()], dtype=object)  # bytes
    raw["test"]["id"] = np.array(["w$_$1", "x$_$2", "y$_$3", "z$_$4"])  # numpy unicode
    del raw["test"]["raw_text"]
    ds = load_mmsa_pickle(write(tmp_path, raw))
    assert ds["train"].ids.tolist() == [f"v{i}$_$0" for i in range(5)]
    assert ds["valid"].ids.tolist() == ["a$_$1", "b$_$2", "café$_$3"]
    assert ds["test"].ids.tolist() == ["w$_$1", "x$_$2", "y$_$3", "z$_$4"]
    assert ds["test"].raw_text is None
    assert all(ds[s].ids.dtype.kind == "U" for s in SPLITS)


def test_missing_ids_are_generated_and_recorded(tmp_path: Path) -> None:
    raw = make_raw()
    del raw["valid"]["id"]
    ds = load_mmsa_pickle(write(tmp_path, raw))
    assert ds["valid"].ids.tolist() == ["valid$_$0", "valid$_$1", "valid$_$2"]
    assert ds.info["generated_ids"] == ["valid"]


def test_without_text_bert_masks_all_true(tmp_path: Path) -> None:
    raw = make_raw()
    for s in SPLITS:
        del raw[s]["text_bert"]
    ds = load_mmsa_pickle(write(tmp_path, raw))
    assert ds["train"].text_ids is None and ds["train"].text_mask.all()
    assert ds["train"].text_mask.shape == (5, L)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_protocols_load_identically(tmp_path: Path, protocol: int) -> None:
    raw = make_raw(lengths=True)
    raw["train"]["scalar_extra"] = np.float32(1.5)  # numpy scalars in an ignored key still unpickle
    reference = load_mmsa_pickle(write(tmp_path, raw, name="ref.pkl", protocol=4))
    ds = load_mmsa_pickle(write(tmp_path, raw, protocol=protocol))
    assert ds.content_hash() == reference.content_hash()


def test_numpy1_global_names_load_without_warnings(tmp_path: Path) -> None:
    data = pickle.dumps(make_raw(), protocol=2)
    assert b"numpy._core.multiarray" in data
    old = data.replace(b"numpy._core.", b"numpy.core.")  # how numpy 1.x pickles name the helpers
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    ref = write(tmp_path, make_raw(), name="new.pkl")
    assert load_mmsa_pickle(path, name="x").content_hash() == load_mmsa_pickle(ref, name="x").content_hash()


def test_numpy_scalars_dtypes_and_containers_unpickle() -> None:
    from collections import OrderedDict

    obj = {
        "f": np.float64(2.5), "i": np.int64(-3), "b": np.bool_(True), "dt": np.dtype("U5"),
        "od": OrderedDict(a=[1, 2]), "set": {1, 2}, "fs": frozenset([3]), "c": 1 + 2j, "by": b"xy",
        "ba": bytearray(b"z"), "empty": b"", "rec": np.zeros(2, dtype=[("a", "f4"), ("b", "i8")]),
    }
    for protocol in (2, 4, 5):
        got = SafeUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol)), filename="x.pkl").load()
        assert got["f"] == 2.5 and got["i"] == -3 and got["b"] and got["dt"] == np.dtype("U5")
        assert got["od"] == OrderedDict(a=[1, 2]) and got["set"] == {1, 2} and got["fs"] == {3}
        assert got["c"] == 1 + 2j and got["by"] == b"xy" and got["ba"] == b"z" and got["empty"] == b""
        assert got["rec"].dtype == obj["rec"].dtype


# ------------------------------------------------------------------ non-finite values


def test_audio_neginf_zeroed_and_counted(tmp_path: Path) -> None:
    raw = make_raw()
    raw["train"]["audio"][0, 1, :3] = -np.inf
    raw["test"]["audio"][2, 0, 0] = -np.inf
    ds = load_mmsa_pickle(write(tmp_path, raw))
    assert np.isfinite(ds["train"].audio).all()
    assert (ds["train"].audio[0, 1, :3] == 0).all() and ds["test"].audio[2, 0, 0] == 0
    np.testing.assert_array_equal(ds["train"].audio[1:], raw["train"]["audio"][1:].astype(np.float32))
    assert ds.info["nonfinite"] == {
        "train": {"audio": {"nan": 0, "posinf": 0, "neginf": 3, "zeroed": 3}},
        "test": {"audio": {"nan": 0, "posinf": 0, "neginf": 1, "zeroed": 1}},
    }
    with pytest.raises(DataError, match=r"train/audio \(3 -inf\)"):
        load_mmsa_pickle(tmp_path / "mosi.pkl", nonfinite="error")


def test_nan_in_vision_reported_then_zeroed(tmp_path: Path) -> None:
    raw = make_raw()
    raw["valid"]["vision"][1, 2, :2] = np.nan
    raw["test"]["text"][0, 0, 0] = np.inf
    raw["train"]["audio"][0, 0, 0] = -np.inf
    path = write(tmp_path, raw)
    with pytest.raises(DataError) as err:
        load_mmsa_pickle(path)
    msg = str(err.value)
    assert "mosi.pkl" in msg and "valid/vision (2 NaN)" in msg and "test/text (1 +inf)" in msg
    assert "audio" not in msg  # audio -inf is fixed by the default policy, not reported as an error
    assert err.value.hint is not None and 'nonfinite="zero"' in err.value.hint
    ds = load_mmsa_pickle(path, nonfinite="zero")
    assert all(np.isfinite(getattr(ds[s], m)).all() for s in SPLITS for m in ("text", "audio", "vision"))
    assert ds["valid"].vision[1, 2, :2].tolist() == [0.0, 0.0]
    assert ds.info["nonfinite"]["valid"]["vision"] == {"nan": 2, "posinf": 0, "neginf": 0, "zeroed": 2}
    assert ds.info["nonfinite"]["test"]["text"]["posinf"] == 1
    assert ds.info["nonfinite_policy"] == "zero"


def test_nan_label_reported(tmp_path: Path) -> None:
    raw = make_raw()
    raw["test"]["regression_labels"][3] = np.nan
    with pytest.raises(DataError, match=r"test/regression_labels \(1 NaN\)"):
        load_mmsa_pickle(write(tmp_path, raw))


def test_bad_nonfinite_option_refused(tmp_path: Path) -> None:
    path = write(tmp_path, make_raw())
    with pytest.raises(DataError, match="nonfinite='drop'.*'report', 'zero', 'error'"):
        load_mmsa_pickle(path, nonfinite="drop")


# ------------------------------------------------------------------ schema errors


def _drop_key(raw: dict) -> None:
    del raw["valid"]["audio"]


def _audio_2d(raw: dict) -> None:
    raw["train"]["audio"] = raw["train"]["audio"][:, :, 0]


def _vision_short(raw: dict) -> None:
    raw["test"]["vision"] = raw["test"]["vision"][:3]


def _drop_split(raw: dict) -> None:
    del raw["valid"]


def _bert_wrong_l(raw: dict) -> None:
    raw["train"]["text_bert"] = np.zeros((5, 3, L + 1))


def _bert_two_rows(raw: dict) -> None:
    raw["valid"]["text_bert"] = np.zeros((3, 2, L))


def _dims_differ(raw: dict) -> None:
    raw["valid"]["audio"] = np.zeros((3, 6, 4))


def _labels_text(raw: dict) -> None:
    raw["train"]["regression_labels"] = np.array(["pos"] * 5)


def _lengths_fractional(raw: dict) -> None:
    raw["train"]["audio_lengths"] = np.full(5, 2.5)


@pytest.mark.parametrize(
    ("mutate", "parts"),
    [
        (_drop_key, ["split 'valid'", "'audio'", "[N, T, d]"]),
        (_audio_2d, ["split 'train'", "'audio'", "(5, 6)", "[N, T, d]"]),
        (_vision_short, ["split 'test'", "'vision'", "3 samples", "[N, T, d] with N = 4"]),
        (_drop_split, ["'valid'", "[N, L, d]", "regression_labels [N]"]),
        (_bert_wrong_l, ["'text_bert'", "(5, 3, 7)", "[N, 3, L] with L = 6"]),
        (_bert_two_rows, ["split 'valid'", "'text_bert'", "(3, 2, 6)", "[N, 3, L]"]),
        (_dims_differ, ["split 'valid'", "'audio'", "feature dim 4", "[N, T, 5]"]),
        (_labels_text, ["'regression_labels'", "<U3", "float array [N]"]),
        (_lengths_fractional, ["'audio_lengths'", "non-integer", "int array [N]"]),
    ],
)
def test_schema_errors_name_file_key_and_shape(tmp_path: Path, mutate: Any, parts: list[str]) -> None:
    raw = make_raw()
    mutate(raw)
    with pytest.raises(DataError) as err:
        load_mmsa_pickle(write(tmp_path, raw))
    msg = str(err.value)
    assert msg.startswith("mosi.pkl: ") and "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


def test_top_level_and_split_types(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mosi.pkl: top level is a list"):
        load_mmsa_pickle(write(tmp_path, [1, 2]))
    raw: dict[str, Any] = make_raw()
    raw["test"] = np.zeros(3)
    with pytest.raises(DataError, match="split 'test' is a ndarray .*regression_labels"):
        load_mmsa_pickle(write(tmp_path, raw))


def test_missing_file_has_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.pkl: file not found") as err:
        load_mmsa_pickle(tmp_path / "nope.pkl")
    assert err.value.hint
    with pytest.raises(DataError, match="not a file"):
        load_mmsa_pickle(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage, not a pickle", "truncated"])
def test_unreadable_pickles(tmp_path: Path, content: bytes | str) -> None:
    data = pickle.dumps(make_raw(), protocol=4)
    path = tmp_path / "broken.pkl"
    path.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    with pytest.raises(DataError, match="broken.pkl: not a readable pickle"):
        load_mmsa_pickle(path)


# ------------------------------------------------------------------ hostile pickles


class _Reduce:
    """Pickles as ``func(*args)``: what a hostile file executes on a plain ``pickle.load``."""

    def __init__(self, func: Any, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def _hostile_payloads(marker: Path) -> dict[str, bytes]:
    py_create = f"open({str(marker)!r}, 'w').close()"
    getattr_chain = (  # builtins.getattr(builtins.__import__('os'), 'system')('touch marker')
        b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
        + _touch(marker).encode() + b"\ntR."
    )
    numpy_gadget = (  # a numpy module is not a licence: only the array helpers are allowed
        b"cnumpy.testing._private.utils\nrunstring\n(V" + py_create.encode() + b"\n(dtR."
    )
    valid_but_nested = make_raw()
    valid_but_nested["valid"]["audio"] = _Reduce(os.system, (_touch(marker),))
    return {
        "os.system p2": pickle.dumps(_Reduce(os.system, (_touch(marker),)), protocol=2),
        "os.system p5": pickle.dumps(_Reduce(os.system, (_touch(marker),)), protocol=5),
        "eval": pickle.dumps(_Reduce(eval, (py_create,)), protocol=4),
        "popen": pickle.dumps(_Reduce(subprocess.Popen, (["touch", str(marker)],)), protocol=4),
        "nested": pickle.dumps(valid_but_nested, protocol=4),
        "getattr": getattr_chain,
        "numpy gadget": numpy_gadget,
        "codecs": b"c_codecs\nencode\n(Vabc\nVrot13\ntR.",
        "class": pickle.dumps(_Reduce, protocol=4),
    }


@pytest.mark.parametrize(
    "case", ["os.system p2", "os.system p5", "eval", "popen", "nested", "getattr", "numpy gadget", "codecs", "class"]
)
def test_hostile_pickles_refused_without_running(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "pwned"
    data = _hostile_payloads(marker)[case]
    pickletools.dis(data, out=io.StringIO())  # the payload is a well-formed pickle
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"^evil\.pkl: refused to unpickle ") as err:
        load_mmsa_pickle(path)
    assert "only numpy arrays, numbers, strings, lists and dicts are allowed" in str(err.value)
    assert err.value.hint
    assert not marker.exists()


def test_refused_names_are_reported(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = _hostile_payloads(marker)
    expected = {"eval": "builtins.eval", "popen": "subprocess.Popen", "getattr": "builtins.getattr"}
    for case, name in expected.items():
        with pytest.raises(DataError, match=f"refused to unpickle {name}:"):
            SafeUnpickler(io.BytesIO(payloads[case]), filename="x.pkl").load()


def test_persistent_ids_refused(tmp_path: Path) -> None:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "external" if isinstance(obj, str) and obj == "ref" else None

    buf = io.BytesIO()
    Pickler(buf, protocol=4).dump({"train": "ref"})
    path = tmp_path / "pid.pkl"
    path.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="pid.pkl: refused to unpickle a persistent id"):
        safe_load_pickle(path)


def test_allowlisted_helpers_cannot_be_altered(tmp_path: Path) -> None:
    # BUILD on an allowed function would set its attributes; the allowlist hands out frozen wrappers
    numeric = pytest.importorskip("numpy._core.numeric")
    data = b"cnumpy._core.numeric\n_frombuffer\n(N}V__defaults__\n(I1\ntstb."  # setattr via slot state
    with pytest.raises(DataError, match="not a readable pickle"):
        SafeUnpickler(io.BytesIO(data), filename="x.pkl").load()
    assert numeric._frombuffer.__defaults__ == (None,)


# ------------------------------------------------------------------ export


def _tmp_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_round_trip_from_loaded_file(tmp_path: Path) -> None:
    raw = make_raw(lengths=True, sims=True)
    raw["train"]["clues_audio"] = np.arange(5 * 4).reshape(5, 4)
    raw["train"]["audio"][0, 0, 0] = -np.inf
    ds = load_mmsa_pickle(write(tmp_path, raw, name="sims.pkl"))
    out = tmp_path / "out" / "copy.pkl"
    out.parent.mkdir()
    save_mmsa_pickle(ds, out)
    back = load_mmsa_pickle(out, name=ds.name)
    assert back.content_hash() == ds.content_hash()
    for s in SPLITS:
        a, b = ds[s].arrays(), back[s].arrays()
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype, k
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert back["train"].clues["audio"].dtype == np.int64
    assert back.metric_family == "sims" and back.info["aligned"] is False
    assert _tmp_leftovers(out.parent) == []
    stored = safe_load_pickle(out)
    assert "audio_lengths" in stored["train"] and stored["train"]["text_bert"].shape == (5, 3, L)


def _hand_split(n: int, rng: np.random.Generator, prefix: str, *, prefix_masks: bool = True) -> Split:
    ta = 5
    lengths = rng.integers(0, ta + 1, n)
    audio_mask = np.arange(ta)[None, :] < lengths[:, None]
    if not prefix_masks:
        audio_mask[0] = [False, True, True, False, False]
    return Split(
        text=rng.normal(size=(n, 4, 3)).astype(np.float32),
        text_mask=rng.random((n, 4)) > 0.3,  # text masks need not be prefixes
        audio=rng.normal(size=(n, ta, 2)).astype(np.float32),
        audio_mask=audio_mask,
        vision=rng.normal(size=(n, 3, 2)).astype(np.float32),
        vision_mask=np.ones((n, 3), dtype=bool),
        labels=rng.uniform(-3, 3, n).astype(np.float32),
        ids=np.array([f"{prefix}{i}$_$0" for i in range(n)]),
        text_ids=rng.integers(0, 30522, (n, 4)),
        clues={"vision": rng.integers(0, 100, (n, 2))},
        raw_text=np.array([f"t{i}" for i in range(n)]),
    )


def _hand_dataset(**kwargs: Any) -> MSADataset:
    rng = np.random.default_rng(7)
    splits = {s: _hand_split(n, rng, s, **kwargs) for s, n in SIZES.items()}
    return MSADataset(name="hand", splits=splits)


def test_round_trip_hand_built_dataset(tmp_path: Path) -> None:
    ds = _hand_dataset()
    path = tmp_path / "hand.pkl"
    save_mmsa_pickle(ds, path)
    back = load_mmsa_pickle(path)
    assert back.content_hash() == ds.content_hash()
    assert back.info["variant"] == "unknown" and back.metric_family == "mosi"
    assert _tmp_leftovers(tmp_path) == []


def test_save_without_text_ids_writes_zero_ids(tmp_path: Path) -> None:
    ds = _hand_dataset()
    for s in SPLITS:
        ds.splits[s].text_ids = None
    save_mmsa_pickle(ds, tmp_path / "noids.pkl")
    back = load_mmsa_pickle(tmp_path / "noids.pkl")
    assert back["train"].text_ids is not None and (back["train"].text_ids == 0).all()
    np.testing.assert_array_equal(back["train"].text_mask, ds["train"].text_mask)


def test_non_prefix_mask_refused_and_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "bad.pkl"
    with pytest.raises(DataError, match="bad.pkl: split 'train' audio_mask of sample 'train0\\$_\\$0'"):
        save_mmsa_pickle(_hand_dataset(prefix_masks=False), path)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.pkl"
    path.write_bytes(b"previous content")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mmsa.os, "fsync", disk_full)
    with pytest.raises(DataError, match="keep.pkl: cannot write"):
        save_mmsa_pickle(_hand_dataset(), path)
    assert path.read_bytes() == b"previous content"
    assert _tmp_leftovers(tmp_path) == [] and len(list(tmp_path.iterdir())) == 1


def test_save_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot write") as err:
        save_mmsa_pickle(_hand_dataset(), tmp_path / "missing_dir" / "x.pkl")
    assert err.value.hint
    ds = _hand_dataset()
    del ds.splits["test"]
    with pytest.raises(DataError, match="no split 'test'"):
        save_mmsa_pickle(ds, tmp_path / "x.pkl")


# ------------------------------------------------------------------ aligned files without length keys


def _padded_aligned_raw(seed: int = 3, t: int = 12) -> dict[str, dict[str, Any]]:
    """An aligned_50-like file: every modality T frames, zero padding after the text's valid length,
    no audio_lengths/vision_lengths (as the real aligned releases)."""
    rng = np.random.default_rng(seed)
    raw: dict[str, dict[str, Any]] = {}
    for split, n in {"train": 40, "valid": 10, "test": 20}.items():
        valid = rng.integers(3, t, n)  # every sample has padding
        mask = (np.arange(t)[None, :] < valid[:, None]).astype(np.float64)
        pad = mask[:, :, None]
        raw[split] = {
            "text": rng.normal(size=(n, t, DT)) * pad,
            "text_bert": np.stack([rng.integers(1000, 2000, (n, t)) * mask, mask, np.zeros_like(mask)], axis=1),
            "audio": rng.normal(size=(n, t, 5)) * pad,
            "vision": rng.normal(size=(n, t, 20)) * pad,
            "regression_labels": rng.uniform(-3, 3, n),
            "id": np.array([f"{split}{i}$_$0" for i in range(n)], dtype=object),
        }
    return raw


def _padding_frames_changed_by_noise(ds: MSADataset, padding: np.ndarray) -> tuple[int, int]:
    """(padding frames, valid frames) of the test audio that ``noise`` at rho = 0.5 on audio changes."""
    from robustmsa.corruption_context import CorruptionContext
    from robustmsa.data.batch import split_to_batch

    ctx = CorruptionContext(split_to_batch(ds["train"]).modalities())
    test = split_to_batch(ds["test"])
    clean = test.modalities()
    out = ctx.corrupter("noise", 0).corrupt(clean, test.keys, {"audio": 0.5})
    changed = (out["audio"].features != clean["audio"].features).any(-1).numpy()
    return int((changed & padding).sum()), int((changed & ~padding).sum())


def test_aligned_without_lengths_masks_from_text_as_mmsa(tmp_path: Path) -> None:
    raw = _padded_aligned_raw()
    ds = load_mmsa_pickle(write(tmp_path, raw, name="aligned_50.pkl"))
    for s in SPLITS:
        text_len = raw[s]["text_bert"][:, 1].sum(axis=1)  # MMSA: np.sum(text_bert[:, 1, :], axis=1)
        want = np.arange(12)[None, :] < text_len[:, None]
        np.testing.assert_array_equal(ds[s].audio_mask, want)
        np.testing.assert_array_equal(ds[s].vision_mask, want)
        np.testing.assert_array_equal(ds[s].text_mask, want)
    info = ds.info
    assert info["aligned"] is True
    assert info["frame_masks"] == {"audio": "text_mask", "vision": "text_mask"}
    assert "as MMSA does for aligned data" in info["frame_masks_from"]
    assert "text_bert attention mask" in info["frame_masks_from"]
    padding = raw["test"]["text_bert"][:, 1] < 0.5
    assert padding.sum() > 50
    changed_padding, changed_valid = _padding_frames_changed_by_noise(ds, padding)
    assert changed_padding == 0 and changed_valid == (~padding).sum()


def test_all_valid_masks_would_let_noise_into_padding(tmp_path: Path) -> None:
    """The check above can fail: with every frame marked valid (the old reading of these files)
    noise at rho = 0.5 changes every padding frame."""
    raw = _padded_aligned_raw()
    for s in SPLITS:
        for key in ("audio_lengths", "vision_lengths"):
            raw[s][key] = np.full(len(raw[s]["regression_labels"]), 12)
    ds = load_mmsa_pickle(write(tmp_path, raw))
    assert ds.info["aligned"] is False  # the lengths disagree with the text's
    assert ds.info["frame_masks"] == {"audio": "lengths", "vision": "lengths"}
    padding = raw["test"]["text_bert"][:, 1] < 0.5
    assert _padding_frames_changed_by_noise(ds, padding)[0] == padding.sum()


def test_aligned_detected_with_or_without_length_keys(tmp_path: Path) -> None:
    raw = _padded_aligned_raw()
    without = load_mmsa_pickle(write(tmp_path, raw, name="a.pkl"))
    for s in SPLITS:
        raw[s]["audio_lengths"] = raw[s]["text_bert"][:, 1].sum(axis=1).astype(np.int64)
        raw[s]["vision_lengths"] = list(raw[s]["audio_lengths"])
    with_keys = load_mmsa_pickle(write(tmp_path, raw, name="b.pkl"))
    assert without.info["aligned"] is True and with_keys.info["aligned"] is True
    assert with_keys.info["frame_masks"] == {"audio": "lengths", "vision": "lengths"}
    assert with_keys.content_hash() == without.content_hash()
    raw["valid"]["vision"] = raw["valid"]["vision"][:, :10]  # one split of another length: unaligned
    assert load_mmsa_pickle(write(tmp_path, raw, name="c.pkl")).info["aligned"] is False


def test_aligned_without_text_bert_or_lengths_keeps_every_frame(tmp_path: Path) -> None:
    raw = _padded_aligned_raw()
    for s in SPLITS:
        del raw[s]["text_bert"]
    ds = load_mmsa_pickle(write(tmp_path, raw))
    assert ds.info["aligned"] is True and ds["test"].audio_mask.all() and ds["test"].vision_mask.all()
    assert ds.info["frame_masks"] == {"audio": "all_valid", "vision": "all_valid"}
    assert "no audio_lengths and no text_bert mask" in ds.info["frame_masks_from"]


def test_aligned_export_round_trip_stays_aligned(tmp_path: Path) -> None:
    from robustmsa.data.synthetic import SyntheticConfig, export_mmsa, generate_synthetic

    ds = generate_synthetic(SyntheticConfig.from_preset("mosi", n_train=20, n_valid=10, n_test=10))
    assert not ds["test"].audio_mask.all()  # padding present
    export_mmsa(ds, tmp_path / "aligned_50.pkl")
    back = load_mmsa_pickle(tmp_path / "aligned_50.pkl")
    assert back.info["aligned"] is True
    for s in SPLITS:
        for m in ("text", "audio", "vision"):
            np.testing.assert_array_equal(getattr(back[s], f"{m}_mask"), getattr(ds[s], f"{m}_mask"), err_msg=m)
    # a file read without length keys, written and read again: same masks, still aligned
    first = load_mmsa_pickle(write(tmp_path, _padded_aligned_raw()))
    save_mmsa_pickle(first, tmp_path / "again.pkl")
    again = load_mmsa_pickle(tmp_path / "again.pkl", name=first.name)
    assert again.info["aligned"] is True and again.content_hash() == first.content_hash()


def test_export_keeps_all_valid_masks_of_an_aligned_layout(tmp_path: Path) -> None:
    """All-True audio/vision masks beside a padded text mask survive the round trip (the lengths
    are written, so the loader does not take the text mask)."""
    first = load_mmsa_pickle(write(tmp_path, _padded_aligned_raw()))
    for s in SPLITS:
        first.splits[s].audio_mask = np.ones_like(first[s].audio_mask)
    save_mmsa_pickle(first, tmp_path / "out.pkl")
    back = load_mmsa_pickle(tmp_path / "out.pkl")
    assert back["test"].audio_mask.all() and back.content_hash() == first.content_hash()
    assert back.info["aligned"] is False


# ------------------------------------------------------------------ the dataset's name in tables


@pytest.mark.parametrize(("path", "label"), [
    ("data/MOSI/Processed/aligned_50.pkl", "MOSI/aligned_50"),
    ("MOSEI/unaligned_50.pkl", "MOSEI/unaligned_50"),
    ("/srv/SIMS/Processed/unaligned_39.pkl", "SIMS/unaligned_39"),
    ("aligned_50.pkl", "mmsa:aligned_50"),
    ("data/Processed/aligned_50.pkl", "mmsa:aligned_50"),
])
def test_mmsa_label_from_the_path(path: str, label: str) -> None:
    assert mmsa.mmsa_label(path) == label


def test_label_in_the_loader_report(tmp_path: Path) -> None:
    from robustmsa.datasets import load_dataset

    folder = tmp_path / "MOSI" / "Processed"
    folder.mkdir(parents=True)
    path = write(folder, make_raw(), name="aligned_50.pkl")
    assert load_mmsa_pickle(path).info["label"] == "MOSI/aligned_50"
    assert load_mmsa_pickle(path, label="mine").info["label"] == "mine"
    ds = load_dataset("mmsa", {"path": str(path), "label": "MOSI-bert"})
    assert ds.info["label"] == "MOSI-bert" and ds.name == "aligned_50"
    assert ds.content_hash() == load_mmsa_pickle(path).content_hash()


def test_dataset_display_names_rows_and_trials() -> None:
    from robustmsa.plan import expand_trials
    from robustmsa.suite import DatasetSpec, Suite
    from robustmsa.trial import _row_base

    mosi = {"name": "mmsa", "params": {"path": "data/MOSI/Processed/aligned_50.pkl"}}
    labelled = {"name": "mmsa", "params": {"path": "x/aligned_50.pkl", "label": "MOSI-bert"}}
    assert DatasetSpec.model_validate(mosi).display == "MOSI/aligned_50"
    assert DatasetSpec.model_validate(labelled).display == "MOSI-bert"
    assert DatasetSpec().display == "synthetic"
    assert DatasetSpec(name="synthetic_sims", params={"seed": 1}).display == "synthetic_sims"
    suite = Suite.model_validate({"name": "x", "models": [{"name": "late_fusion"}],
                                  "datasets": [mosi, labelled, {"name": "synthetic"}]})
    trials = expand_trials(suite)
    by_dataset = {t.dataset.display: t for t in trials if not t.is_reference}
    assert set(by_dataset) == {"MOSI/aligned_50", "MOSI-bert", "synthetic"}
    for display, t in by_dataset.items():
        assert t.name == f"late_fusion/spectrum/{display}/seed0"
        assert _row_base(t, "tid", "hash")["dataset"] == display
        assert t.resolved()["dataset"] == t.dataset.model_dump(mode="json")  # identity: name and params only
    refs = sorted(t.name for t in trials if t.is_reference)
    assert refs == ["references/MOSI-bert", "references/MOSI/aligned_50", "references/synthetic"]
    assert by_dataset["synthetic"].resolved()["dataset"] == {"name": "synthetic", "params": {}}


def test_dataset_display_in_report_file_names() -> None:
    from robustmsa.reports.build import file_part

    assert file_part("MOSI/aligned_50") == "MOSI-aligned_50" and file_part("mmsa:x") == "mmsa-x"
    assert file_part("synthetic_sims") == "synthetic_sims" and file_part("a.b-c") == "a.b-c"
