"""Network config of every seed, read by cloud-init 22.4 and 25.1 as a guest's init stage would:
read by the datasource, checked against 25.1's network schema, rendered to eni, netplan and
networkd. No WARNING or DEPRECATED line but the known upstream defects (cloudinit_versions.py),
and every renderer gets the spec's addresses and routes (an IPv6 default route is ::/0).
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from configdrive import FORMATS as REGISTRY
from configdrive import load_spec, render
from tests.conftest import VALID_SPECS
from tests.readers.cloudinit_versions import VERSIONS, defects_seen, read_seed

pytestmark = pytest.mark.readers

MAC1, MAC2 = "52:54:00:0c:00:01", "52:54:00:0c:00:02"

#: Specs beyond the fixtures, each for a shape that differs between the versions.
EXTRA: dict[str, dict[str, Any]] = {
    "ipv6-default-route": {
        "ethernets": {
            "eth0": {
                "match": {"macaddress": MAC1},
                "set-name": "eth0",
                "addresses": ["2001:db8:5::5/64"],
                "routes": [{"to": "default", "via": "2001:db8:5::1"}],
            }
        }
    },
    "ipv4-gateway": {
        "ethernets": {
            "eth0": {
                "match": {"macaddress": MAC1},
                "set-name": "eth0",
                "addresses": ["192.0.2.5/24"],
                "routes": [{"to": "0.0.0.0/0", "via": "192.0.2.1"}, {"to": "10.0.0.0/8", "via": "192.0.2.254"}],
            }
        }
    },
    "default-route-metrics": {
        "ethernets": {
            "eth0": {
                "match": {"macaddress": MAC1},
                "set-name": "eth0",
                "addresses": ["192.0.2.5/24", "2001:db8:5::5/64"],
                "routes": [
                    {"to": "default", "via": "192.0.2.1", "metric": 50},
                    {"to": "default", "via": "2001:db8:5::1", "metric": 50},
                    {"to": "2001:db8:99::/48", "via": "fe80::99"},
                ],
            }
        }
    },
    "slaac-link-local-route": {
        "ethernets": {
            "eth0": {"match": {"macaddress": MAC1}, "set-name": "eth0", "dhcp4": True, "accept-ra": True},
            "eth1": {
                "match": {"macaddress": MAC2},
                "set-name": "eth1",
                "accept-ra": True,
                "routes": [{"to": "2001:db8:77::/48", "via": "fe80::1"}],
            },
        }
    },
    "bond-vlan-static": {
        "ethernets": {
            "eth0": {"match": {"macaddress": MAC1}, "set-name": "eth0"},
            "eth1": {"match": {"macaddress": MAC2}, "set-name": "eth1"},
        },
        "bonds": {
            "bond0": {
                "interfaces": ["eth0", "eth1"],
                "parameters": {
                    "mode": "802.3ad",
                    "mii-monitor-interval": 100,
                    "lacp-rate": "fast",
                    "transmit-hash-policy": "layer3+4",
                },
            }
        },
        "vlans": {
            "bond0.42": {
                "id": 42,
                "link": "bond0",
                "addresses": ["198.51.100.7/24", "2001:db8:42::7/64"],
                "routes": [{"to": "default", "via": "198.51.100.1"}, {"to": "default", "via": "2001:db8:42::1"}],
                "nameservers": {"addresses": ["2001:db8:42::53"], "search": ["example.net"]},
            }
        },
    },
    "dhcp-nameservers": {
        "ethernets": {
            "eth0": {
                "match": {"macaddress": MAC1},
                "set-name": "eth0",
                "dhcp4": True,
                "nameservers": {"addresses": ["192.0.2.53", "2001:db8::53"], "search": ["example.org"]},
            }
        }
    },
}

#: (case, format, version) whose seeds hit a known defect; every other one must log nothing.
EXPECTED_DEFECTS = {
    (case, fmt, "25.1"): ["accept-ra on a bond or VLAN"]
    for case in ("bond-vlan", "bond-vlan-static")
    for fmt in ("nocloud", "configdrive")
}


def _specs() -> dict[str, dict[str, Any]]:
    fixtures = {p.stem: yaml.safe_load(p.read_text()) for p in VALID_SPECS}
    specs = {name: raw for name, raw in fixtures.items() if "network" in raw}
    specs.update({name: {"instance_id": f"iid-{name}", "hostname": "net", "network": n} for name, n in EXTRA.items()})
    return specs


SPECS = _specs()
CASES = [
    pytest.param(name, fmt, version, id=f"{name}-{fmt}-{version}")
    for name, raw in SPECS.items()
    for fmt in ("nocloud", "configdrive")
    if not REGISTRY[fmt].problems(load_spec(raw))
    for version in VERSIONS
]


@cache
def _read(name: str, fmt: str, version: str) -> dict[str, Any]:
    raw = SPECS[name]
    macs = [
        f"{d['match']['macaddress']}={d.get('set-name', i)}"
        for i, d in raw["network"].get("ethernets", {}).items()
        if "match" in d
    ]
    with tempfile.TemporaryDirectory() as seed:
        for rel, data in render(load_spec(raw), fmt).items():
            (Path(seed) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(seed) / rel).write_bytes(data)
        return read_seed(version, fmt, Path(seed), macs)


@pytest.mark.parametrize(("name", "fmt", "version"), CASES)
def test_no_warning_but_known_defects(name: str, fmt: str, version: str) -> None:
    got = _read(name, fmt, version)
    assert defects_seen(got) == EXPECTED_DEFECTS.get((name, fmt, version), [])
    if version == "25.1" and (name, fmt, version) not in EXPECTED_DEFECTS:
        assert got["schema_problems"] == []


Routes = list[tuple[str, str, int | None]]


def _expected(raw: dict[str, Any]) -> dict[str, tuple[list[str], Routes]]:
    """Per device name: the spec's addresses and routes (destination, gateway, metric), normalised."""
    out = {}
    for section in ("ethernets", "bonds", "vlans"):
        for dev_id, dev in raw["network"].get(section, {}).items():
            routes = []
            for route in dev.get("routes", []):
                to = route["to"] if route["to"] != "default" else ("::/0" if ":" in route["via"] else "0.0.0.0/0")
                routes.append((str(ipaddress.ip_network(to)), route["via"], route.get("metric")))
            addresses = sorted(str(ipaddress.ip_interface(a)) for a in dev.get("addresses", []))
            out[dev.get("set-name", dev_id)] = (addresses, sorted(routes))
    return out


def _default(via: str) -> str:
    return "::/0" if ":" in via else "0.0.0.0/0"


def _eni(text: str) -> dict[str, tuple[list[str], Routes]]:
    out: dict[str, tuple[list[str], Routes]] = {}
    name = ""
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["iface"]:
            name = words[1]
            out.setdefault(name, ([], []))
        elif words[:1] == ["address"]:
            out[name][0].append(str(ipaddress.ip_interface(words[1])))
        elif words[:1] == ["gateway"]:
            out[name][1].append((_default(words[1]), words[1], None))
        elif m := re.fullmatch(
            r"post-up route add (?:-A inet6 )?(?:-net )?(\S+) gw (\S+)(?: metric (\d+))? \|\| true", line.strip()
        ):
            to, via, metric = m.groups()
            to = _default(via) if to == "default" else str(ipaddress.ip_network(to))
            out[name][1].append((to, via, int(metric) if metric else None))
    return out


def _netplan(text: str) -> dict[str, tuple[list[str], Routes]]:
    out = {}
    for section in yaml.safe_load(text)["network"].values():
        for name, dev in section.items() if isinstance(section, dict) else ():
            routes: Routes = [
                (
                    _default(r["via"]) if r["to"] == "default" else str(ipaddress.ip_network(r["to"])),
                    r["via"],
                    r.get("metric"),
                )
                for r in dev.get("routes", [])
            ]
            routes += [(_default(dev[k]), dev[k], None) for k in ("gateway4", "gateway6") if k in dev]
            out[name] = ([str(ipaddress.ip_interface(a)) for a in dev.get("addresses", [])], routes)
    return out


def _networkd(files: dict[str, str]) -> dict[str, tuple[list[str], Routes]]:
    out = {}
    for text in files.values():
        name, addresses, routes, route = "", [], [], None
        for line in text.splitlines():
            if line.startswith("["):
                route = {} if line == "[Route]" else None
                if route is not None:
                    routes.append(route)
            elif "=" in line:
                key, value = line.split("=", 1)
                if key == "Name":
                    name = value
                elif key == "Address":
                    addresses.append(str(ipaddress.ip_interface(value)))
                elif route is not None:
                    route[key] = value
        out[name] = (
            addresses,
            [
                (
                    str(ipaddress.ip_network(r.get("Destination", _default(r["Gateway"])))),
                    r["Gateway"],
                    _int(r.get("Metric")),
                )
                for r in routes
            ],
        )
    return out


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


@pytest.mark.parametrize(("name", "fmt", "version"), CASES)
def test_every_renderer_gets_the_addresses_and_routes(name: str, fmt: str, version: str) -> None:
    got = _read(name, fmt, version)
    rendered = got["rendered"]
    views = {
        # cloud-init's parsed state, as the summary gives it: without metrics
        "state": {
            n: (i["addresses"], [(*r, None) for r in i["routes"]])
            for n, i in got["network_summary"]["interfaces"].items()
        },
        "eni": _eni(rendered["eni"]["etc/network/interfaces.d/50-cloud-init"]),
        "netplan": _netplan(rendered["netplan"]["etc/netplan/50-cloud-init.yaml"]),
        "networkd": _networkd(rendered["networkd"]),
    }
    for device, (addresses, routes) in _expected(SPECS[name]).items():
        for view, devices in views.items():
            got_addresses, got_routes = devices.get(device, ([], []))
            assert sorted(got_addresses) == addresses, (view, device)
            want = [(to, via, None) for to, via, _ in routes] if view == "state" else routes
            if view == "netplan" and not addresses:
                want = []  # cloud-init's netplan renderer takes routes from static subnets only
            assert sorted(got_routes, key=str) == sorted(want, key=str), (view, device)


@pytest.mark.parametrize(("name", "fmt", "version"), [c for c in CASES if c.values[0] == "dhcp-nameservers"])
def test_a_dhcp_only_nic_keeps_its_nameservers(name: str, fmt: str, version: str) -> None:
    """25.1 no longer copies v2 interface nameservers to the global list; v1 carries them as global
    entries and on the NIC's subnet, so eni and networkd write them. cloud-init's netplan renderer
    reads servers from static subnets only (net/netplan.py, both versions): none there."""
    got = _read(name, fmt, version)
    servers = ["192.0.2.53", "2001:db8::53"]
    assert got["network_summary"]["dns"] == sorted(servers)
    eni = got["rendered"]["eni"]["etc/network/interfaces.d/50-cloud-init"]
    assert f"dns-nameservers {' '.join(servers)}" in eni
    assert f"DNS={' '.join(servers)}" in got["rendered"]["networkd"]["etc/systemd/network/10-cloud-init-eth0.network"]
