"""Swapping the seed medium of a running qemu through QMP (``blockdev-change-medium``).

qemu keeps reading the inode it opened, so replacing the ISO by rename never disturbs a running
guest; ``blockdev-change-medium`` opens the file by name again and so hands the guest the new
image. qemu opens the new file before it touches the tray, so a bad file leaves the old medium
in place. A guest that mounted the disc locks the tray: we ask politely a few times (qemu sends
the guest an eject request), then force it, and check afterwards that a medium is inserted.

Uses qemu's own library (``pip install 'configdrive[qmp]'``), imported only when a swap happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from configdrive.errors import QmpError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QmpTarget:
    """Where a VM's seed CD-ROM lives: the QMP socket and the qdev id of its CD device."""

    socket: str
    device: str


@dataclass(frozen=True)
class Medium:
    """What ``query-block`` says about one removable device."""

    file: str | None  # None: no medium inserted
    locked: bool
    tray_open: bool


class Monitor:
    """A synchronous QMP connection; every qemu.qmp and socket error becomes QmpError."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        try:
            from qemu.qmp.legacy import QEMUMonitorProtocol
        except ImportError as err:
            raise QmpError("hot-swap needs: pip install 'configdrive[qmp]'") from err
        self.socket_path = socket_path
        self._qmp = QEMUMonitorProtocol(socket_path)
        self._qmp.settimeout(timeout)
        with self._mapped("connect"):
            self._qmp.connect()

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run one command; its return value, or QmpError with ``.sent`` and ``.received``."""
        with self._mapped(command, {"execute": command, "arguments": arguments}):
            return self._qmp.cmd(command, **arguments)

    def medium(self, device: str) -> Medium:
        """The medium of the removable device whose qdev id (or block backend) is ``device``."""
        for entry in self.execute("query-block"):
            qdev = entry.get("qdev") or ""
            if device in (entry.get("device"), qdev) or qdev.endswith(f"/{device}") \
                    or qdev.endswith(f"/{device}/virtio-backend"):
                inserted = entry.get("inserted")
                return Medium(inserted.get("file") if inserted else None,
                              bool(entry.get("locked")), bool(entry.get("tray_open")))
        raise QmpError(f"{self.socket_path}: no block device {device!r}", sent="query-block")

    def close(self) -> None:
        from qemu.qmp import QMPError

        # Closing a broken connection re-raises what broke it: that was reported already.
        with suppress(QMPError, OSError, EOFError, RuntimeError):
            self._qmp.close()

    @contextmanager
    def _mapped(self, what: str, sent: object = None) -> Iterator[None]:
        from qemu.qmp import ExecuteError, QMPError

        try:
            yield
        except ExecuteError as err:
            raise QmpError(f"{self.socket_path}: {what}: {err}", err.sent, err.received) from err
        except (QMPError, OSError, TimeoutError, EOFError) as err:
            raise QmpError(f"{self.socket_path}: {what}: {err or type(err).__name__}",
                           sent) from err


def change_medium(target: QmpTarget, filename: str, attempts: int = 3, wait: float = 1.0,
                  force: bool = True, timeout: float = 10.0) -> Medium:
    """Insert ``filename`` into ``target``'s CD device; the medium inserted afterwards.

    A locked tray is retried ``attempts`` times ``wait`` seconds apart (each try asks the guest
    to eject), then forced if ``force``. Raises QmpError if the new file is not inserted; if the
    device lost its medium on the way, the old file (or the new one) is put back first."""
    monitor = Monitor(target.socket, timeout)
    try:
        before = monitor.medium(target.device)
        error: QmpError | None = None
        for attempt in range(1, attempts + 2):
            forced = attempt > attempts
            if forced and not force:
                break
            try:
                monitor.execute("blockdev-change-medium", id=target.device, filename=filename,
                                format="raw", **{"read-only-mode": "read-only"}, force=forced)
                error = None
                break
            except QmpError as err:
                error = err
                if "lock" not in str(err).lower() and "tray" not in str(err).lower():
                    break  # not a tray problem: retrying will not help
                if not forced:
                    log.warning("%s: the guest has locked the tray of %s (disc mounted?); "
                                "%s", target.socket, target.device,
                                f"retrying in {wait:.1f} s" if attempt < attempts else "forcing it")
                    if attempt < attempts:
                        time.sleep(wait)
        after = monitor.medium(target.device)
        if after.file is None:
            after = _reinsert(monitor, target, before.file or filename)
        if error is not None:
            raise error
        if after.file != filename:
            raise QmpError(f"{target.socket}: {target.device} holds {after.file}, not {filename}",
                           sent="blockdev-change-medium")
        return after
    finally:
        monitor.close()


def _reinsert(monitor: Monitor, target: QmpTarget, filename: str) -> Medium:
    """Never leave a VM without a medium: put ``filename`` back and close the tray."""
    log.error("%s: %s has no medium after the change; inserting %s again",
              target.socket, target.device, filename)
    monitor.execute("blockdev-change-medium", id=target.device, filename=filename, format="raw",
                    **{"read-only-mode": "read-only"}, force=True)
    return monitor.medium(target.device)


def query_medium(target: QmpTarget, timeout: float = 10.0) -> Medium:
    """What ``target``'s CD device holds now (for checks and for the VM tests)."""
    monitor = Monitor(target.socket, timeout)
    try:
        return monitor.medium(target.device)
    finally:
        monitor.close()


def load_targets(data: Mapping[str, Any]) -> dict[str, QmpTarget]:
    """``{vm-id: {socket: PATH, device: QDEV-ID}}`` (a ``--qmp-map`` file) -> targets."""
    targets = {}
    for vm_id, entry in data.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("socket"), str):
            raise QmpError(f"qmp map: {vm_id}: needs 'socket' (and 'device', default 'cd0')")
        targets[str(vm_id)] = QmpTarget(entry["socket"], str(entry.get("device", "cd0")))
    return targets
