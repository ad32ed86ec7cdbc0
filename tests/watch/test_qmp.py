"""Hot-swapping the seed medium of real (paused, guest-less) qemu over QMP: the client's timeouts,
a frozen qemu that delays only its own VM, and seeds attached as disks, which are not swapped."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from configdrive.errors import QmpError
from configdrive.qmp import QmpTarget, change_medium, load_targets, query_medium
from configdrive.sinks import seed_folder
from configdrive.stores import open_store, put_spec
from tests.watch.conftest import converged, running, spec
from tests.watch.servers import wait_for


def test_watcher_swaps_the_rebuilt_iso_into_running_qemu(tmp_path: Path, qemu_factory) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "specs").mkdir()
    store = open_store(f"dir:{tmp_path / 'specs'}")
    out = tmp_path / "out"
    put_spec(store, "vm1", spec("vm1", 1))
    seed_folder(store, out).follower.run(once=True)
    iso = (out / "vm1.iso").resolve()
    machine = qemu_factory(iso)
    target = QmpTarget(str(machine.qmp_socket), "cd0")
    assert query_medium(target).file == str(iso)
    assert str(iso) in machine.open_files()

    with running(seed_folder(store, out, qmp_targets={"vm1": target})) as watch:
        put_spec(store, "vm1", spec("vm1", 2))
        wait_for(lambda: watch.swaps.counts["swapped"], 15, "the hot-swap")
    assert converged(out, {"vm1": 2})
    medium = query_medium(target)
    assert medium.file == str(iso) and not medium.tray_open
    # qemu let go of the replaced inode and holds the new one: nothing of ours is "(deleted)".
    files = machine.open_files()
    assert str(iso) in files and f"{iso} (deleted)" not in files


def test_a_frozen_qemu_delays_only_its_own_vm(
    tmp_path: Path,
    qemu_factory,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "specs").mkdir()
    store = open_store(f"dir:{tmp_path / 'specs'}")
    out = tmp_path / "out"
    vms = ("frozen", "alive")
    for vm in vms:
        put_spec(store, vm, spec(vm, 1))
    seed_folder(store, out).follower.run(once=True)
    machines = {vm: qemu_factory((out / f"{vm}.iso").resolve()) for vm in vms}
    targets = {vm: QmpTarget(str(m.qmp_socket), "cd0") for vm, m in machines.items()}
    frozen = machines["frozen"].process
    caplog.set_level(logging.INFO, "configdrive")
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        with running(seed_folder(store, out, qmp_targets=targets, qmp_timeout=1.0)) as watch:
            put_spec(store, "frozen", spec("frozen", 2))
            wait_for(lambda: converged(out, {"frozen": 2}), 10, "the frozen VM's image")
            started = time.monotonic()
            put_spec(store, "alive", spec("alive", 2))
            wait_for(lambda: watch.swaps.counts["swapped"], 10, "the live VM's swap")
            # Its own write and swap, not a wait behind the frozen qemu's timeout and retries.
            assert time.monotonic() - started < 1.0 + 1.5
            wait_for(lambda: watch.swaps.counts["swap failed"] >= 2, 15, "the frozen VM's retries")
            # The follower is not held up either: a third change lands while the swap keeps failing.
            put_spec(store, "alive", spec("alive", 3))
            wait_for(lambda: watch.swaps.counts["swapped"] == 2, 10, "the second swap")
            os.kill(frozen.pid, signal.SIGCONT)
            wait_for(lambda: watch.swaps.counts["swapped"] == 3, 30, "the swap once qemu runs again")
            assert watch.swaps.pending() == []
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert query_medium(targets["frozen"]).file == str((out / "frozen.iso").resolve())
    failed = [r.getMessage() for r in caplog.records if "hot-swap failed" in r.getMessage()]
    assert len(failed) <= 2, failed  # logged when the state changes, not at every retry
    assert "no answer within 1 s" in failed[0]


def test_a_seed_on_a_disk_is_not_swapped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "specs").mkdir()
    store = open_store(f"dir:{tmp_path / 'specs'}")
    out = tmp_path / "out"
    put_spec(store, "vm1", spec("vm1", 1))
    targets = load_targets({"vm1": {"socket": str(tmp_path / "no.sock"), "device": "seed", "media": "disk"}})
    caplog.set_level(logging.INFO, "configdrive")
    with running(seed_folder(store, out, qmp_targets=targets)) as watch:
        put_spec(store, "vm1", spec("vm1", 2))
        wait_for(lambda: watch.swaps.counts["not swapped (disk)"] == 2, 10, "the rebuilt seed")
        assert watch.swaps.counts["swap failed"] == 0 and watch.swaps.pending() == []
    assert "when the disk is reattached or the VM restarts" in caplog.text


def test_the_qmp_map_names_the_media() -> None:
    targets = load_targets({"a": {"socket": "/run/a.qmp"}, "b": {"socket": "/run/b.qmp", "media": "disk"}})
    assert targets == {"a": QmpTarget("/run/a.qmp", "cd0", "cdrom"), "b": QmpTarget("/run/b.qmp", "cd0", "disk")}
    with pytest.raises(QmpError, match="media must be one of"):
        load_targets({"a": {"socket": "/run/a.qmp", "media": "floppy"}})


def test_a_bad_file_leaves_the_old_medium_in_place(tmp_path: Path, qemu_factory) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.iso"
    good.write_bytes(b"\0" * 65536)
    machine = qemu_factory(good)
    target = QmpTarget(str(machine.qmp_socket), "cd0")
    with pytest.raises(QmpError) as caught:
        change_medium(target, str(tmp_path / "missing.iso"))
    assert caught.value.sent is not None and caught.value.received is not None
    assert query_medium(target).file == str(good)


def test_an_empty_drive_gets_a_medium(tmp_path: Path, qemu_factory) -> None:  # type: ignore[no-untyped-def]
    iso = tmp_path / "seed.iso"
    iso.write_bytes(b"\0" * 65536)
    machine = qemu_factory(None)
    target = QmpTarget(str(machine.qmp_socket), "cd0")
    assert query_medium(target).file is None
    assert change_medium(target, str(iso)).file == str(iso)


def test_a_stopped_qemu_is_a_qmp_error_within_the_timeout(tmp_path: Path, qemu_factory) -> None:  # type: ignore[no-untyped-def]
    iso = tmp_path / "seed.iso"
    iso.write_bytes(b"\0" * 65536)
    machine = qemu_factory(iso)
    target = QmpTarget(str(machine.qmp_socket), "cd0")
    os.kill(machine.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(QmpError, match="no answer within 0.5 s"):
            change_medium(target, str(iso), timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        os.kill(machine.process.pid, signal.SIGCONT)
    assert change_medium(target, str(iso)).file == str(iso)


def test_no_qmp_socket_is_a_qmp_error(tmp_path: Path) -> None:
    pytest.importorskip("qemu.qmp")
    with pytest.raises(QmpError):
        change_medium(QmpTarget(str(tmp_path / "nothing.sock"), "cd0"), str(tmp_path / "x.iso"))
