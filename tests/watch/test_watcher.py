"""The watcher against both stores and every format: sync, rebuild on change, invalid input, a
renderer's bug, deletions, restarts, etcd loss and compaction, kill -9 with a concurrent reader.
Real etcd, real processes."""

from __future__ import annotations

import dataclasses
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
from configdrive.render import FORMATS
from configdrive.seed import build_seed
from configdrive.sinks import seed_folder
from configdrive.stores import SpecStore, open_store, put_spec
from tests.watch.conftest import converged, images, iso_hostname, running, spec
from tests.watch.servers import ROOT, EtcdServer, WatcherProcess, wait_for


def test_once_builds_every_vm_and_removes_orphans(store: SpecStore, fmt: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for vm in ("a", "b", "c"):
        put_spec(store, vm, spec(vm, 1))
    seed_folder(store, out, fmt).follower.run(once=True)
    assert converged(out, {"a": 1, "b": 1, "c": 1}, fmt)
    store.delete("b")
    (out / ".a.iso.x1y2.tmp").write_bytes(b"left by a crash")
    seed_folder(store, out, fmt, keep_deleted=True).follower.run(once=True)
    assert (out / "b.iso").exists() and not (out / ".a.iso.x1y2.tmp").exists()
    watch = seed_folder(store, out, fmt)
    watch.follower.run(once=True)
    assert images(out) == ["a.iso", "c.iso"]
    # A restart builds nothing that an earlier run built from the same input.
    assert watch.follower.counts["skipped"] == 2 and watch.follower.counts["built"] == 0
    assert watch.images.counts["written"] == 0


def test_changes_rebuild_only_that_vm(store: SpecStore, fmt: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    put_spec(store, "a", spec("a", 1))
    put_spec(store, "b", spec("b", 1))
    with running(seed_folder(store, out, fmt)) as watch:
        b_inode = (out / "b.iso").stat().st_ino
        put_spec(store, "a", spec("a", 2))
        wait_for(lambda: converged(out, {"a": 2}, fmt), 10, "a's rebuild")
        assert (out / "b.iso").stat().st_ino == b_inode
        # Same rendered content (a comment changed): no rewrite.
        a_inode = (out / "a.iso").stat().st_ino
        put_spec(store, "a", spec("a", 2) + b"# just a comment\n")
        wait_for(lambda: watch.images.counts["unchanged"], 10, "the unchanged rebuild")
        assert (out / "a.iso").stat().st_ino == a_inode
        store.delete("a")
        wait_for(lambda: not (out / "a.iso").exists(), 10, "a's ISO removal")
        assert (out / "b.iso").exists()


def test_an_invalid_spec_keeps_the_last_good_iso(
    store: SpecStore, fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    put_spec(store, "a", spec("a", 1))
    caplog.set_level(logging.INFO, "configdrive")
    with running(seed_folder(store, out, fmt)) as watch:
        good = (out / "a.iso").read_bytes()
        store.put("a", b"instance_id: iid-a\nhostname: 'not a host'\nuser_data: SECRET-1\n")
        wait_for(lambda: watch.follower.counts["invalid"], 10, "the invalid spec to be seen")
        assert (out / "a.iso").read_bytes() == good
        store.put("a", b"{{{ not yaml")  # bad syntax too: the watcher keeps going
        wait_for(lambda: watch.follower.counts["invalid"] == 2, 10, "the second invalid spec")
        put_spec(store, "a", spec("a", 3))
        wait_for(lambda: converged(out, {"a": 3}, fmt), 10, "the fixed spec's rebuild")
    assert "problems at: hostname" in caplog.text
    assert "SECRET-1" not in caplog.text and "not a host" not in caplog.text


#: A bug of ours per VM: each makes the renderer raise for that VM's second version.
FAULTS = {"bad-type": TypeError, "bad-recursion": RecursionError, "bad-memory": MemoryError, "bad-key": KeyError}


def test_a_renderer_bug_stays_with_its_vm(
    store: SpecStore, fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any exception while building one VM's seed (a bug of ours) leaves that VM at its last good
    seed, is logged once without the spec's values, and every other VM keeps updating."""
    out = tmp_path / "out"
    vms = [*FAULTS, "good1", "good2"]
    for vm in vms:
        put_spec(store, vm, spec(vm, 1))
    form = FORMATS[fmt]

    def render(vm_spec):  # type: ignore[no-untyped-def]
        vm_id, _, version = vm_spec.hostname.removeprefix("h-").rpartition("-")
        if vm_id in FAULTS and version != "1":
            raise FAULTS[vm_id](f"SECRET-VALUE {vm_spec.hostname}")
        return form.render(vm_spec)

    monkeypatch.setitem(FORMATS, fmt, dataclasses.replace(form, render=render))
    caplog.set_level(logging.INFO, "configdrive")
    with running(seed_folder(store, out, fmt)) as watch:
        good = {vm: (out / f"{vm}.iso").read_bytes() for vm in FAULTS}
        for vm in vms:
            put_spec(store, vm, spec(vm, 2))
        wait_for(lambda: converged(out, {"good1": 2, "good2": 2}, fmt), 10, "the other VMs' rebuilds")
        wait_for(lambda: watch.follower.counts["failed"] == len(FAULTS), 10, "the failed builds")
        assert {vm: (out / f"{vm}.iso").read_bytes() for vm in FAULTS} == good
        watch.follower.request_resync()  # meets the same bad inputs again: not logged again
        wait_for(lambda: watch.follower.counts["failed"] == 2 * len(FAULTS), 10, "the resync's builds")
        put_spec(store, "good1", spec("good1", 3))
        wait_for(lambda: converged(out, {"good1": 3}, fmt), 10, "good1's rebuild after the resync")
        put_spec(store, "bad-type", spec("bad-type", 1) + b"# back to a good one\n")
        wait_for(lambda: watch.images.counts["unchanged"], 10, "bad-type's good spec")
    failures = [
        r.getMessage() for r in caplog.records if r.name == "configdrive.watch" and r.levelno >= logging.WARNING
    ]
    assert len(failures) == len(FAULTS), failures
    for vm, fault in FAULTS.items():
        assert any(m.startswith(f"{vm}: ") and f"internal error {fault.__name__} at " in m for m in failures)
    assert "SECRET-VALUE" not in caplog.text and "Traceback" not in caplog.text


def test_logs_whether_cloud_init_will_act_on_a_change(
    store: SpecStore, fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, "configdrive")
    put_spec(store, "a", spec("a", 1))
    fixed = FORMATS[fmt].fixed_instance_id
    with running(seed_folder(store, out, fmt)) as watch:
        put_spec(store, "a", spec("a", 2))  # new hostname, same instance id
        wait_for(lambda: converged(out, {"a": 2}, fmt), 10, "a's rebuild")
        iid = build_seed(spec("a", 2), fmt).instance_id
        if fixed is None:
            wait_for(
                lambda: f"a: seed changed; same instance id {iid!r}; applied at next boot: hostname" in caplog.text,
                10,
                "the verdict",
            )
        v3 = spec("a", 3).replace(b"iid-a", b"iid-a-v2")
        put_spec(store, "a", v3)
        if fixed is None:
            new = build_seed(v3, fmt).instance_id
            wait_for(lambda: f"a: seed changed; new instance id {new!r}" in caplog.text, 10, "the notice")
        else:
            wait_for(lambda: caplog.text.count(f"the instance id {fixed!r}") == 2, 10, "the fixed-id verdicts")
        wait_for(lambda: watch.images.counts["written"] >= 3, 10, "the third image")  # written after the advice
    lines = [r.getMessage() for r in caplog.records if r.name == "configdrive.sinks.advice"]
    assert len(lines) == 2 and all(line.startswith("a: seed changed; ") for line in lines)


def test_a_restart_skips_what_an_earlier_run_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    monkeypatch.setattr("configdrive.sinks.imagedir.CHUNK", 7)  # a full sync in several chunks
    vms = [f"vm{i:02d}" for i in range(30)]
    for vm in vms:
        (specs / f"{vm}.yaml").write_bytes(spec(vm, 1))

    def once() -> dict[str, int]:
        store = open_store(f"dir:{specs}")
        watch = seed_folder(store, out)
        watch.follower.run(once=True)
        store.close()
        return {**watch.follower.counts, **watch.images.counts}

    assert once()["written"] == 30
    assert once() == {"skipped": 30}
    (specs / "vm00.yaml").write_bytes(spec("vm00", 2))  # its input changed
    (out / "vm01.iso").write_bytes(b"not the image we wrote")  # its image is not ours any more
    (out / "vm02.iso").unlink()  # its image is gone
    counts = once()
    assert counts["skipped"] == 27 and counts["built"] == 3 and counts["written"] == 3
    assert converged(out, {"vm00": 2, **{vm: 1 for vm in vms[1:]}})
    # A different image date is a different input: everything is built, nothing differs but the date.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    counts = once()
    assert counts["built"] == 30 and counts["written"] == 30
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    # A damaged state file costs builds, not images: equal bytes are not rewritten.
    (out / ".configdrive-state.json").write_bytes(b"{not json")
    counts = once()
    assert counts["built"] == 30 and counts["written"] == 30  # the date changed back
    (out / ".configdrive-state.json").write_bytes(b"[]")
    counts = once()
    assert counts["built"] == 30 and counts["unchanged"] == 30 and "written" not in counts
    assert json.loads((out / ".configdrive-state.json").read_bytes())["version"] == 1
    assert (out / ".configdrive-state.json").stat().st_mode & 0o777 == 0o600


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
def test_compaction_past_the_watchers_revision_resyncs(
    etcd_server: EtcdServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, out = f"{etcd_server.url}/compact/{os.getpid()}/", tmp_path / "out"
    store = open_store(url)
    for vm in ("a", "b", "c"):
        store.put(vm, spec(vm, 1))
    watch = seed_folder(store, out)
    watch.follower.run(once=True)
    store.put("a", spec("a", 2))
    store.delete("b")
    revision = store.put("c", spec("c", 2))
    _compact(etcd_server, revision)
    caplog.set_level(logging.INFO, "configdrive")
    with running(watch):  # resumes from its sync's revision, which etcd no longer has
        wait_for(
            lambda: converged(out, {"a": 2, "c": 2}) and not (out / "b.iso").exists(), 10, "the resync after compaction"
        )
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


def start_reader(out: Path, stop: Path) -> subprocess.Popen[bytes]:
    """A process reading every ISO in ``out`` until ``stop`` exists (READER); JSON on its stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", READER, str(out), str(stop)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_kill_9_never_shows_a_reader_a_partial_iso(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    out, vms = tmp_path / "out", [f"vm{i}" for i in range(6)]
    out.mkdir()
    latest = {vm: 0 for vm in vms}
    for vm in vms:
        store.put(vm, spec(vm, 0, padding=150_000))  # big ISOs: a long window for a torn write
    stop = tmp_path / "stop-reader"
    reader = start_reader(out, stop)
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
        wait_for(lambda: converged(out, latest, padding=150_000), 60, "convergence after the restarts", 0.2)
        assert watcher.stop() == 0
    finally:
        stop.touch()
        result = json.loads(reader.communicate(timeout=60)[0])
        store.close()
    assert result["bad"] == 0, result["errors"]
    assert result["reads"] > 50


def test_kill_9_during_a_full_sync_leaves_only_complete_images(store_url: str, tmp_path: Path) -> None:
    """A full sync writes all its temp files, makes them durable in one pass, then renames them:
    killed anywhere in that, every image is a complete old or a complete new one."""
    store = open_store(store_url)
    out, vms, padding = tmp_path / "out", [f"vm{i:02d}" for i in range(60)], 100_000
    out.mkdir()
    for vm in vms:
        store.put(vm, spec(vm, 0, padding))
    stop = tmp_path / "stop-reader"
    reader = start_reader(out, stop)
    rng = random.Random(11)
    killed_in_sync = 0
    try:
        for version in range(1, 9):
            # Every spec changes while no watcher runs: the next start rewrites every image in one batch.
            for vm in vms:
                store.put(vm, spec(vm, version, padding))
            watcher = WatcherProcess(store_url, out, tmp_path / f"watch-{version}.log", "--jobs", "1").start()
            wait_for(lambda: "to build" in watcher.log_text(), 30, "the sync to start", 0.002)  # noqa: B023
            started = time.monotonic()
            if version == 1:  # the first sync runs to its end: how long one takes
                wait_for(lambda: " done: " in watcher.log_text(), 30, "the first sync", 0.002)  # noqa: B023
                sync_time = time.monotonic() - started
            else:  # later ones are killed anywhere from building to after the renames
                time.sleep(rng.uniform(0.2, 1.2) * sync_time)
            assert watcher.process is not None
            os.kill(watcher.process.pid, signal.SIGKILL)
            watcher.process.wait()
            killed_in_sync += " done: " not in watcher.log_text()
            for vm in vms:  # complete (read_iso raises on a torn image) and one of the versions written
                hostname = iso_hostname(out / f"{vm}.iso")
                assert hostname in {f"h-{vm}-{n}" for n in range(version + 1)}, hostname
            state = out / ".configdrive-state.json"
            if state.exists():
                json.loads(state.read_bytes())  # replaced atomically too
        watcher = WatcherProcess(store_url, out, tmp_path / "final-watch.log").start()
        watcher.wait_synced()
        wait_for(lambda: converged(out, {vm: 8 for vm in vms}, padding=padding), 60, "convergence", 0.2)
        assert watcher.stop() == 0
    finally:
        stop.touch()
        result = json.loads(reader.communicate(timeout=60)[0])
        store.close()
    assert killed_in_sync >= 2, "no kill landed inside a sync: the test proves little"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert result["bad"] == 0, result["errors"]


def test_special_files_and_failed_writes_delay_only_their_vm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A FIFO in the store, a FIFO and a folder where images go: each is logged once and skipped,
    never read; the blocked images are retried until they can be written; the others update."""
    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    out.mkdir()
    for vm in ("a", "b", "c"):
        (specs / f"{vm}.yaml").write_bytes(spec(vm, 1))
    os.mkfifo(specs / "pipe.yaml")
    os.mkfifo(out / "b.iso")
    (out / "c.iso").mkdir()
    caplog.set_level(logging.INFO, "configdrive")
    with running(seed_folder(open_store(f"dir:{specs}"), out)) as watch:
        assert converged(out, {"a": 1})
        (specs / "a.yaml").write_bytes(spec("a", 2))
        wait_for(lambda: converged(out, {"a": 2}), 10, "a's rebuild")
        wait_for(lambda: watch.images.counts["write failed"] >= 4, 10, "retries of b and c")
        os.unlink(out / "b.iso")
        (out / "c.iso").rmdir()
        wait_for(lambda: converged(out, {"b": 1, "c": 1}), 30, "b and c once their way is clear")
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("cannot write its image" in m for m in logged) == 2, logged  # once each, not per retry
    assert any(m.startswith("pipe: skipping pipe.yaml") for m in logged)
    assert "b: wrote b.iso after" in caplog.text and "c: wrote c.iso after" in caplog.text


def test_a_full_disk_is_retried_until_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images that do not fit are retried with backoff, logged once (past a few VMs, counted in
    one line); room made, they are written."""
    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    out.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(out)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("needs to mount a small tmpfs (root)")
    monkeypatch.setattr("configdrive.sinks.imagedir.SHOWN", 1)
    try:
        (out / "ballast").write_bytes(b"\0" * 900_000)  # leaves less than one image (166 KB)
        for vm in ("a", "b", "c"):
            (specs / f"{vm}.yaml").write_bytes(spec(vm, 1, padding=100_000))
        caplog.set_level(logging.INFO, "configdrive")
        with running(seed_folder(open_store(f"dir:{specs}"), out)) as watch:
            wait_for(lambda: watch.images.counts["write failed"] >= 6, 10, "the failed writes and retries")
            (out / "ballast").unlink()
            wait_for(lambda: converged(out, {"a": 1, "b": 1, "c": 1}, padding=100_000), 30, "the retries")
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2 and "No space left on device" in errors[0], errors
        assert errors[1].startswith("cannot write the images of 2 more VMs either"), errors
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_a_large_sync_builds_in_worker_processes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Past POOL_THRESHOLD specs, worker processes build (and pack) the seeds; their failures
    come back as per-VM outcomes like in-process ones."""
    from configdrive.watch import POOL_THRESHOLD

    specs, out = tmp_path / "specs", tmp_path / "out"
    specs.mkdir()
    vms = [f"vm{i:03d}" for i in range(POOL_THRESHOLD + 4)]
    for vm in vms:
        (specs / f"{vm}.yaml").write_bytes(spec(vm, 1))
    (specs / "vm000.yaml").write_bytes(b"hostname: 'not a host'\n")
    caplog.set_level(logging.INFO, "configdrive")
    watch = seed_folder(open_store(f"dir:{specs}"), out, jobs=2)
    watch.follower.run(once=True)
    assert watch.follower.counts["built"] == len(vms) - 1 and watch.follower.counts["invalid"] == 1
    assert watch.failures() == 1 and "vm000: invalid spec" in caplog.text
    assert converged(out, {vm: 1 for vm in vms[1:]}) and not (out / "vm000.iso").exists()
