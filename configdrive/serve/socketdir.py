"""``--socket-dir``: one Unix socket per VM, ``DIR/<vm-id>.sock``, made when its spec appears and
removed when it goes. A connection's VM is the socket it arrived on, which no guest can forge.

Each socket is bound under a temporary name and renamed into place, so a client never sees a
half-made one and a stale socket left by a killed run is replaced atomically. At the first full
sync, sockets of VMs that no longer exist are removed: the folder belongs to the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from configdrive.serve.listeners import BACKLOG
from configdrive.stores import VM_ID

log = logging.getLogger(__name__)

#: The most a socket path may hold (sun_path is 108 bytes with its NUL).
MAX_PATH = 107
TEMP_NAME = re.compile(r"^\.tmp-[0-9a-f]{16}\.sock$")


class SocketDir:
    """Keeps ``DIR/<vm-id>.sock`` in step with the VMs served; ``protocol(vm_id)`` makes the
    protocol for a connection on that VM's socket. Runs on the server's event loop."""

    def __init__(
        self, path: str | os.PathLike[str], protocol: Callable[[str], asyncio.Protocol], mode: int = 0o660
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self._protocol = protocol
        self._servers: dict[str, tuple[asyncio.AbstractServer, int]] = {}  # vm id -> (server, inode)
        self._queue: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.path.mkdir(mode=0o750, parents=True, exist_ok=True)

    def socket_path(self, vm_id: str) -> Path:
        return self.path / f"{vm_id}.sock"

    def changed(self, vm_id: str, present: bool) -> None:
        """A MetadataTables listener: queue the socket's creation or removal (done in order)."""
        self._queue.put_nowait((vm_id, present))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._work())

    async def settled(self) -> None:
        """Wait until every queued change is done (for tests and the first sync)."""
        await self._queue.join()

    def remove_orphans(self, present: Iterable[str]) -> None:
        """Remove sockets of VMs not in ``present`` and temporary names a killed run left."""
        keep = set(present)
        try:
            names = os.listdir(self.path)
        except OSError as err:
            log.error("cannot list %s: %s", self.path, err.strerror)
            return
        for name in names:
            stem = name.removesuffix(".sock")
            orphan = name.endswith(".sock") and VM_ID.match(stem) and stem not in keep
            if (orphan or TEMP_NAME.match(name)) and stem not in self._servers:
                self._unlink(self.path / name, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        servers = [server for server, _ in self._servers.values()]
        for vm_id in list(self._servers):
            self._close(vm_id)
        for server in servers:
            await server.wait_closed()

    # --- the work, in order ------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            vm_id, present = await self._queue.get()
            try:
                if present and vm_id not in self._servers:
                    await self._open(vm_id)
                elif not present and vm_id in self._servers:
                    self._close(vm_id)
            finally:
                self._queue.task_done()

    async def _open(self, vm_id: str) -> None:
        final = self.socket_path(vm_id)
        if len(os.fsencode(final)) > MAX_PATH:
            log.error("%s: no socket: %s is longer than %d bytes; use a shorter --socket-dir", vm_id, final, MAX_PATH)
            return
        temp = self.path / f".tmp-{secrets.token_hex(8)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(temp))
            os.chmod(temp, self.mode)
            sock.listen(BACKLOG)
            sock.setblocking(False)
            inode = os.stat(temp).st_ino
            os.rename(temp, final)
        except OSError as err:
            sock.close()
            self._unlink(temp, None)
            log.error("%s: cannot create %s: %s", vm_id, final, err.strerror)
            return
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: self._protocol(vm_id), sock=sock, backlog=BACKLOG
        )
        self._servers[vm_id] = (server, inode)
        log.debug("%s: listening on %s", vm_id, final)

    def _close(self, vm_id: str) -> None:
        server, inode = self._servers.pop(vm_id)
        server.close()
        self._unlink(self.socket_path(vm_id), inode)
        log.debug("%s: removed %s", vm_id, self.socket_path(vm_id))

    def _unlink(self, path: Path, inode: int | None) -> None:
        """Remove a socket of ours: only a socket, and only the one we made when ``inode`` is given."""
        try:
            info = os.lstat(path)
            if stat.S_ISSOCK(info.st_mode) and inode in (None, info.st_ino):
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.error("cannot remove %s: %s", path, err.strerror)
