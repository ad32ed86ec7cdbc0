"""Which VM is asking, by source address: the addresses a spec claims, and an index over all VMs.

A VM claims every address its spec assigns (any interface, prefix ignored), any address named
for it in the leases file, and every IPv6 address whose interface identifier is the modified
EUI-64 of one of its MACs, under any /64 (link-local included), so SLAAC guests are found
without any IPAM. An address or identifier claimed by two VMs answers for neither.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from configdrive.model import VMSpec

log = logging.getLogger(__name__)

IID_MASK = (1 << 64) - 1

K = TypeVar("K")


@dataclass(frozen=True)
class Claims:
    """What identifies a VM on the network: exact addresses (canonical text) and EUI-64 identifiers."""

    addresses: frozenset[str] = frozenset()
    interface_ids: frozenset[int] = frozenset()

    def __or__(self, other: Claims) -> Claims:
        return Claims(self.addresses | other.addresses, self.interface_ids | other.interface_ids)


def spec_claims(spec: VMSpec) -> Claims:
    """The addresses ``spec`` assigns and the EUI-64 identifiers of its MACs."""
    interfaces = spec.network.interfaces if spec.network else ()
    addresses = {canonical(a.split("/", 1)[0]) for i in interfaces for a in i.addresses}
    macs = {i.macaddress for i in interfaces if i.macaddress}
    return Claims(frozenset(addresses), frozenset(eui64(mac) for mac in macs))


def address_claims(addresses: Iterable[str]) -> Claims:
    """Claims for addresses named outside the spec (a DHCP lease an orchestrator knows)."""
    return Claims(frozenset(canonical(a) for a in addresses))


def eui64(mac: str) -> int:
    """The modified EUI-64 interface identifier of ``mac`` (RFC 4291 appendix A), as an integer."""
    octets = bytes(int(part, 16) for part in mac.split(":"))
    if len(octets) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return int.from_bytes(bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:], "big")


def canonical(address: str) -> str:
    """``address`` in the kernel's text form: no zone, IPv4-mapped IPv6 as IPv4; ValueError if invalid."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


class AddressIndex:
    """Source address -> VM id over every VM's claims, updated one VM at a time."""

    def __init__(self) -> None:
        self._claims: dict[str, Claims] = {}
        self._by_address: dict[str, set[str]] = {}
        self._by_iid: dict[int, set[str]] = {}

    def set(self, vm_id: str, claims: Claims) -> None:
        """Replace ``vm_id``'s claims; logs addresses and identifiers that become contested."""
        self.discard(vm_id)
        self._claims[vm_id] = claims
        for address in claims.addresses:
            _claim(self._by_address, address, vm_id, f"address {address}", " until one of them gives it up")
        for iid in claims.interface_ids:
            _claim(self._by_iid, iid, vm_id, f"MAC-derived interface id {_iid_text(iid)}")

    def discard(self, vm_id: str) -> None:
        """Forget ``vm_id``'s claims."""
        claims = self._claims.pop(vm_id, None)
        if claims is None:
            return
        for address in claims.addresses:
            _release(self._by_address, address, vm_id)
        for iid in claims.interface_ids:
            _release(self._by_iid, iid, vm_id)

    def claims(self, vm_id: str) -> Claims | None:
        return self._claims.get(vm_id)

    def lookup(self, source: str) -> str | None:
        """The one VM that ``source`` (a peer address as the kernel reports it) belongs to, or None
        when no VM or more than one claims it."""
        try:
            address = source if source in self._by_address else canonical(source)
        except ValueError:
            return None
        candidates = set(self._by_address.get(address, ()))
        if len(candidates) > 1:
            return None
        if ":" in address:
            by_iid = self._by_iid.get(int(ipaddress.IPv6Address(address)) & IID_MASK, set())
            if len(by_iid) > 1:
                return None
            candidates |= by_iid
        return next(iter(candidates)) if len(candidates) == 1 else None


def _release(table: dict[K, set[str]], key: K, vm_id: str) -> None:
    owners = table[key]
    owners.discard(vm_id)
    if not owners:
        del table[key]


def _iid_text(iid: int) -> str:
    return str(ipaddress.IPv6Address(iid)).removeprefix("::")


def _claim(owners_of: dict[K, set[str]], key: K, vm_id: str, what: str, until: str = "") -> None:
    """Record that ``vm_id`` claims ``key``; log once when a second VM makes it contested."""
    owners = owners_of.setdefault(key, set())
    owners.add(vm_id)
    if len(owners) == 2:
        log.warning("%s is claimed by %s: answering 404 to it%s", what, " and ".join(sorted(owners)), until)
