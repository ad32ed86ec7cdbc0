"""The guest end of qemu's guestfwd (the relay helper) and the qemu arguments for each way in."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from configdrive.errors import QemuError
from configdrive.serve import qemu_args
from tests.serve.conftest import RunningService, parse_response, read_all

META = "/openstack/latest/meta_data.json"


def _relay(running: RunningService, vm_id: str, request: bytes, half_close: bool) -> bytes:
    """Run the helper as qemu does: one connection on its standard input and output."""
    guest, qemu_end = socket.socketpair()
    command = qemu_args.guestfwd_command(running.socket_dir / f"{vm_id}.sock")
    helper = subprocess.Popen(
        command.split(), stdin=qemu_end.fileno(), stdout=qemu_end.fileno(), stderr=subprocess.PIPE
    )
    qemu_end.close()
    try:
        guest.settimeout(10)
        guest.sendall(request)
        if half_close:
            guest.shutdown(socket.SHUT_WR)
        response = read_all(guest)
    finally:
        guest.close()
        assert helper.wait(10) == 0, helper.stderr.read() if helper.stderr else ""
    return response


@pytest.mark.parametrize("half_close", [False, True])
def test_the_helper_relays_one_connection(running: RunningService, half_close: bool) -> None:
    raw = f"GET {META} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n".encode()
    status, _, body = parse_response(_relay(running, "min1", raw, half_close))
    answer = running.service.tables.vms["min1"].table.get(META)
    assert status == 200 and answer is not None and body == answer.body


def test_the_helper_relays_keep_alive_requests(running: RunningService) -> None:
    one = f"GET {META} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    last = b"GET /nocloud/meta-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = _relay(running, "web1", one * 5 + last, half_close=False)
    assert response.count(b"HTTP/1.1 200 OK") == 6 and b"instance-id: iid-example-0001" in response


def test_the_helper_starts_fast_and_imports_no_configdrive(running: RunningService) -> None:
    command = qemu_args.guestfwd_command(running.socket_dir / "web1.sock")
    assert "," not in command
    started = time.monotonic()
    python, *options, helper, _ = command.split()
    out = subprocess.run(
        [python, "-X", "importtime", *options, helper, "/nonexistent.sock"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1 and "cannot connect" in out.stderr
    assert "configdrive" not in out.stderr.replace(str(qemu_args.HELPER), "")
    assert time.monotonic() - started < 2


def test_user_netdev_arguments(tmp_path: object) -> None:
    args = qemu_args.metadata_user_netdev_args("/run/cd", "web1", "52:54:00:12:34:01", python="/usr/bin/python3")
    assert args[0] == "-netdev" and args[2] == "-device"
    netdev = args[1]
    assert netdev.startswith("user,id=n0,net=169.254.0.0/16,ipv4=on,ipv6=off,restrict=on,")
    assert netdev.endswith(
        f"guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/python3 -I -S {qemu_args.HELPER} /run/cd/web1.sock"
    )
    assert args[3] == "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01"
    with pytest.raises(QemuError, match="comma"):
        qemu_args.metadata_user_netdev_args("/run/a,b", "web1", "52:54:00:12:34:01")
    with pytest.raises(QemuError):
        qemu_args.guestfwd_command("/run/with space/x.sock")


def test_tap_and_smbios_arguments() -> None:
    assert qemu_args.metadata_tap_args("tap0", "52:54:00:12:34:01") == [
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01",
    ]
    assert qemu_args.openstack_smbios_args() == ["-smbios", "type=1,product=OpenStack Nova"]
    assert qemu_args.ec2_smbios_args("ec2abc") == ["-smbios", "type=1,serial=ec2abc"]
    with pytest.raises(QemuError):
        qemu_args.ec2_smbios_args("abc")


def test_the_helper_is_a_plain_script() -> None:
    result = subprocess.run([sys.executable, "-I", "-S", str(qemu_args.HELPER)], capture_output=True, text=True)
    assert result.returncode == 2 and "guestfwd" in result.stderr
