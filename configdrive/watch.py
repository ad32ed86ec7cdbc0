"""The store follower: keeps each VM's built seed in step with a spec store and tells its sinks.

As in Patroni's etcd KVCache: list the store and remember its revision, watch from there,
re-list on compaction, SIGHUP or a gap it cannot resume from; back off exponentially while the
store is away. The follower knows no format and no image type: it calls ``build(raw, vm_id)``
and hands each new seed to its sinks (``configdrive.sinks``), which write, swap or serve it.

One VM's fault stays that VM's: any exception while building its seed (an invalid spec, or a
bug of ours such as TypeError, RecursionError or MemoryError) is caught here, logged once with
the VM id and a short reason (never spec values), and the VM keeps its last good seed while
every other VM keeps updating.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from configdrive.errors import ConfigDriveError, Problem, SpecError, StoreError
from configdrive.seed import Seed
from configdrive.stores import Batch, SpecStore

log = logging.getLogger(__name__)

#: Below this many specs to build, a full sync does not start worker processes: starting them
#: costs about half a second each (imports), as much as building a few hundred seeds.
POOL_THRESHOLD = 256
#: Specs per task sent to a worker process.
CHUNK = 16
#: Tasks in flight per worker process during a full sync: enough that the workers keep building
#: while the follower's thread waits on a sink (an image folder's durability pass takes a few
#: hundred milliseconds per 500 images), few enough to bound the packed images held in memory
#: (8 x 16 x ~72 KiB = 9 MiB per worker for NoCloud, ~4x that for a config drive).
AHEAD = 8


class Builder(Protocol):
    """What the follower calls to build one VM's seed (``configdrive.sinks.SeedBuilder``).

    ``key`` names everything besides the spec bytes that decides the seed (format, date,
    version): a spec whose bytes and key are unchanged needs no rebuild. A builder must be
    picklable to run in worker processes."""

    @property
    def key(self) -> str: ...

    def __call__(self, raw: bytes, vm_id: str) -> Seed: ...


class Sink:
    """What the follower feeds; subclasses override the events they care about (every one is
    accepted and ignored here). Called from the follower's thread only."""

    def resumable(self) -> dict[str, str] | None:
        """Input digests of the seeds this sink still holds from an earlier run, by VM id
        (None: this sink needs no seed it held before)."""
        return None

    def begin_sync(self) -> None:
        """A full sync starts: updates until ``end_sync`` may be batched."""

    def update(self, vm_id: str, seed: Seed, input_digest: str) -> None:
        """VM ``vm_id`` now has ``seed``, built from input ``input_digest``."""

    def remove(self, vm_id: str) -> None:
        """VM ``vm_id`` is gone."""

    def end_sync(self, present: frozenset[str] | None) -> None:
        """The full sync ended: ``present`` is every VM in the store (None: the sync was
        interrupted; forget nothing)."""

    def poll(self) -> None:
        """Called between watch batches (at least every half second): retry what failed."""

    def close(self) -> None:
        """The follower stops: finish or hand over what is pending."""


@dataclass(frozen=True)
class Failure:
    """Why one VM's seed could not be built: ``invalid`` (problems with field paths) or
    ``failed`` (``reason`` says what failed and where, never with spec values)."""

    kind: str
    reason: str
    problems: tuple[Problem, ...] = ()


@dataclass
class VMState:
    """What the follower holds for one VM: the revision last applied, the input digest of its
    current seed (the last good one), and the input whose build failed last (None once one
    succeeds). Not the seed itself: the sinks keep what they need of it (the image folder its
    file, a metadata service its tree), and 10,000 kept seeds would cost 65 MB (NoCloud) to
    250 MB (config drive)."""

    revision: int
    input_digest: str | None
    failed_input: str | None = None


def build_one(build: Builder, raw: bytes, vm_id: str) -> Seed | Failure:
    """``build(raw, vm_id)`` behind the per-VM boundary: every exception becomes a Failure.

    Module level so that worker processes can run it during a large sync."""
    try:
        return build(raw, vm_id)
    except SpecError as err:
        return Failure("invalid", "invalid spec", tuple(err.problems))
    except ConfigDriveError as err:
        # Our own errors name files and formats, not spec values; first line only.
        return Failure("failed", f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    except Exception as err:  # noqa: BLE001 - the per-VM boundary: a bug of ours must not stop the others
        return Failure("failed", f"internal error {_where(err)}")


def build_chunk(build: Builder, chunk: list[tuple[bytes, str]]) -> list[Seed | Failure]:
    """``build_one`` over ``(raw, vm_id)`` pairs: the unit of work of a worker process."""
    return [build_one(build, raw, vm_id) for raw, vm_id in chunk]


def _where(err: BaseException) -> str:
    """``TypeError at render/openstack.py:123``: the type and the innermost frame, not the
    message, which may quote a spec value."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return type(err).__name__
    frame = frames[-1]
    parts = Path(frame.filename).parts
    short = "/".join(parts[parts.index("configdrive") + 1 :] if "configdrive" in parts else parts[-2:])
    return f"{type(err).__name__} at {short}:{frame.lineno}"


class Backoff:
    """Exponential delays with jitter between ``base`` and ``cap`` seconds; ``reset`` on success."""

    def __init__(self, base: float = 0.1, cap: float = 10.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return float(delay * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.failures = 0


class Follower:
    """Follows ``store``, builds each VM's seed with ``build`` and feeds ``sinks``; ``run()``
    until ``request_stop()``."""

    def __init__(
        self, store: SpecStore, build: Builder, sinks: Sequence[Sink] = (), jobs: int = 1, progress_every: float = 2.0
    ) -> None:
        self.store = store
        self.build = build
        self.sinks = list(sinks)
        self.jobs = max(1, jobs)
        self.progress_every = progress_every
        self.counts: Counter[str] = Counter()
        self.revision = 0  # the store revision everything up to which has been applied
        self.vms: dict[str, VMState] = {}
        self._synced_once = False
        self._stop = threading.Event()
        self._resync = threading.Event()

    def request_stop(self) -> None:
        """Finish the VM at hand and return from ``run`` (safe to call from a signal handler)."""
        self._stop.set()

    def request_resync(self) -> None:
        """List the whole store again at the next opportunity (SIGHUP)."""
        self._resync.set()

    def input_digest(self, raw: bytes) -> str:
        """A digest of everything one seed is built from: the spec's bytes and the builder's key."""
        digest = hashlib.blake2b(self.build.key.encode(), digest_size=16)
        digest.update(b"\0")
        digest.update(raw)
        return digest.hexdigest()

    # --- the loop ------------------------------------------------------------------------

    def run(self, once: bool = False) -> None:
        """Full sync, then apply changes as they come (with ``once``, the sync only); the sinks
        are closed on the way out."""
        try:
            if once:
                self.sync("initial sync")
                return
            self._follow_until_stopped()
        finally:
            self._each_sink("close")
            log.info("stopped at revision %d", self.revision)

    def _follow_until_stopped(self) -> None:
        backoff = Backoff()
        why: str | None = None if self._synced_once else "initial sync"
        while not self._stop.is_set():
            try:
                if why or self._resync.is_set():
                    self._resync.clear()
                    self.sync(why or "resync (SIGHUP)")
                    why = None
                    backoff.reset()
                if not self._follow(backoff):
                    why = "resync after compaction"
            except StoreError as err:
                delay = backoff.next()
                log.warning("store %s unavailable (%s); retrying in %.1f s", self.store.url, err, delay)
                self._wait(delay)

    def _wait(self, seconds: float) -> None:
        """Sleep until stop, polling the sinks (their retries go on while the store is away)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, 0.5))
            self._each_sink("poll")

    def _follow(self, backoff: Backoff) -> bool:
        """Apply watch batches until stop, resync request or lost history; False to re-list."""
        with closing(self.store.watch(self.revision)) as batches:
            for batch in batches:
                backoff.reset()
                if batch.resync:
                    return False
                if batch.changes:
                    self.apply(batch)
                self.revision = max(self.revision, batch.revision)
                self._each_sink("poll")
                if self._stop.is_set() or self._resync.is_set():
                    return True
        return True

    # --- full sync -----------------------------------------------------------------------

    def sync(self, why: str = "resync") -> None:
        """List the store; build every VM whose input changed (at the first sync, whose seed
        no sink still holds from an earlier run); then tell the sinks the full set."""
        started = time.monotonic()
        snapshot = self.store.list()
        resumed = self._resumable() if not self._synced_once else {}
        todo: list[tuple[str, bytes, int, str]] = []
        skipped = 0
        for vm_id, record in snapshot.records.items():
            digest = self.input_digest(record.raw)
            state = self.vms.get(vm_id)
            if state is not None and digest == state.input_digest:
                state.revision, state.failed_input = record.revision, None
            elif state is None and resumed.get(vm_id) == digest:
                self.vms[vm_id] = VMState(record.revision, digest)
                skipped += 1
            else:
                todo.append((vm_id, record.raw, record.revision, digest))
        if skipped:
            self.counts["skipped"] += skipped
        log.info(
            "%s: %d specs at revision %d, %d to build%s",
            why,
            len(snapshot.records),
            snapshot.revision,
            len(todo),
            f" ({skipped} built by an earlier run)" if skipped else "",
        )
        self._each_sink("begin_sync")
        done, last_report, interrupted = 0, time.monotonic(), False
        try:
            for (vm_id, _raw, revision, digest), outcome in zip(todo, self._build_all(todo), strict=True):
                self._apply(vm_id, revision, digest, outcome, why)
                done += 1
                if time.monotonic() - last_report >= self.progress_every:
                    last_report = time.monotonic()
                    log.info("%s: %d/%d built", why, done, len(todo))
                if self._stop.is_set():
                    interrupted = True
                    log.info("%s interrupted after %d/%d", why, done, len(todo))
                    break
        finally:
            present = None if interrupted else frozenset(snapshot.records)
            self._each_sink("end_sync", present)
        if present is None:
            return
        for vm_id in set(self.vms) - present:
            del self.vms[vm_id]
        self.revision = max(self.revision, snapshot.revision)
        self._synced_once = True
        log.info(
            "%s done: %d specs in %.2f s (%s)",
            why,
            len(snapshot.records),
            time.monotonic() - started,
            _summary(self.counts),
        )

    def _resumable(self) -> dict[str, str]:
        """Input digests that every sink still holds from an earlier run (a sink answering None
        needs nothing; with no sink holding anything, nothing is skipped)."""
        answers = []
        for sink in self.sinks:
            try:
                answer = sink.resumable()
            except Exception as err:  # noqa: BLE001 - a sink's bug costs a rebuild, not the watcher
                log.error("%s: cannot tell what it holds (%s); rebuilding everything", type(sink).__name__, _where(err))
                return {}
            if answer is not None:
                answers.append(answer)
        if not answers:
            return {}
        common = dict(answers[0])
        for answer in answers[1:]:
            common = {vm_id: d for vm_id, d in common.items() if answer.get(vm_id) == d}
        return common

    def _build_all(self, todo: list[tuple[str, bytes, int, str]]) -> Iterator[Seed | Failure]:
        """Each VM's outcome in ``todo``'s order; in worker processes when there are many."""
        if self.jobs == 1 or len(todo) < POOL_THRESHOLD:
            for vm_id, raw, _revision, _digest in todo:
                yield build_one(self.build, raw, vm_id)
            return
        import multiprocessing
        from collections import deque
        from concurrent.futures import Future, ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        chunks = [
            [(raw, vm_id) for vm_id, raw, _revision, _digest in todo[i : i + CHUNK]] for i in range(0, len(todo), CHUNK)
        ]
        done = 0
        # spawn, not fork: the etcd client runs gRPC threads that a fork would copy mid-flight.
        with ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            # A few chunks ahead of the caller, not all: each outcome carries its packed image,
            # and workers that outran the writes would pile them up (pool.map submits everything).
            window: deque[Future[list[Seed | Failure]]] = deque()
            try:
                for chunk in chunks:
                    window.append(pool.submit(build_chunk, self.build, chunk))
                    if len(window) > AHEAD * self.jobs:
                        for outcome in window.popleft().result():
                            done += 1
                            yield outcome
                while window:
                    for outcome in window.popleft().result():
                        done += 1
                        yield outcome
            except BrokenProcessPool:
                log.error(
                    "a worker process died (killed, or crashed in a C extension); "
                    "building the remaining %d seeds in this process",
                    len(todo) - done,
                )
            finally:
                pool.shutdown(cancel_futures=True)
        for vm_id, raw, _revision, _digest in todo[done:]:
            yield build_one(self.build, raw, vm_id)

    # --- changes -------------------------------------------------------------------------

    def apply(self, batch: Batch) -> None:
        """Apply a watch batch: only the last change of each VM counts."""
        latest = {change.vm_id: change for change in batch.changes}
        for change in latest.values():
            if self._stop.is_set():
                return
            vm_id = change.vm_id
            if change.raw is None:
                self.vms.pop(vm_id, None)
                self.counts["deleted"] += 1
                log.info("%s: spec deleted at revision %d", vm_id, change.revision)
                self._each_sink("remove", vm_id, vm_id=vm_id)
                continue
            digest = self.input_digest(change.raw)
            state = self.vms.get(vm_id)
            if state is not None and digest == state.input_digest:
                if state.failed_input is not None:
                    log.info("%s: spec back to the input of its current seed", vm_id)
                state.revision, state.failed_input = change.revision, None
                continue
            why = "spec changed" if state is not None else "new spec"
            self._apply(vm_id, change.revision, digest, build_one(self.build, change.raw, vm_id), why)

    def _apply(self, vm_id: str, revision: int, digest: str, outcome: Seed | Failure, why: str) -> None:
        """Record one VM's build outcome and, for a seed, hand it to every sink."""
        state = self.vms.get(vm_id)
        if isinstance(outcome, Failure):
            self.counts[outcome.kind] += 1
            if state is None:
                state = self.vms[vm_id] = VMState(revision, None)
            # Once per input: a resync that meets the same bad spec again says it at DEBUG.
            level = logging.DEBUG if state.failed_input == digest else logging.WARNING
            state.revision, state.failed_input = revision, digest
            if outcome.kind == "invalid":
                # Paths only: a problem's message may quote the offending value (a key, user-data).
                log.log(
                    level,
                    "%s: invalid spec at revision %d (%s), keeping the last good seed; problems at: %s",
                    vm_id,
                    revision,
                    why,
                    ", ".join(p.path or "<spec>" for p in outcome.problems),
                )
                log.debug("%s: problems: %s", vm_id, "; ".join(map(str, outcome.problems)))
            else:
                log.log(
                    logging.DEBUG if level == logging.DEBUG else logging.ERROR,
                    "%s: cannot build the seed at revision %d (%s): %s; keeping the last good seed",
                    vm_id,
                    revision,
                    why,
                    outcome.reason,
                )
            return
        self.counts["built"] += 1
        log.debug("%s: built its seed (%s, revision %d)", vm_id, why, revision)
        self._each_sink("update", vm_id, outcome, digest, vm_id=vm_id)
        self.vms[vm_id] = VMState(revision, digest)

    def _each_sink(self, method: str, *args: object, vm_id: str | None = None) -> None:
        """Call ``method`` on every sink; a sink's exception is logged and stops neither the
        other sinks nor the follower."""
        for sink in self.sinks:
            call: Callable[..., object] = getattr(sink, method)
            try:
                call(*args)
            except Exception as err:  # noqa: BLE001 - the per-VM (and per-sink) boundary
                self.counts["sink failed"] += 1
                log.error("%s%s.%s failed: %s", f"{vm_id}: " if vm_id else "", type(sink).__name__, method, _where(err))


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to do"
