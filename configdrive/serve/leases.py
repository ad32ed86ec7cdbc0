"""``--leases FILE``: further addresses per VM, for guests the spec does not give an address
(DHCPv4, or an address an orchestrator assigns). Re-read on SIGHUP.

The file is YAML or JSON, VM id -> one address or a list of them::

    web1: 10.0.0.23
    db1: [10.0.0.24, "2001:db8::24"]
"""

from __future__ import annotations

import os
from typing import Any

from configdrive.errors import InputError, ServeError, SpecError
from configdrive.serve.addresses import canonical
from configdrive.stores import VM_ID

#: A leases file is small; 16 MiB holds a million entries.
LEASES_LIMIT = 16 * 1024 * 1024


def read_leases(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """VM id -> canonical addresses; ServeError names every bad entry, InputError an unreadable file."""
    from configdrive.inputs import read_regular_file
    from configdrive.yamldoc import parse_document

    name = os.fspath(path)
    try:
        data = parse_document(read_regular_file(name, LEASES_LIMIT), name)
    except SpecError as err:
        raise ServeError(f"{name}: {err.problems[0].message}") from err
    except InputError:
        raise
    return parse_leases(data, name)


def parse_leases(data: Any, name: str = "leases") -> dict[str, list[str]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServeError(f"{name}: expected a mapping of VM id to addresses")
    leases: dict[str, list[str]] = {}
    problems = []
    for vm_id, value in data.items():
        if not isinstance(vm_id, str) or not VM_ID.match(vm_id):
            problems.append(f"{vm_id!r}: not a VM id")
            continue
        addresses = value if isinstance(value, list) else [value]
        good = []
        for address in addresses:
            try:
                if not isinstance(address, str):
                    raise ValueError(address)
                good.append(canonical(address))
            except ValueError:
                problems.append(f"{vm_id}: {address!r} is not an IP address")
        leases[vm_id] = good
    if problems:
        raise ServeError(f"{name}: " + "; ".join(problems))
    return leases
