"""The watcher against both stores: sync, rebuild on change, invalid input, deletions, restarts,
etcd loss and compaction, kill -9 with a concurrent reader. Real etcd, real processes."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from configdrive.errors import StoreError
from configdrive.stores import SpecStore, open_store, put_spec
from configdrive.watch import Watcher
from tests.watch.conftest import converged, running, spec
from tests.watch.servers import ROOT, EtcdServer, WatcherProcess, wait_for


def test_once_builds_every_vm_and_removes_orphans(store: SpecStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for vm in ("a", "b", "c"):
        put_spec(store, vm, spec(vm, 1))
    Watcher(store, out).run(once=True)
    assert converged(out, {"a": 1, "b": 1, "c": 1})
    store.delete("b")
    (out / ".a.iso.x1y2.tmp").write_bytes(b"left by a crash")
    Watcher(store, out, keep_deleted=True).run(once=True)
    assert (out / "b.iso").exists() and not (out / ".a.iso.x1y2.tmp").exists()
    watcher = Watcher(store, out)
    watcher.run(once=True)
    assert sorted(p.name for p in out.iterdir()) == ["a.iso", "c.iso"]
    assert watcher.counts["unchanged"] == 2 and watcher.counts["written"] == 0


def test_changes_rebuild_only_that_vm(store: SpecStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    put_spec(store, "a", spec("a", 1))
    put_spec(store, "b", spec("b", 1))
    with running(Watcher(store, out)) as watcher:
        b_inode = (out / "b.iso").stat().st_ino
        put_spec(store, "a", spec("a", 2))
        wait_for(lambda: converged(out, {"a": 2}), 10, "a's rebuild")
        assert (out / "b.iso").stat().st_ino == b_inode
        # Same rendered content (a comment changed): no rewrite.
        a_inode = (out / "a.iso").stat().st_ino
        put_spec(store, "a", spec("a", 2) + b"# just a comment\n")
        wait_for(lambda: watcher.counts["unchanged"], 10, "the unchanged rebuild")
        assert (out / "a.iso").stat().st_ino == a_inode
        store.delete("a")
        wait_for(lambda: not (out / "a.iso").exists(), 10, "a's ISO removal")
        assert (out / "b.iso").exists()


def test_an_invalid_spec_keeps_the_last_good_iso(store: SpecStore, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    put_spec(store, "a", spec("a", 1))
    caplog.set_level(logging.INFO, "configdrive")
    with running(Watcher(store, out)) as watcher:
        good = (out / "a.iso").read_bytes()
        store.put("a", b"instance_id: iid-a\nhostname: 'not a host'\nuser_data: SECRET-1\n")
        wait_for(lambda: watcher.counts["invalid"], 10, "the invalid spec to be seen")
        assert (out / "a.iso").read_bytes() == good
        store.put("a", b"{{{ not yaml")  # bad syntax too: the watcher keeps going
        wait_for(lambda: watcher.counts["invalid"] == 2, 10, "the second invalid spec")
        put_spec(store, "a", spec("a", 3))
        wait_for(lambda: converged(out, {"a": 3}), 10, "the fixed spec's rebuild")
    assert "problems at: hostname" in caplog.text
    assert "SECRET-1" not in caplog.text and "not a host" not in caplog.text


def test_logs_whether_cloud_init_will_act_on_a_change(store: SpecStore, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, "configdrive")
    put_spec(store, "a", spec("a", 1))
    with running(Watcher(store, out)) as watcher:
        put_spec(store, "a", spec("a", 2))  # new hostname, same instance id
        wait_for(lambda: converged(out, {"a": 2}), 10, "a's rebuild")
        wait_for(lambda: "will not re-run per-instance config" in caplog.text, 10, "the warning")
        put_spec(store, "a", spec("a", 3).replace(b"iid-a", b"iid-a-v2"))
        wait_for(lambda: "new instance id 'iid-a-v2' (was 'iid-a')" in caplog.text, 10, "the notice")
        assert watcher.counts["written"] >= 3


def test_a_thousand_updates_while_the_watcher_runs(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    out, vms = tmp_path / "out", [f"vm{i:02d}" for i in range(20)]
    latest = {vm: 0 for vm in vms}
    for vm in vms:
        store.put(vm, spec(vm, 0))
    watcher = WatcherProcess(store_url, out, tmp_path / "watch.log", "--jobs", "1").start()
    try:
        watcher.wait_synced()
        rng = random.Random(3)
        for _ in range(1000):
            vm = rng.choice(vms)
            latest[vm] += 1
            store.put(vm, spec(vm, latest[vm]))
        wait_for(lambda: converged(out, latest), 60, "every ISO to match its latest spec", 0.2)
        assert watcher.stop() == 0
    finally:
        store.close()
        if watcher.process and watcher.process.poll() is None:
            watcher.stop()
    assert "Traceback" not in watcher.log_text()


def test_sighup_resyncs_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    (specs / "a.yaml").write_bytes(spec("a", 1))
    watcher = WatcherProcess(f"dir:{specs}", out, tmp_path / "watch.log").start()
    watcher.wait_synced()
    watcher.signal(signal.SIGHUP)
    wait_for(lambda: "resync (SIGHUP) done" in watcher.log_text(), 10, "the SIGHUP resync")
    started = time.monotonic()
    assert watcher.stop() == 0
    assert time.monotonic() - started < 5
    assert "stopped at revision" in watcher.log_text()


@pytest.mark.etcd
def test_etcd_killed_and_restarted_mid_stream(own_etcd: EtcdServer, tmp_path: Path) -> None:
    url, out = f"{own_etcd.url}/fleet/host1/", tmp_path / "out"
    vms = [f"vm{i}" for i in range(10)]
    latest = {vm: 0 for vm in vms}
    store = open_store(url)
    for vm in vms:
        store.put(vm, spec(vm, 0))
    watcher = WatcherProcess(url, out, tmp_path / "watch.log").start()
    try:
        watcher.wait_synced()

        def writes(count: int) -> None:
            for i in range(count):
                vm = vms[i % len(vms)]
                while True:  # the writer retries too: etcd may be down at any moment
                    try:
                        store.put(vm, spec(vm, latest[vm] + 1))
                        latest[vm] += 1
                        break
                    except StoreError:
                        time.sleep(0.05)

        writer = threading.Thread(target=writes, args=(300,))
        writer.start()
        time.sleep(0.3)
        own_etcd.kill()
        time.sleep(1.0)
        own_etcd.start()
        writer.join(60)
        wait_for(lambda: converged(out, latest), 30, "convergence after the restart", 0.2)
        assert "unavailable" in watcher.log_text()
        assert "resync after compaction" not in watcher.log_text()  # resumed, not re-listed
        assert watcher.stop() == 0
    finally:
        store.close()
        if watcher.process and watcher.process.poll() is None:
            watcher.stop()


@pytest.mark.etcd
def test_compaction_past_the_watchers_revision_resyncs(etcd_server: EtcdServer, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    url, out = f"{etcd_server.url}/compact/{os.getpid()}/", tmp_path / "out"
    store = open_store(url)
    for vm in ("a", "b", "c"):
        store.put(vm, spec(vm, 1))
    watcher = Watcher(store, out)
    watcher.run(once=True)
    store.put("a", spec("a", 2))
    store.delete("b")
    revision = store.put("c", spec("c", 2))
    _compact(etcd_server, revision)
    caplog.set_level(logging.INFO, "configdrive")
    with running(watcher):  # resumes from its sync's revision, which etcd no longer has
        wait_for(lambda: converged(out, {"a": 2, "c": 2}) and not (out / "b.iso").exists(),
                 10, "the resync after compaction")
    store.close()
    assert "compacted past revision" in caplog.text


def _compact(server: EtcdServer, revision: int) -> None:
    import etcd3

    client = etcd3.client("127.0.0.1", server.port)
    client.compact(revision, physical=True)
    client.close()


READER = r"""
import json, os, sys, time
from configdrive.errors import IsoError
from configdrive.iso import read_iso
out, stop = sys.argv[1], sys.argv[2]
reads = bad = 0
errors = []
while not os.path.exists(stop):
    for name in os.listdir(out):
        if not name.endswith(".iso") or name.startswith("."):
            continue
        try:
            image = read_iso(os.path.join(out, name))
            assert b"instance-id" in image.files["meta-data"]
            reads += 1
        except IsoError as err:
            if isinstance(err.__cause__, FileNotFoundError):
                continue
            bad += 1
            errors.append(f"{name}: {err}")
        except (AssertionError, KeyError) as err:
            bad += 1
            errors.append(f"{name}: {err!r}")
print(json.dumps({"reads": reads, "bad": bad, "errors": errors[:5]}))
"""


def test_kill_9_never_shows_a_reader_a_partial_iso(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    out, vms = tmp_path / "out", [f"vm{i}" for i in range(6)]
    out.mkdir()
    latest = {vm: 0 for vm in vms}
    for vm in vms:
        store.put(vm, spec(vm, 0, padding=150_000))  # big ISOs: a long window for a torn write
    stop = tmp_path / "stop-reader"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(out), str(stop)],
                              stdout=subprocess.PIPE, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    rng = random.Random(9)
    log = tmp_path / "watch.log"
    try:
        for _ in range(3):
            watcher = WatcherProcess(store_url, out, log).start()
            deadline = time.monotonic() + rng.uniform(0.8, 1.6)
            while time.monotonic() < deadline:
                vm = rng.choice(vms)
                latest[vm] += 1
                store.put(vm, spec(vm, latest[vm], padding=150_000))
                time.sleep(0.005)
            assert watcher.process is not None
            os.kill(watcher.process.pid, signal.SIGKILL)
            watcher.process.wait()
        watcher = WatcherProcess(store_url, out, tmp_path / "final-watch.log").start()
        # The ISOs may already match before this watcher is up; SIGTERM before it installed its
        # handler would kill it outright, so wait for its own sync first.
        watcher.wait_synced()
        wait_for(lambda: converged(out, latest), 60, "convergence after the restarts", 0.2)
        assert watcher.stop() == 0
    finally:
        stop.touch()
        result = json.loads(reader.communicate(timeout=60)[0])
        store.close()
    assert result["bad"] == 0, result["errors"]
    assert result["reads"] > 50
