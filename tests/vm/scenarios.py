"""Seeds booted on both guest generations, and what their boots must show.

``ipv6_bond``: the IPv6-only NIC with its static default route (the NoCloud IPv6 default route
that no v2 form writes correctly for 22.4 and cleanly for 25.1) and, on two more NICs, an
active-backup bond with a VLAN on it carrying static IPv4 + IPv6 and the IPv4 default route.
qemu offers DHCPv4 on every NIC: no interface may take it.
"""

from __future__ import annotations

from typing import Any

from .guest_checks import addresses, default_routes, dns_domains, dns_servers, global_addresses, link_details
from .harness import Nic

MAC_V6 = "52:54:00:cd:00:02"
MAC_BOND_A, MAC_BOND_B = "52:54:00:cd:00:b1", "52:54:00:cd:00:b2"
# IPv4 stays on in qemu, so a guest that wrongly ran DHCP would get an address.
NET_V6_ONLY = "restrict=on,ipv4=on,ipv6=on,ipv6-net=2001:db8:5::/64,ipv6-host=2001:db8:5::1"
# The bond's members: DHCPv4 offered (must not be taken); no IPv6 on qemu's side, so no router
# advertisement gives the bond an address or a second IPv6 default route.
NET_BOND = "restrict=on,ipv4=on,ipv6=off"
VLAN = "bond0.100"  # config-2: cloud-init names VLANs <link>.<id> and bonds bond0, bond1, ...


def ipv6_bond_spec(fmt: str, key: str) -> dict[str, Any]:
    return {
        "instance_id": f"iid-{fmt}-v6only",
        "hostname": "sixonly",
        "ssh_authorized_keys": [key],
        "network": {
            "ethernets": {
                "eth0": {
                    "match": {"macaddress": MAC_V6},
                    "set-name": "eth0",
                    "addresses": ["2001:db8:5::10/64"],
                    "routes": [{"to": "default", "via": "2001:db8:5::1"}],
                    "nameservers": {"addresses": ["2001:db8:5::3"]},
                    "accept-ra": False,
                },
                "eth1": {"match": {"macaddress": MAC_BOND_A}, "set-name": "eth1"},
                "eth2": {"match": {"macaddress": MAC_BOND_B}, "set-name": "eth2"},
            },
            "bonds": {
                "bond0": {
                    "interfaces": ["eth1", "eth2"],
                    "parameters": {"mode": "active-backup", "mii-monitor-interval": 100, "primary": "eth1"},
                }
            },
            "vlans": {
                VLAN: {
                    "id": 100,
                    "link": "bond0",
                    "addresses": ["192.0.2.10/24", "2001:db8:100::10/64"],
                    "routes": [{"to": "default", "via": "192.0.2.1"}],
                    "nameservers": {"addresses": ["192.0.2.53"], "search": ["corp.example"]},
                }
            },
        },
    }


def ipv6_bond_nics() -> list[Nic]:
    return [Nic(MAC_V6, NET_V6_ONLY), Nic(MAC_BOND_A, NET_BOND), Nic(MAC_BOND_B, NET_BOND)]


def check_ipv6_bond(report: dict[str, Any]) -> None:
    """The network of ``ipv6_bond_spec`` as the guest runs it, DNS as its resolver uses it."""
    nics = sorted(link["ifname"] for link in report["ip_addr"] if link["ifname"] != "lo")
    assert nics == ["bond0", VLAN, "eth0", "eth1", "eth2"]
    assert "2001:db8:5::10" in addresses(report, "eth0", "inet6")
    assert global_addresses(report, "inet") == {VLAN: ["192.0.2.10"]}, "static IPv4 on the VLAN only, no DHCPv4"
    assert "2001:db8:100::10" in addresses(report, VLAN, "inet6")
    assert default_routes(report, "ip_route") == [("192.0.2.1", VLAN)]
    assert {r.get("dev") for r in report["ip_route"]} == {VLAN}, report["ip_route"]
    assert default_routes(report) == [("2001:db8:5::1", "eth0")]
    # the bond and the VLAN as the kernel has them
    bond = link_details(report, "bond0")["linkinfo"]
    assert bond["info_kind"] == "bond"
    assert bond["info_data"]["mode"] == "active-backup"
    assert bond["info_data"]["miimon"] == 100
    assert bond["info_data"].get("primary") == "eth1"
    assert [link_details(report, nic).get("master") for nic in ("eth1", "eth2")] == ["bond0", "bond0"]
    vlan = link_details(report, VLAN)
    assert vlan["linkinfo"]["info_kind"] == "vlan" and vlan["linkinfo"]["info_data"]["id"] == 100
    assert vlan.get("link") == "bond0"
    # DNS as the resolver uses it: systemd-resolved's per link, or resolv.conf's for all
    if report["resolver"]["via"] == "systemd-resolved":
        assert dns_servers(report, "eth0") == ["2001:db8:5::3"]
        assert dns_servers(report, VLAN) == ["192.0.2.53"]
    else:
        assert sorted(dns_servers(report)) == ["192.0.2.53", "2001:db8:5::3"]
    assert "corp.example" in dns_domains(report, VLAN)
