"""The same seeds in a Debian 13 guest (cloud-init 25.1, netplan + systemd-networkd +
systemd-resolved, as Debian's cloud images), where 25.1 differs from Debian 12's 22.4.

One boot per seed, several checks per boot (TCG: 1.5-3 min each):

* ``first_boot`` (nocloud on q35 + SATA, configdrive on q35 + IDE): the lifecycle's rich first
  boot from ``test_boot.py``, the same spec: identity, keys, MIME user-data, vendor-data,
  config-drive files, eth0 DHCPv4 and eth1 static IPv6 with a route and DNS (checked through
  systemd-resolved).
* ``ipv6_bond`` (nocloud on pc, configdrive on q35; the seed a read-only virtio disk): the
  IPv6-only default route and an active-backup bond with a VLAN on it (``scenarios.py``, the
  same spec Debian 12 boots).
* ``no_network``: a NoCloud seed without network config: cloud-init's fallback (DHCP on the
  first NIC) must not hang the boot.
* ``opennebula``: test_boot.py's OpenNebula boot and its checks, on this generation.

Every boot must be clean as :func:`guest_checks.assert_cloud_init_clean` says, with
``cloud-init status --wait`` exiting 0 (25.1 exits 2 for a degraded boot).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from configdrive.qemu import CdromBus

from . import test_boot
from .conftest import Keys, VmRunner
from .guest_checks import addresses, assert_cloud_init_clean, dns_domains, dns_servers, global_addresses
from .harness import Boot, Nic
from .scenarios import check_ipv6_bond, ipv6_bond_nics, ipv6_bond_spec
from .test_boot import (
    IPV6_ONLY_FORMATS,
    LIFECYCLE_FORMATS,
    MAC_DHCP,
    MAC_V6,
    NET_DHCP,
    NET_V6,
    REPORT_PATHS,
    OpenNebulaBoot,
    boot_opennebula,
    expected_instance_id,
    files,
    lifecycle_spec,
    lines,
)

pytestmark = pytest.mark.vm

#: The longest a boot without network config may take to report (TCG, busy machine): the
#: ifupdown hang it must not have is 5 minutes in networking.service alone.
NO_NETWORK_REPORT_WITHIN = 240.0


@dataclass
class FirstBoot:
    fmt: str
    boot: Boot
    spec: dict[str, Any]


@pytest.fixture(scope="module", params=LIFECYCLE_FORMATS)
def first_boot(request: pytest.FixtureRequest, vm_debian13: VmRunner, keys: Keys) -> FirstBoot:
    fmt: str = request.param
    spec = lifecycle_spec(
        fmt, instance_id=f"iid-{fmt}-1", hostname="alpha",
        key_list=[keys.ed25519, keys.rsa], v6_address="2001:db8:1::10", label="first",
    )  # fmt: skip
    bus: CdromBus = "sata" if fmt == "nocloud" else "ide"
    boot = vm_debian13.boot(
        f"debian13-first-{fmt}", vm_debian13.disk(f"first-{fmt}"), vm_debian13.seed(f"first-{fmt}", spec, fmt),
        [Nic(MAC_DHCP, NET_DHCP), Nic(MAC_V6, NET_V6)], bus=bus, report_paths=REPORT_PATHS,
    )  # fmt: skip
    return FirstBoot(fmt, boot, spec)


@pytest.fixture(scope="module", params=IPV6_ONLY_FORMATS)
def ipv6_bond(request: pytest.FixtureRequest, vm_debian13: VmRunner, keys: Keys) -> Boot:
    fmt: str = request.param
    seed = vm_debian13.seed(f"ipv6-bond-{fmt}", ipv6_bond_spec(fmt, keys.ed25519), fmt)
    return vm_debian13.boot(
        f"debian13-ipv6-bond-disk-{fmt}", vm_debian13.disk(f"ipv6-bond-{fmt}"), seed, ipv6_bond_nics(),
        machine="pc" if fmt == "nocloud" else "q35", attach="disk",
    )  # fmt: skip


@pytest.fixture(scope="module")
def no_network(vm_debian13: VmRunner, keys: Keys) -> Boot:
    spec = {"instance_id": "iid-nocloud-no-network", "hostname": "nonet", "ssh_authorized_keys": [keys.ed25519]}
    seed = vm_debian13.seed("no-network", spec, "nocloud")
    return vm_debian13.boot("debian13-no-network-nocloud", vm_debian13.disk("no-network"), seed, [Nic(MAC_DHCP)])


# --- the rich first boot ----------------------------------------------------------------------


def test_first_boot_cloud_init_25_1_clean(first_boot: FirstBoot) -> None:
    assert first_boot.boot.report["cloud_init_version"].split()[-1].startswith("25.1")
    assert_cloud_init_clean(first_boot.boot)


def test_first_boot_identity_and_keys(first_boot: FirstBoot, keys: Keys) -> None:
    report = first_boot.boot.report
    assert report["datasource"] == first_boot.fmt
    assert report["instance_id"] == expected_instance_id(first_boot.spec, first_boot.fmt)
    assert (report["hostname"], report["fqdn"]) == ("alpha", "alpha.example.test")
    assert set((report["authorized_keys"]["debian"] or "").splitlines()) == {keys.ed25519, keys.rsa}


def test_first_boot_user_data_vendor_data_and_files(first_boot: FirstBoot) -> None:
    report = first_boot.boot.report
    assert lines(report, "/var/tmp/cd/runcmd.log") == ["runcmd first"]
    assert lines(report, "/var/tmp/cd/script-part.log") == ["script part first"]
    assert lines(report, "/var/tmp/cd/vendor.txt") == ["vendor first"]
    if first_boot.fmt == "configdrive":
        for entry in files("first"):
            assert report["files"].get(entry["path"]) == entry["content"]


def test_first_boot_network_and_dns_as_the_resolver_uses_it(first_boot: FirstBoot) -> None:
    report = first_boot.boot.report
    assert report["resolver"]["via"] == "systemd-resolved"
    assert addresses(report, "eth0", "inet") == ["10.0.2.15"], "DHCPv4 from qemu user net"
    assert "2001:db8:1::10" in addresses(report, "eth1", "inet6")
    assert addresses(report, "eth1", "inet") == []
    routes = [(r["dst"], r.get("gateway"), r.get("dev")) for r in report["ip6_route"]]
    assert ("2001:db8:2::/64", "2001:db8:1::1", "eth1") in routes
    # 25.1 no longer copies an interface's nameservers to global DNS: resolved has them per link
    assert dns_servers(report, "eth1") == ["2001:db8:1::3"]
    assert "example.test" in dns_domains(report, "eth1")


# --- IPv6 only, bond and VLAN, seed on a disk ----------------------------------------------------


def test_ipv6_bond_cloud_init_clean(ipv6_bond: Boot) -> None:
    # 25.1's v1 schema refuses accept-ra on the VLAN: config-2's converter writes it there, and so
    # does NoCloud's v1 seed (the static IPv6 VLAN takes no router advertisements)
    assert_cloud_init_clean(ipv6_bond, known=("accept-ra on a bond or VLAN",))


def test_ipv6_bond_network_and_dns(ipv6_bond: Boot) -> None:
    check_ipv6_bond(ipv6_bond.report)


def test_ipv6_bond_seed_read_from_a_virtio_disk(ipv6_bond: Boot) -> None:
    subplatform = ipv6_bond.report["subplatform"] or ""
    assert re.fullmatch(r"config-disk \(/dev/vd[a-z]\)", subplatform), subplatform


# --- no network config --------------------------------------------------------------------------


def test_no_network_config_does_not_hang(no_network: Boot) -> None:
    """cloud-init's fallback network (DHCP on the first NIC) through netplan: no 5-minute wait."""
    report = no_network.report
    assert_cloud_init_clean(no_network)
    assert report["uptime"] < NO_NETWORK_REPORT_WITHIN, report["network_journal"]
    assert list(global_addresses(report, "inet").values()) == [["10.0.2.15"]]
    assert report["hostname"] == "nonet"


# --- OpenNebula: test_boot.py's boot and checks, on this generation ------------------------------


@pytest.fixture(scope="module")
def opennebula(vm_debian13: VmRunner, keys: Keys) -> OpenNebulaBoot:
    return boot_opennebula(vm_debian13, keys)


test_opennebula_identity_and_fixed_instance_id = test_boot.test_opennebula_identity_and_fixed_instance_id
test_opennebula_key_user_data_and_nothing_escaped = test_boot.test_opennebula_key_user_data_and_nothing_escaped
test_opennebula_static_addresses_gateways_and_dns = test_boot.test_opennebula_static_addresses_gateways_and_dns
test_opennebula_user_data_in_world_readable_instance_data = (
    test_boot.test_opennebula_user_data_in_world_readable_instance_data
)
test_opennebula_cloud_init_clean = test_boot.test_opennebula_cloud_init_clean
