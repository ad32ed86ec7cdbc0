"""Fixtures for the metadata service: seeds of the fixture specs, and a service running on its
own event loop in a thread, listening on loopback and in a socket folder."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import threading
import time
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


def start_service(
    tmp_path: Path, limits: Limits = DEFAULT_LIMITS, listen: tuple[str, ...] = ("127.0.0.1:0",), **options: Any
) -> tuple[RunningService, Callable[[], None]]:
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


def get(
    target: int | Path, path: str, source: str = "127.0.0.1", method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
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


# --- the service as a process in a network lab (tests/serve/test_netns.py, test_cloudinit.py) -----

#: Spec addresses that two VMs claim: answered for neither.
DUPLICATE = "2001:db8:1::77"


def _duplicate_spec(name: str, mac: str) -> str:
    return (
        f"instance_id: iid-{name}\nhostname: {name}\nnetwork:\n  ethernets:\n    eth0:\n"
        f'      match: {{macaddress: "{mac}"}}\n      set-name: eth0\n      addresses: ["{DUPLICATE}/64"]\n'
    )


class LabService:
    """``configdrive serve`` in the lab's server namespace over a folder store holding every
    valid fixture (VM id = fixture name) plus two specs claiming one address; ``lease(name)``
    is the IPv4 address the leases file gives that fixture's VM."""

    LISTEN = (
        "169.254.169.254:80",
        "[fe80::a9fe:a9fe%br0]:80",
        "[2001:db8:1::1]:80",
        "[2001:db8:99::1]:80",
        "[2001:db8:6::1]:80",
    )

    def __init__(self, folder: Path) -> None:
        from tests.conftest import VALID_SPECS
        from tests.serve.netns import Lab

        self.folder = folder
        self.specs = folder / "specs"
        self.specs.mkdir()
        self.socks = folder / "socks"
        self.names = [p.stem for p in VALID_SPECS]
        for path in VALID_SPECS:
            (self.specs / f"{path.stem}.yaml").write_bytes(path.read_bytes())
        (self.specs / "dup-a.yaml").write_text(_duplicate_spec("dup-a", "52:54:00:00:0d:0a"))
        (self.specs / "dup-b.yaml").write_text(_duplicate_spec("dup-b", "52:54:00:00:0d:0b"))
        (folder / "leases.yaml").write_text("".join(f"{n}: {self.lease(n)}\n" for n in self.names))
        self.log = folder / "serve.log"
        self.lab = Lab()
        try:
            for address in (
                "169.254.169.254/16",
                "fe80::a9fe:a9fe/64",
                "2001:db8:1::1/64",
                "2001:db8:99::1/64",
                "2001:db8:6::1/64",
            ):
                self.lab.server_address(address)
            self.process = self._start()
        except BaseException:
            self.lab.close()
            raise

    def lease(self, name: str) -> str:
        return f"169.254.20.{10 + self.names.index(name)}"

    def _start(self) -> subprocess.Popen[bytes]:
        from tests.conftest import ROOT

        cmd = [
            "ip",
            "netns",
            "exec",
            self.lab.server,
            sys.executable,
            "-m",
            "configdrive",
            "serve",
            "--source",
            f"dir:{self.specs}",
            "--socket-dir",
            str(self.socks),
            "--leases",
            str(self.folder / "leases.yaml"),
            "--jobs",
            "1",
        ]
        for value in self.LISTEN:
            cmd += ["--listen", value]
        with open(self.log, "wb") as log:
            process = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
        deadline = time.monotonic() + 60
        expected = {f"{n}.sock" for n in [*self.names, "dup-a", "dup-b"]}
        while not (self.socks.is_dir() and expected <= {p.name for p in self.socks.iterdir()}):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("serve did not start: " + self.log.read_text()[-2000:])
            time.sleep(0.05)
        return process

    def guest_get(self, guest: str, url: str, *headers: str, method: str = "GET") -> tuple[int, bytes]:
        """A request from inside ``guest``'s namespace."""
        import base64
        import json

        result = self.lab.run(
            guest, sys.executable, str(Path(__file__).with_name("http_client.py")), method, url, *headers, timeout=30
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        return int(out["status"]), base64.b64decode(out["body"])

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.lab.close()


@pytest.fixture(scope="session")
def lab_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabService]:
    from tests.serve.netns import need_root_and_ip

    need_root_and_ip()
    service = LabService(tmp_path_factory.mktemp("lab"))
    yield service
    assert service.stop() == 0, service.log.read_text()[-2000:]
