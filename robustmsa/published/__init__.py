"""Published reference numbers and the stored (fixed) mCE reference curves: data shipped with robustmsa.

``published.yaml`` holds what papers print for their models under the protocols of
``suites/protocols/`` on the public MOSI / MOSEI / SIMS releases: facts only, every value exactly as
printed (a string), with its source, table and caveats (docs/protocols.md). :func:`load_published`
validates it; :meth:`PublishedTable.rows_for` gives the rows of one release and protocol. They are
shown beside a report's measured rows, never mixed with them and never ranked.

``mce_references/*.json`` hold the fixed corruption-error references (docs/reports.md, "mCE
reference"): per dataset and suite, the mean curve over seeds of a pinned late-fusion run, with its
provenance; written by ``scripts/make_mce_reference.py``, read by :func:`load_mce_references`.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import RobustMSAError

__all__ = ["PUBLISHED_PATH", "PUBLISHED_SCHEMA_VERSION", "RELEASES", "MCE_REFERENCE_DIR", "MCE_REFERENCE_SCHEMA",
           "PublishedRow", "PublishedTable", "PublishedError", "load_published", "load_mce_references"]

HERE = Path(__file__).resolve().parent
PUBLISHED_PATH = HERE / "published.yaml"
PUBLISHED_SCHEMA_VERSION = 1
RELEASES = ("MOSI", "MOSEI", "SIMS")
MCE_REFERENCE_DIR = HERE / "mce_references"
MCE_REFERENCE_SCHEMA = "robustmsa-mce-reference"

_ROW_KEYS = ("source", "table", "model", "dataset", "protocol", "condition", "metrics", "caveats")
_SOURCE_KEYS = ("paper", "venue", "arxiv", "where")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class PublishedError(RobustMSAError):
    """A published-numbers file or a stored mCE reference that does not follow its schema."""


@dataclass(frozen=True)
class PublishedRow:
    """One row as printed: ``metrics`` maps the paper's metric names (``Acc-2``, ``F1``, ``MAE``) to
    the values as printed (strings, so ``0.510`` keeps its digits)."""

    source: str
    paper: str
    venue: str
    arxiv: str
    where: str
    table: str
    model: str
    dataset: str
    protocol: str
    condition: str
    metrics: tuple[tuple[str, str], ...]
    caveats: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The row as it goes into a results document (``published: true``)."""
        return {"published": True, "paper": self.paper, "venue": self.venue, "arxiv": self.arxiv,
                "where": self.where, "table": self.table, "model": self.model, "dataset": self.dataset,
                "protocol": self.protocol, "condition": self.condition, "metrics": dict(self.metrics),
                "caveats": list(self.caveats)}


@dataclass(frozen=True)
class PublishedTable:
    """The validated table: its versions, the known file hashes per release, and its rows."""

    schema_version: int
    version: int
    release_sha256: Mapping[str, tuple[str, ...]]
    rows: tuple[PublishedRow, ...]
    path: str

    def rows_for(self, release: str | None, protocol: str) -> list[PublishedRow]:
        """The rows of ``release`` (MOSI, MOSEI, SIMS) under the suite named ``protocol``; [] for None."""
        return [r for r in self.rows if release is not None and r.dataset == release and r.protocol == protocol]

    def known_hashes(self) -> dict[str, str]:
        """file sha256 -> release, for :func:`robustmsa.data.mmsa.recognise_release`."""
        return {h: name for name, hashes in self.release_sha256.items() for h in hashes}


def _need(where: str, d: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(d, dict):
        raise PublishedError(f"{where}: expected a mapping with keys {', '.join(keys)}, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    unknown = sorted(set(d) - set(keys))
    if missing or unknown:
        raise PublishedError(f"{where}: missing keys {missing}, unknown keys {unknown}; allowed: {', '.join(keys)}")


def _metrics(where: str, raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or not raw:
        raise PublishedError(f"{where}.metrics: expected a non-empty mapping of metric name to value as printed")
    for name, value in raw.items():
        if not isinstance(value, str) or not _NUMBER.match(value):
            raise PublishedError(f"{where}.metrics.{name}: {value!r} is not a number written as a string "
                                 "(quote it, exactly as printed, e.g. \"0.515\")")
    return tuple((str(k), v) for k, v in raw.items())


def _row(where: str, raw: Any, sources: dict[str, Any]) -> PublishedRow:
    _need(where, raw, _ROW_KEYS)
    if raw["source"] not in sources:
        raise PublishedError(f"{where}.source: {raw['source']!r} is not a source; allowed: {', '.join(sources)}")
    if raw["dataset"] not in RELEASES:
        raise PublishedError(f"{where}.dataset: {raw['dataset']!r} is not a release; allowed: {', '.join(RELEASES)}")
    if not isinstance(raw["caveats"], list) or not all(isinstance(c, str) for c in raw["caveats"]):
        raise PublishedError(f"{where}.caveats: expected a list of strings")
    src = sources[raw["source"]]
    return PublishedRow(source=raw["source"], **{k: str(src[k]) for k in _SOURCE_KEYS},
                        **{k: str(raw[k]) for k in ("table", "model", "dataset", "protocol", "condition")},
                        metrics=_metrics(where, raw["metrics"]), caveats=tuple(raw["caveats"]))


def _releases(file: str, raw: Any) -> dict[str, tuple[str, ...]]:
    _need(f"{file}: releases", raw, RELEASES)
    out = {}
    for name in RELEASES:
        _need(f"{file}: releases.{name}", raw[name], ("sha256",))
        hashes = raw[name]["sha256"]
        if not isinstance(hashes, list) or not all(isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h)
                                                   for h in hashes):
            raise PublishedError(f"{file}: releases.{name}.sha256: expected a list of 64-hex-digit file hashes")
        out[name] = tuple(hashes)
    return out


def load_published(path: str | Path | None = None) -> PublishedTable:
    """Read and validate a published-numbers file (default: the one shipped, ``published.yaml``)."""
    p = Path(path) if path is not None else PUBLISHED_PATH
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PublishedError(f"{p}: cannot read the published numbers ({e})") from None
    _need(str(p), raw, ("schema_version", "version", "releases", "sources", "rows"))
    if raw["schema_version"] != PUBLISHED_SCHEMA_VERSION:
        raise PublishedError(f"{p}: schema_version {raw['schema_version']!r} is not {PUBLISHED_SCHEMA_VERSION}",
                             hint="this robustmsa reads published-numbers files of schema version 1")
    sources = raw["sources"] if isinstance(raw["sources"], dict) else {}
    for name, src in sources.items():
        _need(f"{p}: sources.{name}", src, _SOURCE_KEYS)
    rows = tuple(_row(f"{p}: rows[{i}]", r, sources) for i, r in enumerate(raw["rows"] or []))
    return PublishedTable(int(raw["schema_version"]), int(raw["version"]), _releases(str(p), raw["releases"]),
                          rows, str(p))


def load_mce_references(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """Every stored mCE reference document of ``folder`` (default: the shipped ones), sorted by file name;
    each is checked for its schema name and keys (docs/reports.md)."""
    d = Path(folder) if folder is not None else MCE_REFERENCE_DIR
    out = []
    for f in sorted(d.glob("*.json")):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PublishedError(f"{f}: not a readable JSON file ({e})") from None
        keys = ("schema", "schema_version", "dataset", "suite", "model", "match", "curves", "provenance")
        if not isinstance(doc, dict) or doc.get("schema") != MCE_REFERENCE_SCHEMA:
            raise PublishedError(f"{f}: not a stored mCE reference (schema {MCE_REFERENCE_SCHEMA!r})")
        _need(str(f), doc, keys)
        out.append({**doc, "file": f.name})
    return out
