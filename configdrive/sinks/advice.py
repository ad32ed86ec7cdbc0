"""The advice sink: says whether cloud-init will act on a changed seed (its instance id did or did not change).

Users expect a changed seed to take effect; cloud-init re-applies per-instance config (keys,
network, runcmd) only when the instance id changes (NoCloud ``instance-id``, config drive
``uuid``), and a format whose reader ignores the seed's id never re-applies it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from configdrive.seed import Seed
from configdrive.sinks import Sink

log = logging.getLogger(__name__)


class AdviceSink(Sink):
    """Logs, for each seed whose content changed, what cloud-init will make of it at the next
    boot. ``seen`` is what each VM's guest was given before: ``{vm_id: (seed digest, instance id)}``."""

    def __init__(self, seen: Mapping[str, tuple[str, str]] | None = None) -> None:
        self._seen = dict(seen or {})

    def update(self, vm_id: str, seed: Seed, input_digest: str) -> None:
        previous = self._seen.get(vm_id)
        self._seen[vm_id] = (seed.digest, seed.instance_id)
        if previous is None or previous[0] == seed.digest:
            return
        fixed = seed.format.fixed_instance_id
        if fixed is not None:
            log.warning("%s: seed changed, but cloud-init gives every %s guest the instance id %r: it "
                        "will not re-run per-instance config (keys, network, runcmd) on the next boot",
                        vm_id, seed.format.name, fixed)
        elif previous[1] == seed.instance_id:
            log.warning("%s: seed changed but its instance id %r did not: cloud-init will not re-run "
                        "per-instance config (keys, network, runcmd) on the next boot; change "
                        "instance_id for that", vm_id, seed.instance_id)
        else:
            log.info("%s: new instance id %r (was %r): cloud-init will treat the next boot as a new "
                     "instance", vm_id, seed.instance_id, previous[1])

    def remove(self, vm_id: str) -> None:
        self._seen.pop(vm_id, None)

    def end_sync(self, present: frozenset[str] | None) -> None:
        if present is not None:
            self._seen = {vm_id: seen for vm_id, seen in self._seen.items() if vm_id in present}
