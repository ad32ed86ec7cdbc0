"""Seeds built by configdrive, applied by real cloud-init 22.4 in a booted Debian 12 guest.

Boots are expensive under TCG (60-180 s each), so each scenario boots once and several tests
read its report:

* ``lifecycle`` (per format): one rich first boot (hostname, fqdn, ed25519 + RSA keys, MIME
  user-data, vendor-data, config-drive files, a DHCPv4 NIC and a static IPv6-only NIC with an
  extra route and DNS); then the same disk rebooted with a seed that keeps the instance id but
  changes everything else; then rebooted with a new instance id, hostname, key and address.
* ``ipv6_only`` (per format): a static IPv6 address and default route, and on two more NICs an
  active-backup bond with a VLAN carrying static IPv4 + IPv6 and the IPv4 default route
  (``scenarios.ipv6_bond_spec``, booted on Debian 13 too); no DHCPv4 address anywhere; the
  seed attached as a read-only virtio disk instead of a CD-ROM.
* ``opennebula``: an OpenNebula CONTEXT seed (static IPv4 + IPv6, key with shell syntax in its
  comment, user data), read by cloud-init's OpenNebula datasource through ``sudo -u nobody bash``.

The formats of ``lifecycle`` and ``ipv6_only`` are the registered formats that can express
those specs (the Format is asked, no names listed).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import configdrive
from configdrive import FORMATS as REGISTRY
from configdrive.qemu import CdromBus
from tests.conftest import takes_network_updates

from .conftest import Keys, VmRunner
from .guest_checks import addresses, assert_cloud_init_clean, cloud_init_version, dns_domains, dns_servers, ifname_of
from .harness import Boot, Nic
from .scenarios import check_ipv6_bond, ipv6_bond_nics
from .scenarios import ipv6_bond_spec as ipv6_only_spec

pytestmark = pytest.mark.vm

MAC_DHCP, MAC_V6, MAC_ONE = "52:54:00:cd:00:01", "52:54:00:cd:00:02", "52:54:00:cd:00:0e"
# Each NIC gets a qemu user network of its own; restrict=on keeps all traffic inside qemu.
# ipv4=on must be explicit: qemu takes a bare ipv6=on as "IPv6 only" and then serves no DHCPv4.
NET_DHCP = "restrict=on,ipv4=on,ipv6=on"
NET_V6 = "restrict=on,ipv4=on,ipv6=on,ipv6-net=2001:db8:1::/64,ipv6-host=2001:db8:1::1"
NET_ONE = "restrict=on,ipv4=on,ipv6=on,ipv6-net=2001:db8:7::/64,ipv6-host=2001:db8:7::1"
#: A valid key for deciding, at collection time, which formats can express a scenario's spec.
PROBE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y probe"
REPORT_PATHS = (
    "/var/tmp/cd/bootcmd.log",
    "/var/tmp/cd/runcmd.log",
    "/var/tmp/cd/script-part.log",
    "/var/tmp/cd/vendor.txt",
    "/var/tmp/cd/vendor-runcmd.log",
    "/etc/configdrive-test/motd.txt",
    "/etc/configdrive-test/nested/dir/data.json",
    "/run/cloud-init/instance-data.json",
)
NETWORK_EVERY_BOOT = {"network": {"when": ["boot"]}}


def files(label: str) -> list[dict[str, str]]:
    """config-2 injected files, their content naming the step that wrote them."""
    return [
        {"path": "/etc/configdrive-test/motd.txt", "content": f"hello from config-2 files, {label}\n"},
        {"path": "/etc/configdrive-test/nested/dir/data.json", "content": f'{{"step": "{label}"}}\n'},
    ]


def user_data_parts(label: str) -> list[dict[str, str]]:
    """MIME multipart user-data: a cloud-config part and a shell-script part."""
    cloud_config = f"""#cloud-config
manage_etc_hosts: true
bootcmd:
  - mkdir -p /var/tmp/cd
  - echo "bootcmd {label} $(cat /proc/sys/kernel/random/boot_id)" >> /var/tmp/cd/bootcmd.log
runcmd:
  - echo "runcmd {label}" >> /var/tmp/cd/runcmd.log
"""
    script = f"""#!/bin/sh
echo "script part {label}" >> /var/tmp/cd/script-part.log
"""
    return [
        {"content_type": "text/cloud-config", "content": cloud_config},
        {"content_type": "text/x-shellscript", "content": script, "filename": "part.sh"},
    ]


def vendor_data(label: str) -> dict[str, Any]:
    """Vendor cloud-config: ``write_files``, a key user-data does not have, and a ``runcmd``,
    which it has: cloud-init merges vendor-data under user-data key by key, so the vendor's
    ``runcmd`` never runs (`configdrive diff` says "never")."""
    return {
        "write_files": [{"path": "/var/tmp/cd/vendor.txt", "content": f"vendor {label}\n"}],
        "runcmd": [f"echo 'vendor runcmd {label}' >> /var/tmp/cd/vendor-runcmd.log"],
    }


def lifecycle_spec(
    fmt: str, *, instance_id: str, hostname: str, key_list: list[str],
    v6_address: str, label: str,
) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "instance_id": instance_id,
        "hostname": hostname,
        "fqdn": f"{hostname}.example.test",
        "ssh_authorized_keys": key_list,
        "availability_zone": f"zone-{label}",
        "meta": {"step": label},
        "user_data_parts": user_data_parts(label),
        "vendor_data": vendor_data(label),
        "network": {
            "ethernets": {
                "eth0": {"match": {"macaddress": MAC_DHCP}, "set-name": "eth0", "dhcp4": True},
                "eth1": {
                    "match": {"macaddress": MAC_V6},
                    "set-name": "eth1",
                    "addresses": [f"{v6_address}/64"],
                    "routes": [{"to": "2001:db8:2::/64", "via": "2001:db8:1::1"}],
                    "nameservers": {"addresses": ["2001:db8:1::3"], "search": ["example.test"]},
                    "accept-ra": False,
                },
            }
        },
    }
    if fmt == "configdrive":
        spec["files"] = files(label)
    return spec


def formats_for(make_spec: Any) -> list[str]:
    """The registered formats that can express ``make_spec(fmt)``: the others refuse it."""
    return [fmt for fmt, form in REGISTRY.items() if not form.problems(configdrive.load_spec(make_spec(fmt)))]


LIFECYCLE_FORMATS = formats_for(
    lambda fmt: lifecycle_spec(
        fmt, instance_id="i", hostname="h", key_list=[PROBE_KEY], v6_address="2001:db8:1::10", label="probe"
    )
)
IPV6_ONLY_FORMATS = formats_for(lambda fmt: ipv6_only_spec(fmt, PROBE_KEY))


def expected_instance_id(spec: dict[str, Any], fmt: str) -> str:
    """What cloud-init will call the instance: meta-data instance-id, or config-2's uuid."""
    return configdrive.build_seed(spec, fmt).instance_id


def seed_through_the_watcher(workdir: Path, name: str, spec: dict[str, Any], fmt: str) -> Path:
    """The seed `configdrive watch --once` builds for ``spec`` put in a folder store."""
    store, out = workdir / f"{name}-store", workdir / f"{name}-seeds"
    store.mkdir()
    (store / "vm.yaml").write_text(yaml.safe_dump(spec))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "configdrive",
            "watch",
            "--once",
            "--source",
            f"dir:{store}",
            "--out-dir",
            str(out),
            "--format",
            fmt,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out / "vm.iso"


def predicted(old_seed: Path, new_seed: Path) -> dict[str, str]:
    """What `configdrive diff` says cloud-init will do with the change from one seed to the next."""
    result = subprocess.run(
        [sys.executable, "-m", "configdrive", "diff", str(old_seed), str(new_seed), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    return {v["field"]: v["applies"] for v in json.loads(result.stdout)}


#: The lifecycle's boots, in order (``Lifecycle.boots``).
STEPS = ("first", "same_iid", "new_iid", "net_policy")


@dataclass
class Lifecycle:
    """One disk through four boots: a first boot; the same instance id with everything changed;
    a new instance id, derived from the content (``instance_id_from: content``), whose seed
    also asks for network config on every boot (``updates``); then that instance id again with
    everything changed, the seed built by `configdrive watch` and the change predicted by
    `configdrive diff` (``predicted``)."""

    fmt: str
    first: Boot
    same_iid: Boot
    new_iid: Boot
    net_policy: Boot
    specs: dict[str, dict[str, Any]]
    predicted: dict[str, str]

    def boots(self) -> list[Boot]:
        return [self.first, self.same_iid, self.new_iid, self.net_policy]


@pytest.fixture(scope="module", params=LIFECYCLE_FORMATS)
def lifecycle(request: pytest.FixtureRequest, vm: VmRunner, keys: Keys) -> Iterator[Lifecycle]:
    fmt: str = request.param
    disk = vm.disk(f"lifecycle-{fmt}")
    nics = [Nic(MAC_DHCP, NET_DHCP), Nic(MAC_V6, NET_V6)]
    bus: CdromBus = "sata" if fmt == "nocloud" else "ide"
    policy = {"updates": NETWORK_EVERY_BOOT} if takes_network_updates(fmt) else {}
    specs = {
        "first": lifecycle_spec(
            fmt, instance_id=f"iid-{fmt}-1", hostname="alpha",
            key_list=[keys.ed25519, keys.rsa], v6_address="2001:db8:1::10", label="first",
        ),
        # same instance id; hostname, key, address and user-data all changed
        "same_iid": lifecycle_spec(
            fmt, instance_id=f"iid-{fmt}-1", hostname="bravo",
            key_list=[keys.ed25519, keys.later], v6_address="2001:db8:1::20", label="same_iid",
        ),
        # a content-derived instance id (new, since the content changed), and network on every boot
        # where the format can carry that policy
        "new_iid": {**lifecycle_spec(
            fmt, instance_id=f"iid-{fmt}-2", hostname="charlie",
            key_list=[keys.ed25519, keys.later], v6_address="2001:db8:1::20", label="new_iid",
        ), "instance_id_from": "content", **policy},
    }  # fmt: skip
    # the instance id the guest now has, kept; hostname, key, address and user-data all changed
    derived = expected_instance_id(specs["new_iid"], fmt)
    specs["net_policy"] = {**lifecycle_spec(
        fmt, instance_id=derived if fmt == "nocloud" else f"iid-{fmt}-3", hostname="delta",
        key_list=[keys.ed25519, keys.later, keys.fourth], v6_address="2001:db8:1::30", label="net_policy",
    ), **policy, **({} if fmt == "nocloud" else {"uuid": derived})}  # fmt: skip
    seeds = {
        step: vm.seed(f"lifecycle-{fmt}-{step}", spec, fmt) for step, spec in specs.items() if step != "net_policy"
    }
    seeds["net_policy"] = seed_through_the_watcher(vm.workdir, f"lifecycle-{fmt}-net_policy", specs["net_policy"], fmt)
    change = predicted(seeds["new_iid"], seeds["net_policy"])
    boots = {}
    for step, seed in seeds.items():
        boots[step] = vm.boot(
            f"lifecycle-{fmt}-{step}", disk, seed, nics, bus=bus,
            report_paths=REPORT_PATHS,
        )  # fmt: skip
    yield Lifecycle(fmt, boots["first"], boots["same_iid"], boots["new_iid"], boots["net_policy"], specs, change)


@pytest.fixture(scope="module", params=IPV6_ONLY_FORMATS)
def ipv6_only(request: pytest.FixtureRequest, vm: VmRunner, keys: Keys) -> Boot:
    """Also the disk-attachment boot: the seed is a read-only virtio disk, not a CD-ROM."""
    fmt: str = request.param
    seed = vm.seed(f"ipv6-only-{fmt}", ipv6_only_spec(fmt, keys.ed25519), fmt)
    return vm.boot(
        f"ipv6-only-disk-{fmt}", vm.disk(f"ipv6-only-{fmt}"), seed, ipv6_bond_nics(),
        machine="pc" if fmt == "nocloud" else "q35", attach="disk",
    )  # fmt: skip


@dataclass
class OpenNebulaBoot:
    boot: Boot
    spec: dict[str, Any]
    key: str
    user_data: str


ONE_PATHS = ("/var/tmp/cd/one.txt", "/var/tmp/escaped-1", "/var/tmp/escaped-2", "/run/cloud-init/instance-data.json")


@pytest.fixture(scope="module")
def opennebula(vm: VmRunner, keys: Keys) -> OpenNebulaBoot:
    return boot_opennebula(vm, keys)


def boot_opennebula(vm: VmRunner, keys: Keys) -> OpenNebulaBoot:
    """The OpenNebula boot, on ``vm``'s guest generation (test_debian13.py boots it too)."""
    # The key's comment is shell syntax that would leave a file in /var/tmp (writable by nobody,
    # who parses context.sh) if it ever left its quotes.
    key = " ".join(keys.ed25519.split()[:2]) + " it's `touch /var/tmp/escaped-1` \\'$(touch /var/tmp/escaped-2) \"\\"
    user_data = (
        "#cloud-config\nmanage_etc_hosts: true\nruncmd:\n  - mkdir -p /var/tmp/cd\n"
        '  - echo "runcmd opennebula" > /var/tmp/cd/one.txt\n'
    )
    spec = {
        "instance_id": "iid-not-used-by-opennebula",
        "hostname": "nebula",
        "fqdn": "nebula.example.test",
        "ssh_authorized_keys": [key],
        "user_data": user_data,
        "network": {
            "ethernets": {
                "eth0": {
                    "match": {"macaddress": MAC_ONE},
                    # not 10.0.2.15, the address qemu's DHCP would hand out
                    "addresses": ["10.0.2.42/24", "2001:db8:7::42/64"],
                    "routes": [{"to": "default", "via": "10.0.2.2"}, {"to": "default", "via": "2001:db8:7::1"}],
                    "nameservers": {"addresses": ["10.0.2.3"], "search": ["example.test"]},
                }
            }
        },
    }
    seed = vm.seed("opennebula", spec, "opennebula")
    boot = vm.boot(
        "opennebula", vm.disk("opennebula"), seed, [Nic(MAC_ONE, NET_ONE)], bus="virtio-scsi", report_paths=ONE_PATHS
    )
    return OpenNebulaBoot(boot, spec, key, user_data)


# --- report helpers ----------------------------------------------------------------------------


def file_text(report: dict[str, Any], path: str) -> str | None:
    value = report["files"].get(path)
    return None if value is None else str(value)


def lines(report: dict[str, Any], path: str) -> list[str]:
    return (file_text(report, path) or "").splitlines()


# --- first boot --------------------------------------------------------------------------------


def test_first_boot_identity(lifecycle: Lifecycle) -> None:
    report, spec = lifecycle.first.report, lifecycle.specs["first"]
    assert report["datasource"] == lifecycle.fmt  # cloud-init 22.4 platform names: "nocloud", "configdrive"
    assert report["instance_id"] == expected_instance_id(spec, lifecycle.fmt)
    assert report["hostname"] == "alpha"
    assert report["fqdn"] == "alpha.example.test"


def test_first_boot_ssh_keys_for_default_user(lifecycle: Lifecycle, keys: Keys) -> None:
    authorized = lifecycle.first.report["authorized_keys"]
    assert set((authorized["debian"] or "").splitlines()) == {keys.ed25519, keys.rsa}
    # disable_root (the default): root gets the keys behind a "log in as debian" command
    for line in (authorized["root"] or "").splitlines():
        assert line.startswith("no-port-forwarding,") and 'command="echo' in line


def test_first_boot_two_nics(lifecycle: Lifecycle) -> None:
    report = lifecycle.first.report
    assert addresses(report, "eth0", "inet") == ["10.0.2.15"], "DHCPv4 from qemu user net"
    assert "2001:db8:1::10" in addresses(report, "eth1", "inet6")
    assert addresses(report, "eth1", "inet") == []
    routes = [(r["dst"], r.get("gateway"), r.get("dev")) for r in report["ip6_route"]]
    assert ("2001:db8:2::/64", "2001:db8:1::1", "eth1") in routes
    # as the resolver uses it (resolv.conf from resolvconf on Debian 12)
    assert "2001:db8:1::3" in dns_servers(report, "eth1")
    assert "example.test" in dns_domains(report, "eth1")


def test_mime_multipart_both_parts_apply(lifecycle: Lifecycle) -> None:
    report = lifecycle.first.report
    assert lines(report, "/var/tmp/cd/runcmd.log") == ["runcmd first"]  # cloud-config part
    assert lines(report, "/var/tmp/cd/script-part.log") == ["script part first"]  # script part


def test_vendor_data_and_user_data_both_apply(lifecycle: Lifecycle) -> None:
    report = lifecycle.first.report
    assert lines(report, "/var/tmp/cd/vendor.txt") == ["vendor first"]
    assert lines(report, "/var/tmp/cd/runcmd.log") == ["runcmd first"]


def test_config_drive_files_are_written_once_per_instance(lifecycle: Lifecycle) -> None:
    """The ``files`` row (new-instance): written at the first boot, not rewritten with the same
    instance id, rewritten with a new one."""
    if lifecycle.fmt != "configdrive":
        pytest.skip("config-drive only: NoCloud has no injected files")
    written = {"first": "first", "same_iid": "first", "new_iid": "new_iid", "net_policy": "new_iid"}
    for step, boot in zip(STEPS, lifecycle.boots(), strict=True):
        for entry in files(written[step]):
            assert file_text(boot.report, entry["path"]) == entry["content"], step


def instance_data(boot: Boot) -> dict[str, Any]:
    text = file_text(boot.report, "/run/cloud-init/instance-data.json")
    assert text is not None, "no /run/cloud-init/instance-data.json"
    data: dict[str, Any] = json.loads(text)
    return data


def test_meta_and_availability_zone_are_only_recorded(lifecycle: Lifecycle) -> None:
    """The ``meta`` and ``availability_zone`` rows (never): cloud-init reads the new values on
    every boot into its instance data and applies nothing from them."""
    for step, boot in zip(STEPS, lifecycle.boots(), strict=True):
        data = instance_data(boot)
        assert data["v1"]["availability_zone"] == f"zone-{step}", step
        assert data["ds"]["meta_data"]["meta"] == {"step": step}, step


def test_a_vendor_runcmd_loses_to_the_user_runcmd(lifecycle: Lifecycle) -> None:
    """A vendor cloud-config key the user data also has (``runcmd``) never runs, not even for a
    new instance, while the vendor's other keys (``write_files``) do."""
    for boot in lifecycle.boots():
        assert file_text(boot.report, "/var/tmp/cd/vendor-runcmd.log") is None, boot.name
    assert lines(lifecycle.new_iid.report, "/var/tmp/cd/vendor.txt") == ["vendor new_iid"]


# --- reboots -----------------------------------------------------------------------------------


def test_reboot_same_instance_id(lifecycle: Lifecycle, keys: Keys) -> None:
    """Same instance id, everything else changed: per-instance config is not re-applied."""
    first, again = lifecycle.first.report, lifecycle.same_iid.report
    assert again["boot_id"] != first["boot_id"]
    assert again["instance_id"] == first["instance_id"]
    assert again["instances"] == first["instances"]
    # per-instance modules do not run again: no new key, no runcmd, no user script, no vendor
    # write_files, same host keys
    assert keys.later not in (again["authorized_keys"]["debian"] or "")
    assert lines(again, "/var/tmp/cd/runcmd.log") == ["runcmd first"]
    assert lines(again, "/var/tmp/cd/script-part.log") == ["script part first"]
    assert lines(again, "/var/tmp/cd/vendor.txt") == ["vendor first"]
    assert again["host_keys"] == first["host_keys"]
    # the datasource is read again on every boot and set_hostname/update_hostname run per boot:
    # the new hostname does apply without a new instance id
    assert again["hostname"] == "bravo"
    assert again["fqdn"] == "bravo.example.test"
    # network config is not re-rendered for a known instance: the old address stays
    assert "2001:db8:1::10" in addresses(again, "eth1", "inet6")
    assert "2001:db8:1::20" not in addresses(again, "eth1", "inet6")
    # per-boot modules run with the new user-data
    assert [line.split()[:2] for line in lines(again, "/var/tmp/cd/bootcmd.log")] == [
        ["bootcmd", "first"],
        ["bootcmd", "same_iid"],
    ]


def test_reboot_new_instance_id(lifecycle: Lifecycle, keys: Keys) -> None:
    """A new instance id: cloud-init treats the disk as a new instance and re-applies it all."""
    first, new = lifecycle.first.report, lifecycle.new_iid.report
    assert new["instance_id"] == expected_instance_id(lifecycle.specs["new_iid"], lifecycle.fmt)
    assert new["instance_id"] != first["instance_id"]
    assert sorted(new["instances"]) == sorted({*first["instances"], new["instance_id"]})
    assert new["hostname"] == "charlie"
    assert new["fqdn"] == "charlie.example.test"
    authorized = (new["authorized_keys"]["debian"] or "").splitlines()
    assert keys.later in authorized
    # cloud-init only adds keys: the RSA key dropped from the metadata is still authorized
    assert keys.rsa in authorized
    assert lines(new, "/var/tmp/cd/runcmd.log") == ["runcmd first", "runcmd new_iid"]
    assert lines(new, "/var/tmp/cd/script-part.log") == ["script part first", "script part new_iid"]
    assert lines(new, "/var/tmp/cd/vendor.txt") == ["vendor new_iid"]
    assert new["host_keys"] != first["host_keys"]
    assert "2001:db8:1::20" in addresses(new, "eth1", "inet6")
    assert "2001:db8:1::10" not in addresses(new, "eth1", "inet6")
    assert addresses(new, "eth0", "inet") == ["10.0.2.15"]


def test_reboot_with_the_network_policy_applies_what_diff_predicted(lifecycle: Lifecycle, keys: Keys) -> None:
    """Same instance id, everything changed, network config asked for on every boot (where the
    format takes that policy): the guest does exactly what `configdrive diff` said, field by field."""
    before, after = lifecycle.new_iid.report, lifecycle.net_policy.report
    every_boot = takes_network_updates(lifecycle.fmt)
    assert lifecycle.predicted == {
        "availability_zone": "never",
        "hostname": "next-boot",
        "meta": "never",
        "network": "next-boot" if every_boot else "new-instance",
        "ssh_authorized_keys": "new-instance",
        "user_data": "new-instance",  # the shell-script part
        "user_data.bootcmd": "next-boot",
        "user_data.runcmd": "new-instance",
        "vendor_data.runcmd": "never",
        "vendor_data.write_files": "new-instance",
        **({"files": "new-instance"} if lifecycle.fmt == "configdrive" else {}),
    }
    assert after["instance_id"] == before["instance_id"] and after["host_keys"] == before["host_keys"]
    # next-boot: hostname, network, bootcmd
    assert after["hostname"] == "delta" and after["fqdn"] == "delta.example.test"
    new_address, old_address = ("2001:db8:1::30", "2001:db8:1::20")[:: 1 if every_boot else -1]
    assert new_address in addresses(after, "eth1", "inet6")
    assert old_address not in addresses(after, "eth1", "inet6")
    assert [line.split()[1] for line in lines(after, "/var/tmp/cd/bootcmd.log")][-1] == "net_policy"
    # new-instance: keys, runcmd, the script part, vendor write_files stay as they were
    assert keys.fourth not in (after["authorized_keys"]["debian"] or "")
    assert lines(after, "/var/tmp/cd/runcmd.log") == lines(before, "/var/tmp/cd/runcmd.log")
    assert lines(after, "/var/tmp/cd/script-part.log") == lines(before, "/var/tmp/cd/script-part.log")
    assert lines(after, "/var/tmp/cd/vendor.txt") == ["vendor new_iid"]


def test_lifecycle_cloud_init_clean(lifecycle: Lifecycle) -> None:
    for boot in lifecycle.boots():
        assert_cloud_init_clean(boot)


# --- IPv6 only ---------------------------------------------------------------------------------


def test_ipv6_only(ipv6_only: Boot) -> None:
    check_ipv6_bond(ipv6_only.report)


def test_ipv6_only_cloud_init_clean(ipv6_only: Boot) -> None:
    assert_cloud_init_clean(ipv6_only)


def test_ipv6_only_seed_read_from_a_virtio_disk(ipv6_only: Boot) -> None:
    # a virtio disk (qemu may enumerate it before the root disk, found by label), not /dev/sr0
    assert re.fullmatch(r"config-disk \(/dev/vd[a-z]\)", ipv6_only.report["subplatform"] or ""), ipv6_only.report[
        "subplatform"
    ]


# --- OpenNebula CONTEXT -------------------------------------------------------------------------


def test_opennebula_identity_and_fixed_instance_id(opennebula: OpenNebulaBoot) -> None:
    report = opennebula.boot.report
    assert report["datasource"] == "opennebula"
    assert report["instance_id"] == "iid-dsopennebula"  # whatever the spec's instance_id said
    assert report["hostname"] == "nebula"
    assert report["fqdn"] == "nebula.example.test"


def test_opennebula_key_user_data_and_nothing_escaped(opennebula: OpenNebulaBoot) -> None:
    report = opennebula.boot.report
    assert (report["authorized_keys"]["debian"] or "").splitlines() == [opennebula.key]
    assert lines(report, "/var/tmp/cd/one.txt") == ["runcmd opennebula"]
    assert file_text(report, "/var/tmp/escaped-1") is None
    assert file_text(report, "/var/tmp/escaped-2") is None


def test_opennebula_static_addresses_gateways_and_dns(opennebula: OpenNebulaBoot) -> None:
    report = opennebula.boot.report
    nic = ifname_of(report, MAC_ONE)
    assert addresses(report, nic, "inet") == ["10.0.2.42"], "static ETH0_IP, no DHCP"
    assert "2001:db8:7::42" in addresses(report, nic, "inet6")
    defaults = [(r.get("gateway"), r.get("dev")) for r in report["ip_route"] if r["dst"] == "default"]
    assert defaults == [("10.0.2.2", nic)]
    defaults6 = [(r.get("gateway"), r.get("dev")) for r in report["ip6_route"] if r["dst"] == "default"]
    assert ("2001:db8:7::1", nic) in defaults6
    assert "10.0.2.3" in dns_servers(report, nic) and "example.test" in dns_domains(report, nic)


def test_opennebula_user_data_in_world_readable_instance_data(opennebula: OpenNebulaBoot) -> None:
    """cloud-init copies the whole context into /run/cloud-init/instance-data.json (mode 0644):
    22.4 with the user data, 25.1 with ``USER_DATA`` redacted (seen in a booted Debian 13 guest)."""
    text = file_text(opennebula.boot.report, "/run/cloud-init/instance-data.json") or ""
    encoded = base64.b64encode(opennebula.user_data.encode()).decode()
    if cloud_init_version(opennebula.boot.report) == "22.4":
        assert f'"USER_DATA": "{encoded}"' in text
    else:
        assert '"USER_DATA": "redacted for non-root user"' in text and encoded not in text


def test_opennebula_cloud_init_clean(opennebula: OpenNebulaBoot) -> None:
    # 25.1 only: cloud-init's own context.sh converter writes the gateways as gateway4/gateway6
    assert_cloud_init_clean(opennebula.boot, known=("OpenNebula default gateways as gateway4/gateway6",))


def test_report_paths_exist(lifecycle: Lifecycle) -> None:
    """Guard against a silent report: every path the tests read was reported (maybe as null)."""
    assert set(REPORT_PATHS) <= set(lifecycle.first.report["files"])
