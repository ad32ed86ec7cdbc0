"""The directory store: one ``<vm-id>.yaml|yml|json`` file per VM, watched with inotify or polling.

A directory has no global revision. A record's revision is its file's mtime in nanoseconds
(``put`` keeps it increasing per file, so compare-and-swap works between our writers); a
snapshot's or a deletion's revision is the clock at that moment. A watch diffs the folder
against what this store object last reported, so it never misses a change made between
``list()`` and ``watch()``. Writers hold ``flock`` on ``.configdrive.lock`` in the folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import select
import struct
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from configdrive.errors import OutputError, RevisionConflict, StoreError
from configdrive.output import remove_file, write_file
from configdrive.stores import VM_ID, Batch, Change, Snapshot, SpecRecord, check_vm_id

log = logging.getLogger(__name__)

#: Spec file suffixes, in order of precedence when one VM has several.
SUFFIXES = (".yaml", ".yml", ".json")
LOCK_NAME = ".configdrive.lock"

# <sys/inotify.h>
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
IN_ONLYDIR, IN_NONBLOCK, IN_CLOEXEC = 0x1000000, 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name

Signature = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


class Inotify:
    """A minimal inotify(7) handle through ctypes (no dependency); ``None`` from ``open``
    where the C library lacks it."""

    def __init__(self, fd: int, add_watch: Any) -> None:
        self.fd = fd
        self._add = add_watch

    @classmethod
    def open(cls) -> Inotify | None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            init = libc.inotify_init1
        except (OSError, AttributeError):
            return None
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return None
        add_watch = libc.inotify_add_watch
        add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        return cls(fd, add_watch)

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        wd: int = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(path))
        return wd

    def read(self, timeout: float) -> list[tuple[int, str]]:
        """(mask, name) of the events that arrive within ``timeout`` seconds."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset:offset + length].rstrip(b"\0")
            offset += length
            events.append((mask, os.fsdecode(name)))
        return events

    def close(self) -> None:
        os.close(self.fd)


class DirectoryStore:
    """Specs as files in one folder; see the module docstring for what a revision means here."""

    def __init__(self, root: str | os.PathLike[str], poll_interval: float = 1.0,
                 use_inotify: bool = True) -> None:
        self.root = Path(root)
        self.url = f"dir:{self.root}"
        self.poll_interval = poll_interval
        self.use_inotify = use_inotify
        self._seen: dict[str, Signature] = {}

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
        inotify = Inotify.open() if self.use_inotify else None
        if inotify is not None:
            try:
                inotify.add_watch(self.root, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM
                                  | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
            except OSError as err:
                inotify.close()
                raise StoreError(f"cannot watch {self.root}: {err.strerror}", revision) from err
        else:
            log.info("watching %s by polling every %.1f s", self.root, self.poll_interval)
        try:
            # Anything written between list() and the inotify watch is caught by this first diff.
            yield self._diff(self._scan_ids() | set(self._seen), revision)
            while True:
                if inotify is None:
                    time.sleep(min(idle, self.poll_interval))
                    yield self._diff(self._scan_ids() | set(self._seen), revision)
                    continue
                events = inotify.read(idle)
                masks = 0
                ids: set[str] = set()
                for mask, name in events:
                    masks |= mask
                    vm_id = _vm_id_of(name)
                    if vm_id:
                        ids.add(vm_id)
                if masks & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    raise StoreError(f"{self.root} was removed or moved away", revision)
                if masks & IN_Q_OVERFLOW:
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
        """The file holding ``vm_id``'s spec: the first suffix in SUFFIXES that exists."""
        found = [self.root / f"{vm_id}{s}" for s in SUFFIXES if (self.root / f"{vm_id}{s}").exists()]
        if len(found) > 1:
            log.warning("%s: several spec files, using %s", vm_id, found[0].name)
        return found[0] if found else None

    def _read(self, vm_id: str) -> tuple[SpecRecord, Signature] | None:
        path = self._path(vm_id)
        if path is None:
            return None
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            return None  # removed between the listing and the read: a deletion
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror}") from err
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        return SpecRecord(vm_id, raw, st.st_mtime_ns), signature

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
                write_file(path, raw)
                os.utime(path, ns=(mtime, mtime))
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

