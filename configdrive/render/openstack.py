"""VMSpec -> OpenStack config drive tree (volume label ``config-2``): openstack/<version>/, ec2/, content/.

What each dated folder carries lives in ``VERSIONS``, as Nova writes it. cloud-init reads the
newest dated folder it knows (22.4: up to 2018-08-27), so every dated folder must be complete.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from configdrive.errors import Problem
from configdrive.model import FileTree, VMSpec
from configdrive.render.format import Format
from configdrive.render.network import field, render_network_data
from configdrive.render.userdata import payload_fields, render_payload, vendor_payload

OS_FOLSOM = "2012-08-10"
OS_GRIZZLY = "2013-04-04"
OS_HAVANA = "2013-10-17"  # adds vendor_data.json
OS_LIBERTY = "2015-10-15"  # adds network_data.json and meta_data.json "keys"
OS_NEWTON_ONE = "2016-06-30"  # adds meta_data.json "devices"
OS_NEWTON_TWO = "2016-10-06"  # adds vendor_data2.json
OS_OCATA = "2017-02-22"
OS_ROCKY = "2018-08-27"
OS_VICTORIA = "2020-10-14"  # adds meta_data.json "dedicated_cpus"
OS_LATEST = "latest"

#: Every version folder Nova writes, oldest first; ``latest`` carries everything.
VERSIONS = (
    OS_FOLSOM,
    OS_GRIZZLY,
    OS_HAVANA,
    OS_LIBERTY,
    OS_NEWTON_ONE,
    OS_NEWTON_TWO,
    OS_OCATA,
    OS_ROCKY,
    OS_VICTORIA,
    OS_LATEST,
)

#: file name -> first version that carries it.
FILES_SINCE = {
    "meta_data.json": OS_FOLSOM,
    "user_data": OS_FOLSOM,
    "vendor_data.json": OS_HAVANA,
    "network_data.json": OS_LIBERTY,
    "vendor_data2.json": OS_NEWTON_TWO,
}

#: meta_data.json key -> first version that carries it.
META_SINCE = {"keys": OS_LIBERTY, "devices": OS_NEWTON_ONE, "dedicated_cpus": OS_VICTORIA}

EC2_VERSIONS = ("2009-04-04", "latest")


def since(version: str, first: str) -> bool:
    """Whether ``version`` carries what ``first`` introduced (``latest`` carries everything)."""
    return version == OS_LATEST or VERSIONS.index(version) >= VERSIONS.index(first)


def instance_id(spec: VMSpec) -> str:
    """The instance id cloud-init reads from this format."""
    return spec.uuid


def problems(spec: VMSpec) -> list[Problem]:
    """What a config drive's network_data.json, as cloud-init reads it, cannot carry from this spec."""
    problems = []
    if spec.network_updates:
        # Measured in a booted Debian 12 guest: after a boot event, cloud-init 22.4's ConfigDrive
        # datasource returns its "_unset" sentinel as the network config and init fails with
        # "'str' object has no attribute 'get'" (the bug fixed for LXD in canonical/cloud-init#1537,
        # reported for UpCloud in #7067; ConfigDrive's network_config checks only for None).
        problems.append(
            Problem(
                "updates",
                "configdrive: cloud-init 22.4's ConfigDrive datasource fails when it "
                "re-applies network config on boot (canonical/cloud-init#1537, #7067); use "
                "nocloud, or instance_id_from: content",
            )
        )
    if spec.network is None:
        return problems
    names = {i.id: i.name for i in spec.network.interfaces}
    for number, bond in enumerate(spec.network.of_kind("bond")):
        if bond.name != f"bond{number}":
            problems.append(
                Problem(
                    field(bond),
                    f"configdrive: cloud-init names config-2 bonds "
                    f"bond0, bond1, ... in order; this one must be named bond{number}",
                )
            )
    for iface in spec.network.interfaces:
        if iface.kind == "ethernet" and not iface.macaddress:
            problems.append(
                Problem(
                    field(iface, "match", "macaddress"),
                    "configdrive: is required (network_data.json links are found by MAC)",
                )
            )
        if iface.kind == "vlan":
            expected = f"{names[iface.vlan_link or '']}.{iface.vlan_id}"
            if iface.name != expected:
                problems.append(
                    Problem(
                        field(iface),
                        f"configdrive: cloud-init names config-2 VLANs <link>.<id>; this one must be named {expected}",
                    )
                )
    return problems


def render(spec: VMSpec) -> FileTree:
    """The config drive files for every version Nova writes, plus ``ec2/`` and ``content/``."""
    user_data = render_payload(spec.user_data)
    meta = _meta_data(spec)
    per_file = {
        "user_data": user_data,
        "vendor_data.json": _json(_vendor_data(spec)),
        # vendor_data2.json holds Nova's dynamic vendor data, keyed by service; cloud-init applies
        # it as vendor data too, so it stays empty to keep vendor data from running twice.
        "vendor_data2.json": _json({}),
        # Without a network section no network_data.json is written, so cloud-init falls back
        # to DHCP on the first NIC, as with a NoCloud seed without network-config; an empty
        # network_data.json would leave the guest with no network at all.
        "network_data.json": _json(render_network_data(spec.network)) if spec.network else None,
    }
    tree: dict[str, bytes] = {}
    for version in VERSIONS:
        folder = f"openstack/{version}/"
        tree[folder + "meta_data.json"] = _json(
            {k: v for k, v in meta.items() if since(version, META_SINCE.get(k, OS_FOLSOM))}
        )
        for name, content in per_file.items():
            if content is not None and since(version, FILES_SINCE[name]):
                tree[folder + name] = content
    for version in EC2_VERSIONS:
        tree[f"ec2/{version}/meta-data.json"] = _json(_ec2_meta_data(spec))
        if user_data is not None:
            tree[f"ec2/{version}/user-data"] = user_data
    for index, item in enumerate(spec.files):
        tree[f"openstack/content/{index:04d}"] = item.content
    return tree


def _meta_data(spec: VMSpec) -> dict[str, Any]:
    names = _key_names(spec)
    meta: dict[str, Any] = {
        "uuid": spec.uuid,
        "name": spec.hostname,
        # A dotted hostname is kept; a bare one becomes <name>.novalocal in cloud-init.
        "hostname": spec.fqdn or spec.hostname,
        "launch_index": 0,
        "availability_zone": spec.availability_zone or "nova",
        "meta": dict(spec.meta),
        "public_keys": {n: k.line for n, k in zip(names, spec.ssh_authorized_keys, strict=True)},
        "keys": [
            {"name": n, "type": "ssh", "data": k.line} for n, k in zip(names, spec.ssh_authorized_keys, strict=True)
        ],
        "devices": [],
        "dedicated_cpus": [],
    }
    if spec.files:
        meta["files"] = [{"path": f.path, "content_path": f"/content/{i:04d}"} for i, f in enumerate(spec.files)]
    return meta


def _key_names(spec: VMSpec) -> list[str]:
    """Nova's key pairs have names; ours are the key comments where unique, else key-N."""
    comments = [k.comment for k in spec.ssh_authorized_keys]
    return [c if c and comments.count(c) == 1 and " " not in c else f"key-{i}" for i, c in enumerate(comments)]


def _vendor_data(spec: VMSpec) -> Any:
    """cloud-init takes vendor_data.json as a JSON string or an object with a "cloud-init" key;
    any other object is silently dropped."""
    payload = vendor_payload(spec)
    return {} if payload is None else {"cloud-init": payload.decode("utf-8", "surrogateescape")}


def _ec2_meta_data(spec: VMSpec) -> dict[str, Any]:
    """EC2-style metadata, read by EC2-only images such as CirrOS."""
    meta: dict[str, Any] = {
        "instance-id": spec.instance_id,
        "hostname": spec.fqdn or spec.hostname,
        "local-hostname": spec.fqdn or spec.hostname,
        "ami-launch-index": 0,
        "placement": {"availability-zone": spec.availability_zone or "nova"},
        "public-keys": {str(i): {"openssh-key": k.line} for i, k in enumerate(spec.ssh_authorized_keys)},
    }
    ipv4 = [a for i in (spec.network.interfaces if spec.network else ()) for a in i.ipv4_addresses]
    if ipv4:
        meta["local-ipv4"] = str(ipaddress.ip_interface(ipv4[0]).ip)
    return meta


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(", ", ": ")).encode()


def fields(tree: FileTree) -> dict[str, Any]:
    """The spec fields cloud-init 22.4 reads from a config drive: the newest dated folder it knows
    (see ``configdrive.changes``)."""
    folder = next(
        (
            f"openstack/{v}/"
            for v in reversed(VERSIONS[: VERSIONS.index(OS_ROCKY) + 1])
            if f"openstack/{v}/meta_data.json" in tree
        ),
        "openstack/latest/",
    )
    meta = json.loads(tree.get(folder + "meta_data.json", b"{}"))
    vendor = json.loads(tree.get(folder + "vendor_data.json", b"{}"))
    vendor_payload = vendor.get("cloud-init") if isinstance(vendor, dict) else vendor
    network = tree.get(folder + "network_data.json")
    files = {f["path"]: tree.get("openstack" + f["content_path"]) for f in meta.get("files", [])}
    return {
        "instance_id": meta.get("uuid"),
        "hostname": meta.get("hostname"),
        "availability_zone": meta.get("availability_zone"),
        "meta": meta.get("meta") or None,
        "ssh_authorized_keys": sorted((meta.get("public_keys") or {}).values()) or None,
        "user_data": payload_fields(tree.get(folder + "user_data")),
        "vendor_data": payload_fields(vendor_payload.encode() if isinstance(vendor_payload, str) else None),
        "network": json.loads(network) if network is not None else None,
        "files": files or None,
    }


FORMAT = Format(
    name="configdrive",
    label="config-2",
    help="OpenStack config drive (label config-2): openstack/<version>/, ec2/, content/",
    datasource="ConfigDrive",
    render=render,
    problems=problems,
    instance_id=instance_id,
    metadata_files=(
        "openstack/latest/meta_data.json",
        "openstack/latest/network_data.json",
        "ec2/latest/meta-data.json",
    ),
    fields=fields,
)
