"""Write a stored (fixed) mCE reference: one pinned model of a suite, run through the real runner.

    python scripts/make_mce_reference.py suites/continuous_spectrum.yaml --regime clean --seeds 0 1 2
    python scripts/make_mce_reference.py suites/protocols/lnln.yaml --seeds 1111 1112 1113

The suite is run as it is written (its dataset, training, evaluation grid and seed) restricted to
``--model`` (default late_fusion, its configuration as the suite gives it), ``--regime`` (default the
suite's first) and ``--seeds``, without the reference predictors, in a fresh tracking store in a
temporary folder (your store is not touched). The rows read back from that store become the
reference document (per curve and level the mean over seeds of every metric, the data hash, grid id
and corruption versions a report must match, and the provenance: code version, configuration,
command), written to ``robustmsa/published/mce_references/<dataset>__<suite>.json``
(docs/reports.md, "The mCE reference").
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from robustmsa.api import run
from robustmsa.plan import code_version, expand_trials
from robustmsa.published import MCE_REFERENCE_DIR
from robustmsa.reports.build import file_part
from robustmsa.reports.mce_reference import reference_document
from robustmsa.suite import Suite, load_suite


def pinned_suite(path: str, model: str, regime: str | None, seeds: list[int], uri: str) -> Suite:
    """The suite of ``path`` restricted to one model, one regime and ``seeds``, in the store ``uri``."""
    s = load_suite(path)
    models = [m for m in s.models if m.display == model]
    regimes = [r for r in s.regimes if r.name == (regime or s.regimes[0].name)]
    if not models or not regimes:
        raise SystemExit(f"{path}: no model {model!r} (models: {[m.display for m in s.models]}) or no regime "
                         f"{regime!r} (regimes: {[r.name for r in s.regimes]})")
    if len(s.datasets) != 1:
        raise SystemExit(f"{path}: a reference is made on one dataset; the suite has {len(s.datasets)}")
    return s.model_copy(update={
        "models": models, "regimes": regimes, "seeds": seeds,
        "evaluation": s.evaluation.model_copy(update={"references": False}),
        "tracking": s.tracking.model_copy(update={"uri": uri}),
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", help="suite file (its dataset, training and grid are used as written)")
    ap.add_argument("--model", default="late_fusion", help="label of the pinned model (default late_fusion)")
    ap.add_argument("--regime", default=None, help="regime name (default: the suite's first)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds (default 0 1 2)")
    ap.add_argument("--out", default=str(MCE_REFERENCE_DIR), help="folder of the stored references")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mce_reference_") as tmp:
        suite = pinned_suite(args.suite, args.model, args.regime, args.seeds, f"sqlite:///{tmp}/mlflow.db")
        spec = expand_trials(suite)[0]
        res = run(suite, backend="local", report=False)
        rows = res.rows[res.rows["model"] == args.model]
        provenance = {"code_versions": [code_version()], "suite_file": Path(args.suite).as_posix(),
                      "suite_version": str(suite.version), "regime": suite.regimes[0].name,
                      "config": json.loads(json.dumps(spec.resolved(), default=str)),
                      "command": "python scripts/make_mce_reference.py " + " ".join(argv or sys.argv[1:])}
        doc = reference_document(rows, provenance)
    out = Path(args.out) / f"{file_part(doc['dataset'])}__{file_part(suite.name)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(doc['curves'])} curves, seeds {doc['provenance']['seeds']}, "
          f"data {doc['match']['data_hash']}, grid {doc['match']['protocol_id']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
