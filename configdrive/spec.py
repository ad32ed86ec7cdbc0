"""Spec text, file or mapping -> validated VMSpec: JSON Schema, then semantic checks, every problem collected.

Limits (each a Problem when exceeded): see ``LIMITS``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import reprlib
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from configdrive.errors import Problem, SpecError
from configdrive.model import File, Interface, Nameservers, Network, Part, Route, SSHKey, VMSpec

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

#: Documented size limits; each exceeded one is reported with the field that hit it.
LIMITS = {
    "spec_bytes": 64 * 1024 * 1024,  # a spec file or etcd value
    "payload_bytes": 16 * 1024 * 1024,  # user_data / vendor_data, as rendered
    "file_bytes": 16 * 1024 * 1024,  # one entry of `files`
    "files_total_bytes": 64 * 1024 * 1024,  # all of `files`
}

#: Namespace for uuids derived from instance ids (uuid5), so a spec without `uuid` is still stable.
UUID_NAMESPACE = uuidlib.UUID("5f6c2a4e-8d1b-4e5a-9a53-6b8e0c1d2f30")

SSH_KEY_TYPES = frozenset({
    "ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_SECTIONS = (("ethernets", "ethernet"), ("bonds", "bond"), ("vlans", "vlan"))


def load_spec(source: str | os.PathLike[str] | Mapping[str, Any]) -> VMSpec:
    """Read a spec from a YAML/JSON file path or take a mapping; return it validated or raise SpecError."""
    if isinstance(source, Mapping):
        return spec_from_data(source)
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError([Problem("", f"cannot read spec: {err.strerror}")], str(path)) from err
    return parse_spec(raw, str(path))


def parse_spec(raw: bytes | str, source: str | None = None) -> VMSpec:
    """Parse YAML or JSON spec text and validate it."""
    return spec_from_data(parse_document(raw, source), source)


def parse_document(raw: bytes | str, source: str | None = None) -> Any:
    """Parse spec text (YAML, a superset of JSON) into plain data; syntax errors become SpecError."""
    import yaml

    if len(raw) > LIMITS["spec_bytes"]:
        raise SpecError([Problem("", f"spec is larger than {LIMITS['spec_bytes']} bytes")], source)
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        raise SpecError([Problem("", f"not valid YAML/JSON{where}: {reason}")], source) from err


def spec_from_data(data: Any, source: str | None = None) -> VMSpec:
    """Validate plain data (schema, then meaning) and build the VMSpec; raise SpecError with every problem."""
    problems = check_data(data)
    if problems:
        raise SpecError(problems, source)
    return _build(data)


def check_data(data: Any) -> list[Problem]:
    """Every problem with a spec given as plain data; empty when it is valid."""
    problems, checked = _schema_check(data)
    if checked and isinstance(data, Mapping):
        # Semantic checks run on every top-level field the schema found no fault in, so one
        # pass reports everything that is wrong without tripping over wrongly typed values.
        broken = {p.path.split(".")[0].split("[")[0] for p in problems}
        problems += semantic_problems({k: v for k, v in data.items() if k not in broken})
    return sorted(set(problems))


# --- JSON Schema ------------------------------------------------------------------------------


def schema_text() -> str:
    """The VM spec's JSON Schema, as shipped inside the package."""
    # A plain read: importlib.resources pulls in zipfile and threading, ~10 ms of a cold build.
    path = Path(__file__).parent / "schemas" / "vmspec.schema.json"
    try:
        return path.read_text()
    except OSError:  # imported from a zip archive
        from importlib import resources

        return resources.files("configdrive").joinpath("schemas/vmspec.schema.json").read_text()


@lru_cache(maxsize=1)
def _validator() -> Validator:
    """The one jsonschema validator of this process, built on first use (importing jsonschema
    costs ~50 ms, which ``configdrive schema``, ``get`` and ``list`` never pay)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from jsonschema.validators import extend

    schema = json.loads(schema_text())
    keywords = _short_message_keywords(ValidationError, Draft202012Validator.VALIDATORS["const"])
    cls = cast("type[Validator]", cast(Callable[..., Any], extend)(Draft202012Validator, keywords))
    if _uses_keyword(schema, "format"):
        return cls(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return cls(schema)


def _uses_keyword(schema: Any, keyword: str) -> bool:
    if isinstance(schema, dict):
        return keyword in schema or any(_uses_keyword(v, keyword) for v in schema.values())
    return isinstance(schema, list) and any(_uses_keyword(v, keyword) for v in schema)


#: Longest quote of a value in a message: values can be megabytes, or YAML alias bombs.
QUOTE_CHARS = 60

_REPR = reprlib.Repr()  # bounded however large or deep the value (and safe on cycles)
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, QUOTE_CHARS, QUOTE_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def quote(value: Any) -> str:
    """``repr(value)`` for a message, cut to about ``QUOTE_CHARS`` characters."""
    try:
        return _cut(_REPR.repr(value))
    except Exception:  # a repr that raises, e.g. an int too long to print
        return f"<{type(value).__name__}>"


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS + 3 else text[:QUOTE_CHARS] + "..."


#: A jsonschema keyword function: (validator, keyword value, instance, schema) -> errors.
Keyword = Callable[[Any, Any, Any, Any], Iterator["ValidationError"]]


def _short_message_keywords(error: type[ValidationError], const: Keyword) -> dict[str, Keyword]:
    """jsonschema's keywords whose message quotes the instance, same checks and wording, quoting it
    through ``quote``: jsonschema builds ``f"{instance!r} ..."`` eagerly, so a 7-level alias bomb
    (~300 bytes of YAML) took 4 s and 52 MB per message before any could be shortened."""

    def sized(kind: str, too_long: bool, edge: int, at_edge: str, otherwise: str) -> Keyword:
        def check(validator: Any, limit: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
            if validator.is_type(instance, kind) and (
                    len(instance) > limit if too_long else len(instance) < limit):
                yield error(f"{quote(instance)} {at_edge if limit == edge else otherwise}")
        return check

    def type_(validator: Any, types: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        types = [types] if isinstance(types, str) else types
        if not any(validator.is_type(instance, each) for each in types):
            yield error(f"{quote(instance)} is not of type {', '.join(map(repr, types))}")

    def pattern(validator: Any, regex: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "string") and not re.search(regex, instance):
            yield error(f"{quote(instance)} does not match {regex!r}")

    def enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        # jsonschema's own equality (a bool is not 1), through const, whose message quotes no instance
        if all(next(iter(const(validator, each, instance, schema)), None) for each in enums):
            yield error(f"{quote(instance)} is not one of {enums!r}")

    def minimum(validator: Any, low: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "number") and instance < low:
            yield error(f"{quote(instance)} is less than the minimum of {low!r}")

    def maximum(validator: Any, high: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "number") and instance > high:
            yield error(f"{quote(instance)} is greater than the maximum of {high!r}")

    def any_of(validator: Any, branches: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        context: list[ValidationError] = []
        for index, branch in enumerate(branches):
            errors = list(validator.descend(instance, branch, schema_path=index))
            if not errors:
                return
            context += errors
        yield error(f"{quote(instance)} is not valid under any of the given schemas", context=context)

    def not_(validator: Any, negated: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.evolve(schema=negated).is_valid(instance):
            yield error(f"{quote(instance)} should not be valid under {negated!r}")

    return {
        "type": type_, "pattern": pattern, "enum": enum, "minimum": minimum, "maximum": maximum,
        "anyOf": any_of, "not": not_,
        "minLength": sized("string", False, 1, "should be non-empty", "is too short"),
        "maxLength": sized("string", True, 0, "is expected to be empty", "is too long"),
        "minItems": sized("array", False, 1, "should be non-empty", "is too short"),
        "maxItems": sized("array", True, 0, "is expected to be empty", "is too long"),
        "maxProperties": sized("object", True, 0, "is expected to be empty", "has too many properties"),
    }


def field_path(parts: Iterable[Any]) -> str:
    """``['network', 'ethernets', 'eth1', 'addresses', 0]`` -> ``network.ethernets.eth1.addresses[0]``.

    A key longer than ``QUOTE_CHARS`` is cut like a quoted value (keys are user text too)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        out += f".{_cut(str(part))}" if out else _cut(str(part))
    return out


def schema_problems(data: Any) -> list[Problem]:
    """Schema violations, each at the path of the field it concerns (jsonschema, Draft 2020-12)."""
    return _schema_check(data)[0]


def _schema_check(data: Any) -> tuple[list[Problem], bool]:
    """Schema problems, and whether the check ran to its end (semantic checks need that)."""
    validator = _validator()
    from jsonschema.exceptions import best_match  # already imported by _validator()

    problems: list[Problem] = []
    try:
        for error in validator.iter_errors(data):
            if error.context:
                # anyOf: the branch the user most likely meant, by best_match's own descent into
                # the context (deepest error; the anyOf error itself when branches tie). Given
                # error.context directly it would pick the shallowest: for a list of parts with one
                # bad field, "[...] is not of type 'string'".
                error = best_match([error])
            problems += _problems_of(error)
    except Exception as err:  # input jsonschema cannot handle, e.g. a complex number
        problems.append(Problem("", f"cannot be checked against the schema: {type(err).__name__}: "
                                    f"{_cut(str(err))}"))
        return problems, False
    return list(dict.fromkeys(problems)), True  # required: each error names every missing field


def _problems_of(error: ValidationError) -> list[Problem]:
    """One jsonschema error in our words: missing and unknown fields at their own paths."""
    parts = list(error.absolute_path)
    value: Any = error.validator_value
    instance: Any = error.instance
    if error.validator == "required":
        return [Problem(field_path([*parts, name]), "is required") for name in value if name not in instance]
    if error.validator == "additionalProperties" and value is False:
        # jsonschema names the extra keys only inside its message; find them as it does
        schema: Any = error.schema
        known, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        return [Problem(field_path([*parts, extra]), "unknown field") for extra in instance
                if extra not in known and not (isinstance(extra, str) and any(re.search(p, extra) for p in patterns))]
    if error.validator == "not" and not parts:
        return [Problem("user_data_parts", "give either user_data or user_data_parts, not both")]
    return [Problem(field_path(parts), error.message)]


# --- semantic checks --------------------------------------------------------------------------


def semantic_problems(data: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say: names, keys, addresses, references, sizes."""
    problems: list[Problem] = []
    add = problems.append
    hostname = data.get("hostname")
    if hostname is not None and not _LABEL.match(hostname):
        add(Problem("hostname", f"{hostname!r} is not a valid host name (RFC 1123 label)"))
    fqdn = data.get("fqdn")
    if fqdn is not None and hostname is not None:
        labels = fqdn.rstrip(".").split(".")
        if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
            add(Problem("fqdn", f"{fqdn!r} is not a fully qualified domain name"))
        elif labels[0].lower() != hostname.lower():
            add(Problem("fqdn", f"{fqdn!r} does not start with hostname {hostname!r}"))
    if "uuid" in data:
        try:
            uuidlib.UUID(data["uuid"])
        except ValueError:
            add(Problem("uuid", f"{data['uuid']!r} is not a UUID"))
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
        if name in data and _payload_size(data[name]) > LIMITS["payload_bytes"]:
            add(Problem(name, f"larger than the {LIMITS['payload_bytes']} byte limit"))
    problems += _file_problems(data.get("files", []))
    if "network" in data:
        problems += _network_problems(data["network"])
    return problems


def parse_ssh_key(line: str) -> SSHKey:
    """Parse ``type base64 [comment]``; the blob must decode and name the same key type."""
    fields = line.strip().split(None, 2)
    if len(fields) < 2:
        raise ValueError("not an OpenSSH public key (expected 'type base64 [comment]')")
    key_type, blob = fields[0], fields[1]
    if key_type not in SSH_KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key data is not valid base64") from None
    size = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if raw[4:4 + size].decode("ascii", "replace") != key_type:
        raise ValueError(f"key data does not hold a {key_type} key")
    return SSHKey(key_type, blob, fields[2].strip() if len(fields) > 2 else "")


def _payload_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(len(str(p.get("content", "")).encode()) for p in value if isinstance(p, dict))
    return len(json.dumps(value, default=str))


def _file_problems(files: list[Mapping[str, str]]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(files):
        path, where = entry["path"], f"files[{i}].path"
        parts = path.split("/")
        if not path.startswith("/") or path.endswith("/"):
            problems.append(Problem(where, f"{path!r} must be an absolute path to a file"))
        elif any(p in ("", ".", "..") for p in parts[1:]) or "\0" in path:
            problems.append(Problem(where, f"{path!r} must not contain empty, '.' or '..' parts"))
        if path in seen:
            problems.append(Problem(where, f"{path!r} is given twice"))
        seen.add(path)
        size = len(entry["content"].encode())
        total += size
        if size > LIMITS["file_bytes"]:
            problems.append(Problem(f"files[{i}].content", "larger than the "
                                    f"{LIMITS['file_bytes']} byte limit"))
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
    for section, _kind in _SECTIONS:
        for dev_id, dev in net.get(section, {}).items():
            base = f"network.{section}.{dev_id}"
            name = dev.get("set-name", dev_id)
            if name in names:
                add(Problem(base, f"interface name {name!r} is also used by {names[name]}"))
            names[name] = base
            mac = dev.get("match", {}).get("macaddress", dev.get("macaddress"))
            mac_field = f"{base}.match.macaddress" if section == "ethernets" else f"{base}.macaddress"
            if mac is not None:
                if not _MAC.match(mac):
                    add(Problem(mac_field, f"{mac!r} is not a MAC address"))
                elif int(mac[:2], 16) & 1:
                    add(Problem(mac_field, f"{mac!r} is a multicast address, not a NIC's"))
                elif section == "ethernets" and mac.lower() in macs:
                    add(Problem(mac_field, f"{mac!r} is also the MAC of {macs[mac.lower()]}"))
                else:
                    macs[mac.lower()] = base
            if section == "bonds":
                for j, member in enumerate(dev["interfaces"]):
                    where = f"{base}.interfaces[{j}]"
                    if member not in ethernets:
                        add(Problem(where, f"{member!r} is not an ethernet defined in network.ethernets"))
                    elif member in bonded:
                        add(Problem(where, f"{member!r} is already a member of {bonded[member]}"))
                    else:
                        bonded[member] = base
            if section == "vlans" and dev["link"] not in ethernets and dev["link"] not in net.get("bonds", {}):
                add(Problem(f"{base}.link", f"{dev['link']!r} is not an ethernet or bond defined in network"))
            problems += _l3_problems(base, dev, defaults)
    for member, bond in bonded.items():
        dev = ethernets[member]
        if any(k in dev for k in ("addresses", "dhcp4", "dhcp6", "routes", "nameservers")):
            add(Problem(f"network.ethernets.{member}", f"is a member of {bond} and cannot have "
                        "its own addresses, DHCP, routes or nameservers"))
    return problems


def _l3_problems(base: str, dev: Mapping[str, Any], defaults: dict[int, str]) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append
    subnets = []
    for j, addr in enumerate(dev.get("addresses", [])):
        where = f"{base}.addresses[{j}]"
        try:
            iface = ipaddress.ip_interface(addr)
        except ValueError:
            version = "IPv6" if ":" in addr else "IPv4"
            add(Problem(where, f"{addr!r} is not a valid {version} interface address"))
            continue
        if "/" not in addr:
            add(Problem(where, f"{addr!r} needs a prefix length, e.g. {addr}/{iface.max_prefixlen}"))
        elif iface.ip == iface.network.network_address and iface.network.prefixlen < iface.max_prefixlen - 1 \
                and iface.version == 4:
            add(Problem(where, f"{addr!r} is the network address, not a host address"))
        subnets.append(iface.network)
    for j, route in enumerate(dev.get("routes", [])):
        where = f"{base}.routes[{j}]"
        try:
            via = ipaddress.ip_address(route["via"])
        except ValueError:
            add(Problem(f"{where}.via", f"{route['via']!r} is not an IP address"))
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
            via.version == 6 and dev.get("accept-ra", False))
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
            ipaddress.ip_address(server)
        except ValueError:
            add(Problem(f"{base}.nameservers.addresses[{j}]", f"{server!r} is not an IP address"))
    for j, domain in enumerate(ns.get("search", [])):
        if not all(_LABEL.match(label) for label in domain.rstrip(".").split(".")):
            add(Problem(f"{base}.nameservers.search[{j}]", f"{domain!r} is not a domain name"))
    return problems


def normalise_route_target(to: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``default`` -> ``0.0.0.0/0`` or ``::/0`` (by the gateway's family); otherwise a strict network."""
    if to == "default":
        return ipaddress.ip_network("::/0" if version == 6 else "0.0.0.0/0")
    try:
        return ipaddress.ip_network(to, strict=True)
    except ValueError as err:
        raise ValueError(f"{to!r} is not a network ({err})") from None


# --- building the model -----------------------------------------------------------------------


def _build(data: Mapping[str, Any]) -> VMSpec:
    keys = tuple(parse_ssh_key(k) for k in data.get("ssh_authorized_keys", []))
    user_data = _payload(data.get("user_data"))
    if "user_data_parts" in data:
        user_data = _payload(data["user_data_parts"])
    return VMSpec(
        instance_id=data["instance_id"],
        hostname=data["hostname"],
        uuid=str(uuidlib.UUID(data["uuid"])) if "uuid" in data
        else str(uuidlib.uuid5(UUID_NAMESPACE, data["instance_id"])),
        fqdn=data.get("fqdn", "").rstrip(".") or None,
        availability_zone=data.get("availability_zone"),
        meta=dict(data.get("meta", {})),
        ssh_authorized_keys=keys,
        user_data=user_data,
        vendor_data=_payload(data.get("vendor_data")),
        network=_network(data["network"]) if "network" in data else None,
        files=tuple(File(f["path"], f["content"].encode()) for f in data.get("files", [])),
    )


def _payload(value: Any) -> str | Mapping[str, Any] | tuple[Part, ...] | None:
    if isinstance(value, list):
        return tuple(Part(p["content_type"], p["content"], p.get("filename")) for p in value)
    return value  # type: ignore[no-any-return]


def _network(net: Mapping[str, Any]) -> Network:
    names = {dev_id: dev.get("set-name", dev_id) for section, _ in _SECTIONS
             for dev_id, dev in net.get(section, {}).items()}
    interfaces = []
    for section, kind in _SECTIONS:
        for dev_id, dev in net.get(section, {}).items():
            routes = []
            for r in dev.get("routes", []):
                via = ipaddress.ip_address(r["via"])
                routes.append(Route(str(normalise_route_target(r["to"], via.version)), str(via),
                                    r.get("metric")))
            ns = dev.get("nameservers")
            mac = dev.get("match", {}).get("macaddress", dev.get("macaddress"))
            interfaces.append(Interface(
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
                if ns else None,
                mtu=dev.get("mtu"),
                bond_interfaces=tuple(dev.get("interfaces", ())),
                bond_parameters=dict(dev.get("parameters", {})),
                vlan_id=dev.get("id") if kind == "vlan" else None,
                vlan_link=dev.get("link"),
            ))
    return Network(tuple(interfaces))
