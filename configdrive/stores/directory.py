"""The directory store: one ``<vm-id>.yaml|yml|json`` file per VM, watched with inotify or polling.

A directory has no global revision. A record's revision is its file's mtime in nanoseconds
(``put`` keeps it increasing per file, so compare-and-swap works between our writers); a
snapshot's or a deletion's revision is the clock at that moment. A watch diffs the folder
against what this store object last reported, so it never misses a change made between
``list()`` and ``watch()``. Writers hold ``flock`` on ``.configdrive.lock`` in the folder.

A spec name that is not a readable regular file (a FIFO, a folder, a device, a file too large
or unreadable) is logged once and skipped, as if absent, and never opened for a blocking read.
Change events come from inotify through ``inotify_simple`` (polling without it).
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import stat
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from configdrive.errors import InputError, OutputError, RevisionConflict, StoreError
from configdrive.inputs import read_regular_file
from configdrive.output import remove_file, write_file
from configdrive.stores import VM_ID, Batch, Change, Snapshot, SpecRecord, check_vm_id

log = logging.getLogger(__name__)

#: Spec file suffixes, in order of precedence when one VM has several.
SUFFIXES = (".yaml", ".yml", ".json")
LOCK_NAME = ".configdrive.lock"

Signature = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def open_inotify(path: str | os.PathLike[str], *names: str) -> Any | None:
    """An ``inotify_simple.INotify`` watching the folder ``path`` for the events ``names``
    (``inotify_simple.flags`` members); None where inotify_simple or inotify is missing."""
    try:
        inotify_simple = importlib.import_module("inotify_simple")
    except ImportError:
        return None
    try:
        inotify = inotify_simple.INotify()
    except OSError as err:
        log.warning("inotify is not available (%s)", err.strerror)
        return None
    mask = inotify_simple.flags.ONLYDIR
    for name in names:
        mask |= inotify_simple.flags[name]
    try:
        inotify.add_watch(path, mask)
    except OSError:
        inotify.close()
        raise
    return inotify


class DirectoryStore:
    """Specs as files in one folder; see the module docstring for what a revision means here."""

    def __init__(self, root: str | os.PathLike[str], poll_interval: float = 1.0, use_inotify: bool = True) -> None:
        self.root = Path(root)
        self.url = f"dir:{self.root}"
        self.poll_interval = poll_interval
        self.use_inotify = use_inotify
        self._seen: dict[str, Signature] = {}
        self._skipped: dict[str, str] = {}  # vm_id -> why its file was skipped (logged once)
        self._linked: set[str] = set()  # VMs whose spec file is a symlink (its target is checked each tick)

    # --- reading -------------------------------------------------------------------------

    def list(self) -> Snapshot:
        revision = time.time_ns()
        records = {}
        self._seen = {}
        for vm_id in sorted(self._scan_ids()):
            found = self._read(vm_id)
            if found is not None:
                records[vm_id], self._seen[vm_id] = found
        return Snapshot(records, revision)

    def get(self, vm_id: str) -> SpecRecord | None:
        found = self._read(check_vm_id(vm_id))
        return found[0] if found else None

    def watch(self, revision: int, idle: float = 0.5) -> Generator[Batch, None, None]:
        inotify = None
        if self.use_inotify:
            try:
                # CREATE: ln and ln -s; ATTRIB: touch, chmod, a hard link's count
                inotify = open_inotify(
                    self.root,
                    "CLOSE_WRITE",
                    "MOVED_TO",
                    "MOVED_FROM",
                    "DELETE",
                    "CREATE",
                    "ATTRIB",
                    "DELETE_SELF",
                    "MOVE_SELF",
                )
            except OSError as err:
                raise StoreError(f"cannot watch {self.root}: {err.strerror}", revision) from err
        if inotify is None:
            log.info("watching %s by polling every %.1f s", self.root, self.poll_interval)
        else:
            flags = importlib.import_module("inotify_simple").flags
        try:
            # Anything written between list() and the inotify watch is caught by this first diff.
            yield self._diff(self._scan_ids() | set(self._seen), revision)
            while True:
                if inotify is None:
                    time.sleep(min(idle, self.poll_interval))
                    yield self._diff(self._scan_ids() | set(self._seen), revision)
                    continue
                # A symlink's target can change where no watch sees it: those are checked every tick.
                ids = set(self._linked)
                masks = 0
                for event in inotify.read(timeout=int(idle * 1000)):
                    masks |= event.mask
                    vm_id = _vm_id_of(event.name)
                    if vm_id:
                        ids.add(vm_id)
                if masks & (flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED):
                    raise StoreError(f"{self.root} was removed or moved away", revision)
                if masks & flags.Q_OVERFLOW:
                    log.warning("inotify queue overflowed on %s: re-reading the folder", self.root)
                    ids = self._scan_ids() | set(self._seen)
                yield self._diff(ids, revision)
        finally:
            if inotify is not None:
                inotify.close()

    def _diff(self, ids: set[str], revision: int) -> Batch:
        """Changes of ``ids`` against what this store last reported."""
        changes = []
        for vm_id in sorted(ids):
            found = self._read(vm_id)
            if found is None:
                if self._seen.pop(vm_id, None) is not None:
                    changes.append(Change(vm_id, None, time.time_ns()))
            elif self._seen.get(vm_id) != found[1]:
                record, self._seen[vm_id] = found
                changes.append(Change(vm_id, record.raw, record.revision))
        last = max((c.revision for c in changes), default=revision)
        return Batch(tuple(changes), last)

    def _scan_ids(self) -> set[str]:
        try:
            names = os.listdir(self.root)
        except OSError as err:
            raise StoreError(f"cannot list {self.root}: {err.strerror}") from err
        return {vm_id for vm_id in map(_vm_id_of, names) if vm_id}

    def _path(self, vm_id: str) -> Path | None:
        """The file holding ``vm_id``'s spec: the first suffix in SUFFIXES that exists (a regular
        file before anything else)."""
        found = [path for path in (self.root / f"{vm_id}{s}" for s in SUFFIXES) if _mode(path) is not None]
        found.sort(key=lambda path: not stat.S_ISREG(_mode(path) or 0))
        if len(found) > 1:
            log.warning("%s: several spec files, using %s", vm_id, found[0].name)
        return found[0] if found else None

    def _read(self, vm_id: str) -> tuple[SpecRecord, Signature] | None:
        """The spec and the signature of its file; None when there is none, or none that is a
        readable regular file (logged once)."""
        path = self._path(vm_id)
        self._linked.discard(vm_id)
        if path is None:
            return None
        if path.is_symlink():
            self._linked.add(vm_id)
        for _ in range(3):
            try:
                before = os.stat(path)
                raw = read_regular_file(path)  # refuses a FIFO, folder or device without blocking
                after = os.stat(path)
            except FileNotFoundError:
                return None  # removed between the listing and the read: a deletion
            except OSError as err:
                self._skip(vm_id, path, err.strerror or str(err))
                return None
            except InputError as err:
                if isinstance(err.__cause__, FileNotFoundError):
                    return None
                self._skip(vm_id, path, str(err).removeprefix(f"{path}: "))
                return None
            signature = _signature(after)
            if _signature(before) == signature:  # what was read is the file the signature names
                if self._skipped.pop(vm_id, None) is not None:
                    log.info("%s: %s is a readable spec again", vm_id, path.name)
                return SpecRecord(vm_id, raw, after.st_mtime_ns), signature
        self._skip(vm_id, path, "changes faster than it can be read")
        return None

    def _skip(self, vm_id: str, path: Path, why: str) -> None:
        if self._skipped.get(vm_id) != why:
            self._skipped[vm_id] = why
            log.warning(
                "%s: skipping %s (%s): the VM counts as having no spec until it is a readable regular file",
                vm_id,
                path.name,
                why,
            )

    # --- writing -------------------------------------------------------------------------

    def put(self, vm_id: str, raw: bytes, expected_revision: int | None = None) -> int:
        check_vm_id(vm_id)
        with self._locked():
            current = self._read(vm_id)
            _check_expected(vm_id, current[0] if current else None, expected_revision)
            path = self._path(vm_id) or self.root / f"{vm_id}.yaml"
            # A revision is the mtime: make it grow even within one clock tick of the file system.
            mtime = max(time.time_ns(), current[0].revision + 1 if current else 0)
            try:
                write_file(path, raw, mtime_ns=mtime)  # the mtime set before the rename: one event
            except OutputError as err:
                raise StoreError(f"cannot write {vm_id}: {err}") from err
            except OSError as err:
                raise StoreError(f"cannot write {vm_id}: {err.strerror}") from err
            return mtime

    def delete(self, vm_id: str, expected_revision: int | None = None) -> bool:
        check_vm_id(vm_id)
        with self._locked():
            current = self._read(vm_id)
            _check_expected(vm_id, current[0] if current else None, expected_revision)
            removed = False
            for suffix in SUFFIXES:
                try:
                    removed |= remove_file(self.root / f"{vm_id}{suffix}")
                except OutputError as err:
                    raise StoreError(f"cannot delete {vm_id}: {err}") from err
            return removed

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise StoreError(f"cannot lock {self.root}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


def _check_expected(vm_id: str, current: SpecRecord | None, expected: int | None) -> None:
    have = current.revision if current else 0
    if expected is not None and expected != have:
        raise RevisionConflict(f"{vm_id}: expected revision {expected}, store has {have}", have)


def _vm_id_of(name: str) -> str | None:
    """The VM id a file name holds a spec for; None for temp files, dot files and others."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or f".{suffix}" not in SUFFIXES or not VM_ID.match(stem):
        return None
    return stem


def _mode(path: Path) -> int | None:
    """``path``'s mode (symlinks followed), None if it does not exist; never opens it."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def _signature(info: os.stat_result) -> Signature:
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns
