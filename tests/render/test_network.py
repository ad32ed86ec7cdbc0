"""Network rendering: the cloud-init 22.4 and 25.1 pitfalls each format must avoid, and format limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from configdrive import SpecError, load_spec, render

BASE: dict[str, Any] = {"instance_id": "iid-net", "hostname": "net"}


def _spec(network: dict[str, Any]) -> Any:
    return load_spec({**BASE, "network": network})


def _network_v1(network: dict[str, Any]) -> Any:
    return yaml.safe_load(render(_spec(network), "nocloud")["network-config"])


def _network_data(network: dict[str, Any]) -> Any:
    return json.loads(render(_spec(network), "configdrive")["openstack/latest/network_data.json"])


V6_ONLY = {
    "ethernets": {
        "eth0": {
            "match": {"macaddress": "52:54:00:00:00:01"},
            "set-name": "eth0",
            "addresses": ["2001:db8::5/64"],
            "routes": [{"to": "default", "via": "2001:db8::1"}],
        }
    }
}


def test_nocloud_is_v1_without_wrapper_and_default_route_is_subnet_gateway() -> None:
    doc = _network_v1(V6_ONLY)
    assert "network" not in doc and doc["version"] == 1
    (eth0,) = doc["config"]
    assert eth0 == {
        "type": "physical",
        "name": "eth0",
        "mac_address": "52:54:00:00:00:01",
        "accept-ra": False,
        # 22.4 turns a v2 `to: "::/0"` into ::/64 and refuses `default`; 25.1 deprecates gateway6.
        "subnets": [{"type": "static6", "address": "2001:db8::5/64", "gateway": "2001:db8::1"}],
    }


def test_config2_default_route_is_all_zero_network() -> None:
    data = _network_data(V6_ONLY)
    (net,) = data["networks"]
    assert net["type"] == "ipv6" and net["ip_address"] == "2001:db8::5"
    assert net["netmask"] == "ffff:ffff:ffff:ffff::"
    assert net["routes"] == [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]
    assert not [n for n in data["networks"] if n["type"].startswith("ipv4")]


def test_bond_members_vlan_link_and_primary_use_device_names_not_ids() -> None:
    network = {
        "ethernets": {
            "a": {"match": {"macaddress": "52:54:00:00:00:01"}, "set-name": "ens3"},
            "b": {"match": {"macaddress": "52:54:00:00:00:02"}, "set-name": "ens4"},
        },
        "bonds": {
            "bond0": {
                "interfaces": ["a", "b"],
                "parameters": {"mode": "active-backup", "primary": "b", "mii-monitor-interval": 100},
                "dhcp4": True,
            }
        },
        "vlans": {"v": {"id": 7, "link": "a", "dhcp4": True}},
    }
    devices = {d["name"]: d for d in _network_v1(network)["config"]}
    assert [devices[n]["type"] for n in ("ens3", "ens4", "bond0", "v")] == ["physical", "physical", "bond", "vlan"]
    assert devices["bond0"]["bond_interfaces"] == ["ens3", "ens4"]
    # 25.1's v1 schema: bond-miimon an integer, the others strings.
    assert devices["bond0"]["params"] == {"bond-mode": "active-backup", "bond-primary": "ens4", "bond-miimon": 100}
    assert (devices["v"]["vlan_link"], devices["v"]["vlan_id"]) == ("ens3", 7)
    links = _network_data({k: v for k, v in network.items() if k != "vlans"})["links"]
    (bond,) = [link for link in links if link["type"] == "bond"]
    assert (bond["bond_primary"], bond["bond_miimon"], bond["bond_links"]) == ("ens4", 100, ["ens3", "ens4"])


def test_config2_requires_mac_and_names_the_field_and_format() -> None:
    spec = _spec({"ethernets": {"eth0": {"dhcp4": True}}})
    render(spec, "nocloud")
    with pytest.raises(SpecError) as info:
        render(spec, "configdrive")
    (problem,) = info.value.problems
    assert problem.path == "network.ethernets.eth0.match.macaddress"
    assert problem.message.startswith("configdrive:")


def test_config2_bond_and_vlan_names_must_match_what_cloud_init_gives() -> None:
    spec = _spec(
        {
            "ethernets": {"e": {"match": {"macaddress": "52:54:00:00:00:01"}}},
            "bonds": {"mybond": {"interfaces": ["e"]}},
            "vlans": {"vlan9": {"id": 9, "link": "mybond"}},
        }
    )
    with pytest.raises(SpecError) as info:
        render(spec, "configdrive")
    assert [p.path for p in info.value.problems] == ["network.bonds.mybond", "network.vlans.vlan9"]


def test_default_route_with_metric_is_a_v1_route_and_a_config2_route() -> None:
    network = {
        "ethernets": {
            "e": {
                "match": {"macaddress": "52:54:00:00:00:01"},
                "addresses": ["192.0.2.2/24"],
                "routes": [{"to": "default", "via": "192.0.2.1", "metric": 5}],
            }
        }
    }
    route = {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1", "metric": 5}
    (subnet,) = _network_v1(network)["config"][0]["subnets"]
    assert "gateway" not in subnet and subnet["routes"] == [route]  # netmask, not `prefix: 0` (22.4: /24)
    assert _network_data(network)["networks"][0]["routes"] == [route]


def test_nocloud_dns_is_on_the_first_subnet_and_global() -> None:
    doc = _network_v1(
        {
            "ethernets": {
                "e": {
                    "dhcp4": True,
                    "addresses": ["2001:db8::5/64"],
                    "nameservers": {"addresses": ["2001:db8::53"], "search": ["example.org"]},
                }
            }
        }
    )
    dhcp, static = doc["config"][0]["subnets"]
    assert dhcp == {"type": "dhcp4", "dns_nameservers": ["2001:db8::53"], "dns_search": ["example.org"]}
    assert static == {"type": "static6", "address": "2001:db8::5/64"}
    assert doc["config"][1] == {"type": "nameserver", "address": ["2001:db8::53"], "search": ["example.org"]}


def test_config2_dhcp_and_slaac_networks_and_dns_services() -> None:
    data = _network_data(
        {
            "ethernets": {
                "a": {"match": {"macaddress": "52:54:00:00:00:01"}, "dhcp4": True, "dhcp6": True},
                "b": {
                    "match": {"macaddress": "52:54:00:00:00:02"},
                    "accept-ra": True,
                    "nameservers": {"addresses": ["2001:db8::53", "192.0.2.53"]},
                },
            }
        }
    )
    assert [(n["link"], n["type"]) for n in data["networks"]] == [
        ("a", "ipv4_dhcp"),
        ("a", "ipv6_dhcp"),
        ("b", "ipv6_slaac"),
    ]
    assert data["services"] == [{"type": "dns", "address": "2001:db8::53"}, {"type": "dns", "address": "192.0.2.53"}]
    assert [link["ethernet_mac_address"] for link in data["links"]] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
