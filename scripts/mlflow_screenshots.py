"""Screenshots of the MLflow UI for docs/mlflow.md, made from a real run (not run in CI).

It runs a small suite (suites/smoke.yaml: QA-MoE and late fusion x clean and spectrum training,
3 epochs) into a fresh SQLite store in a temporary directory, starts ``mlflow server`` on
127.0.0.1 (no job execution, one worker, in its own process group, stopped at the end), and takes
headless Chromium screenshots of the pages docs/mlflow.md describes:

- ``mlflow_runs.png``: the experiment's runs table (run names, Dataset column, tags);
- ``mlflow_run.png``: one trial run's overview (description, params, tags, dataset, times);
- ``mlflow_curve.png``: a degradation curve of the four trials overlaid on the metric page,
  x-axis = step = round(1000 rho);
- ``mlflow_compare.png``: the compare page of the four trials.

Usage (from the repository root, about 2 minutes on 2 cores)::

    python scripts/mlflow_screenshots.py [--out docs/img] [--chromium /usr/bin/chromium]

The MLflow UI is a single-page app that fetches its data after loading: Chromium's
``--virtual-time-budget`` lets it run for that long (in virtual time) before the capture. PNGs are
re-encoded with a reduced palette (Pillow) to stay small.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_suite(work: Path) -> str:
    """The smoke suite into ``work``/mlflow.db; its tracking URI."""
    import robustmsa

    uri = f"sqlite:///{work / 'mlflow.db'}"
    os.chdir(work)
    robustmsa.run(str(REPO / "suites" / "smoke.yaml"), overrides={
        "tracking.uri": uri, "report.dir": str(work / "reports"), "training.epochs": 3, "training.patience": 3,
        "evaluation.references": False}, backend="local", quiet=True)
    return uri


def start_server(uri: str, work: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", uri, "--default-artifact-root", str(work / "mlruns")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:  # noqa: S310 - loopback only
                if r.read().strip() == b"OK":
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError("mlflow server did not start within 120 s")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _api(url: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def pages(url: str) -> dict[str, str]:
    """name -> URL of each page to capture."""
    exp = _api(url, "experiments/get-by-name?experiment_name=smoke")["experiment"]["experiment_id"]
    runs = _api(url, "runs/search", {"experiment_ids": [exp], "max_results": 50,
                                     "filter": "tags.`robustmsa.kind` = 'trial'"})["runs"]
    ids = [r["info"]["run_id"] for r in runs]
    qa = next(r["info"]["run_id"] for r in runs if r["info"]["run_name"] == "qa_moe · spectrum · seed 0")
    key = "curve/noise/joint/mae"
    metric = (f"/metric/{urllib.parse.quote(key, safe='')}?runs={json.dumps(ids)}&metric="
              f"{urllib.parse.quote(json.dumps(key))}&experiments={json.dumps([exp])}&plot_metric_keys="
              f"{urllib.parse.quote(json.dumps([key]))}&plot_layout={{}}&x_axis=step&y_axis_scale=linear"
              "&line_smoothness=1&show_point=true&deselected_curves=[]&last_linear_y_axis_range=[]")
    trials = urllib.parse.quote("tags.`robustmsa.kind` = 'trial'")  # the children, not folded under the parent
    return {"mlflow_runs": f"{url}/#/experiments/{exp}/runs?searchFilter={trials}",
            "mlflow_run": f"{url}/#/experiments/{exp}/runs/{qa}",
            "mlflow_curve": f"{url}/#{metric}",
            "mlflow_compare": f"{url}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([exp])}"}


def shoot(chromium: str, page: str, png: Path, size: str = "1920,1080", budget_ms: int = 20000) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
                        f"--screenshot={png}", page], check=True, capture_output=True, timeout=180)


def shrink(png: Path, colors: int = 128) -> None:
    from PIL import Image

    Image.open(png).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlflow-shots-") as tmp:
        work = Path(tmp)
        uri = run_suite(work)
        proc, url = start_server(uri, work)
        try:
            for name, page in pages(url).items():
                png = out / f"{name}.png"
                shoot(args.chromium, page, png)
                shrink(png)
                print(f"{png} ({png.stat().st_size // 1024} KB) <- {page}")
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
