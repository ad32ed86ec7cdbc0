"""A throwaway network lab made of namespaces: a server namespace with a bridge, and one
namespace per guest joined to it by a veth pair whose guest end carries the guest's MAC, so the
kernel gives it the EUI-64 link-local address a VM with that NIC would have.

Everything is named ``cd<pid>...`` and removed by ``close``; nothing touches the host's own
interfaces or routes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def need_root_and_ip() -> None:
    """Skip on a developer's machine without root or iproute2; fail under CI, which has both."""
    missing = "root" if os.geteuid() != 0 else "ip (iproute2)" if shutil.which("ip") is None else None
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"network namespace tests need {missing}")
        pytest.skip(f"network namespace tests need {missing}")


def ip(*args: str, ns: str | None = None) -> str:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result.stdout


class Lab:
    """Namespace ``server`` with bridge ``br0``; ``guest(name, mac, addresses)`` adds a guest."""

    def __init__(self) -> None:
        self.prefix = f"cd{os.getpid() % 100000}"
        self.server = f"{self.prefix}srv"
        self.guests: list[str] = []
        self.hosts_dirs: list[Path] = []
        self._namespace(self.server)
        ip("link", "add", "br0", "type", "bridge", "forward_delay", "0", ns=self.server)
        ip("link", "set", "br0", "up", ns=self.server)

    def _namespace(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # a leftover of a killed run
        ip("netns", "add", name)
        ip("link", "set", "lo", "up", ns=name)
        # No duplicate address detection: addresses are usable at once (and stay unique here).
        self.run(name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")

    def run(self, ns: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)

    def server_address(self, address: str) -> None:
        ip("addr", "add", address, "dev", "br0", "nodad", ns=self.server)

    def guest(self, name: str, mac: str, addresses: list[str] = (), hosts: str | None = None) -> str:  # type: ignore[assignment]
        """A guest namespace whose ``eth0`` has ``mac`` and ``addresses`` (with prefixes); ``hosts``
        becomes its /etc/hosts (``ip netns exec`` binds /etc/netns/<ns>/hosts over it)."""
        ns = f"{self.prefix}{name}"
        self._namespace(ns)
        self.guests.append(ns)
        port = f"{self.prefix}p{len(self.guests)}"
        ip(
            "link",
            "add",
            "eth0",
            "netns",
            ns,
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.server,
        )
        ip("link", "set", port, "master", "br0", "up", ns=self.server)
        ip("link", "set", "eth0", "up", ns=ns)
        for address in addresses:
            ip("addr", "add", address, "dev", "eth0", *(["nodad"] if ":" in address else []), ns=ns)
        if hosts is not None:
            folder = Path("/etc/netns") / ns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(hosts)
            self.hosts_dirs.append(folder)
        self.wait_link_local(ns)
        return ns

    def link_local(self, ns: str) -> str:
        for line in ip("-6", "-o", "addr", "show", "dev", "eth0", "scope", "link", ns=ns).splitlines():
            return line.split()[3].split("/")[0]
        return ""

    def wait_link_local(self, ns: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.link_local(ns) or "tentative" in ip("-6", "addr", "show", "dev", "eth0", ns=ns):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ns}: no link-local address on eth0")
            time.sleep(0.05)

    def close(self) -> None:
        for ns in [*self.guests, self.server]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for folder in self.hosts_dirs:
            shutil.rmtree(folder, ignore_errors=True)
