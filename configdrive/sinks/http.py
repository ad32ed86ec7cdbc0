"""The HTTP metadata sink: turns the follower's seeds into the service's tables.

The follower builds one seed per VM (its builder's format); the service serves both NoCloud-net
and the OpenStack/EC2 trees, so the other format is built here from the same validated spec
(``build_seed(seed.spec, ...)``: no second parse). A format the spec cannot express is not
served for that VM. A change that would take away a format the VM had keeps its last good
data, as an invalid spec does. Runs on the follower's thread; the tables change on the
service's event loop, through ``post``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from configdrive.errors import SpecError
from configdrive.seed import Seed, build_seed
from configdrive.serve.registry import SERVED_FORMATS, MetadataTables, VMData, vm_data
from configdrive.sinks import Sink

log = logging.getLogger(__name__)

#: How the sink reaches the event loop: ``loop.call_soon_threadsafe``, or a direct call in tests.
Post = Callable[..., Any]


class HttpSink(Sink):
    """Feeds ``tables`` (through ``post``); ``full_set(present)`` is called after each full sync."""

    def __init__(
        self, tables: MetadataTables, post: Post | None = None, full_set: Callable[[Iterable[str]], None] | None = None
    ) -> None:
        self.tables = tables
        self._post: Post = post or (lambda fn, *args: fn(*args))
        self._full_set = full_set
        self._formats: dict[str, frozenset[str]] = {}  # what each VM is served in (follower thread)

    def resumable(self) -> dict[str, str] | None:
        # The tables live in memory: after a restart every VM's seed is needed again.
        return {}

    def update(self, vm_id: str, seed: Seed, input_digest: str) -> None:
        data = self._data(vm_id, seed)
        if data is None:
            return
        self._formats[vm_id] = data.formats
        self._post(self.tables.put, vm_id, data)

    def remove(self, vm_id: str) -> None:
        self._formats.pop(vm_id, None)
        self._post(self.tables.remove, vm_id)

    def end_sync(self, present: frozenset[str] | None) -> None:
        if present is None:
            return
        for vm_id in set(self._formats) - present:
            del self._formats[vm_id]
        if self._full_set is not None:
            self._post(self._full_set, present)

    def _data(self, vm_id: str, seed: Seed) -> VMData | None:
        seeds = {seed.format.name: seed} if seed.format.name in SERVED_FORMATS else {}
        for fmt in SERVED_FORMATS:
            if fmt not in seeds:
                try:
                    seeds[fmt] = build_seed(seed.spec, fmt, vm_id)
                except SpecError as err:
                    # Paths only: a problem's message may quote a value (a key, user-data).
                    log.warning(
                        "%s: not served as %s: the spec cannot be expressed there (%s)",
                        vm_id,
                        fmt,
                        ", ".join(p.path or "<spec>" for p in err.problems),
                    )
        lost = self._formats.get(vm_id, frozenset()) - set(seeds)
        if lost:
            log.warning(
                "%s: the new spec cannot be served as %s any more; keeping its last good data",
                vm_id,
                ", ".join(sorted(lost)),
            )
            return None
        if not seeds:
            return None
        return vm_data(seeds)
