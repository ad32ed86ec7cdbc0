"""The advice sink: logs, per rebuilt VM, what cloud-init will do at the next boot with the change.

Users expect a changed seed to take effect, but cloud-init applies most of a seed once per
instance id (see ``configdrive.changes``). For each VM whose seed changed, one line says which
changed fields the guest applies at its next boot, which only with a new instance id and which
never: the same verdicts as ``configdrive diff``, and never a value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from configdrive.changes import Verdict, compare
from configdrive.errors import ConfigDriveError
from configdrive.seed import Seed
from configdrive.sinks import Sink

log = logging.getLogger(__name__)

#: ``current(vm_id)``: the seed digest and path of the image the VM has now, or None.
CurrentImage = Callable[[str], "tuple[str, Path] | None"]


class AdviceSink(Sink):
    """Compares each new seed with the image in place (read back before the image sink replaces
    it: put this sink before that one) and logs the verdicts."""

    def __init__(self, current: CurrentImage) -> None:
        self._current = current

    def update(self, vm_id: str, seed: Seed, input_digest: str) -> None:
        found = self._current(vm_id)
        if found is None or found[0] == seed.digest or seed.format.fields is None:
            return
        from configdrive.iso import read_iso

        try:
            verdicts = compare(seed.format, read_iso(found[1]).files, seed.tree)
        except ConfigDriveError as err:
            log.debug("%s: cannot compare with the image in place: %s", vm_id, type(err).__name__)
            return
        if verdicts:
            log.log(logging.WARNING if _waiting(verdicts) else logging.INFO, "%s", advice(vm_id, seed, verdicts))


def _waiting(verdicts: list[Verdict]) -> bool:
    return any(v.applies != "next-boot" for v in verdicts)


def advice(vm_id: str, seed: Seed, verdicts: list[Verdict]) -> str:
    """One line: the VM, whether its instance id changed, and the changed fields by verdict."""
    by: dict[str, list[str]] = {}
    for v in verdicts:
        by.setdefault(v.applies, []).append(v.field)
    if any(v.field == "instance_id" and v.applies == "next-boot" for v in verdicts):
        identity = f"new instance id {seed.instance_id!r}: cloud-init treats the next boot as a new instance"
    elif seed.format.fixed_instance_id is not None:
        identity = f"cloud-init gives every {seed.format.name} guest the instance id {seed.format.fixed_instance_id!r}"
    else:
        identity = f"same instance id {seed.instance_id!r}"
    parts = [
        f"{label}: {', '.join(by[key])}"
        for key, label in (
            ("next-boot", "applied at next boot"),
            ("new-instance", "applied only with a new instance id"),
            ("never", "never applied"),
        )
        if key in by
    ]
    return f"{vm_id}: seed changed; {identity}; " + "; ".join(parts)
