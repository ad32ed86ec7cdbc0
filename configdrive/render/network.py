"""VMSpec.network -> cloud-init network config v2 (NoCloud) and OpenStack network_data.json (config-2).

Both renderers are pure and shared; what a format cannot express is checked in its own module.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from configdrive.model import Interface, Network, Route

_SECTION = {"ethernet": "ethernets", "bond": "bonds", "vlan": "vlans"}


def field(iface: Interface, *rest: str) -> str:
    """The spec path of an interface (and a field below it), for problems."""
    return ".".join(["network", _SECTION[iface.kind], iface.id, *rest])


def accept_ra(iface: Interface) -> bool | None:
    """Router advertisements: as the spec says; off for a static-IPv6 NIC without DHCPv6.

    cloud-init's config-2 reader turns RAs off for a static ``ipv6`` network while NoCloud v2
    leaves them on (FACTS: the guest then picks up a SLAAC address too); off in both keeps the
    two formats giving the guest the same addresses.
    """
    if iface.accept_ra is not None:
        return iface.accept_ra
    if iface.ipv6_addresses and not iface.dhcp6:
        return False
    return None


# --- NoCloud: network config v2 ------------------------------------------------------------------


def render_netplan(network: Network) -> dict[str, Any]:
    """The network config v2 mapping for NoCloud's ``network-config`` (no ``network:`` wrapper:
    cloud-init 22.4 fails on it). Devices are keyed by their final name, because cloud-init takes
    bond ``interfaces`` and vlan ``link`` as device names, not ids."""
    names = {i.id: i.name for i in network.interfaces}
    out: dict[str, Any] = {"version": 2}
    for iface in network.interfaces:
        dev: dict[str, Any] = {}
        if iface.kind == "ethernet" and iface.macaddress:
            dev["match"] = {"macaddress": iface.macaddress}
            dev["set-name"] = iface.name
        if iface.kind == "bond":
            dev["interfaces"] = [names[m] for m in iface.bond_interfaces]
            if iface.bond_parameters:
                dev["parameters"] = dict(iface.bond_parameters)
            if iface.macaddress:
                dev["macaddress"] = iface.macaddress
        if iface.kind == "vlan":
            dev["id"] = iface.vlan_id
            dev["link"] = names[iface.vlan_link or ""]
        dev.update(_netplan_l3(iface))
        out.setdefault(_SECTION[iface.kind], {})[iface.name] = dev
    return out


def _netplan_l3(iface: Interface) -> dict[str, Any]:
    dev: dict[str, Any] = {}
    if iface.mtu is not None:
        dev["mtu"] = iface.mtu
    if iface.dhcp4:
        dev["dhcp4"] = True
    if iface.dhcp6:
        dev["dhcp6"] = True
    ra = accept_ra(iface)
    if ra is not None:
        dev["accept-ra"] = ra
    if iface.addresses:
        dev["addresses"] = list(iface.addresses)
    for route in iface.routes:
        # cloud-init 22.4 rejects `to: default` and turns `::/0` into `::/64`: use gateway4/6.
        if route.is_default:
            dev[f"gateway{route.version}"] = route.via
        else:
            entry: dict[str, Any] = {"to": route.to, "via": route.via}
            if route.metric is not None:
                entry["metric"] = route.metric
            dev.setdefault("routes", []).append(entry)
    if iface.nameservers:
        ns: dict[str, Any] = {}
        if iface.nameservers.addresses:
            ns["addresses"] = list(iface.nameservers.addresses)
        if iface.nameservers.search:
            ns["search"] = list(iface.nameservers.search)
        dev["nameservers"] = ns
    return dev


# --- config-2: network_data.json -------------------------------------------------------------------


def render_network_data(network: Network) -> dict[str, Any]:
    """OpenStack's network_data.json: links (phy, bond, vlan), networks and dns services."""
    by_id = {i.id: i for i in network.interfaces}
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for iface in network.interfaces:
        link: dict[str, Any] = {"id": iface.name, "name": iface.name}
        if iface.kind == "ethernet":
            link.update(type="phy", ethernet_mac_address=iface.macaddress)
        elif iface.kind == "bond":
            members = [by_id[m] for m in iface.bond_interfaces]
            link.update(
                type="bond",
                bond_links=[m.name for m in members],
                ethernet_mac_address=iface.macaddress or members[0].macaddress,
            )
            link.update({f"bond_{k.replace('-', '_')}": v for k, v in _bond_params(iface).items()})
        else:
            parent = by_id[iface.vlan_link or ""]
            link.update(
                type="vlan", vlan_link=parent.name, vlan_id=iface.vlan_id, vlan_mac_address=_mac_of(parent, by_id)
            )
        if iface.mtu is not None:
            link["mtu"] = iface.mtu
        links.append(link)
        networks += _networks(iface, len(networks))
        for server in iface.nameservers.addresses if iface.nameservers else ():
            entry = {"type": "dns", "address": server}
            if entry not in services:
                services.append(entry)
    return {"links": links, "networks": networks, "services": services}


def _bond_params(iface: Interface) -> dict[str, Any]:
    # network_data.json spells the bonding driver's own option names: miimon, xmit_hash_policy.
    renames = {"mii-monitor-interval": "miimon", "transmit-hash-policy": "xmit_hash_policy", "lacp-rate": "lacp_rate"}
    return {renames.get(k, k): v for k, v in iface.bond_parameters.items()}


def _mac_of(iface: Interface, by_id: dict[str, Interface]) -> str | None:
    if iface.macaddress:
        return iface.macaddress
    if iface.kind == "bond":
        return by_id[iface.bond_interfaces[0]].macaddress
    return None


def _networks(iface: Interface, start: int) -> list[dict[str, Any]]:
    """One network_data.json network per address or DHCP/SLAAC mode; routes go to the network
    whose subnet holds the gateway (else the DHCP network of that family)."""
    nets: list[dict[str, Any]] = []
    dns = [{"type": "dns", "address": a} for a in (iface.nameservers.addresses if iface.nameservers else ())]

    def add(kind: str, **extra: Any) -> dict[str, Any]:
        net = {"id": f"network{start + len(nets)}", "type": kind, "link": iface.name, **extra}
        nets.append(net)
        return net

    for address in iface.addresses:
        ip = ipaddress.ip_interface(address)
        net = add(f"ipv{ip.version}", ip_address=str(ip.ip), netmask=str(ip.netmask), routes=[], services=dns)
        if iface.nameservers and iface.nameservers.search:
            net["dns_search"] = list(iface.nameservers.search)
        net["routes"] = [
            _route(r)
            for r in iface.routes
            if r.version == ip.version and _on_link(r, ip) and not _claimed(r, nets[:-1])
        ]
    if iface.dhcp4:
        add("ipv4_dhcp", routes=[_route(r) for r in iface.routes if r.version == 4 and not _claimed(r, nets)])
    if iface.dhcp6:
        add("ipv6_dhcp", routes=[_route(r) for r in iface.routes if r.version == 6 and not _claimed(r, nets)])
    elif accept_ra(iface) and not iface.ipv6_addresses:
        add("ipv6_slaac", routes=[_route(r) for r in iface.routes if r.version == 6 and not _claimed(r, nets)])
    # Routes through a link-local gateway belong to no subnet: hang them on the first network.
    leftover = [_route(r) for r in iface.routes if not _claimed(r, nets)]
    if leftover and nets:
        nets[0]["routes"] = nets[0].get("routes", []) + leftover
    return nets


def _on_link(route: Route, ip: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> bool:
    return ipaddress.ip_address(route.via) in ip.network


def _claimed(route: Route, nets: list[dict[str, Any]]) -> bool:
    return any(_route(route) in n.get("routes", []) for n in nets)


def _route(route: Route) -> dict[str, Any]:
    net = ipaddress.ip_network(route.to)
    entry: dict[str, Any] = {"network": str(net.network_address), "netmask": str(net.netmask), "gateway": route.via}
    if route.metric is not None:
        entry["metric"] = route.metric
    return entry
