"""Integration with real services started by the test: `mlflow server` and `ray start --head`,
both bound to 127.0.0.1. A tiny suite runs against both; the degradation curves are read back
through MLflow's REST API (metric history). Everything the test started is stopped.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from robustmsa.cli import main

pytestmark = [pytest.mark.services, pytest.mark.slow]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback only
        return r.read()


@pytest.fixture()
def mlflow_server(tmp_path: Path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(tmp_path / "mlflow-server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _get(f"{url}/health").strip() == b"OK":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (tmp_path / "mlflow-server.log").read_text())
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: its workers must not outlive the test
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture()
def ray_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Token authentication stays on. The cluster uses the user's token file (~/.ray/auth_token,
    # created if absent), the same one the driver loads: a Ray driver process caches the token it
    # first read, so a fresh per-test token would be refused after an earlier local Ray session.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    assert (Path.home() / ".ray" / "auth_token").is_file()
    port = _free_port()
    # --block keeps `ray start` in the foreground with the cluster's processes in its own process
    # group: teardown kills exactly that group (`ray stop --force` would kill every Ray cluster of
    # the user on this machine, e.g. a suite running beside the tests). A private --temp-dir keeps
    # the cluster out of /tmp/ray/ray_current_cluster, so no later `ray.init()` finds it, dead or alive.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are length-limited
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
           "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--block",
           "--temp-dir", temp_dir]
    log = open(tmp_path / "ray-head.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            out = subprocess.run([str(BIN / "ray"), "status", "--address", f"127.0.0.1:{port}"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and "Active" in out.stdout:
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("ray head did not start:\n" + (tmp_path / "ray-head.log").read_text())
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # `ray start --block` does not stop its group on SIGTERM
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_suite_on_mlflow_server_and_ray_cluster(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                mlflow_server: str, ray_head: str) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", str(repo / "suites" / "smoke.yaml"), "--ray-address", ray_head,
            f"tracking.uri={mlflow_server}", f"report.dir={tmp_path / 'reports'}",
            "models=[{name: qa_moe}]", "regimes=[spectrum]"]
    assert main(argv) == 0
    exp = json.loads(_get(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=smoke"))
    exp_id = exp["experiment"]["experiment_id"]
    req = urllib.request.Request(
        f"{mlflow_server}/api/2.0/mlflow/runs/search", method="POST",
        data=json.dumps({"experiment_ids": [exp_id], "max_results": 100}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        runs = json.loads(r.read())["runs"]
    every = [r for r in runs if {"key": "robustmsa.kind", "value": "trial"} in r["data"]["tags"]]
    references = [r for r in every if {"key": "kind", "value": "reference"} in r["data"].get("params", [])]
    trials = [r for r in every if r not in references]
    assert len(trials) == 1 and trials[0]["info"]["status"] == "FINISHED"
    assert len(references) == 1 and references[0]["info"]["status"] == "FINISHED"  # the oracle and the probes
    oracle = json.loads(_get(f"{mlflow_server}/api/2.0/mlflow/metrics/get-history?run_id="
                             f"{references[0]['info']['run_id']}&metric_key=oracle/curve/noise/joint/mae"))["metrics"]
    assert sorted(m["step"] for m in oracle) == [0, 500, 1000]
    rid = trials[0]["info"]["run_id"]
    hist = json.loads(_get(f"{mlflow_server}/api/2.0/mlflow/metrics/get-history?run_id={rid}"
                           "&metric_key=curve/noise/joint/mae"))["metrics"]
    assert sorted(m["step"] for m in hist) == [0, 500, 1000]
    assert all(m["value"] > 0 for m in hist)
    assert (tmp_path / "reports" / "smoke" / "results.md").read_text().count("qa_moe (spectrum)") >= 2


def test_lease_on_an_mlflow_server_and_resources_checked_against_a_ray_cluster(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        mlflow_server: str, ray_head: str) -> None:
    """The suite lease works through a server store (a second contender is refused, naming the
    owner); a trial no node of the cluster can run fails fast, one line, exit 2, the server untouched."""
    from robustmsa.tracking import Lease, LeaseOwner, Tracker

    monkeypatch.chdir(tmp_path)
    lease = Tracker(mlflow_server, "leased").acquire_lease("smoke")
    try:
        assert isinstance(lease, Lease)
        other = Tracker(mlflow_server, "leased").acquire_lease("smoke")
        assert isinstance(other, LeaseOwner) and other.pid == os.getpid()
    finally:
        lease.release()
    assert Tracker(mlflow_server, "leased").lease_holder("smoke") is None

    argv = ["run", str(repo / "suites" / "smoke.yaml"), "--ray-address", ray_head, f"tracking.uri={mlflow_server}",
            "models=[{name: qa_moe}]", "regimes=[spectrum]", "resources.cpus_per_trial=100"]
    t0 = time.perf_counter()
    assert main(argv) == 2
    seconds = time.perf_counter() - t0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[0].startswith("error: resources.cpus_per_trial=100") and "Traceback" not in "".join(err)
    assert len(err) == 2 and seconds < 60, (err, seconds)
    with pytest.raises(urllib.error.HTTPError):  # no experiment was created
        _get(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=smoke")


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def test_what_the_mlflow_ui_reads_through_the_rest_api(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       mlflow_server: str) -> None:
    """What the UI shows comes from MLflow's REST API: read it as the UI does (no MLflow client).
    Curves at step = round(1000 rho) (so "Latest" is the clean value); the run's start and end
    bracket its training (its run existed while it trained, epochs logged live through Ray's event
    queue); the dataset input; a name that says what the trial is; no "None" params."""
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    argv = ["run", str(repo / "suites" / "smoke.yaml"), "--backend", "ray", f"tracking.uri={mlflow_server}",
            f"report.dir={tmp_path / 'reports'}", "models=[{name: qa_moe}]", "regimes=[spectrum]",
            "evaluation.references=false", "training.epochs=3", "training.patience=3"]
    assert main(argv) == 0
    api = f"{mlflow_server}/api/2.0/mlflow"
    exp_id = json.loads(_get(f"{api}/experiments/get-by-name?experiment_name=smoke"))["experiment"]["experiment_id"]
    runs = _post(f"{api}/runs/search", {"experiment_ids": [exp_id], "max_results": 100,
                                        "filter": "tags.`robustmsa.kind` = 'trial'"})["runs"]
    assert len(runs) == 1
    run = json.loads(_get(f"{api}/runs/get?run_id={runs[0]['info']['run_id']}"))["run"]
    info, tags = run["info"], {t["key"]: t["value"] for t in run["data"]["tags"]}
    rid = info["run_id"]
    assert info["status"] == "FINISHED" and info["run_name"] == "qa_moe · spectrum · seed 0"
    assert (tags["model"], tags["regime"], tags["seed"], tags["dataset"]) == ("qa_moe", "spectrum", "0",
                                                                              "synthetic_trimodal")
    assert "AUDC MAE" in tags["mlflow.note.content"] and "None" not in [p["value"] for p in run["data"]["params"]]
    assert json.loads(tags["robustmsa.corruption_versions"])["noise"]
    dataset = run["inputs"]["dataset_inputs"][0]["dataset"]
    assert dataset["name"] == "synthetic_trimodal" and dataset["digest"] == tags["robustmsa.data_hash"]

    def history(key: str) -> list[dict]:
        return json.loads(_get(f"{api}/metrics/get-history?run_id={rid}&metric_key={key}"))["metrics"]

    rows = pd.read_csv(tmp_path / "reports" / "smoke" / "rows.csv")
    curve = rows[(rows.family == "noise") & (rows.sweep == "joint") & (rows.metric == "mae")]
    expected = {round(1000 * lv): v for lv, v in zip(curve.level, curve.value)}
    got = {m["step"]: m["value"] for m in history("curve/noise/joint/mae")}
    assert sorted(got) == [0, 500, 1000] and got == pytest.approx(expected)  # step = round(1000 rho)
    latest = {m["key"]: m["value"] for m in run["data"]["metrics"]}["curve/noise/joint/mae"]
    assert latest == pytest.approx(expected[1000])  # "Latest" in the UI is the clean end

    epochs = sorted(history("train/train_loss"), key=lambda m: m["step"])
    assert [m["step"] for m in epochs] == [0, 1, 2]
    start, end = int(info["start_time"]), int(info["end_time"])
    assert start < int(epochs[0]["timestamp"]) <= int(epochs[-1]["timestamp"]) < end
