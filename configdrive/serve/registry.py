"""The live metadata tables: every VM's answers and claims, and the source-address index.

Owned by the server's event loop thread: the sink builds a VM's ``VMData`` wherever it runs
and hands it over (``put``, ``remove``); a request reads one dict entry.
Listeners learn when a VM appears or goes (the per-VM socket folder follows them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from configdrive.seed import Seed
from configdrive.serve.addresses import AddressIndex, Claims, address_claims, spec_claims
from configdrive.serve.tables import Table, build_table

NOCLOUD, CONFIGDRIVE = "nocloud", "configdrive"

#: The formats the service serves: NoCloud-net under /nocloud/, config-2 under /openstack/ and EC2.
SERVED_FORMATS = (NOCLOUD, CONFIGDRIVE)


@dataclass(frozen=True)
class VMData:
    """What the service answers for one VM, built when its spec changed."""

    table: Table
    claims: Claims
    formats: frozenset[str]


def vm_data(seeds: Mapping[str, Seed]) -> VMData:
    """A VM's data from its seeds by format name (a format missing: its paths are not served)."""
    if not seeds:
        raise ValueError("no seed to serve")
    nocloud, configdrive = seeds.get(NOCLOUD), seeds.get(CONFIGDRIVE)
    table = build_table(nocloud.tree if nocloud else None, configdrive.tree if configdrive else None)
    spec = next(iter(seeds.values())).spec
    return VMData(table, spec_claims(spec), frozenset(seeds))


Listener = Callable[[str, bool], None]


class MetadataTables:
    """vm id -> VMData, the address index over spec and lease claims, and change listeners."""

    def __init__(self) -> None:
        self.vms: dict[str, VMData] = {}
        self.index = AddressIndex()
        self._leases: dict[str, Claims] = {}
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call ``listener(vm_id, present)`` whenever a VM appears (True) or goes (False)."""
        self._listeners.append(listener)

    def put(self, vm_id: str, data: VMData) -> None:
        """Serve ``data`` for ``vm_id`` from now on."""
        new = vm_id not in self.vms
        self.vms[vm_id] = data
        self._index(vm_id)
        if new:
            self._notify(vm_id, True)

    def remove(self, vm_id: str) -> None:
        """Stop serving ``vm_id`` (its requests get 404 from now on)."""
        if self.vms.pop(vm_id, None) is None:
            return
        self.index.discard(vm_id)
        self._notify(vm_id, False)

    def set_leases(self, leases: Mapping[str, list[str]]) -> None:
        """Further addresses per VM (the leases file); replaces the previous set."""
        old = set(self._leases)
        self._leases = {vm_id: address_claims(addresses) for vm_id, addresses in leases.items()}
        for vm_id in old | set(self._leases):
            if vm_id in self.vms:
                self._index(vm_id)

    def vm_for_source(self, source: str) -> str | None:
        """The VM that source address ``source`` belongs to, if exactly one claims it."""
        return self.index.lookup(source)

    def _index(self, vm_id: str) -> None:
        claims = self.vms[vm_id].claims
        lease = self._leases.get(vm_id)
        self.index.set(vm_id, claims | lease if lease else claims)

    def _notify(self, vm_id: str, present: bool) -> None:
        for listener in self._listeners:
            listener(vm_id, present)
