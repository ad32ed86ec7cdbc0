"""``configdrive serve`` as a process: exit codes, SIGHUP, SIGTERM, --workers, --out-dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from configdrive.iso import read_iso
from tests.conftest import FIXTURES, ROOT
from tests.serve.conftest import get

META = "/openstack/latest/meta_data.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "configdrive", "serve", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _wait(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web1.yaml").write_bytes((FIXTURES / "specs/valid/example.yaml").read_bytes())
    return specs


@pytest.fixture
def running(tmp_path: Path, store: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = _free_port()
    leases = tmp_path / "leases.yaml"
    leases.write_text("web1: 127.0.0.5\n")
    process = _serve(
        "--source",
        f"dir:{store}",
        "--listen",
        f"127.0.0.1:{port}",
        "--socket-dir",
        str(tmp_path / "socks"),
        "--leases",
        str(leases),
        "--workers",
        "2",
        "--jobs",
        "1",
    )
    _wait(lambda: (tmp_path / "socks/web1.sock").exists() or process.poll() is not None)
    _wait(lambda: get(port, META, source="127.0.0.5")[0] == 200)
    yield process, port, leases
    if process.poll() is None:
        process.kill()
        process.wait()


def test_usage_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "configdrive", "serve", "--source", "dir:/nonexistent"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "--listen or --socket-dir" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "configdrive", "serve", "--source", "dir:/x", "--listen", "1.2.3:80"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1 and "'1.2.3' is not an IP address" in result.stderr


def test_bad_leases_file(tmp_path: Path, store: Path) -> None:
    (tmp_path / "bad.yaml").write_text("web1: [10.0.0.300]\n")
    for leases, code in ((tmp_path / "bad.yaml", 1), (tmp_path / "missing.yaml", 2)):
        process = _serve("--source", f"dir:{store}", "--listen", f"127.0.0.1:{_free_port()}", "--leases", str(leases))
        out, _ = process.communicate(timeout=60)
        assert process.returncode == code, out


def test_workers_share_the_listener_and_the_token_key(running: tuple[subprocess.Popen[str], int, Path]) -> None:
    process, port, _ = running
    status, _, token = get(
        port,
        "/latest/api/token",
        source="127.0.0.5",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    assert status == 200
    # Each request is a new connection, as cloud-init makes them: whichever worker accepts it.
    statuses = {
        get(
            port,
            "/latest/meta-data/instance-id",
            source="127.0.0.5",
            headers={"X-aws-ec2-metadata-token": token.decode()},
        )[0]
        for _ in range(40)
    }
    assert statuses == {200}
    assert Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()  # the second worker


def test_sighup_rereads_the_leases_and_sigterm_exits_0(
    tmp_path: Path, running: tuple[subprocess.Popen[str], int, Path]
) -> None:
    process, port, leases = running
    leases.write_text("web1: 127.0.0.6\n")
    process.send_signal(signal.SIGHUP)
    _wait(lambda: get(port, META, source="127.0.0.6")[0] == 200 and get(port, META, source="127.0.0.5")[0] == 404)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert not (tmp_path / "socks/web1.sock").exists()


def test_images_too(tmp_path: Path, store: Path) -> None:
    process = _serve(
        "--source",
        f"dir:{store}",
        "--socket-dir",
        str(tmp_path / "socks"),
        "--out-dir",
        str(tmp_path / "out"),
        "--format",
        "configdrive",
    )
    try:
        _wait(lambda: (tmp_path / "out/web1.iso").exists() and (tmp_path / "socks/web1.sock").exists())
        image = read_iso(tmp_path / "out/web1.iso")
        assert get(tmp_path / "socks/web1.sock", META)[2] == image.files[META[1:]]
        assert get(tmp_path / "socks/web1.sock", "/nocloud/meta-data")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
