"""Guests with no seed drive, configured by cloud-init from ``configdrive serve`` over HTTP.

Two boots (TCG: 1.5-3 min each), one ``configdrive serve`` process for both, started as a user
would (``--source dir:``, ``--socket-dir``, ``--listen``, ``--out-dir``) inside a network
namespace the test makes, so nothing touches the host's own interfaces:

* ``openstack``: cloud-init's OpenStack datasource reaching the service by the name
  ``metadata`` through qemu user networking: ``net=169.254.0.0/16`` and
  ``guestfwd=tcp:169.254.169.254:80-cmd:guestfwd.py DIR/<vm-id>.sock`` (the VM is known by its
  socket), DMI product ``OpenStack Nova``. Per boot, so the guest image stays the one every VM
  test shares: ``/etc/hosts`` gets ``169.254.169.254 metadata`` from a systemd credential on the
  kernel command line (``tmpfiles.extra``, applied by systemd-tmpfiles-setup at sysinit, long
  before cloud-init-local's Python has started), and cloud-init's ``metadata_urls`` and
  ``datasource_list`` come from ``cc: ... end_cc``. The same ``serve`` process writes the VM's
  config-2 image (``--out-dir``): the guest's user data, meta data, network data, vendor data and
  injected files must equal that image's files, so drive and service say the same thing.
* ``ipv6``: an IPv6-only guest on a tap device on a bridge; the service listens on
  ``[fe80::a9fe:a9fe%br0]:80`` and the guest's NoCloud-net seed URL is
  ``http://[fe80::a9fe:a9fe%eth0]/nocloud/`` (kernel command line ``ds=nocloud-net;s=...``). The
  guest has only its kernel-made link-local address, so the service can only know it by the
  EUI-64 of its MAC (the spec names no address). The guest's network (link-local only, no DHCP)
  comes from cloud-init's own ``network-config=`` kernel argument: NoCloud-net never fetches
  ``network-config``.

What cloud-init fetched is read in the guest by the user data itself (a Python script that
unpickles cloud-init's cached datasource and writes hashes and parsed documents to
``/var/tmp/cd/fetched.json``, which the report carries): nothing the guest could have had from
elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import configdrive
from configdrive.iso import read_iso
from configdrive.seed import Seed
from configdrive.serve import qemu_args
from configdrive.serve.addresses import eui64

from .conftest import VmRunner
from .guest_checks import assert_cloud_init_clean
from .harness import Boot

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
MAC_OS, MAC_SIX = "52:54:00:cd:00:51", "52:54:00:cd:00:66"
VM_OS, VM_SIX = "osguest", "sixguest"
SERVICE_LINK_LOCAL = "fe80::a9fe:a9fe"
FETCHED = "/var/tmp/cd/fetched.json"
VENDOR_TXT = "/var/tmp/cd/vendor.txt"
REPORT_PATHS = (FETCHED, VENDOR_TXT)
FILES = [
    {"path": "/etc/configdrive-test/motd.txt", "content": "hello over HTTP\n"},
    {"path": "/etc/configdrive-test/nested/data.json", "content": '{"answer": 42}\n'},
]
#: The user data of both VMs: run by cloud-init (scripts-user), it records what cloud-init holds
#: from its datasource, as fetched: hashes of the raw documents, the parsed JSON ones as parsed.
PROBE = """#!/usr/bin/python3
# configdrive test probe: what cloud-init fetched, read from its cached datasource.
import hashlib, json, os, pickle

with open("/var/lib/cloud/instance/obj.pkl", "rb") as f:
    ds = pickle.load(f)


def sha(value):
    if value is None:
        return None
    return hashlib.sha256(value if isinstance(value, bytes) else str(value).encode()).hexdigest()


out = {
    "class": type(ds).__name__,
    "metadata_address": getattr(ds, "metadata_address", None),
    "metadata": ds.metadata,
    "network_json": getattr(ds, "network_json", None),
    "ec2_metadata": getattr(ds, "ec2_metadata", None),
    "vendordata_pure": getattr(ds, "vendordata_pure", None),
    "vendordata2_pure": getattr(ds, "vendordata2_pure", None),
    "userdata_sha256": sha(ds.userdata_raw),
    "vendordata_raw_sha256": sha(ds.vendordata_raw),
    "files_sha256": {path: sha(data) for path, data in (getattr(ds, "files", None) or {}).items()},
}
os.makedirs("/var/tmp/cd", exist_ok=True)
with open("/var/tmp/cd/fetched.json", "w") as f:
    json.dump(out, f, default=repr, sort_keys=True)
"""
ACCESS_RE = re.compile(r"configdrive\.serve\.access: (\S+) (\S+) (\S+) '([^']*)' (\d+)$")


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def link_local(mac: str) -> str:
    """The kernel's EUI-64 link-local address for ``mac``."""
    return str(ipaddress.IPv6Address((0xFE80 << 112) | eui64(mac)))


def vendor_data(label: str) -> dict[str, Any]:
    return {"manage_etc_hosts": True, "write_files": [{"path": VENDOR_TXT, "content": f"vendor {label}\n"}]}


def openstack_spec(key: str) -> dict[str, Any]:
    return {
        "instance_id": "iid-serve-openstack",
        "hostname": VM_OS,
        "fqdn": f"{VM_OS}.example.test",
        "ssh_authorized_keys": [key],
        "user_data": PROBE,
        "vendor_data": vendor_data("openstack"),
        "files": FILES,
        "network": {"ethernets": {"eth0": {
            "match": {"macaddress": MAC_OS}, "set-name": "eth0", "dhcp4": True,
            # only the metadata can give this one: qemu's user net here has no IPv6 at all
            "addresses": ["2001:db8:9::10/64"],
        }}},
    }  # fmt: skip


def ipv6_spec(key: str) -> dict[str, Any]:
    # No address: the service can know this VM only by the EUI-64 of its MAC.
    return {
        "instance_id": "iid-serve-ipv6",
        "hostname": VM_SIX,
        "fqdn": f"{VM_SIX}.example.test",
        "ssh_authorized_keys": [key],
        "user_data": PROBE,
        "vendor_data": vendor_data("ipv6"),
        "network": {"ethernets": {"eth0": {"match": {"macaddress": MAC_SIX}, "set-name": "eth0"}}},
    }


#: The IPv6-only guest's network, as cloud-init reads it from ``network-config=`` on the kernel
#: command line: the NIC up with SLAAC and no DHCP of either kind (eni: ``inet6 auto``, ``dhcp 0``);
#: no router advertises here, so it keeps only its link-local address.
IPV6_NETWORK_CONFIG = {"version": 1, "config": [
    {"type": "physical", "name": "eth0", "mac_address": MAC_SIX, "subnets": [{"type": "ipv6_slaac"}]},
]}  # fmt: skip


def openstack_kernel_args() -> str:
    hosts_line = "w+ /etc/hosts - - - - 169.254.169.254 metadata"  # appended, before cloud-init runs
    cloud_config = "{datasource_list: [OpenStack, None], datasource: {OpenStack: {metadata_urls: ['http://metadata']}}}"
    return f'systemd.set_credential="tmpfiles.extra:{hosts_line}" cc: {cloud_config} end_cc'


def ipv6_kernel_args() -> str:
    network = base64.b64encode(yaml.safe_dump(IPV6_NETWORK_CONFIG).encode()).decode()
    return f"ds=nocloud-net;s=http://[{SERVICE_LINK_LOCAL}%eth0]/nocloud/ network-config={network}"


# --- the service and its network ------------------------------------------------------------------


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Service:
    """One ``configdrive serve`` in namespace ``netns`` (bridge ``br0`` with ``tap0``)."""

    netns: str
    store: Path
    socket_dir: Path
    out_dir: Path
    log: Path

    def seed(self, vm_id: str, fmt: str) -> Seed:
        """``vm_id``'s seed in ``fmt``, rendered from the very file the service reads (its key
        order is the one rendered into user and vendor data)."""
        return configdrive.build_seed(configdrive.load_spec(self.store / f"{vm_id}.yaml"), fmt)

    def requests(self, vm_id: str) -> list[tuple[str, str, str, int]]:
        """(source, method, path, status) of every request the access log gives ``vm_id``."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = ACCESS_RE.search(line)
            if match and match.group(1) == vm_id:
                found.append((match.group(2), match.group(3), match.group(4), int(match.group(5))))
        return found

    def unattributed(self) -> list[str]:
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if (m := ACCESS_RE.search(line)) and m.group(1) == "-"
        ]


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("serve-keys") / "key"
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", "serve@configdrive-test", "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def service(vm: VmRunner, ssh_key: str) -> Iterator[Service]:
    netns = f"cdvm{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)  # a leftover of a killed run
    ip("netns", "add", netns)
    process = None
    try:
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        ip("-n", netns, "link", "set", "br0", "up")
        ip("-n", netns, "addr", "add", f"{SERVICE_LINK_LOCAL}/64", "dev", "br0", "nodad")
        ip("-n", netns, "tuntap", "add", "dev", "tap0", "mode", "tap")
        ip("-n", netns, "link", "set", "tap0", "master", "br0", "up")
        store, socket_dir, out_dir = (vm.workdir / name for name in ("serve-store", "serve-socks", "serve-images"))
        store.mkdir()
        specs = {VM_OS: openstack_spec(ssh_key), VM_SIX: ipv6_spec(ssh_key)}
        for vm_id, spec in specs.items():
            (store / f"{vm_id}.yaml").write_text(yaml.safe_dump(spec))
        log = vm.workdir / "serve.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "configdrive", "serve",
                 "--source", f"dir:{store}", "--socket-dir", str(socket_dir),
                 "--listen", f"[{SERVICE_LINK_LOCAL}%br0]:80", "--out-dir", str(out_dir),
                 "--format", "configdrive", "--jobs", "1"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        ready = [socket_dir / f"{vm_id}.sock" for vm_id in specs] + [out_dir / f"{vm_id}.iso" for vm_id in specs]
        deadline = time.monotonic() + 60
        while not all(path.exists() for path in ready):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"configdrive serve did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield Service(netns, store, socket_dir, out_dir, log)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


@pytest.fixture(scope="module")
def openstack(vm: VmRunner, service: Service) -> Boot:
    """No seed drive: qemu user net with guestfwd to the VM's socket, DMI says OpenStack."""
    extra = [
        *qemu_args.metadata_user_netdev_args(service.socket_dir, VM_OS, MAC_OS, netdev="net0"),
        *qemu_args.openstack_smbios_args(),
    ]
    return vm.boot(
        "serve-openstack-by-name",
        vm.disk("serve-openstack"),
        None,
        [],
        report_paths=REPORT_PATHS,
        kernel_args=openstack_kernel_args(),
        extra_args=extra,
    )


@pytest.fixture(scope="module")
def ipv6(vm: VmRunner, service: Service) -> Boot:
    """No seed drive, IPv6 only: qemu in the service's namespace, its NIC the bridge's tap0."""
    return vm.boot("serve-ipv6-link-local", vm.disk("serve-ipv6"), None, [],
                   report_paths=REPORT_PATHS, kernel_args=ipv6_kernel_args(),
                   extra_args=qemu_args.metadata_tap_args("tap0", MAC_SIX, netdev="net0"),
                   wrapper=["ip", "netns", "exec", service.netns])  # fmt: skip


# --- report helpers --------------------------------------------------------------------------------


def fetched(boot: Boot) -> dict[str, Any]:
    text = boot.report["files"].get(FETCHED)
    assert text, f"the user-data probe wrote no {FETCHED}: user data not fetched or not run"
    result: dict[str, Any] = json.loads(text)
    return result


def ifname_of(report: dict[str, Any], mac: str) -> str:
    return next(str(link["ifname"]) for link in report["ip_addr"] if link.get("address") == mac)


def addresses(report: dict[str, Any], ifname: str, family: str, scope: str | None = None) -> list[str]:
    return [
        a["local"]
        for link in report["ip_addr"]
        if link["ifname"] == ifname
        for a in link.get("addr_info", [])
        if a["family"] == family and scope in (None, a.get("scope"))
    ]


def image_files(service: Service, vm_id: str) -> dict[str, bytes]:
    """The config-2 image the same serve process wrote for ``vm_id``."""
    return read_iso(service.out_dir / f"{vm_id}.iso").files


# --- OpenStack by name, through the VM's socket ------------------------------------------------------


def test_openstack_by_name_identity(openstack: Boot, service: Service) -> None:
    report = openstack.report
    assert report["datasource"] == "openstack"
    assert report["subplatform"] == "metadata (http://metadata)"
    assert fetched(openstack)["metadata_address"] == "http://metadata", "reached by the name, not the default address"
    assert report["instance_id"] == service.seed(VM_OS, "configdrive").instance_id
    assert report["hostname"] == VM_OS
    assert report["fqdn"] == f"{VM_OS}.example.test"


def test_openstack_keys_network_and_vendor_data(openstack: Boot, ssh_key: str) -> None:
    report = openstack.report
    assert (report["authorized_keys"]["debian"] or "").splitlines() == [ssh_key]
    # network_data.json: the NIC renamed by MAC, DHCPv4 on qemu's 169.254.0.0/16, the static IPv6
    assert ifname_of(report, MAC_OS) == "eth0"
    assert addresses(report, "eth0", "inet") == ["169.254.2.15"]
    assert "2001:db8:9::10" in addresses(report, "eth0", "inet6")
    assert report["files"][VENDOR_TXT] == "vendor openstack\n"


def test_openstack_injected_files_fetched(openstack: Boot, service: Service) -> None:
    """cloud-init's OpenStack datasource fetches ``files`` (it does not write them to disk, unlike
    the ConfigDrive datasource): the guest holds each file's exact content."""
    assert fetched(openstack)["files_sha256"] == {entry["path"]: sha256(entry["content"]) for entry in FILES}


def test_openstack_requests_on_the_vms_socket(openstack: Boot, service: Service) -> None:
    requests = service.requests(VM_OS)
    assert requests, "the service logged no request for this VM"
    assert {source for source, *_ in requests} == {"socket"}
    paths = {path: status for _, _, path, status in requests}
    expected = (
        ["/openstack"]
        + [
            f"/openstack/2018-08-27/{name}"
            for name in ("meta_data.json", "user_data", "vendor_data.json", "vendor_data2.json", "network_data.json")
        ]
        + ["/openstack/content/0000", "/openstack/content/0001"]
    )
    assert {path: paths.get(path) for path in expected} == dict.fromkeys(expected, 200)
    assert any(path.startswith("/latest/meta-data/") and status == 200 for path, status in paths.items())
    assert all(status == 200 for _, method, _, status in requests if method == "GET"), requests


def test_openstack_guest_and_seed_image_hold_the_same_data(openstack: Boot, service: Service) -> None:
    """What the guest fetched over HTTP equals the config-2 image ``serve --out-dir`` wrote."""
    got, image = fetched(openstack), image_files(service, VM_OS)
    version = "openstack/2018-08-27"  # the newest version cloud-init 22.4 knows: the one it read
    meta = json.loads(image[f"{version}/meta_data.json"])
    # cloud-init adds two keys of its own (KEY_COPIES), and nothing else
    assert got["metadata"] == {**meta, "local-hostname": meta["hostname"], "instance-id": meta["uuid"]}
    assert got["network_json"] == json.loads(image[f"{version}/network_data.json"])
    assert got["vendordata_pure"] == json.loads(image[f"{version}/vendor_data.json"])
    assert got["vendordata2_pure"] == json.loads(image[f"{version}/vendor_data2.json"])
    assert got["userdata_sha256"] == sha256(image[f"{version}/user_data"])
    contents = {item["path"]: sha256(image["openstack" + item["content_path"]]) for item in meta["files"]}
    assert got["files_sha256"] == contents
    ec2 = json.loads(image["ec2/latest/meta-data.json"])
    for key in ("instance-id", "hostname", "local-hostname"):
        assert got["ec2_metadata"][key] == ec2[key], key


def test_openstack_cloud_init_clean(openstack: Boot) -> None:
    assert_cloud_init_clean(openstack)


# --- IPv6 only, link-local, known by the EUI-64 of its MAC --------------------------------------------


def test_ipv6_only_guest(ipv6: Boot) -> None:
    report = ipv6.report
    nics = [link["ifname"] for link in report["ip_addr"] if link["ifname"] != "lo"]
    assert nics == ["eth0"] and ifname_of(report, MAC_SIX) == "eth0"
    assert addresses(report, "eth0", "inet") == [] and report["ip_route"] == [], "no IPv4 at all"
    assert addresses(report, "eth0", "inet6") == [link_local(MAC_SIX)], "the kernel's EUI-64 link-local only"


def test_ipv6_identity_keys_and_vendor_data(ipv6: Boot, service: Service, ssh_key: str) -> None:
    report = ipv6.report
    assert report["datasource"] == "nocloud"
    assert report["subplatform"] == f"seed-dir (cmdline,http://[{SERVICE_LINK_LOCAL}%eth0]/nocloud/)"
    assert report["instance_id"] == "iid-serve-ipv6"
    assert report["hostname"] == VM_SIX
    assert report["fqdn"] == f"{VM_SIX}.example.test"
    assert (report["authorized_keys"]["debian"] or "").splitlines() == [ssh_key]
    assert report["files"][VENDOR_TXT] == "vendor ipv6\n"


def test_ipv6_requests_attributed_by_eui64(ipv6: Boot, service: Service) -> None:
    requests = service.requests(VM_SIX)
    assert requests, "the service logged no request for this VM"
    # the spec names no address: only the EUI-64 of its MAC can have found the VM
    assert {source.partition("%")[0] for source, *_ in requests} == {link_local(MAC_SIX)}
    paths = {path: status for _, _, path, status in requests}
    assert paths == {"/nocloud/meta-data": 200, "/nocloud/user-data": 200, "/nocloud/vendor-data": 200}
    assert service.unattributed() == []


def test_ipv6_guest_and_nocloud_image_hold_the_same_data(ipv6: Boot, service: Service) -> None:
    got = fetched(ipv6)
    image = read_iso(service.seed(VM_SIX, "nocloud").image).files
    assert got["userdata_sha256"] == sha256(image["user-data"])
    assert got["vendordata_raw_sha256"] == sha256(image["vendor-data"])
    meta = yaml.safe_load(image["meta-data"])
    assert {key: got["metadata"].get(key) for key in meta} == meta


def test_ipv6_cloud_init_clean(ipv6: Boot) -> None:
    # 22.4 runs ifup again on the NIC for a datasource found in the network stage (KNOWN_DEFECTS)
    assert_cloud_init_clean(ipv6, known=("NoCloud-net ifup again",))
