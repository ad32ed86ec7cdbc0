"""Spec text, file or mapping -> validated VMSpec: bounded parse, JSON Schema, semantic checks, every
problem collected; then the model built.

The bounded parse is ``configdrive.yamldoc`` (text) or ``configdrive.plaindata`` (Python data),
the schema check ``configdrive.specschema``, SSH keys ``configdrive.sshkeys``; what no schema can
say (names, addresses, references, sizes as written) is checked here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from configdrive.errors import InputError, Problem, SpecError
from configdrive.limits import CONTROL
from configdrive.limits import LIMITS as LIMITS
from configdrive.model import File, Interface, Nameservers, Network, Part, Route, VMSpec
from configdrive.plaindata import plain_data
from configdrive.specschema import cut, quote, schema_check
from configdrive.sshkeys import parse_ssh_key as parse_ssh_key
from configdrive.yamldoc import parse_document as parse_document

#: Namespace for uuids derived from instance ids (uuid5), so a spec without `uuid` is still stable.
UUID_NAMESPACE = uuidlib.UUID("5f6c2a4e-8d1b-4e5a-9a53-6b8e0c1d2f30")

# Every pattern is used with fullmatch: `$` would also match before a final newline.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_UUID = re.compile(r"(?:urn:uuid:)?[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")
_IP_TEXT = re.compile(r"[0-9A-Fa-f:./]{2,64}")  # what an address or network can be spelled with
_SECTIONS = (("ethernets", "ethernet"), ("bonds", "bond"), ("vlans", "vlan"))


def load_spec(source: str | os.PathLike[str] | Mapping[str, Any]) -> VMSpec:
    """Read a spec from a YAML/JSON file path or take a mapping; return it validated or raise SpecError."""
    if isinstance(source, Mapping):
        return spec_from_data(source)
    from configdrive.inputs import read_regular_file

    try:
        raw = read_regular_file(source, LIMITS["spec_bytes"])
    except InputError as err:
        reason = str(err).removeprefix(f"{err.path}: ")
        raise SpecError([Problem("", f"cannot read spec: {reason}")], err.path) from err
    return parse_spec(raw, os.fspath(source))


def parse_spec(raw: bytes | str, source: str | None = None) -> VMSpec:
    """Parse YAML or JSON spec text and validate it."""
    return _spec_from_plain(parse_document(raw, source), source)


def spec_from_data(data: Any, source: str | None = None) -> VMSpec:
    """Validate data given as Python objects (schema, then meaning) and build the VMSpec; raise
    SpecError with every problem. Any Mapping, Sequence or str subclass is taken as its plain kind."""
    return _spec_from_plain(plain_data(data, source), source)


def _spec_from_plain(data: Any, source: str | None) -> VMSpec:
    problems = _plain_problems(data)
    if problems:
        raise SpecError(problems, source)
    return _build(data)


def check_data(data: Any) -> list[Problem]:
    """Every problem with a spec given as Python data; empty when it is valid."""
    try:
        plain = plain_data(data)
    except SpecError as err:
        return err.problems
    return _plain_problems(plain)


def _plain_problems(data: Any) -> list[Problem]:
    problems, checked = schema_check(data)
    if checked and isinstance(data, Mapping):
        # Semantic checks run on every top-level field the schema found no fault in, so one
        # pass reports everything that is wrong without tripping over wrongly typed values.
        broken = {p.path.split(".")[0].split("[")[0] for p in problems}
        problems += semantic_problems({k: v for k, v in data.items() if k not in broken})
    return sorted(set(problems))


# --- semantic checks --------------------------------------------------------------------------


def semantic_problems(data: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say: names, keys, addresses, references, sizes."""
    problems: list[Problem] = []
    add = problems.append
    hostname = data.get("hostname")
    if hostname is not None and not _LABEL.fullmatch(hostname):
        add(Problem("hostname", f"{quote(hostname)} is not a valid host name (RFC 1123 label)"))
    fqdn = data.get("fqdn")
    if fqdn is not None and hostname is not None:
        name = fqdn[:-1] if fqdn.endswith(".") else fqdn
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
            add(Problem("fqdn", f"{quote(fqdn)} is not a fully qualified domain name"))
        elif labels[0].lower() != hostname.lower():
            add(Problem("fqdn", f"{quote(fqdn)} does not start with hostname {quote(hostname)}"))
    if "uuid" in data and not _UUID.fullmatch(data["uuid"]):
        add(Problem("uuid", f"{quote(data['uuid'])} is not a UUID (32 hex digits, as 8-4-4-4-12)"))
    seen_keys: set[str] = set()
    for i, line in enumerate(data.get("ssh_authorized_keys", [])):
        where = f"ssh_authorized_keys[{i}]"
        try:
            key = parse_ssh_key(line)
        except ValueError as err:
            add(Problem(where, str(err)))
            continue
        if key.data in seen_keys:
            add(Problem(where, "duplicate key"))
        seen_keys.add(key.data)
    for name in ("user_data", "vendor_data", "user_data_parts"):
        if name in data:
            problems += _payload_problems(name, data[name])
    problems += _file_problems(data.get("files", []))
    if "network" in data:
        problems += _network_problems(data["network"])
    problems += _policy_problems(data)
    return problems


def _policy_problems(data: Mapping[str, Any]) -> list[Problem]:
    """What the two change policies (``updates``, ``instance_id_from``) cannot be combined with."""
    from configdrive.render.userdata import TEXT_PAYLOAD_TYPES

    problems = []
    if data.get("instance_id_from") == "content" and "uuid" in data:
        problems.append(
            Problem(
                "instance_id_from",
                "content: cannot derive the instance id from the content "
                "when uuid is given (config-2's instance id is uuid): drop uuid",
            )
        )
    vendor = data.get("vendor_data")
    if "updates" in data and isinstance(vendor, Mapping) and "updates" in vendor:
        problems.append(Problem("vendor_data.updates", "conflicts with the spec's updates: give it in one place"))
    elif "updates" in data and isinstance(vendor, str) and not vendor.startswith(tuple(TEXT_PAYLOAD_TYPES)):
        problems.append(
            Problem(
                "vendor_data",
                "cannot be combined with updates: give vendor data as a mapping, "
                "as parts, or as cloud-config, script or boothook text",
            )
        )
    return problems


# --- payloads, files, network ---


def _payload_problems(name: str, value: Any) -> list[Problem]:
    """The payload's size as written (rendered: YAML for a mapping, MIME for parts), and part names."""
    problems = []
    if isinstance(value, list):
        for i, part in enumerate(value):
            filename = part.get("filename")
            if filename is not None and (filename in (".", "..") or filename != filename.strip()):
                problems.append(
                    Problem(
                        f"{name}[{i}].filename",
                        f"{quote(filename)} is not a file name (no '.', '..', or surrounding spaces)",
                    )
                )
    limit = LIMITS["payload_bytes"]
    exact = True
    if isinstance(value, str):
        size = len(value.encode())
    else:
        # Bounds first: a huge payload is refused, and a small one passed, without rendering it
        # (the renderer renders it anyway; YAML with text outside ASCII writes ~0.5 MB/s).
        low, high = _rendered_size_bounds(value)
        size, exact = low, False
        if low <= limit < high:
            from configdrive.render.userdata import render_payload

            size, exact = len(render_payload(_payload(value)) or b""), True
    if size > limit:
        problems.append(
            Problem(name, f"larger than the {limit} byte limit as written ({'' if exact else 'at least '}{size} bytes)")
        )
    return problems


#: Upper bounds of what one value adds to a rendered payload besides its text: for YAML,
#: indentation of 64 levels, "- ", ": ", a long key's "? ", quotes, an anchor, line breaks; for
#: MIME, a part's headers (a 255-character file name RFC 2231-encoded) and boundary lines.
_YAML_NODE_BYTES, _MIME_PART_BYTES = 400, 8192


def _rendered_size_bounds(value: Any) -> tuple[int, int]:
    """Lower and upper bounds of the bytes a mapping (as YAML) or a list of parts (as MIME) is
    written as, without rendering it. Lower: the UTF-8 text each list or mapping holds, counted
    once (YAML writes a shared one once, as an alias; CRLF may become LF). Upper: every use
    counted, each character escaped (at most 4 bytes per byte), each line break re-indented."""
    texts: dict[int, tuple[int, int, int]] = {}  # id(str) -> (UTF-8 bytes, CRLFs, line breaks)

    def text(item: str) -> tuple[int, int, int]:  # an alias repeats a string: measure it once
        known = texts.get(id(item))
        if known is None:
            size = len(item) if item.isascii() else len(item.encode())
            breaks = item.count("\n") + (0 if item.isascii() else sum(map(item.count, "\x85\u2028\u2029")))
            known = texts[id(item)] = (size, item.count("\r\n"), breaks)
        return known

    parts = isinstance(value, list)
    low = high = 0
    seen: set[int] = set()
    todo: list[tuple[Any, bool]] = [(value, False)]
    while todo:
        item, again = todo.pop()
        high += _YAML_NODE_BYTES
        if isinstance(item, str):
            size, crlf, breaks = text(item)
            if not again:
                low += size - crlf
            if parts:  # ASCII is written as it is (7bit), other text as base64 of its UTF-8
                high += size if item.isascii() else -(-size // 3) * 4 * 77 // 76
            else:
                high += 4 * size + (breaks + size // 32768) * _YAML_NODE_BYTES
        elif isinstance(item, (dict, list)):
            again = again or id(item) in seen
            seen.add(id(item))
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            todo += [(child, again) for child in children]
        elif isinstance(item, int) and not isinstance(item, bool):
            high += item.bit_length() // 3 + 2
        else:
            high += 64  # float, bool, null, date
    return low, high + (_MIME_PART_BYTES * (len(value) + 1) if parts else 0)


def _file_problems(files: list[Mapping[str, str]]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(files):
        path, where = entry["path"], f"files[{i}].path"
        parts = path.split("/")
        if not path.startswith("/") or path.endswith("/"):
            problems.append(Problem(where, f"{quote(path)} must be an absolute path to a file"))
        elif any(p in ("", ".", "..") for p in parts[1:]):
            problems.append(Problem(where, f"{quote(path)} must not contain empty, '.' or '..' parts"))
        elif any(len(p.encode()) > 255 for p in parts):
            problems.append(Problem(where, f"{quote(path)} has a name longer than 255 bytes (NAME_MAX)"))
        elif CONTROL.search(path):
            problems.append(Problem(where, f"{quote(path)} must not contain control characters"))
        if path in seen:
            problems.append(Problem(where, f"{quote(path)} is given twice"))
        seen.add(path)
        content = entry["content"]
        size = len(content) if content.isascii() else len(content.encode())
        total += size
        if size > LIMITS["file_bytes"]:
            problems.append(Problem(f"files[{i}].content", f"larger than the {LIMITS['file_bytes']} byte limit"))
    if total > LIMITS["files_total_bytes"]:
        problems.append(Problem("files", f"together larger than {LIMITS['files_total_bytes']} bytes"))
    return problems


def _network_problems(net: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append
    ethernets = net.get("ethernets", {})
    names: dict[str, str] = {}
    macs: dict[str, str] = {}
    bonded: dict[str, str] = {}
    defaults: dict[int, str] = {}
    devices = [dev for section, _ in _SECTIONS for dev in net.get(section, {}).values()]
    for what, count in (
        ("addresses", sum(len(d.get("addresses", ())) for d in devices)),
        ("routes", sum(len(d.get("routes", ())) for d in devices)),
        ("DNS servers", sum(len(d.get("nameservers", {}).get("addresses", ())) for d in devices)),
    ):
        if count > LIMITS["network_entries"]:
            # rendering network_data.json takes time in addresses x routes
            add(Problem("network", f"{count} {what} in all; at most {LIMITS['network_entries']}"))
    for section, _kind in _SECTIONS:
        for dev_id, dev in net.get(section, {}).items():
            base = f"network.{section}.{dev_id}"
            name = dev.get("set-name", dev_id)
            if name in names:
                add(Problem(base, f"interface name {quote(name)} is also used by {names[name]}"))
            names[name] = base
            mac = dev.get("match", {}).get("macaddress", dev.get("macaddress"))
            mac_field = f"{base}.match.macaddress" if section == "ethernets" else f"{base}.macaddress"
            if mac is not None:
                if not _MAC.fullmatch(mac):
                    add(Problem(mac_field, f"{quote(mac)} is not a MAC address"))
                elif int(mac[:2], 16) & 1:
                    add(Problem(mac_field, f"{quote(mac)} is a multicast address, not a NIC's"))
                elif section == "ethernets" and mac.lower() in macs:
                    add(Problem(mac_field, f"{quote(mac)} is also the MAC of {macs[mac.lower()]}"))
                else:
                    macs[mac.lower()] = base
            if section == "bonds":
                for j, member in enumerate(dev["interfaces"]):
                    where = f"{base}.interfaces[{j}]"
                    if member not in ethernets:
                        add(Problem(where, f"{quote(member)} is not an ethernet defined in network.ethernets"))
                    elif member in bonded:
                        add(Problem(where, f"{quote(member)} is already a member of {bonded[member]}"))
                    else:
                        bonded[member] = base
                primary = dev.get("parameters", {}).get("primary")
                if primary is not None and primary not in dev["interfaces"]:
                    add(Problem(f"{base}.parameters.primary", f"{quote(primary)} is not one of this bond's interfaces"))
            if section == "vlans" and dev["link"] not in ethernets and dev["link"] not in net.get("bonds", {}):
                add(Problem(f"{base}.link", f"{quote(dev['link'])} is not an ethernet or bond defined in network"))
            problems += _l3_problems(base, dev, defaults)
    for member, bond in bonded.items():
        dev = ethernets[member]
        if any(k in dev for k in ("addresses", "dhcp4", "dhcp6", "routes", "nameservers")):
            add(
                Problem(
                    f"network.ethernets.{member}",
                    f"is a member of {bond} and cannot have its own addresses, DHCP, routes or nameservers",
                )
            )
    return problems


def _ip_text(text: str) -> str:
    """``text`` if it is spelled like an IP address or network (no zone index, no spaces), else ValueError."""
    if not _IP_TEXT.fullmatch(text):
        raise ValueError(text)
    return text


def _l3_problems(base: str, dev: Mapping[str, Any], defaults: dict[int, str]) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append
    subnets = []
    for j, addr in enumerate(dev.get("addresses", [])):
        where = f"{base}.addresses[{j}]"
        try:
            iface = ipaddress.ip_interface(_ip_text(addr))
        except ValueError:
            version = "IPv6" if ":" in addr else "IPv4"
            add(Problem(where, f"{quote(addr)} is not a valid {version} interface address"))
            continue
        if "/" not in addr:
            add(Problem(where, f"{quote(addr)} needs a prefix length, e.g. {addr}/{iface.max_prefixlen}"))
        elif (
            iface.ip == iface.network.network_address
            and iface.network.prefixlen < iface.max_prefixlen - 1
            and iface.version == 4
        ):
            add(Problem(where, f"{quote(addr)} is the network address, not a host address"))
        subnets.append(iface.network)
    for j, route in enumerate(dev.get("routes", [])):
        where = f"{base}.routes[{j}]"
        try:
            via = ipaddress.ip_address(_ip_text(route["via"]))
        except ValueError:
            add(Problem(f"{where}.via", f"{quote(route['via'])} is not an IP address"))
            continue
        try:
            to = normalise_route_target(route["to"], via.version)
        except ValueError as err:
            add(Problem(f"{where}.to", str(err)))
            continue
        if to.version != via.version:
            add(Problem(f"{where}.via", f"IPv{via.version} gateway for an IPv{to.version} destination"))
            continue
        dhcp = dev.get("dhcp4" if via.version == 4 else "dhcp6", False) or (
            via.version == 6 and dev.get("accept-ra", False)
        )
        link_local = via.version == 6 and via.is_link_local
        if not dhcp and not link_local and not any(via in net for net in subnets):
            add(Problem(f"{where}.via", f"gateway {via} is not on any subnet of this interface"))
        if to.prefixlen == 0:
            if to.version in defaults:
                add(Problem(where, f"a second IPv{to.version} default route (first in {defaults[to.version]})"))
            defaults[to.version] = where
    ns = dev.get("nameservers", {})
    for j, server in enumerate(ns.get("addresses", [])):
        try:
            ipaddress.ip_address(_ip_text(server))
        except ValueError:
            add(Problem(f"{base}.nameservers.addresses[{j}]", f"{quote(server)} is not an IP address"))
    for j, domain in enumerate(ns.get("search", [])):
        name = domain[:-1] if domain.endswith(".") else domain
        if not all(_LABEL.fullmatch(label) for label in name.split(".")):
            add(Problem(f"{base}.nameservers.search[{j}]", f"{quote(domain)} is not a domain name"))
    return problems


def normalise_route_target(to: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``default`` -> ``0.0.0.0/0`` or ``::/0`` (by the gateway's family); otherwise a strict network."""
    if to == "default":
        return ipaddress.ip_network("::/0" if version == 6 else "0.0.0.0/0")
    try:
        return ipaddress.ip_network(_ip_text(to), strict=True)
    except ValueError as err:
        reason = "" if str(err) == to else f" ({cut(str(err))})"
        raise ValueError(f"{quote(to)} is not a network{reason}") from None


# --- building the model -----------------------------------------------------------------------


def _build(data: Mapping[str, Any]) -> VMSpec:
    keys = tuple(parse_ssh_key(k) for k in data.get("ssh_authorized_keys", []))
    user_data = _payload(data.get("user_data"))
    if "user_data_parts" in data:
        user_data = _payload(data["user_data_parts"])
    fqdn = data.get("fqdn")
    return VMSpec(
        instance_id=data["instance_id"],
        hostname=data["hostname"],
        uuid=str(uuidlib.UUID(data["uuid"]))
        if "uuid" in data
        else str(uuidlib.uuid5(UUID_NAMESPACE, data["instance_id"])),
        fqdn=(fqdn[:-1] if fqdn.endswith(".") else fqdn) if fqdn else None,
        availability_zone=data.get("availability_zone"),
        meta=dict(data.get("meta", {})),
        ssh_authorized_keys=keys,
        user_data=user_data,
        vendor_data=_payload(data.get("vendor_data")),
        network=_network(data["network"]) if "network" in data else None,
        files=tuple(File(f["path"], f["content"].encode()) for f in data.get("files", [])),
        network_updates=tuple(dict.fromkeys(data["updates"]["network"]["when"])) if "updates" in data else (),
        instance_id_from=data.get("instance_id_from", "spec"),
    )


def _payload(value: Any) -> str | Mapping[str, Any] | tuple[Part, ...] | None:
    if isinstance(value, list):
        return tuple(Part(p["content_type"], p["content"], p.get("filename")) for p in value)
    return value  # type: ignore[no-any-return]


def _network(net: Mapping[str, Any]) -> Network:
    names = {
        dev_id: dev.get("set-name", dev_id) for section, _ in _SECTIONS for dev_id, dev in net.get(section, {}).items()
    }
    interfaces = []
    for section, kind in _SECTIONS:
        for dev_id, dev in net.get(section, {}).items():
            routes = []
            for r in dev.get("routes", []):
                via = ipaddress.ip_address(r["via"])
                routes.append(Route(str(normalise_route_target(r["to"], via.version)), str(via), r.get("metric")))
            ns = dev.get("nameservers")
            mac = dev.get("match", {}).get("macaddress", dev.get("macaddress"))
            interfaces.append(
                Interface(
                    id=dev_id,
                    kind=kind,  # type: ignore[arg-type]
                    name=names[dev_id],
                    macaddress=mac.lower() if mac else None,
                    addresses=tuple(str(ipaddress.ip_interface(a)) for a in dev.get("addresses", [])),
                    dhcp4=dev.get("dhcp4", False),
                    dhcp6=dev.get("dhcp6", False),
                    accept_ra=dev.get("accept-ra"),
                    routes=tuple(routes),
                    nameservers=Nameservers(tuple(ns.get("addresses", [])), tuple(ns.get("search", [])))
                    if ns
                    else None,
                    mtu=dev.get("mtu"),
                    bond_interfaces=tuple(dev.get("interfaces", ())),
                    bond_parameters=dict(dev.get("parameters", {})),
                    vlan_id=dev.get("id") if kind == "vlan" else None,
                    vlan_link=dev.get("link"),
                )
            )
    return Network(tuple(interfaces))
