"""The QMP client: swapping the seed medium of a running qemu (``blockdev-change-medium``).

qemu keeps reading the inode it opened, so replacing the ISO by rename never disturbs a running
guest; ``blockdev-change-medium`` opens the file by name again and so hands the guest the new
image. qemu opens the new file before it touches the tray, so a bad file leaves the old medium
in place. A guest that mounted the disc locks the tray: we ask politely a few times (qemu sends
the guest an eject request), then force it, and check afterwards that a medium is inserted.

Every step is bounded: connecting (a qemu stopped with SIGSTOP accepts the connection and never
greets), each command and closing wait at most ``timeout`` seconds, then QmpError. That is why
this drives qemu.qmp's asyncio ``QMPClient`` on a private event loop rather than its
``legacy`` shim, whose ``connect`` and ``close`` have no timeout.

Uses qemu's own library (``pip install 'configdrive[qmp]'``), imported only when a swap happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from configdrive.errors import QmpError

log = logging.getLogger(__name__)

#: Seconds a QMP connect or command may take before we give up on that qemu (``--qmp-timeout``).
DEFAULT_TIMEOUT = 3.0
#: How a seed is attached: ``cdrom`` media can be swapped in a running guest, a read-only ``disk`` can't.
MEDIA = ("cdrom", "disk")

_T = TypeVar("_T")


@dataclass(frozen=True)
class QmpTarget:
    """Where a VM's seed lives: the QMP socket, the qdev id of its device, and whether that is a
    CD-ROM (swappable) or a read-only disk."""

    socket: str
    device: str
    media: str = "cdrom"


@dataclass(frozen=True)
class Medium:
    """What ``query-block`` says about one removable device."""

    file: str | None  # None: no medium inserted
    locked: bool
    tray_open: bool


class Monitor:
    """A QMP connection whose every step ends within ``timeout`` seconds; every qemu.qmp, socket
    and timeout error becomes QmpError."""

    def __init__(self, socket_path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            from qemu.qmp import QMPClient
        except ImportError as err:
            raise QmpError("hot-swap needs: pip install 'configdrive[qmp]'") from err
        self.socket_path = socket_path
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient(socket_path)
        try:
            with self._mapped("connect"):
                self._run(self._client.connect(socket_path))
        except BaseException:
            self.close()
            raise

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run one command; its return value, or QmpError with ``.sent`` and ``.received``."""
        with self._mapped(command, {"execute": command, "arguments": arguments}):
            return self._run(self._client.execute(command, arguments or None))

    def medium(self, device: str) -> Medium:
        """The medium of the removable device whose qdev id (or block backend) is ``device``."""
        for entry in self.execute("query-block"):
            qdev = entry.get("qdev") or ""
            if (
                device in (entry.get("device"), qdev)
                or qdev.endswith(f"/{device}")
                or qdev.endswith(f"/{device}/virtio-backend")
            ):
                inserted = entry.get("inserted")
                return Medium(
                    inserted.get("file") if inserted else None, bool(entry.get("locked")), bool(entry.get("tray_open"))
                )
        raise QmpError(f"{self.socket_path}: no block device {device!r}", sent="query-block")

    def close(self) -> None:
        """Disconnect (bounded too) and drop the event loop; never raises."""
        if self._loop.is_closed():
            return
        # Closing a broken connection re-raises what broke it: that was reported already.
        with suppress(Exception):
            self._run(self._client.disconnect())
        with suppress(Exception):
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._run(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def _run(self, step: Awaitable[_T]) -> _T:
        return self._loop.run_until_complete(asyncio.wait_for(step, self.timeout))

    @contextmanager
    def _mapped(self, what: str, sent: object = None) -> Iterator[None]:
        from qemu.qmp import ExecuteError, QMPError

        try:
            yield
        except ExecuteError as err:
            raise QmpError(f"{self.socket_path}: {what}: {err}", err.sent, err.received) from err
        except (asyncio.TimeoutError, TimeoutError) as err:
            raise QmpError(
                f"{self.socket_path}: {what}: no answer within {self.timeout:g} s (qemu stopped or hung?)", sent
            ) from err
        except (QMPError, OSError, EOFError) as err:
            raise QmpError(f"{self.socket_path}: {what}: {err or type(err).__name__}", sent) from err


def change_medium(
    target: QmpTarget,
    filename: str,
    attempts: int = 3,
    wait: float = 1.0,
    force: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Medium:
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
                _change_medium(monitor, target, filename, force=forced)
                error = None
                break
            except QmpError as err:
                error = err
                if not _tray_problem(err):
                    break  # not a tray problem: retrying will not help
                if not forced:
                    log.warning(
                        "%s: the guest has locked the tray of %s (disc mounted?); %s",
                        target.socket,
                        target.device,
                        f"retrying in {wait:.1f} s" if attempt < attempts else "forcing it",
                    )
                    if attempt < attempts:
                        time.sleep(wait)
        after = monitor.medium(target.device)
        if after.file is None:
            after = _reinsert(monitor, target, before.file or filename)
        if error is not None:
            raise error
        if after.file != filename:
            raise QmpError(
                f"{target.socket}: {target.device} holds {after.file}, not {filename}", sent="blockdev-change-medium"
            )
        return after
    finally:
        monitor.close()


def _tray_problem(err: QmpError) -> bool:
    """Whether qemu refused because of the tray ("Device 'cd0' is locked and force was not
    specified, wait for tray to open and try again"); qemu's own words only, not our message,
    which names the command (block*dev*-change-medium)."""
    received = err.received if isinstance(err.received, Mapping) else {}
    error = received.get("error")
    desc = str(error.get("desc", "")) if isinstance(error, Mapping) else ""
    return "locked" in desc.lower() or "tray" in desc.lower()


def _reinsert(monitor: Monitor, target: QmpTarget, filename: str) -> Medium:
    """Never leave a VM without a medium: put ``filename`` back and close the tray."""
    log.error("%s: %s has no medium after the change; inserting %s again", target.socket, target.device, filename)
    _change_medium(monitor, target, filename, force=True)
    return monitor.medium(target.device)


def _change_medium(monitor: Monitor, target: QmpTarget, filename: str, force: bool) -> None:
    """Put the raw image ``filename`` read-only into ``target``'s drive."""
    monitor.execute(
        "blockdev-change-medium",
        id=target.device,
        filename=filename,
        format="raw",
        **{"read-only-mode": "read-only"},
        force=force,
    )


def query_medium(target: QmpTarget, timeout: float = DEFAULT_TIMEOUT) -> Medium:
    """What ``target``'s CD device holds now (for checks and for the VM tests)."""
    monitor = Monitor(target.socket, timeout)
    try:
        return monitor.medium(target.device)
    finally:
        monitor.close()


def load_targets(data: Mapping[str, Any]) -> dict[str, QmpTarget]:
    """``{vm-id: {socket: PATH, device: QDEV-ID, media: cdrom|disk}}`` (a ``--qmp-map`` file) -> targets."""
    targets = {}
    for vm_id, entry in data.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("socket"), str):
            raise QmpError(f"qmp map: {vm_id}: needs 'socket' (and 'device', default 'cd0')")
        media = entry.get("media", MEDIA[0])
        if media not in MEDIA:
            raise QmpError(f"qmp map: {vm_id}: media must be one of {', '.join(MEDIA)}")
        targets[str(vm_id)] = QmpTarget(entry["socket"], str(entry.get("device", "cd0")), media)
    return targets
