"""Reliability of the store and the runner (docs/reliability.md): suite leases, orphans only when
their owner is provably gone, a parent run that ends in every path, and fail-fast checks that end
in one line on stderr, the right exit code and an untouched store. Real MLflow (SQLite) and Ray;
the slow tests run whole drivers as processes (the same suite twice, two suites on a new store, a
driver killed while Ray starts).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustmsa.cli import main
from robustmsa.tracking import Lease, LeaseOwner, Tracker, pid_alive

SMALL = ["models=[{name: late_fusion}]", "regimes=[clean]", "training.epochs=1"]


from helpers import mlflow_client as _client  # noqa: E402


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _fail_fast(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], float]:
    t0 = time.perf_counter()
    rc = main(argv)
    seconds = time.perf_counter() - t0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    print(f"fail-fast {argv[2:]}: exit {rc} in {seconds:.2f} s: {err[:1]}", file=sys.__stderr__)
    assert not any("Traceback" in line for line in err)
    assert len([line for line in err if line.startswith("error:")]) == 1 and len(err) <= 2, err  # error + hint
    return rc, err, seconds


# ---------------------------------------------------------------------------------------- leases
def test_a_live_lease_is_refused_to_a_second_contender_and_released(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = Tracker(uri, "exp").acquire_lease("suite", settle_s=0.0)
    assert isinstance(first, Lease)
    try:
        second = Tracker(uri, "exp").acquire_lease("suite", settle_s=0.0)
        assert isinstance(second, LeaseOwner) and second.pid == os.getpid() and second.run_id == first.run_id
        assert f"pid {os.getpid()}" in second.describe() and "since" in second.describe()
        assert isinstance(other := Tracker(uri, "exp").acquire_lease("other suite", settle_s=0.0), Lease)
        other.release()
        assert Tracker(uri, "exp").lease_holder("suite").run_id == first.run_id
    finally:
        first.release()
    assert Tracker(uri, "exp").lease_holder("suite") is None
    again = Tracker(uri, "exp").acquire_lease("suite", settle_s=0.0)
    assert isinstance(again, Lease)
    again.release()
    assert [r for r in _client(uri).search_runs([Tracker(uri, "exp").experiment_id])] == []  # leases are deleted


def _fake_lease(tracker: Tracker, suite: str, pid: int, host: str | None = None, beat: float | None = None) -> str:
    from robustmsa.tracking import _host

    h, boot = _host()
    now = f"{time.time() if beat is None else beat:.3f}"
    tags = {"robustmsa.kind": "lease", "robustmsa.suite": suite, "robustmsa.lease.host": host or h,
            "robustmsa.lease.boot": boot, "robustmsa.lease.pid": str(pid), "robustmsa.lease.since": now,
            "robustmsa.lease.heartbeat": now, "robustmsa.lease.state": "held"}
    return tracker.client.create_run(tracker.experiment_id, tags=tags).info.run_id


def test_orphans_are_only_the_runs_whose_owner_is_provably_gone(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "exp")
    dead = _fake_lease(tracker, "s", _dead_pid())  # same host, pid gone
    stale = _fake_lease(tracker, "t", os.getpid(), host="elsewhere", beat=time.time() - 3600)  # heartbeat stale
    live_remote = _fake_lease(tracker, "u", 1, host="elsewhere")  # another host, fresh heartbeat
    mine = tracker.acquire_lease("v", settle_s=0.0)

    def run(owner: str, suite: str) -> str:
        return tracker.client.create_run(tracker.experiment_id, tags={
            "robustmsa.kind": "invocation", "robustmsa.suite": suite, "robustmsa.lease": owner}).info.run_id

    gone = [run(dead, "s"), run(stale, "t")]
    alive = [run(live_remote, "u"), run(mine.run_id, "v")]
    try:
        assert Tracker(uri, "exp").mark_orphans_failed() == 2
    finally:
        mine.release()
    client = _client(uri)
    assert [client.get_run(r).info.status for r in gone] == ["FAILED", "FAILED"]
    assert all(client.get_run(r).data.tags["robustmsa.orphaned"] == "true" for r in gone)
    assert [client.get_run(r).info.status for r in alive] == ["RUNNING", "RUNNING"]
    assert client.get_run(dead).info.lifecycle_stage == "deleted"  # dead leases are cleared away
    assert client.get_run(live_remote).info.status == "RUNNING"
    assert not pid_alive(_dead_pid())
    assert pid_alive(os.getpid())


def test_a_suite_name_with_a_quote_is_searched_correctly(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "o'brien")
    lease = tracker.acquire_lease("o'brien", settle_s=0.0)
    try:
        assert Tracker(uri, "o'brien").lease_holder("o'brien").run_id == lease.run_id
        assert tracker.finished_trial_runs("o'brien") == []
    finally:
        lease.release()


def test_the_cli_refuses_a_suite_whose_lease_is_held(repo: Path, workdir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    lease = Tracker(uri, "smoke").acquire_lease("smoke", settle_s=0.0)
    try:
        rc, err, _ = _fail_fast(["run", str(repo / "suites" / "smoke.yaml"), f"tracking.uri={uri}", *SMALL], capsys)
    finally:
        lease.release()
    assert rc == 2 and "already running" in err[0] and f"pid {os.getpid()}" in err[0] and "since" in err[0]
    assert "--wait" in err[1]
    assert _client(uri).search_runs([Tracker(uri, "smoke").experiment_id]) == []  # nothing written


# -------------------------------------------------------------------------------- fail fast
@pytest.mark.parametrize(("extra", "needle"), [
    (["--ray-address", "127.0.0.1:1"], "not reachable"),
    (["--ray-address", "foo"], "not HOST:PORT"),
    (["tracking.uri=http://127.0.0.1:1"], "tracking server"),
    (["resources.cpus_per_trial=100"], "cpus_per_trial=100"),
    (["tracking.uri=sqlite:////nonexistent-robustmsa-dir/mlflow.db"], "does not exist"),
    (["tracking.uri=sqlite:////etc/hostname/mlflow.db"], "does not exist"),
    (["datasets=[{name: mmsa, params: {path: missing.pkl}}]"], "missing.pkl"),
])
def test_fail_fast_with_one_line_and_an_untouched_store(repo: Path, workdir: Path, extra: list[str], needle: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    Tracker(uri, "another")  # an existing store: the failing run must add nothing to it
    argv = ["run", str(repo / "suites" / "smoke.yaml"), f"tracking.uri={uri}", *SMALL, *extra]
    rc, err, seconds = _fail_fast(argv, capsys)
    assert rc == 2 and needle in err[0] and seconds < 15
    assert _client(uri).get_experiment_by_name("smoke") is None
    assert not (workdir / "mlruns" / "1").exists()


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` made read-only: a read-only tmpfs mount as root (permissions do not stop root), else chmod."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_working_directory_fails_fast(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    with _read_only(ro):
        monkeypatch.chdir(ro)
        rc, err, seconds = _fail_fast(["run", str(repo / "suites" / "smoke.yaml"), *SMALL], capsys)
        monkeypatch.chdir(tmp_path)
    assert rc == 2 and "not writable" in err[0] and seconds < 15


def test_the_parent_run_ends_failed_after_an_ordinary_exception(repo: Path, workdir: Path) -> None:
    from robustmsa.runner import run_suite
    from robustmsa.suite import load_suite

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    suite = load_suite(repo / "suites" / "smoke.yaml", [f"tracking.uri={uri}", *SMALL, "runner.backend=local"])

    def boom(name: str, state: str) -> None:
        raise RuntimeError("an ordinary bug")

    with pytest.raises(RuntimeError, match="ordinary bug"):
        run_suite(suite, on_trial=boom, make_report=False)
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    parents = [r for r in runs if r.data.tags.get("robustmsa.kind") == "invocation"]
    assert [r.info.status for r in parents] == ["FAILED"]
    assert all(r.info.status != "RUNNING" for r in runs)  # the lease is released (deleted) too
    assert Tracker(uri, "smoke").lease_holder("smoke") is None


# --------------------------------------------------------------- whole drivers, as processes
def _cli(workdir: Path, *argv: str, output: int = subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robustmsa.cli", *argv], cwd=workdir, stdout=output,
                            stderr=output, text=True, start_new_session=True)


def _held(db: Path) -> bool:
    try:
        with sqlite3.connect(db) as c:
            return bool(c.execute("select count(*) from tags t join runs r on r.run_uuid = t.run_uuid where "
                                  "t.key = 'robustmsa.lease.state' and t.value = 'held' and r.status = 'RUNNING' "
                                  "and r.lifecycle_stage = 'active'").fetchone()[0])
    except sqlite3.Error:
        return False


def _finished_trials(uri: str, experiment: str) -> list[str]:
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r.data.tags["robustmsa.trial_id"] for r in runs
            if r.data.tags.get("robustmsa.kind") == "trial" and r.info.status == "FINISHED"]


@pytest.mark.slow
@pytest.mark.services
def test_the_same_suite_twice_at_once_refuses_or_waits(repo: Path, workdir: Path) -> None:
    db = workdir / "mlflow.db"
    uri = f"sqlite:///{db}"
    args = ["run", str(repo / "suites" / "smoke.yaml"), "--backend", "local", f"tracking.uri={uri}",
            f"report.dir={workdir / 'reports'}", "models=[{name: late_fusion}]",
            "training.epochs=60", "training.patience=60"]  # long enough for the others to meet it running
    first = _cli(workdir, *args)
    deadline = time.time() + 120
    while not _held(db) and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()
    refused = subprocess.run([sys.executable, "-m", "robustmsa.cli", *args], cwd=workdir, capture_output=True,
                             text=True, timeout=120)
    waiter = _cli(workdir, *args, "--wait")
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    out, err = waiter.communicate(timeout=600)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"pid {first.pid}" in refused.stderr and "already running" in refused.stderr
    assert waiter.returncode == 0, err
    assert "waiting for the running invocation" in err and "0 trials run, 3 reused" in out
    ids = _finished_trials(uri, "smoke")
    assert len(ids) == len(set(ids)) == 3  # 2 regimes + the references, each FINISHED once


@pytest.mark.slow
@pytest.mark.services
def test_two_suites_at_once_on_a_brand_new_store(repo: Path, workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'new.db'}"
    procs = [_cli(workdir, "run", str(repo / "suites" / "smoke.yaml"), "--backend", "local", f"tracking.uri={uri}",
                  f"name={name}", f"report.dir={workdir / name}", *SMALL) for name in ("one", "two")]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for name in ("one", "two"):
        assert len(_finished_trials(uri, name)) == 2  # the model and the references


def _ray_processes(token_prefix: str, named: bytes = b"") -> list[int]:
    mark = f"\0ROBUSTMSA_RAY_OWNER={token_prefix}".encode()
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if mark in b"\0" + Path(f"/proc/{d}/environ").read_bytes() and \
                        named in Path(f"/proc/{d}/cmdline").read_bytes():
                    found.append(int(d))
    return found


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_no_ray_process_outlives_a_driver_killed_while_ray_starts(repo: Path, workdir: Path) -> None:
    # many epochs: the run must still be going when its Ray processes are seen (it is killed then)
    driver = _cli(workdir, "run", str(repo / "suites" / "smoke.yaml"), "--backend", "ray",
                  f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", *SMALL, "training.epochs=500",
                  "training.patience=500", output=subprocess.DEVNULL)
    prefix = f"{driver.pid}-"
    deadline = time.time() + 180
    # Ray is starting: its raylet is up (without the reaper, Ray's processes outlive a driver killed
    # now); the raylet, not the dashboard agent, whose process title depends on Ray's optional extras
    while not _ray_processes(prefix, b"raylet") and driver.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert driver.poll() is None and _ray_processes(prefix, b"raylet"), "Ray did not start"
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone, not its process group
    driver.wait()
    deadline = time.time() + 20
    while _ray_processes(prefix) and time.time() < deadline:
        time.sleep(0.5)
    left = _ray_processes(prefix)
    for pid in left:  # do not leave them to the next test
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert left == []


@pytest.mark.slow
def test_a_full_disk_while_writing_artifacts_is_one_line_and_exit_1(repo: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                                           capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        with contextlib.suppress(OSError), (full / "filler").open("wb") as f:
            while True:  # fill the file system
                f.write(b"\0" * 4096)
                f.flush()
        monkeypatch.chdir(full)  # ./mlruns, the artifacts, on the full file system; the database elsewhere
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        rc = main(["run", str(repo / "suites" / "smoke.yaml"), "--backend", "local", f"tracking.uri={uri}",
                   f"report.dir={tmp_path / 'reports'}", *SMALL])
        monkeypatch.chdir(tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and "Traceback" not in err and len(errors) == 1 and "writing trial" in errors[0], err
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert [r.info.status for r in runs if r.data.tags.get("robustmsa.kind") == "invocation"] == ["FAILED"]
    assert all(r.info.status != "RUNNING" for r in runs)
