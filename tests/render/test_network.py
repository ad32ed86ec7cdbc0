"""Network rendering: the cloud-init 22.4 pitfalls each format must avoid, and format limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from configdrive import SpecError, load_spec, render

BASE: dict[str, Any] = {"instance_id": "iid-net", "hostname": "net"}


def _spec(network: dict[str, Any]) -> Any:
    return load_spec({**BASE, "network": network})


def _netplan(network: dict[str, Any]) -> Any:
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


def test_nocloud_has_no_network_wrapper_and_default_route_is_gateway6() -> None:
    doc = _netplan(V6_ONLY)
    assert "network" not in doc and doc["version"] == 2
    eth0 = doc["ethernets"]["eth0"]
    assert eth0["gateway6"] == "2001:db8::1"
    assert "routes" not in eth0  # cloud-init 22.4 turns ::/0 into ::/64 and rejects `default`
    assert eth0["accept-ra"] is False
    assert "dhcp4" not in eth0


def test_config2_default_route_is_all_zero_network() -> None:
    data = _network_data(V6_ONLY)
    (net,) = data["networks"]
    assert net["type"] == "ipv6" and net["ip_address"] == "2001:db8::5"
    assert net["netmask"] == "ffff:ffff:ffff:ffff::"
    assert net["routes"] == [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]
    assert not [n for n in data["networks"] if n["type"].startswith("ipv4")]


def test_bond_members_and_vlan_link_use_device_names_not_ids() -> None:
    doc = _netplan(
        {
            "ethernets": {
                "a": {"match": {"macaddress": "52:54:00:00:00:01"}, "set-name": "ens3"},
                "b": {"match": {"macaddress": "52:54:00:00:00:02"}, "set-name": "ens4"},
            },
            "bonds": {"bond0": {"interfaces": ["a", "b"], "dhcp4": True}},
            "vlans": {"v": {"id": 7, "link": "a", "dhcp4": True}},
        }
    )
    assert set(doc["ethernets"]) == {"ens3", "ens4"}
    assert doc["bonds"]["bond0"]["interfaces"] == ["ens3", "ens4"]
    assert doc["vlans"]["v"]["link"] == "ens3"


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


def test_nocloud_rejects_metric_on_default_route() -> None:
    spec = _spec(
        {
            "ethernets": {
                "e": {"addresses": ["192.0.2.2/24"], "routes": [{"to": "default", "via": "192.0.2.1", "metric": 5}]}
            }
        }
    )
    with pytest.raises(SpecError) as info:
        render(spec, "nocloud")
    assert [p.path for p in info.value.problems] == ["network.ethernets.e.routes[0].metric"]
    assert (
        _network_data(
            {
                "ethernets": {
                    "e": {
                        "match": {"macaddress": "52:54:00:00:00:01"},
                        "addresses": ["192.0.2.2/24"],
                        "routes": [{"to": "default", "via": "192.0.2.1", "metric": 5}],
                    }
                }
            }
        )["networks"][0]["routes"][0]["metric"]
        == 5
    )


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
