"""Hot-swapping the seed medium of a real (paused, guest-less) qemu over QMP."""

from __future__ import annotations

from pathlib import Path

import pytest

from configdrive.errors import QmpError
from configdrive.qmp import QmpTarget, change_medium, query_medium
from configdrive.stores import open_store, put_spec
from configdrive.watch import Watcher
from tests.watch.conftest import converged, running, spec
from tests.watch.servers import wait_for


def test_watcher_swaps_the_rebuilt_iso_into_running_qemu(tmp_path: Path, qemu_factory) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "specs").mkdir()
    store = open_store(f"dir:{tmp_path / 'specs'}")
    out = tmp_path / "out"
    put_spec(store, "vm1", spec("vm1", 1))
    watcher = Watcher(store, out)
    watcher.run(once=True)
    iso = (out / "vm1.iso").resolve()
    machine = qemu_factory(iso)
    target = QmpTarget(str(machine.qmp_socket), "cd0")
    assert query_medium(target).file == str(iso)
    assert str(iso) in machine.open_files()

    watcher.qmp_targets = {"vm1": target}
    with running(watcher):
        put_spec(store, "vm1", spec("vm1", 2))
        wait_for(lambda: watcher.counts["swapped"], 15, "the hot-swap")
    assert converged(out, {"vm1": 2})
    medium = query_medium(target)
    assert medium.file == str(iso) and not medium.tray_open
    # qemu let go of the replaced inode and holds the new one: nothing of ours is "(deleted)".
    files = machine.open_files()
    assert str(iso) in files and f"{iso} (deleted)" not in files


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


def test_no_qmp_socket_is_a_qmp_error(tmp_path: Path) -> None:
    pytest.importorskip("qemu.qmp")
    with pytest.raises(QmpError):
        change_medium(QmpTarget(str(tmp_path / "nothing.sock"), "cd0"), str(tmp_path / "x.iso"))
