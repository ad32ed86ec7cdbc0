"""The running metadata service: tables, the HTTP server, its TCP listeners and per-VM sockets.

Everything here runs on one asyncio event loop. What feeds the tables (the store follower and
its HTTP sink) runs in another thread and hands changes over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterable, Sequence

from configdrive.errors import ConfigDriveError
from configdrive.serve.listeners import BACKLOG, bind_tcp
from configdrive.serve.registry import MetadataTables
from configdrive.serve.server import DEFAULT_LIMITS, Limits, MetadataServer
from configdrive.serve.socketdir import SocketDir
from configdrive.serve.tokens import TokenIssuer

log = logging.getLogger("configdrive.serve")


class MetadataService:
    """Serves ``tables`` on ``listen`` addresses and, with ``socket_dir``, one socket per VM."""

    def __init__(
        self,
        listen: Sequence[str | socket.socket] = (),
        socket_dir: str | os.PathLike[str] | None = None,
        leases: str | os.PathLike[str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        access_log: bool = True,
        tokens: TokenIssuer | None = None,
        accept_after_sync: bool = False,
    ) -> None:
        self.listen = tuple(listen)  # ``--listen`` values, or sockets already bound (shared by workers)
        self.tokens = tokens
        # TCP connections wait in the kernel's queue until the first full sync: a VM booting
        # while the service restarts must not read "404, no such file" (fatal to cloud-init's
        # OpenStack reader) for data the service has simply not loaded yet.
        self.accept_after_sync = accept_after_sync
        self._bound: list[socket.socket] = []
        self.socket_dir_path = socket_dir
        self.leases_path = leases
        self.limits = limits
        self.access_log = access_log
        self.tables = MetadataTables()
        self.sockets: SocketDir | None = None
        self.addresses: list[tuple[str, int]] = []  # what each --listen value is bound to
        self._server: MetadataServer | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self._accepting: asyncio.Task[None] | None = None

    @property
    def server(self) -> MetadataServer:
        assert self._server is not None, "start() first"
        return self._server

    async def start(self) -> None:
        """Read the leases, bind every listener (ServeError names the one that failed) and accept
        on them now or, with ``accept_after_sync``, once the first full sync has ended."""
        if self.leases_path is not None:
            self._read_leases(initial=True)
        self._server = MetadataServer(self.tables, self.limits, self.tokens, access_log_enabled=self.access_log)
        self._bound = [bind_tcp(value) if isinstance(value, str) else value for value in self.listen]
        self.addresses = [sock.getsockname()[:2] for sock in self._bound]
        if self.socket_dir_path is not None:
            self.sockets = SocketDir(self.socket_dir_path, self._server.connection)
            self.tables.listen(self.sockets.changed)
            log.info("serving metadata on %s/<vm-id>.sock", self.socket_dir_path)
        if not self.accept_after_sync:
            await self._accept()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._bound:
            self._listeners.append(await loop.create_server(self.server, sock=sock, backlog=BACKLOG))
        if self._bound:
            log.info("serving metadata on %s", ", ".join(map(_where, self.addresses)))
        self._bound = []

    def full_set(self, present: Iterable[str]) -> None:
        """A full sync ended: stop serving VMs not in ``present`` and remove sockets left by
        an earlier run."""
        keep = frozenset(present)
        for vm_id in [v for v in self.tables.vms if v not in keep]:
            self.tables.remove(vm_id)
        if self.sockets is not None:
            self.sockets.remove_orphans(keep)
        if self._bound:
            self._accepting = asyncio.get_running_loop().create_task(self._accept())

    def reload(self) -> None:
        """SIGHUP: read the leases file again (the caller re-lists the store)."""
        if self.leases_path is not None:
            self._read_leases(initial=False)

    def _read_leases(self, initial: bool) -> None:
        from configdrive.serve.leases import read_leases

        try:
            leases = read_leases(self.leases_path or "")
        except ConfigDriveError as err:
            if initial:
                raise
            log.error("keeping the previous leases: %s", err)
            return
        self.tables.set_leases(leases)
        log.info("leases: %d addresses for %d VMs", sum(map(len, leases.values())), len(leases))

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, remove the sockets, and close connections (after ``grace`` seconds)."""
        for listener in self._listeners:
            listener.close()
        for sock in self._bound:  # never accepted on: the first sync did not end
            sock.close()
        if self.sockets is not None:
            await self.sockets.close()
        if self._server is not None:
            await self._server.shutdown(grace)


def _where(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
