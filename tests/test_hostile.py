"""Hostile input (issue 12): about 300 generated specs that must be refused cleanly, or accepted
and built correctly, through the CLI and the library API, in bounded time and memory.

Categories: alias bombs, nesting, huge scalars, odd YAML tags, control characters in each string
field, special files as spec paths, size and count limits exactly and +1, duplicate keys,
non-string keys, floats and bools for integers, names at their legal maximum and one past it, bad
SSH key blobs, and data only a library caller can pass (circular, MappingProxyType, subclasses,
lone surrogates). Every case states the problem paths it expects (or that it is legal).

How it runs, and why: a process per case and command would cost ~0.3 s of interpreter start
each, about 8 minutes for ~300 cases x 7 commands on 2 busy cores. Instead one worker process per
group of categories (started with ``RLIMIT_AS`` 512 MiB through ``preexec_fn``, two at a time)
imports configdrive once and forks a child per case, so each case gets its own address space,
timeout, crash isolation (a SIGSEGV fails that case only) and peak RSS (``wait4``). In the child
the CLI runs in-process through ``configdrive.cli.main`` (``build`` in every registered format and
``validate``: exit code, stderr, the output file) and the library through ``build_seed`` (and
``load_spec`` for special files). ``test_cli_processes`` then runs a representative case of each
category through ``python -m configdrive`` as real processes, for the exit status and stderr of a
whole process. Assertions (made here, from what the children report): exit 2 naming each
expected path, or a clean build (an ISO that reads back; a format may refuse with exit 2, each
problem naming that format); no traceback; no output file created or changed; each command under
``OP_SECONDS``; no case over ``RSS_MIB`` of RSS growth nor killed by the address-space limit.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import enum
import functools
import io
import json
import os
import re
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections import OrderedDict, UserString
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from configdrive.render import FORMATS as REGISTRY
from configdrive.spec import LIMITS
from tests.conftest import FORMATS, ROOT

MIB = 1024 * 1024
ADDRESS_SPACE = 512 * MIB  # RLIMIT_AS of every worker and CLI process
OP_SECONDS = 10.0  # one command on one case (goal: 1 s; the bench measures; CI machines are busy)
CASE_SECONDS = 90.0  # every command on one case, then the child is killed
RSS_MIB = 400  # RSS growth of one case over its worker (a valid 64 MiB spec is read twice)
WORKERS = 2

HEAD = "instance_id: iid-hostile\nhostname: hostile\n"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y alice@example"
MAC = "52:54:00:12:34:56"


@dataclass(frozen=True)
class Case:
    """One hostile input. ``make`` builds the spec in the case's own child process: YAML bytes (run
    through the CLI and the library) or Python data (library only). ``expect``: the problem paths
    that must be named (a problem at a deeper path counts), or None for a legal spec. ``special``:
    the spec path is a special file of that kind instead (CLI and ``load_spec``)."""

    category: str
    name: str
    make: Callable[[], bytes | Any]
    expect: tuple[str, ...] | None
    special: str | None = None

    @property
    def id(self) -> str:
        return f"{self.category}:{self.name}"


def rep(char: str, count: int) -> str:
    """``char * count``, written out only when the case runs (cases are listed in every process)."""
    return f"«{char}*{count}»"


def text(body: str, head: str = HEAD) -> Callable[[], bytes]:
    def make() -> bytes:
        spec = re.sub("«(.)\\*([0-9]+)»", lambda m: m[1] * int(m[2]), head + body)
        return spec.encode("utf-8", "surrogatepass")

    return make


def refused(category: str, name: str, body: str, *paths: str, head: str = HEAD) -> Case:
    return Case(category, name, text(body, head), paths)


def legal(category: str, name: str, body: str, head: str = HEAD) -> Case:
    return Case(category, name, text(body, head), None)


def nic(body: str) -> str:
    """A spec with one ethernet ``e0`` (MAC set, so every format can carry it) plus ``body`` lines."""
    lines = "".join(f"      {line}\n" for line in body.splitlines())
    return f"network:\n  ethernets:\n    e0:\n      match: {{macaddress: '{MAC}'}}\n{lines}"


# --- the cases ---------------------------------------------------------------------------------


def alias_bombs() -> Iterator[Case]:
    def bomb(levels: int, width: int, indent: str = "  ") -> str:
        lines = [f"{indent}b0: &b0 [{', '.join(['x'] * width)}]"]
        lines += [f"{indent}b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, levels)]
        return "\n".join(lines) + "\n"

    for levels, width in ((5, 10), (6, 10), (9, 10), (12, 4), (30, 2)):
        yield refused("alias-bomb", f"user_data-{levels}x{width}", "user_data:\n" + bomb(levels, width), "user_data")
    # 11,110 values defined (within the limit), then one more use of the biggest crosses it there
    defined = "bombs:\n" + bomb(4, 10)
    for path, use in (
        ("hostname", "hostname: *b3"),
        ("meta.k", "meta: {k: *b3}"),
        ("ssh_authorized_keys[0]", "ssh_authorized_keys: [*b3]"),
        ("files[0].content", "files: [{path: /x, content: *b3}]"),
        ("network", "network: *b3"),
        ("vendor_data.k", "vendor_data: {k: *b3}"),
        ("user_data", "user_data: [*b3, *b3]"),
    ):
        head = "instance_id: i\n" if path == "hostname" else HEAD
        yield refused("alias-bomb", f"used-in-{path}", defined + use + "\n", path, head=head)
    yield refused("alias-bomb", "as-mapping-key", "user_data:\n" + bomb(9, 10) + "  ? *b8\n  : v\n", "user_data")
    merges = "user_data:\n  m0: &m0 {a: 1, b: 2}\n" + "".join(
        f"  m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n" for i in range(1, 30)
    )
    yield refused("alias-bomb", "merge-keys", merges, "user_data")
    # few values, much text: a 1 MiB string repeated by aliases (YAML writes strings in full)
    string = f"x: &s '{rep('x', MIB)}'\n"
    yield refused(
        "alias-bomb",
        "string-repeats-user_data",
        string + "user_data: {list: [" + ", ".join(["*s"] * 40) + "]}\n",
        "user_data",
    )
    yield refused(
        "alias-bomb",
        "string-repeats-meta",
        string + "meta: {" + ", ".join(f"k{i}: *s" for i in range(100)) + "}\n",
        "meta.k0",
        "meta.k99",
    )
    yield refused(
        "alias-bomb",
        "string-repeats-keys",
        string + "ssh_authorized_keys: [" + ", ".join(["*s"] * 100) + "]\n",
        "ssh_authorized_keys[0]",
    )
    yield legal(
        "alias-bomb",
        "small-anchors-legal",
        "user_data:\n  base: &b {packages: [a, b]}\n  again: *b\n  merged: {<<: *b, extra: 1}\n",
    )


def nesting() -> Iterator[Case]:
    # The spec's own mapping is level 1, user_data level 2: 62 more lists make 64.
    for levels, paths in ((62, None), (63, ("user_data",)), (500, ("user_data",)), (25_000, ("user_data",))):
        body = "user_data: {x: " + "[" * levels + "]" * levels + "}\n"
        yield Case("nesting", f"flow-lists-{levels + 2}", text(body), paths)
        body = "user_data: " + "{a: " * (levels + 1) + "1" + "}" * (levels + 1) + "\n"
        yield Case("nesting", f"flow-maps-{levels + 2}", text(body), paths)
    yield refused("nesting", "block-dashes-25000", "user_data:\n  x:\n" + "    " + "- " * 25_000 + "x\n", "user_data")
    yield refused(
        "nesting",
        "block-maps-2000",
        "user_data:\n" + "".join(rep(" ", 2 * i + 2) + f"k{i}:\n" for i in range(2000)) + rep(" ", 4002) + "end\n",
        "user_data",
    )
    yield refused("nesting", "top-level-25000", "", "[0]", head="[" * 25_000 + "]" * 25_000 + "\n")
    yield refused(
        "nesting", "in-key-25000", "user_data:\n  ? " + "[" * 25_000 + "]" * 25_000 + "\n  : v\n", "user_data"
    )
    yield refused(
        "nesting", "in-hostname-500", "", "hostname", head="instance_id: i\nhostname: " + "[" * 500 + "]" * 500 + "\n"
    )
    # aliases stack depth: 40 anchors of 40 levels each, each holding the one before
    chain = (
        "user_data:\n  a0: &a0 "
        + "[" * 40
        + "]" * 40
        + "\n"
        + "".join(f"  a{i}: &a{i} " + "[" * 40 + f"*a{i - 1}" + "]" * 40 + "\n" for i in range(1, 40))
    )
    yield refused("nesting", "alias-chain-1600", chain, "user_data")


def huge_scalars() -> Iterator[Case]:
    payload = 16 * MIB
    yield refused("huge-scalar", "hostname-1MiB", "", "hostname", head=f"instance_id: i\nhostname: {rep('h', MIB)}\n")
    yield refused(
        "huge-scalar", "instance_id-10MiB", "", "instance_id", head=f"instance_id: {rep('i', 10 * MIB)}\nhostname: h\n"
    )
    yield refused(
        "huge-scalar", "key-1MiB", f"ssh_authorized_keys: ['{ED25519} {rep('c', MIB)}']\n", "ssh_authorized_keys[0]"
    )
    yield refused("huge-scalar", "meta-value-1MiB", f"meta: {{k: '{rep('v', MIB)}'}}\n", "meta.k")
    yield refused("huge-scalar", "unknown-key-1MiB", f"? '{rep('k', MIB)}'\n: 1\n", "k" * 60 + "...")
    yield refused("huge-scalar", "uuid-10MiB", f"uuid: '{rep('0', 10 * MIB)}'\n", "uuid")
    yield refused("huge-scalar", "digits-10MiB", f"meta: {{k: {rep('1', 10 * MIB)}}}\n", "meta.k")
    yield refused(
        "huge-scalar", "address-1MiB", nic(f"addresses: ['{rep('1', MIB)}']"), "network.ethernets.e0.addresses[0]"
    )
    yield legal("huge-scalar", f"user_data-{payload}-bytes", f"user_data: '#!/bin/sh\n\n{rep('x', payload - 10)}'\n")
    yield refused(
        "huge-scalar",
        f"user_data-{payload + 1}-bytes",
        f"user_data: '#!/bin/sh\n\n{rep('x', payload - 9)}'\n",
        "user_data",
    )
    yield legal("huge-scalar", "user_data-mapping-15MiB", f"user_data: {{runcmd: ['{rep('x', 15 * MIB)}']}}\n")
    yield refused(
        "huge-scalar", "user_data-mapping-16MiB", f"user_data: {{runcmd: ['{rep('x', payload)}']}}\n", "user_data"
    )
    yield refused(
        "huge-scalar",
        "vendor_data-parts-16MiB",
        f"vendor_data: [{{content_type: text/plain, content: '{rep('x', payload)}'}}]\n",
        "vendor_data",
    )
    yield legal("huge-scalar", "file-16MiB", f"files: [{{path: /big, content: '{rep('x', payload)}'}}]\n")
    yield refused(
        "huge-scalar",
        "file-16MiB+1",
        f"files: [{{path: /big, content: '{rep('x', payload + 1)}'}}]\n",
        "files[0].content",
    )
    yield legal("huge-scalar", "comment-60MiB", f"# {rep('x', 60 * MIB)}\n")


def spec_of_exact_size(size: int) -> Callable[[], bytes]:
    def make() -> bytes:
        head = HEAD.encode() + b"# "
        return head + b"x" * (size - len(head) - 1) + b"\n"

    return make


def odd_tags() -> Iterator[Case]:
    scalars = {
        "python-object": "!!python/object:os.system x",
        "python-name": "!!python/name:os.system ''",
        "python-apply": "!!python/object/apply:os.system [id]",
        "binary": "!!binary aGVsbG8=",
        "timestamp": "!!timestamp 2024-01-01",
        "set": "!!set {a, b}",
        "omap": "!!omap [{a: 1}]",
        "pairs": "!!pairs [{a: 1}]",
        "merge": "!!merge x",
        "local": "!foo x",
        "verbatim": "!<tag:example.com,2000:x> x",
        "int-abc": "!!int abc",
        "int-empty": "!!int ''",
        "float-abc": "!!float abc",
        "bool-maybe": "!!bool maybe",
        "null-x": "!!null x",
        "str-on-map": "!!str {a: 1}",
        "map-on-scalar": "!!map x",
        "seq-on-map": "!!seq {a: 1}",
        "value-tag": "!!value x",
        "yaml-tag": "!!yaml x",
        "python-tuple": "!!python/tuple [1]",
    }
    for name, value in scalars.items():
        yield refused("tag", f"{name}-in-meta", f"meta: {{k: {value}}}\n", "meta.k")
        if name in ("python-object", "binary", "int-abc", "set", "local"):
            yield refused("tag", f"{name}-in-user_data", f"user_data: {{k: {value}}}\n", "user_data.k")
    yield refused(
        "tag", "tag-directive", "meta: {k: !e!x v}\n", "meta.k", head="%TAG !e! tag:example.com,2000:\n---\n" + HEAD
    )
    yield refused("tag", "date-as-key-user_data", "user_data: {2024-01-01: x}\n", "user_data")
    yield refused("tag", "date-as-key-meta", "meta: {2024-01-01: x}\n", "meta")
    yield refused("tag", "date-value-where-string", "availability_zone: 2024-01-01\n", "availability_zone")
    yield refused("tag", "impossible-date", "user_data: {when: 2024-02-30}\n", "user_data.when")
    yield legal("tag", "date-value-in-user_data", "user_data: {when: 2024-02-29, at: 2024-02-29 12:00:00+01:00}\n")
    yield refused("tag", "int-4301-digits", f"user_data: {{n: {'9' * 4301}}}\n", "user_data.n")
    yield legal("tag", "int-4300-digits", f"user_data: {{n: {'9' * 4300}}}\n")
    yield refused("tag", "hex-4000-digits", f"user_data: {{n: 0x{'f' * 4000}}}\n", "user_data.n")
    yield refused("tag", "int-4301-digits-mtu", nic(f"mtu: {'9' * 4301}"), "network.ethernets.e0.mtu")
    yield legal("tag", "sexagesimal-long", f"user_data: {{n: 1{':59' * 1400}}}\n")
    yield legal("tag", "plain-equals", "user_data: {a: =, b: '<<'}\n")
    yield refused("tag", "second-document", "---\ninstance_id: j\n", "")


CONTROL_CHARS = {
    "LF": "\\n",
    "NUL": "\\0",
    "NEL": "\\x85",
    "LS": "\\u2028",
    "CR": "\\r",
    "TAB": "\\t",
    "ESC": "\\e",
    "DEL": "\\x7f",
}


def control_characters() -> Iterator[Case]:
    # (field, YAML with § where the character goes, path)
    fields = [
        ("instance_id", 'instance_id: "iid§x"\nhostname: h\n', "instance_id"),
        ("hostname", 'instance_id: i\nhostname: "h§x"\n', "hostname"),
        ("fqdn", 'fqdn: "hostile.example§.org"\n', "fqdn"),
        ("uuid", 'uuid: "0b5b2a2e-4c3e-4a5f-9a53-1d2e3f405162§"\n', "uuid"),
        ("availability_zone", 'availability_zone: "zone§a"\n', "availability_zone"),
        ("meta-key", 'meta: {"k§": v}\n', "meta"),
        ("key-comment", f'ssh_authorized_keys: ["{ED25519} x§y"]\n', "ssh_authorized_keys[0]"),
        ("key-middle", f'ssh_authorized_keys: ["{ED25519.replace(" ", "§", 1)}"]\n', "ssh_authorized_keys[0]"),
        (
            "part-filename",
            'user_data_parts: [{content_type: text/plain, content: x, filename: "a§b"}]\n',
            "user_data_parts[0].filename",
        ),
        (
            "part-content_type",
            'user_data_parts: [{content_type: "text/plain§", content: x}]\n',
            "user_data_parts[0].content_type",
        ),
        ("file-path", 'files: [{path: "/etc/a§b", content: x}]\n', "files[0].path"),
        ("set-name", nic('set-name: "eth§0"'), "network.ethernets.e0.set-name"),
        ("device-id", f'network: {{ethernets: {{"e§0": {{match: {{macaddress: "{MAC}"}}}}}}}}\n', "network.ethernets"),
        (
            "macaddress",
            'network: {ethernets: {e0: {match: {macaddress: "52:54:00:12:34:56§"}}}}\n',
            "network.ethernets.e0.match.macaddress",
        ),
        ("address", nic('addresses: ["192.0.2.5/24§"]'), "network.ethernets.e0.addresses[0]"),
        (
            "route-to",
            nic('addresses: [192.0.2.5/24]\nroutes: [{to: "10.0.0.0/8§", via: 192.0.2.1}]'),
            "network.ethernets.e0.routes[0].to",
        ),
        (
            "route-via",
            nic('addresses: [192.0.2.5/24]\nroutes: [{to: 10.0.0.0/8, via: "192.0.2.1§"}]'),
            "network.ethernets.e0.routes[0].via",
        ),
        (
            "nameserver",
            nic('nameservers: {addresses: ["192.0.2.53§"]}'),
            "network.ethernets.e0.nameservers.addresses[0]",
        ),
        ("search", nic('nameservers: {search: ["example§.org"]}'), "network.ethernets.e0.nameservers.search[0]"),
        (
            "bond-primary",
            f'network: {{ethernets: {{e0: {{match: {{macaddress: "{MAC}"}}}}}}, bonds: {{bond0: '
            '{interfaces: [e0], parameters: {primary: "e0§"}}}}\n',
            "network.bonds.bond0.parameters.primary",
        ),
        (
            "vlan-link",
            f'network: {{ethernets: {{e0: {{match: {{macaddress: "{MAC}"}}}}}}, vlans: {{e0.5: '
            '{id: 5, link: "e0§"}}}\n',
            "network.vlans.e0.5.link",
        ),
    ]
    for field, template, path in fields:
        head = "" if field in ("instance_id", "hostname") else HEAD
        for name in (
            ("LF", "NUL", "NEL", "LS", "CR", "TAB", "ESC", "DEL") if field == "hostname" else ("LF", "NUL", "NEL", "LS")
        ):
            body = template.replace("§", CONTROL_CHARS[name])
            yield refused("control-char", f"{field}-{name}", body, path, head=head)
    for field, body, path in (
        ("hostname", 'hostname: "hostile\\n"\n', "hostname"),
        ("instance_id", 'instance_id: "iid\\n"\n', "instance_id"),
        (
            "content_type",
            'user_data_parts: [{content_type: "text/plain\\n", content: x}]\n',
            "user_data_parts[0].content_type",
        ),
        ("set-name", nic('set-name: "eth0\\n"'), "network.ethernets.e0.set-name"),
    ):
        head = "instance_id: i\n" if field == "hostname" else "hostname: h\n" if field == "instance_id" else HEAD
        yield refused("control-char", f"{field}-trailing-newline", body, path, head=head)
    yield legal("control-char", "key-trailing-newline-stripped", f"ssh_authorized_keys:\n  - |\n    {ED25519}\n")
    yield legal(
        "control-char",
        "payload-keeps-them",
        'user_data: "#!/bin/sh\\r\\n\\0\\e\\x85\\u2028"\n'
        'files: [{path: /x, content: "\\0\\r\\n"}]\nmeta: {k: "line\\nbreak"}\n',
    )
    yield refused(
        "control-char",
        "filename-dotdot",
        "user_data_parts: [{content_type: text/plain, content: x, filename: '..'}]\n",
        "user_data_parts[0].filename",
    )
    yield refused(
        "control-char",
        "filename-spaces",
        "user_data_parts: [{content_type: text/plain, content: x, filename: ' a '}]\n",
        "user_data_parts[0].filename",
    )
    yield refused("control-char", "lone-surrogate", "meta: {k: '\udc80'}\n", "")


def special_files() -> Iterator[Case]:
    for kind in (
        "fifo",
        "folder",
        "dev-zero",
        "dev-null",
        "symlink-to-fifo",
        "socket",
        "missing",
        "symlink-loop",
        "sparse-64MiB+1",
    ):
        yield Case("special-file", kind, lambda: b"", ("<file>",), special=kind)


def limits() -> Iterator[Case]:
    def keys(count: int) -> str:
        raw = base64.b64decode(ED25519.split()[1])
        lines = [f"ssh-ed25519 {base64.b64encode(raw[:-2] + i.to_bytes(2, 'big')).decode()}" for i in range(count)]
        return "ssh_authorized_keys:\n" + "".join(f"  - {line}\n" for line in lines)

    spec_bytes = 64 * MIB
    yield Case("limit", "spec-64MiB", spec_of_exact_size(spec_bytes), None)
    yield Case("limit", "spec-64MiB+1", spec_of_exact_size(spec_bytes + 1), ("",))
    yield legal("limit", "keys-100", keys(100))
    yield refused("limit", "keys-101", keys(101), "ssh_authorized_keys")
    yield legal("limit", "meta-128", "meta: {" + ", ".join(f"k{i}: v" for i in range(128)) + "}\n")
    yield refused("limit", "meta-129", "meta: {" + ", ".join(f"k{i}: v" for i in range(129)) + "}\n", "meta")
    yield legal("limit", "meta-255", f"meta: {{{'k' * 255}: {'v' * 255}}}\n")
    yield refused("limit", "meta-value-256", f"meta: {{k: {'v' * 256}}}\n", "meta.k")
    yield refused("limit", "meta-key-256", f"meta: {{{'k' * 256}: v}}\n", "meta")
    files = "files:\n" + "".join(f"  - {{path: /f/{i}, content: x}}\n" for i in range(257))
    yield legal("limit", "files-256", files.rsplit("  - ", 1)[0])
    yield refused("limit", "files-257", files, "files")
    parts = "user_data_parts:\n" + "".join(f"  - {{content_type: text/plain, content: p{i}}}\n" for i in range(65))
    yield legal("limit", "parts-64", parts.rsplit("  - ", 1)[0])
    yield refused("limit", "parts-65", parts, "user_data_parts")

    def ethernets(count: int, extra: str = "") -> str:
        return "network:\n  ethernets:\n" + "".join(
            f"    e{i}: {{match: {{macaddress: '52:54:00:00:{i // 256:02x}:{i % 256:02x}'}}{extra}}}\n"
            for i in range(count)
        )

    yield legal("limit", "ethernets-64", ethernets(64, ", dhcp4: true"))
    yield refused("limit", "ethernets-65", ethernets(65), "network.ethernets")
    vlans = ethernets(1) + "  vlans:\n" + "".join(f"    e0.{i}: {{id: {i}, link: e0}}\n" for i in range(1, 258))
    yield legal("limit", "vlans-256", vlans.rsplit("    e0.257", 1)[0])
    yield refused("limit", "vlans-257", vlans, "network.vlans")
    addresses = [f"10.0.{i}.5/24" for i in range(65)]
    yield legal("limit", "addresses-64", nic(f"addresses: [{', '.join(addresses[:64])}]"))
    yield refused(
        "limit", "addresses-65", nic(f"addresses: [{', '.join(addresses)}]"), "network.ethernets.e0.addresses"
    )
    routes = [f"{{to: 172.16.{i}.0/24, via: 10.0.0.1}}" for i in range(65)]
    yield legal("limit", "routes-64", nic(f"addresses: [10.0.0.5/24]\nroutes: [{', '.join(routes[:64])}]"))
    yield refused(
        "limit",
        "routes-65",
        nic(f"addresses: [10.0.0.5/24]\nroutes: [{', '.join(routes)}]"),
        "network.ethernets.e0.routes",
    )
    servers = [f"10.0.0.{i}" for i in range(1, 18)]
    yield legal("limit", "nameservers-16", nic(f"nameservers: {{addresses: [{', '.join(servers[:16])}]}}"))
    yield refused(
        "limit",
        "nameservers-17",
        nic(f"nameservers: {{addresses: [{', '.join(servers)}]}}"),
        "network.ethernets.e0.nameservers.addresses",
    )
    many = "network:\n  ethernets:\n" + "".join(
        f"    e{i}: {{match: {{macaddress: '52:54:00:00:00:{i:02x}'}}, addresses: ["
        + ", ".join(f"10.{i}.{j}.5/24" for j in range(33 if i == 0 else 32))
        + "]}\n"
        for i in range(8)
    )
    yield refused("limit", "addresses-257-in-all", many, "network")
    yield legal("limit", "addresses-256-in-all", many.replace(", 10.0.32.5/24", ""))
    # 9 values before the list: the spec's mapping, 2 keys and values, user_data, its mapping, runcmd, the list
    runcmd = "user_data:\n  runcmd:\n" + "".join(f"    - c{i}\n" for i in range(LIMITS["values"] - 9))
    yield legal("limit", f"values-{LIMITS['values']}", runcmd)
    yield refused("limit", f"values-{LIMITS['values']}+1", runcmd + "    - one-more\n", "user_data.runcmd")
    yield legal("limit", "hostname-63", "", head=f"instance_id: i\nhostname: {'h' * 63}\n")
    yield refused("limit", "hostname-64", "", "hostname", head=f"instance_id: i\nhostname: {'h' * 64}\n")
    fqdn = "hostile" + ("." + "a" * 63) * 3 + "." + "b" * 53
    assert len(fqdn) == 253
    yield legal("limit", "fqdn-253", f"fqdn: {fqdn}\n")
    yield legal("limit", "fqdn-253-dot", f"fqdn: {fqdn}.\n")
    yield refused("limit", "fqdn-254", f"fqdn: {fqdn}x\n", "fqdn")
    yield refused("limit", "fqdn-label-64", f"fqdn: hostile.{'a' * 64}.org\n", "fqdn")
    yield refused("limit", "fqdn-two-dots", "fqdn: hostile.example.org..\n", "fqdn")
    yield legal("limit", "instance_id-255", "", head=f"instance_id: {'i' * 255}\nhostname: h\n")
    yield refused("limit", "instance_id-256", "", "instance_id", head=f"instance_id: {'i' * 256}\nhostname: h\n")
    yield legal(
        "limit", "filename-255", f"user_data_parts: [{{content_type: text/plain, content: x, filename: {'f' * 255}}}]\n"
    )
    yield refused(
        "limit",
        "filename-256",
        f"user_data_parts: [{{content_type: text/plain, content: x, filename: {'f' * 256}}}]\n",
        "user_data_parts[0].filename",
    )
    path = "/" + "/".join(["p" * 255] * 16)
    yield legal("limit", "path-4096", f"files: [{{path: {path}, content: x}}]\n")
    yield refused("limit", "path-4097", f"files: [{{path: {path}p, content: x}}]\n", "files[0].path")
    yield refused("limit", "path-name-256", f"files: [{{path: /etc/{'p' * 256}, content: x}}]\n", "files[0].path")
    yield legal("limit", "set-name-15", nic(f"set-name: {'n' * 15}"))
    yield refused("limit", "set-name-16", nic(f"set-name: {'n' * 16}"), "network.ethernets.e0.set-name")
    yield refused(
        "limit",
        "key-8193",
        f"ssh_authorized_keys: ['{ED25519} {'c' * (8193 - len(ED25519) - 1)}']\n",
        "ssh_authorized_keys[0]",
    )


def duplicate_keys() -> Iterator[Case]:
    yield refused("duplicate-key", "top-level", "hostname: again\n", "hostname")
    yield refused("duplicate-key", "meta", "meta: {a: 1, b: 2, a: 3}\n", "meta.a")
    yield refused("duplicate-key", "quoted-and-plain", "meta: {a: x, 'a': y}\n", "meta.a")
    yield refused(
        "duplicate-key",
        "ethernets",
        "network:\n  ethernets:\n    e0: {dhcp4: true}\n    e0: {dhcp6: true}\n",
        "network.ethernets.e0",
    )
    yield refused("duplicate-key", "user_data-nested", "user_data:\n  a: {b: 1, b: 2}\n", "user_data.a.b")
    yield refused(
        "duplicate-key", "merge-twice", "user_data:\n  x: &x {a: 1}\n  y: {<<: *x, <<: *x}\n", "user_data.y.<<"
    )
    yield refused("duplicate-key", "network-section", "network: {ethernets: {}, ethernets: {}}\n", "network.ethernets")
    yield legal("duplicate-key", "merge-overridden", "user_data:\n  x: &x {a: 1, b: 1}\n  y: {<<: *x, a: 2}\n")


def non_string_keys() -> Iterator[Case]:
    for name, key in (
        ("int", "1"),
        ("bool-yes", "yes"),
        ("bool-on", "on"),
        ("null", "~"),
        ("float", "1.5"),
        ("date", "2024-01-01"),
        ("list", "[a]"),
        ("map", "{a: b}"),
    ):
        yield refused("non-string-key", f"meta-{name}", f"meta: {{{key}: v}}\n", "meta")
        if name in ("int", "bool-on", "list"):
            yield refused("non-string-key", f"user_data-{name}", f"user_data: {{{key}: v}}\n", "user_data")
    yield refused("non-string-key", "ethernet-int", "network: {ethernets: {0: {dhcp4: true}}}\n", "network.ethernets")
    yield refused("non-string-key", "top-level-int", "1: x\n", "")
    yield legal("non-string-key", "quoted-ones", "meta: {'1': a, 'yes': b, '~': c}\n")


def integer_fields() -> Iterator[Case]:
    for name, value in (
        ("float", "1500.0"),
        ("bool", "true"),
        ("string", "'1500'"),
        ("exponent", "1e3"),
        ("inf", ".inf"),
        ("null", "~"),
    ):
        yield refused("integer", f"mtu-{name}", nic(f"mtu: {value}"), "network.ethernets.e0.mtu")
    yield legal("integer", "mtu-hex", nic("mtu: 0x5dc"))
    vlan = (
        f"network: {{ethernets: {{e0: {{match: {{macaddress: '{MAC}'}}}}}}, "
        "vlans: {e0.5: {id: {v}, link: e0}}}\n"
    )
    for name, value in (("float", "5.0"), ("bool", "true")):
        yield refused("integer", f"vlan-id-{name}", vlan.replace("{v}", value), "network.vlans.e0.5.id")
    route = nic("addresses: [10.0.0.5/24]\nroutes: [{to: 10.9.0.0/16, via: 10.0.0.1, metric: {v}}]")
    for name, value in (("float", "100.0"), ("bool", "false")):
        yield refused("integer", f"metric-{name}", route.replace("{v}", value), "network.ethernets.e0.routes[0].metric")
    yield refused(
        "integer",
        "miimon-float",
        f"network: {{ethernets: {{e0: {{match: {{macaddress: '{MAC}'}}}}}}, "
        "bonds: {bond0: {interfaces: [e0], parameters: {mii-monitor-interval: 1.5}}}}\n",
        "network.bonds.bond0.parameters.mii-monitor-interval",
    )


def _ssh(*fields: bytes) -> str:
    return base64.b64encode(b"".join(fields)).decode()


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _mpint(number: int, pad: bool = False) -> bytes:
    data = number.to_bytes(number.bit_length() // 8 + 1, "big")
    return _string(data if pad or len(data) == 1 or data[0] or data[1] & 0x80 else data[1:])


ECDSA_256 = (
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBORdsy+gxXdOlPn1T7WPsbPVWUp6eLMmtEbgpBmmipk4VzHYx7e0Q"
    "PAGZkbJaS+wRqhZkmJiIMA1fj/zTcG7FNM="
)
VALID_KEYS = {
    "ed25519": ED25519,
    "rsa-1024": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCp6awNABfMTSkk7FHCYormsR1ZWbUE1KbN6/xfXkcrl9C1bsydmiqz/4cGcJifs"
    "LT/1CKXKDPtUog+LOwXTHZrJxkmeS3ALfKdde4onmVFkNezVKCu665PGkkV04aIhng4+k4C2L7aTpt7Hbep1mwFpKoAIG46CHO/8wS46B"
    "sTaQ== r",
    "ecdsa-256": f"ecdsa-sha2-nistp256 {ECDSA_256} t@x",
    "ecdsa-384": "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBI/0WlEeQTUqZZrJVjMbHOB4LyZs"
    "nLHCRIdpwyNUCp6lSA7A7UM8Pqc3jvSVPbopiqU7h28VoozfLGp2fSUtHFqrZiC12tYBoBm0DU7yS+5NsFNWNnRt9Vr9DO3LQ7I2Dg==",
    "ecdsa-521": "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAF4JAMQvZigwQ5jUjxDEDDYNzaS"
    "ez6GN2PxGjviLKLt+q7AaTAeFIsFOLI7Pa5WdyOk96OSX4alKd1nPTDe3lljKgAJDnUcgM6BKZknVo5ECXrj2Rwy4FsbvMSRuwTph5U7u"
    "XWBjmV7LPc3UtqN7tbcKX3mj4FhlP2UH5/yS+iYzwMNWA== t@x",
    "dsa": "ssh-dss AAAAB3NzaC1kc3MAAACBAPwwKN+LpLmNc0Ze8cFAPYFFv43wqJarG8ppGVfkWsmArrmM14i98AdhJnRdbdsrM4bUJjUGaTvGgfS"
    "FI7YdGA0JScdkVi4vxe90HEwnkNJ1S+5HS/COHlVkutj3Mc5ZI6vRpdonDSNADtK1dxBUwr8VIrj0uDg71EmrXwhJlKKBAAAAFQDNiDgFkQ"
    "NwjyCfvpZETpaG55Q4mwAAAIBrXeYZbC46oHDpsBzn4g9QgFbc7dewatnOSvvyz+6hnx04vlsxg4Goc/ryElHxomtp5JI/QPw3vxMFqUvv"
    "Ym6FMPXQGXYRmz2p6FnR6tPcjD9DtGW6eM7zUQIR+mkpd9VQAaEAAmNzR+uby5zYYO+frT49YJ4dH761ihiqwmqB0gAAAIAdluxeMiDNfi"
    "QBkVDkjpQk4HKiImlnT0MgcyoF5S57K81yAiDIHn+6IXqYcz9VcLZ8bguG1O2OuKQACipnC4YDG1bdC7+z4zbUdF5zpCL3Yy2yoGlHhRLE"
    "f7A6NsUyLAHh2+vHBVvrWj5vBwhBtKFaR9Yos4+hD7woeycnnqtJDg== d",
    "sk-ed25519": "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmy"
    "MiDwGJD3OBF1lX2yAAAABHNzaDo= sk@x",
    "sk-ecdsa": "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAy"
    "NTYAAABBBORdsy+gxXdOlPn1T7WPsbPVWUp6eLMmtEbgpBmmipk4VzHYx7e0QPAGZkbJaS+wRqhZkmJiIMA1fj/zTcG7FNMAAAAEc3No"
    "Og== sk@x",
}


def bad_key_lines() -> dict[str, str]:
    """Key lines whose blob is wrong in one way each."""
    ed_pk = base64.b64decode(ED25519.split()[1])[-32:]
    ed, rsa, sk = _string(b"ssh-ed25519"), _string(b"ssh-rsa"), _string(b"sk-ssh-ed25519@openssh.com")
    n = int.from_bytes(base64.b64decode(VALID_KEYS["rsa-1024"].split()[1])[-128:], "big")
    point = base64.b64decode(ECDSA_256)[-65:]
    nist = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256")
    x, y = point[1:33], int.from_bytes(point[33:], "big")
    blobs: dict[str, tuple[Any, ...]] = {
        "ed25519-31-bytes": ("ssh-ed25519", ed, _string(ed_pk[:31])),
        "ed25519-33-bytes": ("ssh-ed25519", ed, _string(ed_pk + b"x")),
        "ed25519-length-without-data": ("ssh-ed25519", ed, (32).to_bytes(4, "big")),
        "ed25519-trailing-bytes": ("ssh-ed25519", ed, _string(ed_pk), b"junk"),
        "ed25519-huge-length": ("ssh-ed25519", b"\xff\xff\xff\xff", b"ssh-ed25519"),
        "ed25519-no-key": ("ssh-ed25519", ed),
        "empty-type": ("ssh-ed25519", b"\0\0\0\0"),
        "rsa-no-modulus": ("ssh-rsa", rsa, _mpint(65537)),
        "rsa-negative-exponent": ("ssh-rsa", rsa, _string(b"\x81"), _mpint(n)),
        "rsa-even-exponent": ("ssh-rsa", rsa, _mpint(65536), _mpint(n)),
        "rsa-512-bits": ("ssh-rsa", rsa, _mpint(65537), _mpint(n >> 512 | 1)),
        "rsa-leading-zero": ("ssh-rsa", rsa, _string(b"\0\x01\x00\x01"), _mpint(n)),
        "rsa-trailing-bytes": ("ssh-rsa", rsa, _mpint(65537), _mpint(n), b"x"),
        "ecdsa-wrong-curve": (
            "ecdsa-sha2-nistp256",
            _string(b"ecdsa-sha2-nistp256"),
            _string(b"nistp384"),
            _string(point),
        ),
        "ecdsa-off-curve": ("ecdsa-sha2-nistp256", nist, _string(point[:33] + (y + 1).to_bytes(32, "big"))),
        "ecdsa-compressed": ("ecdsa-sha2-nistp256", nist, _string(b"\x02" + x)),
        "ecdsa-short-point": ("ecdsa-sha2-nistp256", nist, _string(point[:-1])),
        "sk-no-application": ("sk-ssh-ed25519@openssh.com", sk, _string(ed_pk)),
        "sk-empty-application": ("sk-ssh-ed25519@openssh.com", sk, _string(ed_pk), _string(b"")),
        "dsa-g-out-of-range": ("ssh-dss", _string(b"ssh-dss"), _mpint(23), _mpint(11), _mpint(1), _mpint(4)),
        "unknown-type": ("ssh-foo", _string(b"ssh-foo")),
    }
    lines = {name: f"{kind} {_ssh(*fields)}" for name, (kind, *fields) in blobs.items()}
    lines.update(
        {
            "type-mismatch": f"ssh-rsa {ED25519.split()[1]}",
            "non-canonical-base64": "ssh-rsa " + _stray_padding_bits(VALID_KEYS["rsa-1024"].split()[1]),
            "bad-base64": "ssh-ed25519 AAAA*AAA",
            "options-prefix": f'command="id" {ED25519}',
        }
    )
    return lines


def _stray_padding_bits(blob: str) -> str:
    """The same bytes in base64 with the unused bits before ``==`` set (decoders ignore them)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert blob.endswith("==")
    return blob[:-3] + alphabet[alphabet.index(blob[-3]) | 0b1111] + "=="


def ssh_keys() -> Iterator[Case]:
    for name, line in VALID_KEYS.items():
        yield legal("ssh-key", f"valid-{name}", f"ssh_authorized_keys: ['{line}']\n")
    for name, line in bad_key_lines().items():
        yield refused("ssh-key", name, f"ssh_authorized_keys: ['{line}']\n", "ssh_authorized_keys[0]")
    yield refused(
        "ssh-key", "duplicate", f"ssh_authorized_keys: ['{ED25519}', '{ED25519} other']\n", "ssh_authorized_keys[1]"
    )


class _Raising(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iterating me")

    def __len__(self) -> int:
        return 1


class _Mtu(enum.IntEnum):
    JUMBO = 9000


class _Name(str):
    def __str__(self) -> str:
        return "not-what-you-think"


def library_data() -> Iterator[Case]:
    base = {"instance_id": "iid-hostile", "hostname": "hostile"}

    def circular_dict() -> Any:
        ud: dict[str, Any] = {}
        ud["self"] = ud
        return {**base, "user_data": ud}

    def circular_list() -> Any:
        items: list[Any] = []
        items.append([items])
        return {**base, "user_data": {"runcmd": items}}

    def circular_top() -> Any:
        spec: dict[str, Any] = dict(base)
        spec["meta"] = spec
        return spec

    def shared_bomb() -> Any:
        value: Any = "x"
        for _ in range(30):
            value = [value, value]
        return {**base, "user_data": {"k": value}}

    def deep() -> Any:
        value: Any = "x"
        for _ in range(100_000):
            value = [value]
        return {**base, "user_data": {"k": value}}

    def files_64mib() -> Any:
        content = "x" * (16 * MIB)
        return {
            **base,
            "files": [{"path": f"/f{i}", "content": content} for i in range(4)]
            + [{"path": "/one-more", "content": "x"}],
        }

    nic_data = {"match": {"macaddress": MAC}, "mtu": _Mtu.JUMBO}
    cases: list[tuple[str, Callable[[], Any], tuple[str, ...] | None]] = [
        ("circular-dict", circular_dict, ("user_data.self",)),
        ("circular-list", circular_list, ("user_data.runcmd[0][0]",)),
        ("circular-top", circular_top, ("meta",)),
        ("shared-2**30", shared_bomb, ("user_data.k",)),
        ("deep-100000", deep, ("user_data.k",)),
        ("mapping-proxy", lambda: MappingProxyType({**base, "meta": MappingProxyType({"a": "b"})}), None),
        ("ordered-dict", lambda: OrderedDict(base), None),
        ("str-subclass", lambda: {_Name("instance_id"): _Name("iid-x"), "hostname": _Name("h")}, None),
        ("user-string", lambda: {**base, "meta": {UserString("k"): UserString("v")}}, None),
        ("tuples", lambda: {**base, "ssh_authorized_keys": (ED25519,), "user_data": {"runcmd": (("a", "b"),)}}, None),
        ("int-enum", lambda: {**base, "network": {"ethernets": {"e0": nic_data}}}, None),
        ("surrogate-value", lambda: {**base, "meta": {"k": "\udc80"}}, ("meta.k",)),
        ("surrogate-key", lambda: {**base, "user_data": {"\ud800": 1}}, ("user_data",)),
        ("surrogate-payload", lambda: {**base, "user_data": "#!/bin/sh\n\udc80"}, ("user_data",)),
        ("bytes-value", lambda: {**base, "user_data": b"#!/bin/sh\n"}, ("user_data",)),
        ("set-value", lambda: {**base, "user_data": {"packages": {"a", "b"}}}, ("user_data.packages",)),
        ("raising-mapping", lambda: {**base, "meta": _Raising()}, ("meta",)),
        (
            "complex-mtu",
            lambda: {**base, "network": {"ethernets": {"e0": {"mtu": 1 + 2j}}}},
            ("network.ethernets.e0.mtu",),
        ),
        (
            "nan-mtu",
            lambda: {**base, "network": {"ethernets": {"e0": {"mtu": float("nan")}}}},
            ("network.ethernets.e0.mtu",),
        ),
        ("huge-int", lambda: {**base, "user_data": {"n": 10**5000}}, ("user_data.n",)),
        ("bool-key", lambda: {**base, "meta": {True: "v"}}, ("meta",)),
        ("object-value", lambda: {**base, "user_data": {"o": object()}}, ("user_data.o",)),
        ("date-subclass", lambda: {**base, "user_data": {"d": _Date(2024, 1, 1)}}, ("user_data.d",)),
        ("files-64MiB+1", files_64mib, ("files",)),
        ("not-a-mapping", lambda: ["instance_id", "hostname"], ("",)),
    ]
    for name, make, expect in cases:
        yield Case("library-data", name, make, expect)


class _Date(datetime.date):
    pass


def all_cases() -> list[Case]:
    cases = [
        case
        for group in (
            alias_bombs,
            nesting,
            huge_scalars,
            odd_tags,
            control_characters,
            special_files,
            limits,
            duplicate_keys,
            non_string_keys,
            integer_fields,
            ssh_keys,
            library_data,
        )
        for case in group()
    ]
    assert len({case.id for case in cases}) == len(cases), "case names must be unique"
    return cases


CASES = all_cases()
LABELS = {form.label.lower() for form in REGISTRY.values()}
BY_ID = {case.id: case for case in CASES}


# --- running one case (in a forked child of a worker) --------------------------------------------


def make_special(kind: str, folder: Path) -> Path:
    path = folder / "spec.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind in ("dev-zero", "dev-null"):
        path.symlink_to(f"/dev/{kind[4:]}")
    elif kind == "symlink-to-fifo":
        os.mkfifo(folder / "fifo")
        path.symlink_to(folder / "fifo")
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))  # kept open until the child exits
        make_special.keep = server  # type: ignore[attr-defined]
    elif kind == "symlink-loop":
        path.symlink_to(path)
    elif kind == "sparse-64MiB+1":
        with open(path, "wb") as out:
            out.truncate(64 * MIB + 1)
    return path


def paths_named(expect: tuple[str, ...], named: Callable[[str], bool]) -> list[str]:
    return [path for path in expect if named(path)]


def path_matches(expected: str, actual: str) -> bool:
    return actual == expected or (expected != "" and actual.startswith((expected + ".", expected + "[")))


def run_case(case: Case, folder: Path) -> dict[str, Any]:
    """Every command on one case; a plain dict of what happened (the parent asserts)."""
    from configdrive import cli
    from configdrive.errors import FormatError, SpecError
    from configdrive.seed import build_seed
    from configdrive.spec import load_spec

    ops: list[dict[str, Any]] = []
    source = case.make()
    is_text = isinstance(source, bytes)
    if case.special:
        spec_path = make_special(case.special, folder)
    elif is_text:
        spec_path = folder / "spec.yaml"
        spec_path.write_bytes(source)
    existing = folder / "existing.iso"
    existing.write_bytes(b"old image")
    before = existing.stat()

    if case.special or is_text:
        commands = [["build", str(spec_path), "-o", str(folder / f"new-{fmt}.iso"), "--format", fmt] for fmt in FORMATS]
        commands += [
            ["build", str(spec_path), "-o", str(existing), "--format", FORMATS[0]],
            ["validate", str(spec_path)],
        ]
        for argv in commands:
            out, err = io.StringIO(), io.StringIO()
            start = time.perf_counter()
            crash = None
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = cli.main(argv)
            except BaseException:  # noqa: B036 - a traceback is the finding
                code, crash = -1, traceback.format_exc()
            seconds = time.perf_counter() - start
            stderr = err.getvalue() + out.getvalue()
            target = Path(argv[3]) if argv[0] == "build" else None
            op: dict[str, Any] = {
                "op": " ".join(["cli", argv[0], *argv[5:]]) + (" existing" if target == existing else ""),
                "code": code,
                "seconds": seconds,
                "crash": crash,
                "traceback": "Traceback" in stderr,
                "stderr": stderr[:2000],
                "stderr_chars": len(stderr),
            }
            if case.expect is not None:
                op["named"] = [p for p in case.expect if named_in_cli(p, stderr, str(spec_path))]
            elif code == 2:  # a legal spec a format refuses: every problem names that format
                problems = [line.strip() for line in stderr.splitlines()[1:]]
                op["format_only"] = bool(problems) and all(
                    line.count(": ") >= 2 and line.split(": ", 2)[1].split(":")[0] in FORMATS for line in problems
                )
            if target is not None and target != existing:
                op["created"] = target.exists()
                if target.exists() and code == 0:
                    op["label"] = iso_label(target)
                    target.unlink()
            if target == existing:
                after = existing.stat()
                op["changed"] = (after.st_ino, after.st_mtime_ns, after.st_size) != (
                    before.st_ino,
                    before.st_mtime_ns,
                    before.st_size,
                ) and code != 0
            op["leftovers"] = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
            ops.append(op)

    library: list[tuple[str, Callable[[], Any]]]
    if case.special:
        library = [("api load_spec", lambda: load_spec(spec_path))]
    else:
        library = [
            (f"api build_seed {fmt}", functools.partial(lambda f: build_seed(source, f).image, fmt)) for fmt in FORMATS
        ]
    for name, call in library:
        start = time.perf_counter()
        op = {"op": name, "crash": None, "paths": [], "outcome": "built"}
        try:
            call()
        except FormatError as err:
            op.update(
                outcome="format_error",
                paths=[p.path for p in err.problems][:50],
                format_only=all(p.message.split(":")[0] in FORMATS for p in err.problems),
            )
        except SpecError as err:
            op.update(
                outcome="spec_error",
                paths=[p.path for p in err.problems][:50],
                long_message=max(len(p.message) for p in err.problems) > 400,
            )
            if case.expect is not None:
                op["named"] = paths_named(
                    case.expect,
                    lambda p: (
                        any(path_matches(p, actual) for actual in [q.path for q in err.problems])
                        or (p == "<file>" and any("cannot read spec" in q.message for q in err.problems))
                    ),
                )
        except BaseException:  # noqa: B036 - a traceback is the finding
            op.update(outcome="exception", crash=traceback.format_exc()[-3000:])
        op["seconds"] = time.perf_counter() - start
        ops.append(op)
    return {"case": case.id, "ops": ops}


def iso_label(path: Path) -> str | None:
    """The volume label of an ISO 9660 image (its primary volume descriptor), None if it is not one.
    (read_iso would read every file: a config drive repeats a 16 MiB user_data 12 times.)"""
    with open(path, "rb") as image:
        image.seek(16 * 2048)
        descriptor = image.read(2048)
    return descriptor[40:72].decode("ascii").strip() if descriptor[1:6] == b"CD001" else None


def named_in_cli(path: str, stderr: str, spec_path: str) -> bool:
    if path == "<file>" or (path == "" and "larger than" in stderr):
        return spec_path in stderr
    shown = path or "<spec>"
    return any(
        line.lstrip().startswith((f"{shown}:", f"{shown}.", f"{shown}["))
        or f": {shown}:" in line
        or (path and (f": {path}." in line or f": {path}[" in line))
        for line in stderr.splitlines()
    )


def run_in_child(case: Case) -> dict[str, Any]:
    """Fork; run the case in the child; its report, seconds, and peak RSS growth (MiB)."""
    read_end, write_end = os.pipe()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        code = 0
        try:
            with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
                report = run_case(case, Path(folder))
            data = json.dumps(report).encode()
        except BaseException:  # noqa: B036
            data = json.dumps({"case": case.id, "error": traceback.format_exc()}).encode()
            code = 1
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        os._exit(code)
    os.close(write_end)
    chunks = []
    deadline = start + CASE_SECONDS
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.perf_counter()
            ready, _, _ = select.select([pipe], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(pipe.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    try:
        report = json.loads(b"".join(chunks))
    except ValueError:
        report = {
            "case": case.id,
            "error": f"no report (wait status {status}: "
            f"{'signal ' + signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else 'exit'})",
        }
    report.update(
        seconds=seconds, rss_growth_mib=max(0, usage.ru_maxrss - baseline) / 1024, peak_rss_mib=usage.ru_maxrss / 1024
    )
    return report


def worker(case_ids: list[str]) -> None:
    """Run the named cases, one forked child each; one JSON report per line on stdout."""
    import configdrive.cli
    import configdrive.iso
    import configdrive.seed
    import configdrive.spec
    import configdrive.specschema

    configdrive.specschema._validator()  # every child starts with jsonschema loaded, as a warm CLI would
    assert configdrive.cli and configdrive.iso and configdrive.seed and configdrive.spec
    for case_id in case_ids:
        print(json.dumps(run_in_child(BY_ID[case_id])), flush=True)


def limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    """Every case's report: ``WORKERS`` worker processes at a time, each a share of the cases."""
    shares = [[case.id for case in CASES[i :: WORKERS * 2]] for i in range(WORKERS * 2)]
    results: dict[str, dict[str, Any]] = {}
    running: list[tuple[subprocess.Popen[str], list[str]]] = []
    code = "import sys, tests.test_hostile as h; h.worker(sys.argv[1:])"
    for share in shares:
        while len(running) >= WORKERS:
            _collect(running.pop(0), results)
        running.append(
            (
                subprocess.Popen(
                    [sys.executable, "-c", code, *share],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=limit_address_space,
                ),
                share,
            )
        )
    while running:
        _collect(running.pop(0), results)
    return results


def _collect(job: tuple[subprocess.Popen[str], list[str]], results: dict[str, dict[str, Any]]) -> None:
    process, share = job
    stdout, _ = process.communicate(timeout=CASE_SECONDS * len(share))
    for line in stdout.splitlines():
        report = json.loads(line)
        results[report["case"]] = report
    for case_id in share:
        results.setdefault(case_id, {"case": case_id, "error": f"worker exited {process.returncode} first"})


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 200
    assert len({case.category for case in CASES}) >= 12


@pytest.mark.parametrize("case_id", list(BY_ID))
def test_hostile_input(case_id: str, reports: dict[str, dict[str, Any]]) -> None:
    case, report = BY_ID[case_id], reports[case_id]
    assert "error" not in report, report["error"]
    failures = [f"{op['op']}: {problem}" for op in report["ops"] for problem in op_problems(case, op)]
    assert report["rss_growth_mib"] < RSS_MIB, f"RSS grew by {report['rss_growth_mib']:.0f} MiB"
    assert not failures, "\n".join(failures)


def op_problems(case: Case, op: dict[str, Any]) -> Iterator[str]:
    """What is wrong with one command's outcome for this case."""
    if op.get("crash"):
        yield f"raised:\n{op['crash']}"
        return
    if op["seconds"] > OP_SECONDS:
        yield f"took {op['seconds']:.1f} s"
    if op["op"].startswith("cli"):
        if op["traceback"]:
            yield f"traceback on stderr:\n{op['stderr']}"
        if op["leftovers"]:
            yield f"left files behind: {op['leftovers']}"
        if op.get("changed"):
            yield "replaced the existing output file"
        legal_here = case.expect is None
        if legal_here and op["code"] == 0:
            if "created" in op and not (op["created"] and str(op["label"]).lower() in LABELS):
                yield f"exit 0 but no image with a seed label ({op.get('label')})"
            return
        if legal_here and op["op"].startswith("cli build") and op["code"] == 2:
            if not op["format_only"]:
                yield f"a legal spec refused:\n{op['stderr']}"
            return
        if legal_here:
            yield f"a legal spec: exit {op['code']}\n{op['stderr']}"
            return
        if op["code"] != 2:
            yield f"exit {op['code']}, not 2:\n{op['stderr']}"
        if op.get("created"):
            yield "created an output file for a refused spec"
        missing = set(case.expect or ()) - set(op["named"])
        if missing:
            yield f"does not name {sorted(missing)}:\n{op['stderr']}"
        return
    if op["outcome"] == "exception":
        yield "raised something that is not a ConfigDriveError"
    elif case.expect is None:
        if op["outcome"] == "spec_error" or (op["outcome"] == "format_error" and not op["format_only"]):
            yield f"a legal spec refused: {op['paths']}"
    else:
        if op["outcome"] != "spec_error":
            yield f"accepted ({op['outcome']}) instead of refusing"
        elif set(case.expect) - set(op["named"]):
            yield f"does not name {sorted(set(case.expect) - set(op['named']))}: {op['paths']}"
        elif op["long_message"]:
            yield "a problem message longer than 400 characters"


def representative_cases() -> list[Case]:
    """One refused case per category (its first), plus a legal one, for whole processes."""
    chosen: dict[str, Case] = {}
    for case in CASES:
        if case.category != "library-data" and case.expect is not None and "MiB" not in case.name:
            chosen.setdefault(case.category, case)
    return [*chosen.values(), BY_ID["ssh-key:valid-ecdsa-521"]]


@pytest.mark.parametrize("case", representative_cases(), ids=lambda case: case.id)
def test_cli_processes(case: Case, tmp_path: Path) -> None:
    """Whole ``python -m configdrive`` processes under RLIMIT_AS: exit status, stderr, no file."""
    spec = make_special(case.special, tmp_path) if case.special else tmp_path / "spec.yaml"
    if not case.special:
        spec.write_bytes(case.make())
    for argv in (["build", str(spec), "-o", str(tmp_path / "out.iso")], ["validate", str(spec)]):
        result = subprocess.run(
            [sys.executable, "-m", "configdrive", *argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            preexec_fn=limit_address_space,
        )
        assert "Traceback" not in result.stderr, result.stderr
        if case.expect is None:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode == 2, result.stderr
        for path in case.expect:
            assert named_in_cli(path, result.stderr + result.stdout, str(spec)), (path, result.stderr)
        assert not (tmp_path / "out.iso").exists()
    if case.expect is None:
        assert stat.S_ISREG((tmp_path / "out.iso").stat().st_mode)
