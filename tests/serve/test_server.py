"""The service over loopback and per-VM sockets: attribution, IMDSv2, bad input, limits, load.

Every refused request must get a clear 4xx (or a closed connection for a client that is too
slow or sends too much), carry no VM's data, and leave the service answering everyone else.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from configdrive.serve.listeners import BACKLOG
from configdrive.serve.server import Limits
from tests.serve.conftest import RunningService, connect, data, get, read_all, request, seeds, start_service

META = "/openstack/latest/meta_data.json"


def _meta(served: RunningService, vm_id: str) -> bytes:
    answer = served.service.tables.vms[vm_id].table.get(META)
    assert answer is not None
    return answer.body


def _ok(served: RunningService) -> None:
    """The service still answers a well-behaved client."""
    assert get(served.port, META)[2] == _meta(served, "web1")


# --- which VM is asking ---------------------------------------------------------------------


def test_each_socket_answers_for_its_own_vm(running: RunningService) -> None:
    for vm_id in ("web1", "min1"):
        status, _, body = get(running.socket_dir / f"{vm_id}.sock", META)
        assert status == 200 and body == _meta(running, vm_id)
    # Headers cannot move a request to another VM.
    status, _, body = get(
        running.socket_dir / "min1.sock",
        META,
        headers={"X-Forwarded-For": "127.0.0.1", "Host": "web1", "Forwarded": "for=127.0.0.1"},
    )
    assert body == _meta(running, "min1")


def test_sources_are_told_apart(running: RunningService) -> None:
    assert get(running.port, META, source="127.0.0.1")[2] == _meta(running, "web1")
    assert get(running.port, META, source="127.0.0.2")[2] == _meta(running, "min1")
    status, _, body = get(running.port, META, source="127.0.0.3")
    assert status == 404 and b"uuid" not in body


def test_a_spoofed_forwarded_for_is_ignored(running: RunningService) -> None:
    status, _, body = get(
        running.port,
        META,
        source="127.0.0.3",
        headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"},
    )
    assert status == 404 and b"uuid" not in body
    assert get(running.port, META, source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"})[2] == _meta(
        running, "min1"
    )


def test_any_host_header_and_query_string(running: RunningService) -> None:
    for host in ("metadata", "169.254.169.254", "[fd00:ec2::254]", "[fe80::a9fe:a9fe%eth0]", "evil.example"):
        assert get(running.port, META, headers={"Host": host})[0] == 200
    assert get(running.port, META + "?x=1")[2] == _meta(running, "web1")
    status, headers, body = get(running.port, META, method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(_meta(running, "web1"))


def test_a_deleted_vm_is_404_and_its_socket_goes(running: RunningService) -> None:
    sock = running.socket_dir / "min1.sock"
    assert sock.is_socket()
    running.remove("min1")
    assert not sock.exists()
    assert get(running.port, META, source="127.0.0.2")[0] == 404
    running.put("min1", data("minimal"))
    assert sock.is_socket() and get(sock, META)[0] == 200


def test_a_changed_vm_is_served_at_once(running: RunningService) -> None:
    raw = (Path(__file__).parents[2] / "fixtures/specs/valid/minimal.yaml").read_bytes()
    from configdrive.serve.registry import vm_data

    running.put("min1", vm_data(seeds(raw.replace(b"hostname: ", b"hostname: x"))))
    meta = json.loads(get(running.socket_dir / "min1.sock", META)[2])
    assert meta["hostname"].startswith("x")


def test_a_stale_socket_is_replaced_and_orphans_removed(tmp_path: Path) -> None:
    folder = tmp_path / "socks"
    folder.mkdir()
    for name in ("web1.sock", "gone.sock", ".tmp-0123456789abcdef.sock"):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(folder / name))
        stale.close()
    (folder / "notes.txt").write_text("not ours")
    served, stop = start_service(tmp_path)
    try:
        served.put("web1", data("example"))
        assert get(folder / "web1.sock", META)[0] == 200
        served.call(served.service.full_set, {"web1"})
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "web1.sock"]
    finally:
        stop()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# --- IMDSv2 -------------------------------------------------------------------------------------

TTL = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}


def _token(target: int | Path, source: str = "127.0.0.1") -> str:
    status, headers, body = get(target, "/latest/api/token", source=source, method="PUT", headers=TTL)
    assert status == 200 and headers["x-aws-ec2-metadata-token-ttl-seconds"] == "60"
    return body.decode()


def test_imdsv2_token_round_trip(running: RunningService) -> None:
    token = _token(running.port)
    status, _, body = get(running.port, "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
    assert status == 200 and body == b"iid-example-0001"
    socket_token = _token(running.socket_dir / "min1.sock")
    assert (
        get(running.socket_dir / "min1.sock", "/latest/meta-data/", headers={"X-aws-ec2-metadata-token": socket_token})[
            0
        ]
        == 200
    )


def test_another_vms_token_is_401(running: RunningService) -> None:
    token = _token(running.port, source="127.0.0.1")  # web1's
    for target, source in ((running.port, "127.0.0.2"), (running.socket_dir / "min1.sock", "")):
        status, _, body = get(
            target,
            "/latest/meta-data/instance-id",
            source=source or "127.0.0.1",
            headers={"X-aws-ec2-metadata-token": token},
        )
        assert status == 401 and b"iid" not in body


def test_expired_and_forged_tokens_are_401(running: RunningService) -> None:
    expired = running.service.server.tokens.issue("web1", 1, now=time.time() - 10)
    forged = _token(running.port).split(".")[1]
    forged = f"{int(time.time()) + 99999}.{forged}"
    for token in (expired, forged, "garbage", "", "1." + "0" * 64):
        assert get(running.port, "/latest/meta-data/", headers={"X-aws-ec2-metadata-token": token})[0] == 401


def test_token_requests_refused(running: RunningService) -> None:
    put = "/latest/api/token"
    assert get(running.port, put, method="PUT", headers={**TTL, "X-Forwarded-For": "10.1.1.1"})[0] == 403
    for ttl in (None, "0", "21601", "-5", "abc", "²"):
        headers: dict[str, str] = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        assert get(running.port, put, method="PUT", headers=headers)[0] == 400
    assert get(running.port, put, method="PUT", headers=TTL, source="127.0.0.3")[0] == 404
    assert get(running.port, "/latest/meta-data/", method="PUT", headers=TTL)[0] == 405
    assert get(running.port, put)[0] == 404  # GET on the token path: no such file


# --- bad input ------------------------------------------------------------------------------------

TRAVERSALS = [
    "/openstack/../nocloud/meta-data",
    "/openstack/latest/../../etc/passwd",
    "/../../../etc/passwd",
    "/openstack/%2e%2e/nocloud/meta-data",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/openstack/latest/..%2fmeta_data.json",
    "/openstack/latest%2fmeta_data.json",
    "/%252e%252e/etc/passwd",
    "/openstack/latest/meta_data.json%00",
    "/openstack/latest/meta_data.json%00.txt",
    "/..%5c..%5cetc%5cpasswd",
    "/openstack\\latest\\meta_data.json",
    "/openstack//latest/meta_data.json",
    "/openstack/./latest/meta_data.json",
    "/openstack/latest/meta_data.json/.",
    "/%c0%ae%c0%ae/etc/passwd",
    "/openstack/latest/%2E%2E/latest/meta_data.json",
    "//etc/passwd",
    "/nocloud/../../../../proc/self/environ",
    "/nocloud/meta-data/../../min1",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_finds_nothing(running: RunningService, path: str) -> None:
    status, _, body = get(running.socket_dir / "min1.sock", path)
    assert 400 <= status < 500 and b"root:" not in body and b"uuid" not in body, (status, body[:100])


def test_absolute_form_request_target(running: RunningService) -> None:
    status, _, body = request(
        running.port, f"GET http://127.0.0.2{META} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status in (400, 404) and b"uuid" not in body


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "CONNECT"])
def test_unknown_methods(running: RunningService, method: str) -> None:
    target = "metadata:80" if method == "CONNECT" else META
    status, headers, body = request(
        running.port,
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(),
    )
    assert 400 <= status < 500 and b"uuid" not in body
    _ok(running)


BAD_REQUESTS = {
    "long request line": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "long header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    "101 headers": b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
    "8 KiB head in small headers": b"GET / HTTP/1.1\r\n"
    + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(90))
    + b"\r\n",
    "binary garbage": bytes(range(256)) * 4 + b"\r\n\r\n",
    "no version": b"GET /\r\n\r\n",
    "bad version": b"GET / HTTP/7.1\r\nHost: x\r\n\r\n",
    "space in path": b"GET /open stack HTTP/1.1\r\nHost: x\r\n\r\n",
    "control in header": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "two content-lengths": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
    "a body": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
    "chunked": b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "huge content-length": b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n"
    b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n",
}


@pytest.mark.parametrize("raw", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_malformed_and_oversized_requests(running: RunningService, raw: bytes) -> None:
    with connect(running.port) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service hung up first: fine
        response = read_all(sock)
    if response:
        status = int(response.split(b" ", 2)[1])
        assert 400 <= status < 500, response[:200]
        assert b"uuid" not in response
    _ok(running)


def test_a_flood_of_unanswered_bytes_is_cut_off(running: RunningService) -> None:
    with connect(running.port) as sock:
        sent = 0
        with pytest.raises(OSError):  # noqa: PT012 - reset or broken pipe once the service hangs up
            for _ in range(4096):
                sock.sendall(b"X" * 4096)
                sent += 4096
            read_all(sock)
            raise ConnectionResetError
    assert sent < 4 * 1024 * 1024
    _ok(running)


def test_pipelined_keep_alive_requests(running: RunningService) -> None:
    one = f"GET {META} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with connect(running.port) as sock:
        sock.sendall(one * 3 + f"GET {META} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = read_all(sock)
    assert response.count(b"HTTP/1.1 200 OK") == 4


# --- slow clients and load --------------------------------------------------------------------


def test_slow_clients_are_cut_off(tmp_path: Path) -> None:
    served, stop = start_service(tmp_path, Limits(head_timeout=0.5, response_timeout=1.0))
    try:
        served.put("web1", data("example"))
        served.call(served.service.tables.set_leases, {"web1": ["127.0.0.1"]})
        idle, partial, drip = connect(served.port), connect(served.port), connect(served.port)
        partial.sendall(b"GET /openstack HT")
        drip.sendall(b"GET /openstack HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        for _ in range(10):  # one byte every 0.2 s: never a complete head
            try:
                drip.sendall(b"x")
            except OSError:
                break
            time.sleep(0.2)
            assert get(served.port, META)[0] == 200  # everyone else is served meanwhile
        for sock in (idle, partial, drip):
            assert read_all(sock) == b""  # closed by the service
            sock.close()
        assert time.monotonic() - started < 5
    finally:
        stop()


def test_a_client_that_does_not_read_is_dropped(tmp_path: Path) -> None:
    served, stop = start_service(tmp_path, Limits(response_timeout=1.0))
    try:
        big = seeds(b'instance_id: big\nhostname: big\nuser_data: "#!/bin/sh\\n# ' + b"x" * (8 << 20) + b'\\n"\n')
        from configdrive.serve.registry import vm_data

        served.put("big", vm_data(big))
        with connect(served.socket_dir / "big.sock") as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /nocloud/user-data HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(2.5)
            received = len(read_all(sock))
        assert received < 8 << 20
        assert get(served.socket_dir / "big.sock", "/nocloud/meta-data")[0] == 200
    finally:
        stop()


def test_connection_limit(tmp_path: Path) -> None:
    served, stop = start_service(tmp_path, Limits(max_connections=5))
    try:
        served.put("web1", data("example"))
        served.call(served.service.tables.set_leases, {"web1": ["127.0.0.1"]})
        held = [connect(served.port) for _ in range(5)]
        time.sleep(0.2)
        with connect(served.port) as extra:
            assert read_all(extra) == b""
        for sock in held:
            sock.close()
        time.sleep(0.2)
        assert get(served.port, META)[0] == 200
    finally:
        stop()


def _listen_backlogs(*ss_args: str) -> dict[str, int]:
    """Listening sockets ``ss`` selects: local address -> backlog (the Send-Q column)."""
    out = subprocess.run(["ss", "-Hln", *ss_args], capture_output=True, text=True, check=True).stdout
    found = {}
    for words in map(str.split, out.splitlines()):
        if "LISTEN" in words:  # a Netid column comes first when ss lists more than one kind
            state = words.index("LISTEN")
            found[words[state + 3]] = int(words[state + 2])
    return found


def test_listeners_keep_their_backlog(running: RunningService) -> None:
    """asyncio listens again with its own backlog (100) when it starts serving a socket; a boot
    storm overflowing it makes connects to a VM's socket fail (EAGAIN, then EINVAL on recv)."""
    assert _listen_backlogs("-t", "sport", "=", f":{running.port}") == {f"127.0.0.1:{running.port}": BACKLOG}
    # a VM's socket is bound under a temporary name, then renamed: ss shows the bound name
    ours = {k: v for k, v in _listen_backlogs("-x").items() if k.startswith(str(running.socket_dir))}
    assert len(ours) == len(list(running.socket_dir.glob("*.sock"))) >= 2
    assert set(ours.values()) == {BACKLOG}


def test_a_thousand_concurrent_connections(running: RunningService) -> None:
    expected = {"web1": _meta(running, "web1"), "min1": _meta(running, "min1")}

    class Barrier:  # asyncio.Barrier is Python 3.11+; the project supports 3.10
        def __init__(self, n: int) -> None:
            self.n, self.event = n, asyncio.Event()

        async def wait(self) -> None:
            self.n -= 1
            if self.n == 0:
                self.event.set()
            await self.event.wait()

    async def one(i: int, ready: Barrier) -> bool:
        if i % 2:
            reader, writer = await asyncio.open_unix_connection(str(running.socket_dir / "min1.sock"))
            vm = "min1"
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
            vm = "web1"
        await ready.wait()  # every connection is open before any request goes out
        writer.write(f"GET {META} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = await reader.read()
        writer.close()
        return response.startswith(b"HTTP/1.1 200") and response.endswith(expected[vm])

    async def main() -> list[bool]:
        ready = Barrier(1000)
        return await asyncio.wait_for(asyncio.gather(*(one(i, ready) for i in range(1000))), 60)

    results = asyncio.run(main())
    assert all(results), f"{results.count(False)} of 1000 failed"
    _ok(running)


# --- logs ---------------------------------------------------------------------------------------


def test_logs_carry_vm_path_and_status_never_data(running: RunningService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    token = _token(running.port)
    get(running.port, "/nocloud/user-data", headers={"X-aws-ec2-metadata-token": token})
    get(running.port, "/latest/meta-data/public-keys/0/openssh-key")
    get(running.port, META, source="127.0.0.3")
    time.sleep(0.1)
    text = caplog.text
    assert "web1 127.0.0.1 GET '/nocloud/user-data' 200" in text
    assert "- 127.0.0.3 GET '/openstack/latest/meta_data.json' 404" in text
    for secret in (token, "AAAAC3Nza", "package_update", "configdrive-example"):
        assert secret not in text
