"""VMSpec -> NoCloud seed tree (volume label ``cidata``): meta-data, user-data, vendor-data, network-config."""

from __future__ import annotations

from typing import Any

from configdrive.errors import Problem
from configdrive.model import FileTree, VMSpec
from configdrive.render.format import Format
from configdrive.render.network import render_network_v1
from configdrive.render.userdata import dump_yaml, payload_fields, render_payload, vendor_payload


def instance_id(spec: VMSpec) -> str:
    """The instance id cloud-init reads from this format."""
    return spec.instance_id


def problems(spec: VMSpec) -> list[Problem]:
    """NoCloud carries every network the spec model allows (network config v1, see
    ``configdrive.render.network``): nothing to refuse."""
    return []


def render(spec: VMSpec) -> FileTree:
    """The NoCloud seed files. ``user-data`` is always written: cloud-init 22.4 skips a seed
    without it as "not a valid seed"."""
    meta: dict[str, Any] = {
        "instance-id": spec.instance_id,
        # A dotted local-hostname gives the guest hostname <first label> and that fqdn.
        "local-hostname": spec.fqdn or spec.hostname,
    }
    if spec.availability_zone:
        meta["availability-zone"] = spec.availability_zone
    if spec.ssh_authorized_keys:
        meta["public-keys"] = [key.line for key in spec.ssh_authorized_keys]
    if spec.meta:
        meta["meta"] = dict(spec.meta)
    tree = {
        "meta-data": dump_yaml(meta),
        "user-data": render_payload(spec.user_data) or b"",
    }
    vendor = vendor_payload(spec)
    if vendor is not None:
        tree["vendor-data"] = vendor
    if spec.network:
        tree["network-config"] = dump_yaml(render_network_v1(spec.network))
    return tree


def fields(tree: FileTree) -> dict[str, Any]:
    """The spec fields cloud-init reads from a NoCloud tree (see ``configdrive.changes``)."""
    import yaml

    meta = yaml.safe_load(tree.get("meta-data", b"")) or {}
    network = tree.get("network-config")
    return {
        "instance_id": meta.get("instance-id"),
        "hostname": meta.get("local-hostname"),
        "availability_zone": meta.get("availability-zone"),
        "meta": meta.get("meta"),
        "ssh_authorized_keys": sorted(meta.get("public-keys") or []) or None,
        "user_data": payload_fields(tree.get("user-data")),
        "vendor_data": payload_fields(tree.get("vendor-data")),
        "network": yaml.safe_load(network) if network is not None else None,
    }


FORMAT = Format(
    name="nocloud",
    label="cidata",
    help="NoCloud seed (label cidata): meta-data, user-data, vendor-data, network-config v1",
    datasource="NoCloud",
    render=render,
    problems=problems,
    instance_id=instance_id,
    metadata_files=("meta-data", "network-config"),
    fields=fields,
)
