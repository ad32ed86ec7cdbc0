"""Which VM is asking, by source address, from network namespaces: a guest namespace per case,
joined by a veth (carrying the spec's MAC) to a bridge where ``configdrive serve`` listens.

Needs root and iproute2 (as CI has). The service runs as a process in the lab's server
namespace; the requests come from the guests' own kernels, so the source addresses are real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from configdrive.seed import build_seed
from tests.conftest import FIXTURES
from tests.serve.conftest import DUPLICATE, LabService, get

META = "/openstack/latest/meta_data.json"


def _meta_of(fixture: str) -> bytes:
    return build_seed((FIXTURES / "specs/valid" / f"{fixture}.yaml").read_bytes(), "configdrive").tree[META.lstrip("/")]


@pytest.fixture(scope="module")
def guests(lab_service: LabService) -> Iterator[dict[str, str]]:
    lab = lab_service.lab
    yield {
        # The NIC of the example VM's eth1: its link-local address is that MAC's EUI-64.
        "link-local": lab.guest("ll", "52:54:00:12:34:02"),
        # Another MAC, but the address the example spec assigns to eth1.
        "static": lab.guest("st", "52:54:00:77:00:01", ["2001:db8:1::10/64"]),
        # The example VM's eth0 MAC as the interface id under a /64 no spec mentions.
        "foreign": lab.guest("fo", "52:54:00:12:34:01", ["2001:db8:99::5054:ff:fe12:3401/64"]),
        # The minimal VM has no network: its address comes from the leases file.
        "lease": lab.guest("le", "52:54:00:77:00:02", [f"{lab_service.lease('minimal')}/16"]),
        "unknown": lab.guest("un", "52:54:00:77:00:09", ["169.254.30.99/16", "2001:db8:1::99/64"]),
        "duplicate": lab.guest("du", "52:54:00:77:00:0d", [f"{DUPLICATE}/64"]),
        # IPv6 only, reaching the service by name (its /etc/hosts, as the guest image would have).
        "by-name": lab.guest("nm", "52:54:00:12:36:01", ["2001:db8:6::20/64"], hosts="2001:db8:6::1 metadata\n"),
    }


def test_the_kernel_link_local_address_is_the_eui64(lab_service: LabService, guests: dict[str, str]) -> None:
    assert lab_service.lab.link_local(guests["link-local"]) == "fe80::5054:ff:fe12:3402"


@pytest.mark.parametrize(
    ("guest", "url", "fixture"),
    [
        ("link-local", "http://[fe80::a9fe:a9fe%25eth0]", "example"),
        ("static", "http://[2001:db8:1::1]", "example"),
        ("foreign", "http://[2001:db8:99::1]", "example"),
        ("lease", "http://169.254.169.254", "minimal"),
        ("by-name", "http://metadata", "ipv6-only"),
    ],
)
def test_a_guest_gets_its_own_vm(
    lab_service: LabService, guests: dict[str, str], guest: str, url: str, fixture: str
) -> None:
    status, body = lab_service.guest_get(guests[guest], url + META)
    assert status == 200 and body == _meta_of(fixture)


@pytest.mark.parametrize(
    ("guest", "url"),
    [
        ("unknown", "http://169.254.169.254"),
        ("unknown", "http://[2001:db8:1::1]"),
        ("unknown", "http://[fe80::a9fe:a9fe%25eth0]"),
        ("duplicate", "http://[2001:db8:1::1]"),
    ],
)
def test_an_unknown_or_contested_source_gets_404(
    lab_service: LabService, guests: dict[str, str], guest: str, url: str
) -> None:
    status, body = lab_service.guest_get(guests[guest], url + META)
    assert status == 404 and b"uuid" not in body
    assert lab_service.guest_get(guests[guest], url + META, "X-Forwarded-For=169.254.169.254")[0] == 404


def test_a_contested_address_is_logged(lab_service: LabService) -> None:
    assert f"address {DUPLICATE} is claimed by dup-a and dup-b" in lab_service.log.read_text()


def test_imdsv2_token_from_another_guest_is_401(lab_service: LabService, guests: dict[str, str]) -> None:
    ttl = "X-aws-ec2-metadata-token-ttl-seconds=60"
    status, token = lab_service.guest_get(
        guests["static"], "http://[2001:db8:1::1]/latest/api/token", ttl, method="PUT"
    )
    assert status == 200
    header = f"X-aws-ec2-metadata-token={token.decode()}"
    assert lab_service.guest_get(guests["static"], "http://[2001:db8:1::1]/latest/meta-data/instance-id", header) == (
        200,
        b"iid-example-0001",
    )
    status, body = lab_service.guest_get(guests["lease"], "http://169.254.169.254/latest/meta-data/instance-id", header)
    assert status == 401 and b"iid" not in body
    put = lab_service.guest_get(
        guests["lease"], "http://169.254.169.254/latest/api/token", ttl, "X-Forwarded-For=10.0.0.1", method="PUT"
    )
    assert put[0] == 403


# --- the store side: changes, deletions, invalid specs (read through the VM's socket) ------------


def _socket_meta(lab_service: LabService, vm_id: str) -> tuple[int, bytes]:
    status, _, body = get(lab_service.socks / f"{vm_id}.sock", META)
    return status, body


def _wait(condition: object, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")


def test_a_new_changed_invalid_and_deleted_spec(lab_service: LabService) -> None:
    spec = lab_service.specs / "live.yaml"
    sock = lab_service.socks / "live.sock"
    spec.write_text("instance_id: iid-live\nhostname: live1\n")
    assert _wait(sock.exists, 5) < 1.0

    def hostname() -> str:
        status, body = _socket_meta(lab_service, "live")
        return str(json.loads(body)["hostname"]) if status == 200 else ""

    _wait(lambda: hostname() == "live1", 5)
    spec.write_text("instance_id: iid-live\nhostname: live2\n")
    assert _wait(lambda: hostname() == "live2", 5) < 1.0
    spec.write_text("instance_id: iid-live\nhostname: not a hostname!\n")  # invalid: the last good data stays
    time.sleep(1.0)
    assert hostname() == "live2"
    assert "live: invalid spec" in lab_service.log.read_text()
    spec.unlink()
    assert _wait(lambda: not sock.exists(), 5) < 1.0


def test_no_user_data_or_keys_in_the_log(lab_service: LabService) -> None:
    text = lab_service.log.read_text()
    assert "GET '/openstack/latest/meta_data.json' 200" in text
    for secret in ("AAAAC3NzaC1lZDI1NTE5", "package_update", "vendor-ran", "hello from configdrive"):
        assert secret not in text
