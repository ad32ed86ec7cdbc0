"""Real processes for the store and watcher tests (and bench/): etcd, paused qemu, the watcher.

Each is started on loopback or a private socket with a temp folder and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class EtcdServer:
    """A throwaway etcd on free loopback ports; ``kill``/``start`` keep its data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port, self.peer_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.port}"

    #: The scheme clients speak; a subclass that serves TLS says "https" and adds its flags.
    client_scheme = "http"

    def extra_args(self) -> list[str]:
        """etcd flags beyond the plain single-member ones (none here)."""
        return []

    def start(self) -> EtcdServer:
        client, peer = f"{self.client_scheme}://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer_port}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "etcd",
                    "--name",
                    "test",
                    "--data-dir",
                    str(self.data_dir),
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"test={peer}",
                    *self.extra_args(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 30, "etcd to accept clients")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"etcd exited with {self.process.returncode}; see {self.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL by PID, as a crash would."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class QemuMachine:
    """A paused q35 machine (no guest, no disk) with an ide-cd ``cd0`` and a QMP socket."""

    def __init__(self, folder: Path, iso: Path | None) -> None:
        self.qmp_socket = folder / "qmp.sock"
        self.log = folder / "qemu.log"
        drive = "if=none,id=cd0drive,media=cdrom,readonly=on"
        if iso is not None:
            drive += f",format=raw,file={iso}"
        self.args = [
            "qemu-system-x86_64",
            "-S",
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
            "-m",
            "64",
            "-drive",
            drive,
            "-device",
            "ide-cd,drive=cd0drive,id=cd0,bus=ide.0",
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> QemuMachine:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.qmp_socket.exists, 20, "qemu's QMP socket")
        return self

    def open_files(self) -> list[str]:
        """What qemu's file descriptors point at (``... (deleted)`` for a replaced inode)."""
        assert self.process is not None
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        out = []
        for fd in fd_dir.iterdir():
            try:
                out.append(os.readlink(fd))
            except OSError:
                pass
        return out

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


class WatcherProcess:
    """``python -m configdrive watch`` as a child process, logging to a file."""

    def __init__(self, source: str, out_dir: Path, log: Path, *extra: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "configdrive",
            "watch",
            "--source",
            source,
            "--out-dir",
            str(out_dir),
            *extra,
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WatcherProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_synced(self, timeout: float = 30) -> None:
        wait_for(lambda: self.log_text().count(" done: ") >= 1, timeout, "the watcher's sync")

    def log_text(self) -> str:
        try:
            return self.log.read_text()
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 10) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise
