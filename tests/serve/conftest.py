"""Fixtures for the metadata service: seeds of the fixture specs, and a service running on its
own event loop in a thread, listening on loopback and in a socket folder."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from configdrive.seed import Seed, build_seed, check_spec
from configdrive.serve.registry import SERVED_FORMATS, VMData, vm_data
from configdrive.serve.server import DEFAULT_LIMITS, Limits
from configdrive.serve.service import MetadataService
from tests.conftest import FIXTURES

T = TypeVar("T")


def seeds(source: Path | bytes | dict[str, Any]) -> dict[str, Seed]:
    """Both served formats' seeds of a spec (a formats it cannot express is left out)."""
    raw = source.read_bytes() if isinstance(source, Path) else source
    spec = check_spec(raw, ())
    out = {}
    for fmt in SERVED_FORMATS:
        try:
            out[fmt] = build_seed(spec, fmt)
        except Exception:  # noqa: BLE001 - a format that cannot express the spec is not served
            continue
    return out


def data(name: str) -> VMData:
    return vm_data(seeds(FIXTURES / "specs" / "valid" / f"{name}.yaml"))


class RunningService:
    """A MetadataService on a loop thread: ``call`` runs a function on that loop."""

    def __init__(self, service: MetadataService, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.loop = loop

    @property
    def port(self) -> int:
        return self.service.addresses[0][1]

    @property
    def socket_dir(self) -> Path:
        assert self.service.sockets is not None
        return self.service.sockets.path

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def settle(self) -> None:
        """Wait until every socket change is done."""
        if self.service.sockets is not None:
            asyncio.run_coroutine_threadsafe(self.service.sockets.settled(), self.loop).result(10)

    def put(self, vm_id: str, vm: VMData) -> None:
        self.call(self.service.tables.put, vm_id, vm)
        self.settle()

    def remove(self, vm_id: str) -> None:
        self.call(self.service.tables.remove, vm_id)
        self.settle()


def start_service(tmp_path: Path, limits: Limits = DEFAULT_LIMITS, listen: tuple[str, ...] = ("127.0.0.1:0",),
                  **options: Any) -> tuple[RunningService, Callable[[], None]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = MetadataService(listen, tmp_path / "socks", limits=limits, **options)
    future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(service.start(), loop)
    future.result(10)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(service.stop(0.5), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return RunningService(service, loop), stop


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningService]:
    """The service on 127.0.0.1 (any port) and ``tmp_path/socks``, with VMs ``web1`` (example,
    source 127.0.0.1 by lease) and ``min1`` (minimal, source 127.0.0.2 by lease)."""
    served, stop = start_service(tmp_path)
    served.put("web1", data("example"))
    served.put("min1", data("minimal"))
    served.call(served.service.tables.set_leases, {"web1": ["127.0.0.1"], "min1": ["127.0.0.2"]})
    yield served
    stop()


def connect(target: int | Path, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A client socket to the service's TCP port (from ``source``) or to a VM's socket."""
    if isinstance(target, Path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(target))
        return sock
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", target))
    return sock


def request(target: int | Path, raw: bytes, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` (a whole request, connection closed after it); the status, headers and body."""
    with connect(target, source) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        return parse_response(read_all(sock))


def get(target: int | Path, path: str, source: str = "127.0.0.1", method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    fields = {"Host": "metadata", "Connection": "close", **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
    return request(target, ("\r\n".join(lines) + "\r\n\r\n").encode(), source)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    if not raw:
        return 0, {}, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body
