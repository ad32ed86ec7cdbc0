"""The validated VM spec as frozen dataclasses, and FileTree; no I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: A rendered seed: relative POSIX path -> file content. Paths never start with "/".
FileTree = Mapping[str, bytes]

InterfaceKind = Literal["ethernet", "bond", "vlan"]


@dataclass(frozen=True)
class Part:
    """One part of a MIME multipart user-data or vendor-data message."""

    content_type: str
    content: str
    filename: str | None = None


@dataclass(frozen=True)
class Route:
    """A static route; ``to`` is a normalised network, ``0.0.0.0/0`` or ``::/0`` for default."""

    to: str
    via: str
    metric: int | None = None

    @property
    def is_default(self) -> bool:
        return self.to in ("0.0.0.0/0", "::/0")

    @property
    def version(self) -> int:
        return 6 if ":" in self.to else 4


@dataclass(frozen=True)
class Nameservers:
    """DNS servers and search domains of one interface."""

    addresses: tuple[str, ...] = ()
    search: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interface:
    """One network device: a NIC matched by MAC, a bond of NICs, or a VLAN on another device."""

    id: str
    kind: InterfaceKind
    name: str
    macaddress: str | None = None
    addresses: tuple[str, ...] = ()
    dhcp4: bool = False
    dhcp6: bool = False
    accept_ra: bool | None = None
    routes: tuple[Route, ...] = ()
    nameservers: Nameservers | None = None
    mtu: int | None = None
    bond_interfaces: tuple[str, ...] = ()
    bond_parameters: Mapping[str, Any] = field(default_factory=dict)
    vlan_id: int | None = None
    vlan_link: str | None = None

    @property
    def ipv4_addresses(self) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if ":" not in a)

    @property
    def ipv6_addresses(self) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if ":" in a)


@dataclass(frozen=True)
class Network:
    """Every interface of the VM, ethernets first, then bonds, then VLANs, in spec order."""

    interfaces: tuple[Interface, ...]

    def by_id(self, interface_id: str) -> Interface:
        return next(i for i in self.interfaces if i.id == interface_id)

    def of_kind(self, kind: InterfaceKind) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.kind == kind)


@dataclass(frozen=True)
class SSHKey:
    """An OpenSSH public key, parsed: ``type base64 comment``."""

    type: str
    data: str
    comment: str = ""

    @property
    def line(self) -> str:
        return f"{self.type} {self.data} {self.comment}".rstrip()


@dataclass(frozen=True)
class File:
    """A file for the config drive's ``content/`` tree, injected at ``path`` in the guest."""

    path: str
    content: bytes


@dataclass(frozen=True)
class VMSpec:
    """Everything a guest learns from its seed, validated."""

    instance_id: str
    hostname: str
    uuid: str
    fqdn: str | None = None
    availability_zone: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    ssh_authorized_keys: tuple[SSHKey, ...] = ()
    user_data: str | Mapping[str, Any] | tuple[Part, ...] | None = None
    vendor_data: str | Mapping[str, Any] | tuple[Part, ...] | None = None
    network: Network | None = None
    files: tuple[File, ...] = ()
    #: cloud-init's ``updates.network.when`` events, carried as vendor data (empty: not set).
    network_updates: tuple[str, ...] = ()
    #: ``spec`` or ``content`` (the instance id is derived from the rendered seed, see ``seed``).
    instance_id_from: str = "spec"
