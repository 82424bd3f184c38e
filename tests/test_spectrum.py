"""Reliability points, grids (corruptions.grids), the Corrupter / Prepared pair (corruptions.corrupter), training samplers and the catalogue."""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from corruptions import (
    FAMILIES,
    MODALITIES,
    Corrupter,
    FeatureCorruption,
    GridPoint,
    ModalityBatch,
    ReliabilityPoint,
    TrainingSampler,
    UnknownNameError,
    derive_keys,
    joint_sweep,
    make_corrupter,
    normalise_levels,
    product_grid,
    qmc_grid,
    sample_keys,
    single_modality_sweep,
    standard_grid,
)
from corruptions.catalogue import catalogue_markdown, catalogue_rows, format_parameter

ROOT = Path(__file__).resolve().parents[1]
DIMS = {"text": 6, "audio": 3, "vision": 4}


def make_data(b: int = 12, t: int = 8, seed: int = 0) -> dict[str, ModalityBatch]:
    """All three modalities, ragged masks, text with [CLS] / [SEP] ids."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in MODALITIES:
        length = torch.randint(2, t + 1, (b,), generator=g)
        mask = torch.arange(t)[None, :] < length[:, None]
        x = (1.0 + torch.randn(b, t, DIMS[m], generator=g)).masked_fill(~mask[:, :, None], 0.0)
        ids = None
        if m == "text":
            ids = torch.randint(1000, 2000, (b, t), generator=g).masked_fill(~mask, 0)
            ids[:, 0] = 101
            ids[torch.arange(b), length - 1] = 102
        out[m] = ModalityBatch(x, mask, torch.zeros(b, dtype=torch.bool), ids)
    return out


def keys_of(b: int, prefix: str = "s") -> torch.Tensor:
    return torch.from_numpy(sample_keys([f"{prefix}{i}" for i in range(b)]))


def same(a: ModalityBatch, b: ModalityBatch) -> bool:
    ids = (a.ids is None and b.ids is None) or (
        a.ids is not None and b.ids is not None and torch.equal(a.ids, b.ids)
    )
    return (
        torch.equal(a.features.view(torch.int32), b.features.view(torch.int32))
        and torch.equal(a.mask, b.mask)
        and torch.equal(a.missing, b.missing)
        and ids
    )


# ----------------------------------------------------------------------------- ReliabilityPoint


def test_reliability_point_defaults_validation_and_text():
    p = ReliabilityPoint(text=0.5)
    assert str(p) == "text=0.50,audio=1.00,vision=1.00"
    assert ReliabilityPoint().is_clean and not p.is_clean
    assert p.of("text") == 0.5 and p.of("audio") == 1.0
    assert isinstance(ReliabilityPoint(text=0).text, float)
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="text"):
            ReliabilityPoint(text=bad)
    with pytest.raises(KeyError, match="allowed: text, audio, vision"):
        p.of("video")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.text = 0.2


def test_reliability_point_hashing_dicts_and_json():
    p = ReliabilityPoint(0.25, 0.5, 0.75)
    assert {p, ReliabilityPoint(0.25, 0.5, 0.75)} == {p}
    assert p.as_dict() == {"text": 0.25, "audio": 0.5, "vision": 0.75}
    assert ReliabilityPoint.from_dict(p.as_dict()) == p
    assert ReliabilityPoint.from_dict({"audio": 0.1}) == ReliabilityPoint(audio=0.1)
    assert ReliabilityPoint.from_json(p.to_json()) == p
    assert json.loads(p.to_json()) == p.as_dict()
    with pytest.raises(KeyError, match="video"):
        ReliabilityPoint.from_dict({"video": 0.1})
    with pytest.raises(ValueError, match="object"):
        ReliabilityPoint.from_json("[0.1]")
    assert ReliabilityPoint.joint(0.3) == ReliabilityPoint(0.3, 0.3, 0.3)
    assert ReliabilityPoint.only("vision", 0.3) == ReliabilityPoint(vision=0.3)


# ----------------------------------------------------------------------------- grids


def test_levels_are_validated_deduplicated_and_sorted_descending():
    assert normalise_levels([0.0, 0.5, 1, 0.5, 0.25]) == [1.0, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="level"):
        normalise_levels([0.5, 1.2])
    with pytest.raises(ValueError, match="at least one"):
        normalise_levels([])


def test_single_and_joint_sweeps():
    sweep = single_modality_sweep("noise", "audio", [0, 0.5, 1])
    assert [p.level for p in sweep] == [1.0, 0.5, 0.0]
    assert [p.index for p in sweep] == [0, 1, 2]
    assert sweep[0].point.is_clean and sweep[2].point == ReliabilityPoint(audio=0.0)
    assert sweep[1].key == "noise/audio/1" and sweep[1].sweep == "audio"
    joint = joint_sweep("drop", [0.2, 0.9])
    assert [p.point for p in joint] == [ReliabilityPoint.joint(0.9), ReliabilityPoint.joint(0.2)]
    assert joint[1].key == "drop/joint/1"
    with pytest.raises(KeyError, match="video"):
        single_modality_sweep("noise", "video", [0.5])
    with pytest.raises(UnknownNameError, match="noise"):
        joint_sweep("nosie", [0.5])


def test_product_grid_counts_order_and_levels():
    grid = product_grid("missing", ["audio", "text"], [1.0, 0.5, 0.0])
    assert len(grid) == 9 and {p.sweep for p in grid} == {"text+audio"}
    assert grid[0].point.is_clean and grid[0].level == 1.0
    assert grid[1].point == ReliabilityPoint(text=1.0, audio=0.5)
    assert grid[3].point == ReliabilityPoint(text=0.5, audio=1.0)
    assert grid[-1].point == ReliabilityPoint(text=0.0, audio=0.0, vision=1.0)
    assert grid[5].level == pytest.approx(0.25)
    assert [p.index for p in grid] == list(range(9))
    assert len(product_grid("missing", MODALITIES, [1.0, 0.0])) == 8
    with pytest.raises(ValueError, match="at least 2"):
        product_grid("missing", ["text"], [0.5])
    with pytest.raises(ValueError, match="distinct"):
        product_grid("missing", ["text", "text"], [0.5])


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_qmc_grid_is_deterministic_and_in_range(method):
    a = qmc_grid("noise", 5, seed=3, method=method)
    assert a == qmc_grid("noise", 5, seed=3, method=method)
    assert a != qmc_grid("noise", 5, seed=4, method=method)
    assert len(a) == 5 and [p.index for p in a] == list(range(5))
    assert all(p.sweep == "qmc" and 0 <= p.level <= 1 for p in a)
    for p in a:
        assert p.level == pytest.approx(np.mean([p.point.of(m) for m in MODALITIES]))
    two = qmc_grid("noise", 4, seed=3, modalities=["vision", "audio"], method=method)
    assert all(p.point.text == 1.0 for p in two)
    assert len({(p.point.audio, p.point.vision) for p in two}) == 4


def test_qmc_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        qmc_grid("noise", 4, seed=0, method="lhs")
    with pytest.raises(ValueError, match="n must"):
        qmc_grid("noise", 0, seed=0)
    with pytest.raises(ValueError, match="seed must be an int"):
        qmc_grid("noise", 4, seed=None)


def test_standard_grid_counts_and_order():
    grid = standard_grid(["noise", "drop"], [0.0, 0.5, 1.0])
    assert len(grid) == 2 * 4 * 3
    assert [(p.family, p.sweep) for p in grid[:4]] == [("noise", "text")] * 3 + [("noise", "audio")]
    assert len({p.key for p in grid}) == len(grid)
    assert all(p.point.is_clean for p in grid if p.index == 0)
    assert len(standard_grid(["noise"], [0.5, 1.0], sweeps=["text+vision"])) == 4
    with pytest.raises(ValueError, match="unknown sweep"):
        standard_grid(["noise"], [0.5], sweeps=["all"])
    with pytest.raises(ValueError, match="list of family names"):
        standard_grid("noise", [0.5])


def test_grid_point_is_hashable_and_keyed():
    p = GridPoint("noise", "audio", 3, 0.4, ReliabilityPoint(audio=0.4))
    assert p.key == "noise/audio/3" and {p, p} == {p}


# ----------------------------------------------------------------------------- Corrupter


@pytest.mark.parametrize("name", ["drop", "noise", "missing", "blur"])
def test_prepared_equals_direct_family_calls(name):
    data, train = make_data(), make_data(seed=1)
    keys = keys_of(12)
    corrupter = make_corrupter(name, seed=7, train=train)
    prepared = corrupter.prepare(data, keys, stream=2)
    point = ReliabilityPoint(text=0.3, audio=0.6, vision=0.0)
    out = prepared.at(point)
    for m in MODALITIES:
        family = FAMILIES.get(name)().fit(train[m])
        direct = family(data[m], point.of(m), derive_keys(7, keys, m, name, 2))
        assert same(out[m], direct), m
    assert same(prepared.at(point)["audio"], out["audio"])


def test_prepared_leaves_clean_modalities_untouched_and_accepts_tensors():
    data = make_data()
    prepared = make_corrupter("drop", seed=0).prepare(data, keys_of(12))
    clean = prepared.at(ReliabilityPoint())
    assert all(clean[m] is data[m] for m in MODALITIES)
    only_audio = prepared.at(ReliabilityPoint.only("audio", 0.2))
    assert only_audio["text"] is data["text"] and only_audio["vision"] is data["vision"]
    rho = torch.linspace(0, 1, 12)
    mixed = prepared.at({"audio": rho})
    assert mixed["text"] is data["text"]
    direct = FAMILIES.get("drop")().apply(data["audio"], rho, prepared.states["audio"])
    assert same(mixed["audio"], direct)
    assert prepared.at({"audio": torch.ones(12)})["audio"] is data["audio"]
    with pytest.raises(KeyError, match="video"):
        prepared.at({"video": 0.5})


def test_corrupter_streams_and_modalities_draw_independently():
    data = make_data()
    data["vision"] = data["audio"]  # same content on two modalities
    corrupter = make_corrupter("drop", seed=0)
    out0 = corrupter.prepare(data, keys_of(12), stream=0).at(ReliabilityPoint.joint(0.5))
    out1 = corrupter.prepare(data, keys_of(12), stream=1).at(ReliabilityPoint.joint(0.5))
    assert not torch.equal(out0["audio"].mask, out0["vision"].mask)
    assert not torch.equal(out0["audio"].mask, out1["audio"].mask)


def test_make_corrupter_validation_and_config():
    corrupter = make_corrupter({"name": "drop", "report_mask": False}, seed=3, modalities=["audio"])
    assert corrupter.modalities == ("audio",)
    assert corrupter.config() == {
        "seed": 3, "families": {"audio": {"name": "drop", "version": "1", "report_mask": False, "text_token": "unk"}}
    }
    with pytest.raises(ValueError, match="given twice"):
        make_corrupter({"name": "drop", "report_mask": False}, seed=0, report_mask=True)
    with pytest.raises(ValueError, match="'name'"):
        make_corrupter({"report_mask": False}, seed=0)
    with pytest.raises(ValueError, match="seed"):
        make_corrupter("drop", seed="0")
    with pytest.raises(ValueError, match="fit"):
        make_corrupter("noise", seed=0).prepare(make_data(), keys_of(12))
    with pytest.raises(KeyError, match="no 'audio' modality"):
        make_corrupter("noise", seed=0).fit({"text": make_data()["text"]})
    with pytest.raises(KeyError, match="no family for 'vision'"):
        make_corrupter("drop", seed=0, modalities=["audio"]).prepare(make_data(), keys_of(12)).at(
            ReliabilityPoint(vision=0.5)
        )


class _AudioOnly(FeatureCorruption):
    name = "test-audio-only"
    version = "0"
    modalities = ("audio",)
    parameter_name = "rho"
    mapping = "identity"
    absent = "nothing"

    def parameter(self, rho: float) -> float:
        return float(rho)

    def sample(self, keys, data):
        return None

    def apply(self, data, rho, state):
        return data


def test_unsupported_modality_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(FAMILIES._items, _AudioOnly.name, _AudioOnly)
    assert make_corrupter(_AudioOnly.name, seed=0, modalities=["audio"]).modalities == ("audio",)
    with pytest.raises(ValueError, match="does not support modality 'text'"):
        make_corrupter(_AudioOnly.name, seed=0)
    with pytest.raises(ValueError, match="does not support modality 'text'"):
        Corrupter({"text": _AudioOnly()}, seed=0)
    with pytest.raises(ValueError, match="does not support"):
        joint_sweep(_AudioOnly.name, [0.5])
    with pytest.raises(ValueError, match="does not support"):
        TrainingSampler([_AudioOnly.name])


# ----------------------------------------------------------------------------- TrainingSampler


def tiny(b: int) -> dict[str, ModalityBatch]:
    return {
        m: ModalityBatch(torch.ones(b, 2, 1), torch.ones(b, 2, dtype=torch.bool), torch.zeros(b, dtype=torch.bool))
        for m in MODALITIES
    }


def test_sampler_clean_probabilities_rho_range_and_weights():
    n = 4000
    sampler = TrainingSampler(
        ["drop", "missing"], weights=[1, 3], p_clean_sample=0.3, p_clean_modality=0.2, rho_low=0.2, rho_high=0.6
    )
    rho, family = sampler.draw(keys_of(n))
    clean = torch.stack([family[m] == -1 for m in MODALITIES])
    assert torch.equal(clean, torch.stack([rho[m] == 1.0 for m in MODALITIES]))
    assert abs(float(clean.all(0).float().mean()) - (0.3 + 0.7 * 0.2**3)) < 0.03
    for m in MODALITIES:
        assert abs(float(clean[MODALITIES.index(m)].float().mean()) - (0.3 + 0.7 * 0.2)) < 0.03
        r = rho[m][family[m] >= 0]
        assert float(r.min()) >= 0.2 and float(r.max()) <= 0.6
        assert abs(float(r.mean()) - 0.4) < 0.02
        f = family[m][family[m] >= 0]
        assert abs(float((f == 1).float().mean()) - 0.75) < 0.03


def test_sampler_draws_do_not_depend_on_batch_composition():
    data, keys = make_data(b=12), keys_of(12)
    sampler = TrainingSampler(["noise", "drop", "missing"], p_clean_modality=0.2, seed=5).fit(make_data(seed=1))
    full = sampler.apply(data, keys, stream=3)
    idx = torch.tensor([9, 2, 7, 4])
    part = sampler.apply({m: d.index(idx) for m, d in data.items()}, keys[idx], stream=3)
    for m in MODALITIES:
        assert same(part.data[m], full.data[m].index(idx))
        assert torch.equal(part.rho[m], full.rho[m][idx]) and torch.equal(part.family[m], full.family[m][idx])
    other = sampler.apply(data, keys, stream=4)
    assert any(not torch.equal(other.rho[m], full.rho[m]) for m in MODALITIES)


def test_sampler_groups_the_mixture_correctly():
    data, keys = make_data(b=12), keys_of(12)
    sampler = TrainingSampler(["noise", "missing"], p_clean_modality=0.25, seed=2).fit(make_data(seed=1))
    out = sampler.apply(data, keys, stream=1)
    assert {-1, 0, 1} <= {int(f) for m in MODALITIES for f in out.family[m]}
    for m in MODALITIES:
        fam = out.family[m]
        for b in range(12):
            row = torch.tensor([b])
            alone = data[m].index(row)
            if fam[b] == -1:
                assert out.rho[m][b] == 1.0 and same(out.data[m].index(row), alone)
                continue
            family = sampler.families[m][int(fam[b])]
            expected = family(alone, out.rho[m][b:b + 1], sampler.family_keys(keys[row], m, int(fam[b]), 1))
            assert same(out.data[m].index(row), expected)
            if family.name == "noise":
                assert torch.equal(out.data[m].mask[b], data[m].mask[b]) and not out.data[m].missing[b]
    assert sampler.family_names == ("noise", "missing")


def test_sampler_lnln_protocol_and_no_global_rng():
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    data = tiny(2000)
    sampler = TrainingSampler([{"name": "drop", "report_mask": False}], p_clean_sample=0.5)
    out = sampler.apply(data, keys_of(2000))
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.random.get_rng_state(), state[2])
    clean = torch.stack([out.family[m] == -1 for m in MODALITIES]).all(0)
    assert abs(float(clean.float().mean()) - 0.5) < 0.04
    assert all(torch.equal(out.data[m].mask, data[m].mask) for m in MODALITIES)
    dropped = torch.stack([(out.data[m].features == 0).float().mean((1, 2)) for m in MODALITIES])
    assert (dropped[:, clean] == 0).all() and dropped[:, ~clean].mean() > 0.3
    config = sampler.config()
    assert config["families"] == [{"name": "drop", "report_mask": False}] and config["versions"] == ["1"]
    assert config["p_clean_sample"] == 0.5


def test_sampler_validation():
    with pytest.raises(ValueError, match="weights"):
        TrainingSampler(["drop"], weights=[1, 2])
    with pytest.raises(ValueError, match="weights"):
        TrainingSampler(["drop", "noise"], weights=[-1, 2])
    with pytest.raises(ValueError, match="p_clean_sample"):
        TrainingSampler(["drop"], p_clean_sample=1.5)
    with pytest.raises(ValueError, match="rho_low"):
        TrainingSampler(["drop"], rho_low=0.8, rho_high=0.2)
    with pytest.raises(KeyError, match="video"):
        TrainingSampler(["drop"], modalities=["video"])
    with pytest.raises(UnknownNameError, match="drop"):
        TrainingSampler(["dorp"])
    with pytest.raises(ValueError, match="non-empty"):
        TrainingSampler("drop")
    with pytest.raises(KeyError, match="no 'audio' modality"):
        TrainingSampler(["drop"]).apply({"text": tiny(3)["text"]}, keys_of(3))


# ----------------------------------------------------------------------------- catalogue


def test_catalogue_rows_cover_the_feature_families():
    rows = {r["name"]: r for r in catalogue_rows("feature")}
    assert {"missing", "drop", "noise", "blur", "compose"} <= set(rows)
    assert rows["noise"]["rho=1"] == "+inf" and rows["noise"]["rho=0"] == "-inf"
    assert rows["noise"]["rho=0.5"] == "0" and rows["drop"]["rho=0.25"] == "0.75"
    assert rows["blur"]["rho=0.5"] == "2" and rows["noise"]["unit"] == "dB"
    assert all(r["level"] == "feature" for r in rows.values())
    with pytest.raises(ValueError, match="level"):
        catalogue_rows("pixel")
    assert format_parameter(math.inf) == "+inf" and format_parameter(-0.0) == "0"
    assert format_parameter(2 / 3) == "0.667"


def test_catalogue_document_is_in_sync():
    text = catalogue_markdown()
    assert (ROOT / "docs" / "corruptions.md").read_text(encoding="utf-8") == text, (
        "regenerate: python -m corruptions.catalogue > docs/corruptions.md"
    )
    run = subprocess.run(
        [sys.executable, "-W", "error", "-m", "corruptions.catalogue"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    assert run.stdout == text and run.stderr == ""


def test_corruptions_package_never_imports_robustmsa():
    for path in sorted((ROOT / "corruptions").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            assert not any(n == "robustmsa" or n.startswith("robustmsa.") for n in names), path


def test_readme_engine_snippet_runs():
    """The stand-alone example of the corruption engine in the README runs as written."""
    import re
    from pathlib import Path

    from corruptions import ModalityBatch

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(  import corruptions as C\n.*?)```", text, re.S).group(1)
    g = torch.Generator().manual_seed(0)

    def split(n):
        return {m: ModalityBatch(torch.randn(n, 6, d, generator=g), torch.ones(n, 6, dtype=torch.bool),
                                 torch.zeros(n, dtype=torch.bool)) for m, d in (("text", 8), ("audio", 3), ("vision", 4))}

    scope = {"sample_ids": [f"s{i}" for i in range(5)], "train": split(9), "test": split(5)}
    exec(compile("\n".join(line[2:] for line in snippet.splitlines()), "README.md", "exec"), scope)
    assert torch.equal(scope["one"]["text"].features, scope["test"]["text"].features)
    assert not torch.equal(scope["one"]["audio"].features, scope["test"]["audio"].features)
    assert len(scope["curve"]) == 3 and torch.equal(scope["curve"][0]["audio"].features, scope["test"]["audio"].features)
