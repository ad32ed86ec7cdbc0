"""VMSpec -> NoCloud seed tree (volume label ``cidata``): meta-data, user-data, vendor-data, network-config."""

from __future__ import annotations

from typing import Any

from configdrive.errors import Problem
from configdrive.model import FileTree, VMSpec
from configdrive.render.network import netplan_problems, render_netplan
from configdrive.render.userdata import dump_yaml, render_payload

LABEL = "cidata"


def instance_id(spec: VMSpec) -> str:
    """The instance id cloud-init reads from this format."""
    return spec.instance_id


def problems(spec: VMSpec) -> list[Problem]:
    """What NoCloud cannot carry from this spec."""
    return netplan_problems(spec.network) if spec.network else []


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
    vendor = render_payload(spec.vendor_data)
    if vendor is not None:
        tree["vendor-data"] = vendor
    if spec.network:
        tree["network-config"] = dump_yaml(render_netplan(spec.network))
    return tree

