"""VMSpec.network -> cloud-init network config v1 (NoCloud) and OpenStack network_data.json (config-2).

Both renderers are pure and shared; what a format cannot express is checked in its own module.

Why NoCloud gets version 1 (checked offline with cloud-init 22.4.2, Debian 12, and 25.1.4, Debian
13: datasource, 25.1's network schema check as its init stage runs it, the eni, netplan and
networkd renderers; tests/readers/test_network_versions.py; booted guests: ../shared/FACTS.md):

- No v2 IPv6 default route is right on 22.4 and clean on 25.1: 22.4 turns ``to: "::/0"`` into
  ``::/64`` (a falsy prefix 0 becomes 64) and refuses ``to: default``; 25.1 logs DEPRECATED for
  ``gateway4``/``gateway6``, which makes ``cloud-init status`` report ``degraded done``. A v1
  subnet ``gateway`` is right and silent on both; a default route with a metric is a v1 route
  with ``netmask`` (never ``prefix: 0``, which 22.4 also turns into /64).
- v1 is one shape whether or not a default route is present, and the same shape cloud-init makes
  of config-2's network_data.json, so both formats reach a guest the same way. On netplan guests
  it is converted by cloud-init's netplan renderer (v2 is passed to netplan as written).
- v1 keeps route metrics on 22.4 (its v2 reader drops them) and a DHCP-only NIC's nameservers on
  25.1 with eni (its v2 reader keeps them per interface, and eni then writes a junk ``dns {...}``
  line). Every interface's servers are also written as global ``nameserver`` entries, as 22.4 did
  with v2 and both versions do with config-2's ``dns`` services.
- Known gaps, in cloud-init for both formats: the netplan renderer reads DNS and routes from
  static subnets only, so a NIC without a static address loses its nameservers and routes in
  its netplan output; 25.1.4's v1 schema refuses ``accept-ra`` on a bond or VLAN (a WARNING,
  the network is still applied; canonical/cloud-init PR #6545, after 25.1.4). A static-IPv6 bond
  or VLAN keeps ``accept-ra: false`` all the same: without it a netplan guest takes SLAAC
  addresses and routes there (the eni renderer of both versions drops it on VLANs anyway).
- Bond parameters use the bonding driver's names; 25.1's v1 schema wants ``bond-miimon`` as an
  integer and mode, lacp_rate, xmit_hash_policy, primary as strings (its v2 schema wanted
  ``mii-monitor-interval`` as a string: a WARNING for v2 seeds with an integer).
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


# --- NoCloud: network config v1 ------------------------------------------------------------------


def render_network_v1(network: Network) -> dict[str, Any]:
    """The network config v1 mapping for NoCloud's ``network-config`` (no ``network:`` wrapper).

    Version 1, not 2, because no v2 form of an IPv6 default route is right on 22.4 and clean on 25.1
    (see the module docstring). Devices carry their final names, and bond members, VLAN links and
    bond ``primary`` name devices by those names, as cloud-init reads them.
    """
    names = {i.id: i.name for i in network.interfaces}
    config: list[dict[str, Any]] = []
    for iface in network.interfaces:
        dev: dict[str, Any] = {"type": _V1_TYPE[iface.kind], "name": iface.name}
        if iface.kind == "bond":
            dev["bond_interfaces"] = [names[m] for m in iface.bond_interfaces]
            params = {f"bond-{k}": v for k, v in bond_parameters(iface, names).items()}
            if params:
                dev["params"] = params
        if iface.kind == "vlan":
            dev.update(vlan_link=names[iface.vlan_link or ""], vlan_id=iface.vlan_id)
        if iface.macaddress:
            dev["mac_address"] = iface.macaddress
        if iface.mtu is not None:
            dev["mtu"] = iface.mtu
        ra = accept_ra(iface)
        if ra is not None:
            # 25.1's v1 schema allows this on physical devices only; a bond or VLAN logs the known
            # schema warning (fixed by canonical/cloud-init PR #6545), as config-2 does.
            dev["accept-ra"] = ra
        dev["subnets"] = _v1_subnets(iface)
        config.append(dev)
    # The servers of every interface are also global, as both versions make of config-2's dns
    # services: 25.1 no longer copies v2 interface nameservers to the global list.
    servers = list(dict.fromkeys(a for i in network.interfaces if i.nameservers for a in i.nameservers.addresses))
    search = list(dict.fromkeys(d for i in network.interfaces if i.nameservers for d in i.nameservers.search))
    if servers or search:
        entry: dict[str, Any] = {"type": "nameserver", "address": servers}
        if search:
            entry["search"] = search
        config.append(entry)
    return {"version": 1, "config": config}


_V1_TYPE = {"ethernet": "physical", "bond": "bond", "vlan": "vlan"}


def _v1_subnets(iface: Interface) -> list[dict[str, Any]]:
    """One subnet per DHCP mode and per address. A default route without a metric is the
    ``gateway`` of the static subnet that holds it; every other route hangs on the subnet whose
    network holds its gateway, else on the DHCP subnet of its family, else the first one of its
    family (a link-local gateway), else the first one."""
    subnets: list[dict[str, Any]] = []
    if iface.dhcp4:
        subnets.append({"type": "dhcp4"})
    if iface.dhcp6:
        subnets.append({"type": "dhcp6"})
    # SLAAC is the device's `accept-ra: true`, not an `ipv6_slaac` subnet: cloud-init's netplan
    # renderer turns that subnet into `dhcp6: true`, a DHCPv6 wait where nothing answers.
    routes = list(iface.routes)
    for address in iface.addresses:
        ip = ipaddress.ip_interface(address)
        subnet: dict[str, Any] = {"type": "static" if ip.version == 4 else "static6", "address": address}
        for route in [r for r in routes if r.is_default and r.metric is None and _on_link(r, ip)][:1]:
            subnet["gateway"] = route.via
            routes.remove(route)
        subnets.append(subnet)
    for route in routes:
        family = [s for s in subnets if _v1_family(s) == route.version]
        held = [s for s in family if "address" in s and _on_link(route, ipaddress.ip_interface(s["address"]))]
        dynamic = [s for s in family if "address" not in s]
        if not subnets:  # a route through a link-local or RA-learnt gateway, and no address
            subnets.append({"type": "manual"})
        (held or dynamic or family or subnets)[0].setdefault("routes", []).append(_route(route))
    if iface.nameservers and subnets:
        # On one subnet: the netplan renderer joins every subnet's servers (duplicates included).
        if iface.nameservers.addresses:
            subnets[0]["dns_nameservers"] = list(iface.nameservers.addresses)
        if iface.nameservers.search:
            subnets[0]["dns_search"] = list(iface.nameservers.search)
    return subnets


def _v1_family(subnet: dict[str, Any]) -> int:
    return 6 if subnet["type"] in ("static6", "dhcp6") else 4


def bond_parameters(iface: Interface, names: dict[str, str]) -> dict[str, Any]:
    """A bond's parameters under the bonding driver's own names (miimon, xmit_hash_policy, ...),
    which both network_data.json (``bond_<name>``) and v1 (``bond-<name>``) use; ``primary`` is
    the member's device name. Values keep the spec's types: v1's schema (25.1) and cloud-init's
    network_data.json reader want ``miimon`` as an integer and the others as strings."""
    renames = {"mii-monitor-interval": "miimon", "transmit-hash-policy": "xmit_hash_policy", "lacp-rate": "lacp_rate"}
    params = {renames.get(k, k): v for k, v in iface.bond_parameters.items()}
    if "primary" in params:
        params["primary"] = names[params["primary"]]
    return params


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
            names = {i.id: i.name for i in network.interfaces}
            link.update({f"bond_{k}": v for k, v in bond_parameters(iface, names).items()})
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
