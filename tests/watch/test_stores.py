"""Both spec stores, same expectations: round trips, validation before writing, revisions."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from configdrive.errors import RevisionConflict, SpecError, StoreError
from configdrive.stores import SpecStore, open_store, put_spec
from tests.watch.conftest import spec
from tests.watch.servers import ROOT

INVALID = b"instance_id: 5\nhostname: 'not a host'\nbogus: 1\n"


def test_put_get_update_delete_round_trip(store: SpecStore) -> None:
    assert store.get("vm1") is None
    first = put_spec(store, "vm1", spec("vm1", 1))
    record = store.get("vm1")
    assert record is not None and record.raw == spec("vm1", 1) and record.revision == first
    second = put_spec(store, "vm1", spec("vm1", 2))
    assert second > first
    put_spec(store, "vm2", spec("vm2", 1))
    snapshot = store.list()
    assert {k: r.raw for k, r in snapshot.records.items()} == {"vm1": spec("vm1", 2), "vm2": spec("vm2", 1)}
    assert snapshot.records["vm1"].revision == second
    assert store.delete("vm1") is True
    assert store.delete("vm1") is False
    assert store.get("vm1") is None and set(store.list().records) == {"vm2"}


def test_an_invalid_spec_never_reaches_the_store(store: SpecStore) -> None:
    put_spec(store, "vm1", spec("vm1", 1))
    with pytest.raises(SpecError) as caught:
        put_spec(store, "vm1", INVALID)
    assert {p.path for p in caught.value.problems} >= {"instance_id", "hostname", "bogus"}
    record = store.get("vm1")
    assert record is not None and record.raw == spec("vm1", 1)


def test_cli_put_get_list_delete(store_url: str, tmp_path: Path) -> None:
    def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "configdrive", *args], input=stdin, capture_output=True, cwd=ROOT, timeout=60
        )

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(INVALID)
    result = cli("put", "--store", store_url, "vm1", str(bad))
    assert result.returncode == 2
    for path in (b"instance_id", b"hostname", b"bogus"):
        assert path in result.stderr
    assert cli("put", "--store", store_url, "vm1", "-", stdin=spec("vm1", 1)).returncode == 0
    assert cli("get", "--store", store_url, "vm1").stdout == spec("vm1", 1)
    assert cli("list", "--store", store_url).stdout.startswith(b"vm1\t")
    assert (
        cli("put", "--store", store_url, "vm1", "-", "--expect-revision", "0", stdin=spec("vm1", 2)).returncode == 1
    )  # already exists
    assert cli("delete", "--store", store_url, "vm1").returncode == 0
    assert cli("get", "--store", store_url, "vm1").returncode == 1


def test_compare_and_swap_refuses_a_stale_revision(store: SpecStore) -> None:
    created = store.put("vm1", spec("vm1", 1), expected_revision=0)
    with pytest.raises(RevisionConflict) as caught:
        store.put("vm1", spec("vm1", 9), expected_revision=0)
    assert caught.value.revision == created
    updated = store.put("vm1", spec("vm1", 2), expected_revision=created)
    with pytest.raises(RevisionConflict):
        store.put("vm1", spec("vm1", 3), expected_revision=created)  # lost the race
    with pytest.raises(RevisionConflict):
        store.delete("vm1", expected_revision=created)
    assert store.delete("vm1", expected_revision=updated) is True


def test_concurrent_writers_lose_no_update(store_url: str) -> None:
    """Read-modify-write loops in parallel, each retrying on conflict: no increment is lost."""
    writers, rounds = 4, 25
    seed = open_store(store_url)
    seed.put("counter", b"0", expected_revision=0)
    conflicts = []

    def increment() -> None:
        store = open_store(store_url)
        try:
            for _ in range(rounds):
                while True:
                    record = store.get("counter")
                    assert record is not None
                    try:
                        store.put("counter", str(int(record.raw) + 1).encode(), record.revision)
                        break
                    except RevisionConflict:
                        conflicts.append(1)
        finally:
            store.close()

    threads = [threading.Thread(target=increment) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    record = seed.get("counter")
    seed.close()
    assert record is not None and int(record.raw) == writers * rounds
    assert conflicts, "the writers never raced: the test proves nothing"


def test_watch_reports_each_vms_changes_in_order(store: SpecStore) -> None:
    store.put("vm1", spec("vm1", 1))
    snapshot = store.list()
    batches = store.watch(snapshot.revision, idle=0.1)
    try:
        next(batches)  # the watch is set up once the first batch (maybe idle) arrives
        store.put("vm1", spec("vm1", 2))
        store.put("vm2", spec("vm2", 1))
        store.delete("vm1")
        seen = []
        deadline = time.monotonic() + 30  # idle ticks (every 0.1 s) bring the loop back here
        for batch in batches:
            seen += [(c.vm_id, c.raw) for c in batch.changes]
            if ("vm1", None) in seen:
                break
            assert time.monotonic() < deadline, f"the deletion of vm1 never arrived in 30 s; saw {seen}"
    finally:
        batches.close()
    # Per VM in order; a folder may fold a quick write-then-delete into the delete.
    assert [raw for vm_id, raw in seen if vm_id == "vm1"][-1] is None
    assert ("vm2", spec("vm2", 1)) in seen


def test_invalid_vm_ids_are_refused(store: SpecStore) -> None:
    for bad in ("../etc", ".hidden", "a/b", ""):
        with pytest.raises(StoreError):
            store.put(bad, spec("x", 1))


def test_special_files_in_a_folder_store_are_skipped_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO, a folder or a device named like a spec is never opened for a blocking read: it is
    logged once and the VM counts as having no spec."""
    import logging
    import os

    from configdrive.stores.directory import DirectoryStore

    specs = tmp_path / "specs"
    specs.mkdir()
    os.mkfifo(specs / "fifo.yaml")
    (specs / "folder.yaml").mkdir()
    (specs / "device.yaml").symlink_to("/dev/zero")
    (specs / "good.yaml").write_bytes(spec("good", 1))
    os.mkfifo(specs / "both.yaml")
    (specs / "both.json").write_bytes(spec("both", 1))  # a regular file wins over the FIFO
    caplog.set_level(logging.INFO, "configdrive")
    store = DirectoryStore(specs)
    assert {k: r.raw for k, r in store.list().records.items()} == {"good": spec("good", 1), "both": spec("both", 1)}
    batches = store.watch(store.list().revision, idle=0.1)
    try:
        assert next(batches).changes == ()
        (specs / "good.yaml").write_bytes(spec("good", 2))
        os.unlink(specs / "fifo.yaml")
        (specs / "fifo.yaml").write_bytes(spec("fifo", 1))  # a regular file now: seen
        seen: dict[str, bytes | None] = {}
        deadline = time.monotonic() + 10
        while set(seen) != {"good", "fifo"}:
            assert time.monotonic() < deadline, seen
            seen.update((c.vm_id, c.raw) for c in next(batches).changes)
    finally:
        batches.close()
    assert seen == {"good": spec("good", 2), "fifo": spec("fifo", 1)}
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert sorted(m.split(":")[0] for m in skipped) == ["device", "fifo", "folder"], skipped
    assert "fifo: fifo.yaml is a readable spec again" in caplog.text


def test_a_folder_store_sees_every_way_a_file_appears_or_changes(tmp_path: Path) -> None:
    """ln, ln -s, touch, cp, mv, and a symlink whose target changes: each reaches the watch."""
    import os
    import shutil

    from configdrive.stores.directory import DirectoryStore

    store, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    folder = DirectoryStore(store)
    batches = folder.watch(folder.list().revision, idle=0.1)
    seen: list[tuple[str, bytes | None]] = []

    def expect(vm_id: str, raw: bytes | None) -> None:
        deadline = time.monotonic() + 15
        while (vm_id, raw) not in seen:
            assert time.monotonic() < deadline, f"{vm_id} -> {raw!r} never arrived; saw {seen}"
            seen.extend((c.vm_id, c.raw) for c in next(batches).changes)

    try:
        next(batches)
        (elsewhere / "a.yaml").write_bytes(spec("a", 1))
        os.symlink(elsewhere / "a.yaml", store / "a.yaml")  # ln -s
        expect("a", spec("a", 1))
        (elsewhere / "a.yaml").write_bytes(spec("a", 2))  # the target changes, the link does not
        expect("a", spec("a", 2))
        (elsewhere / "b.yaml").write_bytes(spec("b", 1))
        os.link(elsewhere / "b.yaml", store / "b.yaml")  # ln
        expect("b", spec("b", 1))
        shutil.copy(elsewhere / "a.yaml", store / "c.yaml")  # cp
        expect("c", spec("a", 2))
        (elsewhere / "d.yaml").write_bytes(spec("d", 1))
        os.rename(elsewhere / "d.yaml", store / "d.yaml")  # mv
        expect("d", spec("d", 1))
        with open(elsewhere / "b.yaml", "r+b") as handle:  # written through the other hard link,
            handle.write(spec("b", 2))  # then touched: only ATTRIB reaches the folder's watch
        os.utime(store / "b.yaml", ns=(time.time_ns(), time.time_ns() + 10**9))
        expect("b", spec("b", 2))
    finally:
        batches.close()
        folder.close()
