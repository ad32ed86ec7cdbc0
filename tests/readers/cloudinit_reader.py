"""Read an extracted seed with cloud-init's own datasource code; print what it found as JSON.

Runs under Debian's /usr/bin/python3, with the `cloud-init` package's code (22.4) or another
version's unpacked code on PYTHONPATH (tests/readers/cloudinit_versions.py):
    cloudinit_reader.py nocloud|configdrive|opennebula SEED_DIR [MAC=NAME ...]

MAC=NAME pairs are the VM's NICs: config-2 and OpenNebula readers would otherwise look at this
host's NICs. The OpenNebula reader runs context.sh through `sudo -u nobody bash -e`, as in a guest.
The network config found then goes through what the guest's init stage does with it: the schema
check (25.1's stages.py), then the eni, netplan and networkd renderers (as `cloud-init devel
net-convert` runs them). Every log record at WARNING, DEPRECATED (35) or above is in "log".
"""

import base64
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from cloudinit import distros, helpers, version
from cloudinit.sources import DataSourceConfigDrive, DataSourceNoCloud, DataSourceOpenNebula
from cloudinit.sources.helpers import openstack


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class _Records(logging.Handler):
    """Keeps what the guest's cloud-init.log would show at WARNING, DEPRECATED and above."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append({"level": record.levelname, "logger": record.name, "message": record.getMessage()})


def main(fmt, seed, macs):
    try:  # 25.1: DEPRECATED (35) exists once cloud-init defines it, as its own logging setup does
        from cloudinit.log.loggers import define_extra_loggers

        define_extra_loggers()
    except ImportError:  # 22.4 has no such level
        pass
    records = _Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as cloud_dir:
        paths = helpers.Paths({"cloud_dir": cloud_dir, "run_dir": cloud_dir + "/run"})
        distro = distros.fetch("debian")("debian", {}, paths)
        if fmt == "nocloud":
            shutil.copytree(seed, Path(paths.seed_dir) / "nocloud")
            # fs_label None: read the seed dir only, never probe this host's block devices.
            sys_cfg = {"datasource": {"NoCloud": {"fs_label": None}}}
            ds = DataSourceNoCloud.DataSourceNoCloud(sys_cfg, distro, paths)
        elif fmt == "opennebula":
            shutil.copytree(seed, Path(paths.seed_dir) / "opennebula")
            # Read the seed dir only, never probe this host's block devices; the VM's NICs, not ours.
            DataSourceOpenNebula.find_candidate_devs = lambda: []
            DataSourceOpenNebula.get_physical_nics_by_mac = lambda distro: dict(macs)
            ds = DataSourceOpenNebula.DataSourceOpenNebula({}, distro, paths)
        else:
            shutil.copytree(seed, Path(paths.seed_dir) / "config_drive")
            ds = DataSourceConfigDrive.DataSourceConfigDrive({}, distro, paths)
        if not ds.get_data():
            print(json.dumps({"found": False}))
            return
        result = {
            "found": True,
            "instance_id": ds.get_instance_id(),
            "hostname": ds.get_hostname(fqdn=False).hostname,
            "fqdn": ds.get_hostname(fqdn=True).hostname,
            "public_keys": sorted(ds.get_public_ssh_keys()),
            "availability_zone": ds.availability_zone,
            "userdata_raw": _text(ds.get_userdata_raw()),
            "userdata_b64": _b64(ds.get_userdata_raw()),
            "vendordata_raw": _text(ds.get_vendordata_raw()),
            "metadata": json.loads(json.dumps(ds.metadata, default=_text)),
        }
        if fmt in ("nocloud", "opennebula"):
            result["network_config"] = ds.network_config
        else:
            # The datasource would read this host's NICs; give it the VM's MACs instead.
            network_json = ds.network_json
            result["network_config"] = (
                openstack.convert_net_json(network_json, known_macs=macs)
                if network_json not in (None, sources_unset())
                else None
            )
            result["files"] = {k: _text(v) for k, v in ds.files.items()}
            result["ec2_metadata"] = ds.ec2_metadata
            result["version"] = ds.version
        if result["network_config"]:
            result["network_summary"] = summarize(result["network_config"])
            result["schema_problems"] = validate(result["network_config"])
            result["rendered"] = {
                kind: render(result["network_config"], kind) for kind in ("eni", "netplan", "networkd")
            }
        result["cloud_init_version"] = version.version_string()
        result["log"] = records.records
        print(json.dumps(result, default=_text, sort_keys=True))


def _b64(value):
    """Payload bytes as base64 (cloud-init hands out str when they decode as UTF-8, else bytes)."""
    if value is None:
        return None
    return base64.b64encode(value.encode("utf-8") if isinstance(value, str) else value).decode()


def summarize(config):
    """cloud-init's parsed network state, per interface: addresses, DHCP, routes, MAC, type."""
    import ipaddress

    from cloudinit.net.network_state import parse_net_config_data

    state = parse_net_config_data(config)
    out = {}
    for iface in state.iter_interfaces():
        entry = {
            "type": iface.get("type"),
            "mac": iface.get("mac_address"),
            "addresses": [],
            "dhcp4": False,
            "dhcp6": False,
            "routes": [],
            "mtu": iface.get("mtu"),
            "dns": [],
            "search": [],
        }
        for subnet in iface.get("subnets", []):
            kind = subnet.get("type")
            if kind in ("dhcp", "dhcp4"):
                entry["dhcp4"] = True
            elif kind == "dhcp6":
                entry["dhcp6"] = True
            elif "address" in subnet:
                address = subnet["address"]
                if "/" not in address:
                    address = f"{address}/{subnet['prefix']}"
                entry["addresses"].append(str(ipaddress.ip_interface(address)))
            if subnet.get("gateway"):
                gw = subnet["gateway"]
                entry["routes"].append(["::/0" if ":" in gw else "0.0.0.0/0", gw])
            entry["dns"] += [a for a in subnet.get("dns_nameservers", []) if a not in entry["dns"]]
            entry["search"] += [d for d in subnet.get("dns_search", []) if d not in entry["search"]]
            for route in subnet.get("routes", []):
                net = ipaddress.ip_network(f"{route['network']}/{route['prefix']}")
                entry["routes"].append([str(net), route["gateway"]])
        entry["routes"].sort()
        out[iface["name"]] = entry
    return {"interfaces": out, "dns": sorted(state.dns_nameservers)}


def validate(config):
    """Check the network config as 25.1's init stage does (stages.py: strict=False, no details,
    deprecations logged), then once more strictly for the problems behind a warning. The host has
    no netplan, so v2 is checked against cloud-init's own schema, as on an ifupdown guest.
    Versions without a network schema (22.4) check nothing: None."""
    from cloudinit.config import schema

    if not hasattr(getattr(schema, "SchemaType", None), "NETWORK_CONFIG"):
        return None
    kind = schema.SchemaType.NETWORK_CONFIG
    schema.validate_cloudconfig_schema(config=config, schema_type=kind, log_details=False, log_deprecations=True)
    try:
        schema.validate_cloudconfig_schema(config=config, schema_type=kind, strict=True)
    except schema.SchemaValidationError as error:
        return [[path, message] for path, message in error.schema_errors + error.schema_deprecations]
    return []


def render(config, kind):
    """The files a renderer writes for this config, as `cloud-init devel net-convert -O KIND`."""
    from cloudinit.net import eni, netplan, networkd
    from cloudinit.net.network_state import parse_net_config_data

    distro = distros.fetch("debian")("debian", {}, None)
    renderer_config = distro.renderer_configs.get(kind, {})
    if kind == "netplan":
        renderer_config.update(postcmds=False, netplan_path=renderer_config["netplan_path"][1:])
    renderer = {"eni": eni, "netplan": netplan, "networkd": networkd}[kind].Renderer(config=renderer_config)
    state = parse_net_config_data(config, renderer=renderer)
    with tempfile.TemporaryDirectory() as target:
        renderer.render_network_state(network_state=state, target=target)
        return {str(p.relative_to(target)): p.read_text() for p in sorted(Path(target).rglob("*")) if p.is_file()}


def sources_unset():
    from cloudinit import sources

    return sources.UNSET


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], dict(arg.split("=", 1) for arg in sys.argv[3:]))
