"""The HTTP side: aiohttp's low-level server with explicit limits, and the request handler.

Which VM is asking comes from the connection: the per-VM Unix socket it arrived on, or its
source address (never a header). The answer is one lookup in that VM's table; nothing is
rendered here. IMDSv2 tokens are issued on ``PUT /latest/api/token`` and checked on every
request that carries one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import HttpVersion, web
from aiohttp.web_protocol import RequestHandler

from configdrive.serve.registry import MetadataTables
from configdrive.serve.tokens import TOKEN_HEADER, TTL_HEADER, TokenIssuer, parse_ttl

log = logging.getLogger("configdrive.serve")
access_log = logging.getLogger("configdrive.serve.access")

TOKEN_PATH = "/latest/api/token"
HTTP_1_0 = HttpVersion(1, 0)
SWEEP = 0.25  # seconds between checks of the connections' deadlines


@dataclass(frozen=True)
class Limits:
    """What one connection may send and how long it may take (aiohttp's defaults are far looser)."""

    max_headers: int = 100  # header lines per request
    max_head: int = 8192  # request line + headers, bytes; also the most unanswered data a connection may hold
    max_body: int = 0  # only the token PUT has a body, and it is empty
    head_timeout: float = 10.0  # to send a complete request head, from connect or the previous response
    response_timeout: float = 30.0  # to take a whole response, from its request head
    max_connections: int = 4096  # at once, over every listener


DEFAULT_LIMITS = Limits()


class MetadataServer(web.Server):
    """aiohttp's low-level server answering from ``tables``; ``connection(vm_id)`` makes the
    protocol for one accepted connection (``vm_id`` set for a per-VM socket)."""

    def __init__(
        self,
        tables: MetadataTables,
        limits: Limits = DEFAULT_LIMITS,
        tokens: TokenIssuer | None = None,
        access_log_enabled: bool = True,
    ) -> None:
        super().__init__(
            self._handle,
            access_log=None,
            max_headers=limits.max_headers,
            max_line_size=limits.max_head,
            max_field_size=limits.max_head,
            keepalive_timeout=limits.head_timeout,
            lingering_time=1.0,
        )
        self.tables = tables
        self.limits = limits
        self.tokens = tokens or TokenIssuer()
        self.access_log = access_log_enabled
        self.live: set[MetadataConnection] = set()  # connections with a deadline
        self._sweeper: asyncio.TimerHandle | None = None

    def watch(self, conn: MetadataConnection) -> None:
        """Check ``conn``'s deadline from now on. One sweep every quarter second instead of a
        timer per request: re-arming two timers per request cost 6% of the throughput."""
        self.live.add(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(SWEEP, self._sweep)

    def _sweep(self) -> None:
        now = self._loop.time()
        for conn in [c for c in self.live if c.deadline < now]:
            self.live.discard(conn)
            conn.expire()
        self._sweeper = self._loop.call_later(SWEEP, self._sweep) if self.live else None

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await super().shutdown(timeout)

    def connection(self, vm_id: str | None = None) -> MetadataConnection:
        return MetadataConnection(self, vm_id, loop=self._loop, **self._kwargs)

    def __call__(self) -> MetadataConnection:
        return self.connection(None)

    # --- requests ----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = cast(MetadataConnection, request.protocol)
        conn.request_started()
        vm_id = conn.vm_id if conn.vm_id is not None else self.tables.vm_for_source(conn.source)
        path = request.raw_path.partition("?")[0]
        status, response = self._answer(request, conn, vm_id, path)
        if self.access_log:
            # VM id, method, path and status only: never a body, a header or a token.
            access_log.info("%s %s %s %r %d", vm_id or "-", conn.source or "socket", request.method, path[:256], status)
        return response

    def _answer(
        self, request: web.BaseRequest, conn: MetadataConnection, vm_id: str | None, path: str
    ) -> tuple[int, web.StreamResponse]:
        method = request.method
        if request.version < HTTP_1_0:
            return _error(400, close=True)  # HTTP/0.9 has no status line: nobody's metadata client
        if len(request.raw_headers) > self.limits.max_headers:
            return _error(431, close=True)  # aiohttp 3.12 and older do not count them (3.14 does)
        if request.body_exists:
            return _error(413, close=True)  # only the token PUT could have a body, and it has none
        if method == "GET" or method == "HEAD":
            if vm_id is None or (data := self.tables.vms.get(vm_id)) is None:
                return _error(404)
            token = request.headers.get(TOKEN_HEADER)
            if token is not None and not self.tokens.valid(token, vm_id):
                return _error(401)
            answer = data.table.get(path)
            if answer is None:
                return _error(404)
            return 200, web.Response(body=answer.body, content_type=answer.content_type)
        if method != "PUT":
            return _error(405, allow="GET, HEAD, PUT" if path == TOKEN_PATH else "GET, HEAD")
        if path != TOKEN_PATH:
            return _error(405, allow="GET, HEAD")
        if "X-Forwarded-For" in request.headers:
            # As AWS does: a token request that went through a proxy is refused.
            return _error(403)
        if vm_id is None or vm_id not in self.tables.vms:
            return _error(404)
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        if ttl is None:
            return _error(400)
        conn.limit_hops()
        response = web.Response(
            body=self.tokens.issue(vm_id, ttl).encode(), content_type="text/plain", headers={TTL_HEADER: str(ttl)}
        )
        response.force_close()
        return 200, response


def _error(status: int, allow: str | None = None, close: bool = False) -> tuple[int, web.StreamResponse]:
    response = web.Response(status=status, text=f"{status}\n", headers={"Allow": allow} if allow else None)
    if close:
        response.force_close()
    return status, response


class MetadataConnection(RequestHandler):
    """One client connection: who it is, and the limits aiohttp does not enforce by itself
    (request head size in total, time to send a head, time to take a response, connection count)."""

    def __init__(self, manager: MetadataServer, vm_id: str | None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.server = manager
        self.vm_id = vm_id
        self.source = ""
        self._unanswered = 0
        self.deadline = 0.0  # loop time by which the next request head (or this response) must be done
        self._peer_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self.server.connections) > self.server.limits.max_connections:
            log.warning("over %d connections: refusing one", self.server.limits.max_connections)
            transport.close()
            return
        if self.vm_id is None:
            peer = transport.get_extra_info("peername")
            self.source = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._arm(self.server.limits.head_timeout)
        self.server.watch(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.server.live.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unanswered += len(data)
        if self._unanswered > self.server.limits.max_head + self.server.limits.max_body:
            if self.transport is not None:
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.force_close()
            return
        super().data_received(data)

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio.Protocol's contract
        """The client half-closed (``nc -N``, a relay whose guest finished sending): answer what
        it asked, then close. (asyncio would close at once, losing the answer, unless told so.)"""
        self._peer_done = True
        if self._idle():
            self.force_close()
        return True

    def _idle(self) -> bool:
        return not self._messages and self._waiter is not None and not self._waiter.done()

    def request_started(self) -> None:
        """A request head arrived: its bytes are accounted for; the response must go out in time."""
        self._unanswered = 0
        self._arm(self.server.limits.response_timeout)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            if self._peer_done and not self._messages:
                self.force_close()
            else:
                self._arm(self.server.limits.head_timeout)

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """A request aiohttp could not parse: one log line (no traceback: guests may send
        anything), a short 4xx, and the connection closed. A 5xx is our bug: logged in full."""
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        if self.server.access_log:
            reason = getattr(exc, "message", None) or type(exc).__name__
            access_log.info("%s %s bad request %d (%.80r)", self.vm_id or "-", self.source or "socket", status, reason)
        response = web.Response(status=status, text=f"{status}\n")
        response.force_close()
        return response

    def limit_hops(self) -> None:
        """Send this connection's packets with a hop limit of 1, as AWS sends IMDSv2 tokens, so
        a token cannot travel past the first router (a container behind NAT, say)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
        with contextlib.suppress(OSError):  # an IPv6 socket takes IP_TTL for IPv4-mapped peers
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)

    def _arm(self, seconds: float) -> None:
        self.deadline = self._loop.time() + seconds

    def expire(self) -> None:
        """Past its deadline: drop the connection."""
        log.debug("closing a connection that took too long (%s)", self.vm_id or self.source)
        if self.transport is not None:
            self.transport.abort()  # close() would wait for a client that does not read
        self.force_close()
