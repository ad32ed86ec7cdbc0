"""The watcher: keeps one seed ISO per VM in step with a spec store, and hands it to running qemu.

It sequences store -> spec -> render -> ISO -> output -> QMP and knows nothing of the formats.
As in Patroni's etcd KVCache: list the store and remember its revision, watch from there,
re-list on compaction, SIGHUP or a lost connection it cannot resume from; reconnect with
exponential backoff. A VM's ISO is rewritten only when its bytes change (by content digest),
always by rename (the complete old image or the complete new one, even after kill -9); an
invalid spec is logged with its field paths and the last good ISO stays.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from configdrive.errors import ConfigDriveError, Problem, QmpError, SpecError, StoreError
from configdrive.output import remove_file, write_file
from configdrive.qmp import QmpTarget
from configdrive.stores import VM_ID, Batch, SpecRecord, SpecStore

log = logging.getLogger(__name__)

#: Below this many specs to build, a full sync does not start worker processes.
POOL_THRESHOLD = 256


@dataclass(frozen=True)
class Result:
    """What rebuilding one VM's ISO did: ``written``, ``unchanged``, ``invalid`` or ``failed``."""

    vm_id: str
    revision: int
    outcome: str
    digest: bytes | None = None
    size: int = 0
    problems: tuple[Problem, ...] = ()
    error: str = ""
    instance_id: str = ""


def rebuild(vm_id: str, raw: bytes, revision: int, fmt: str, path: str,
            known_digest: bytes | None) -> Result:
    """Build ``vm_id``'s ISO and replace ``path`` unless its content is unchanged.

    ``known_digest`` None means "not built by this process yet": the file on disk is compared.
    A module-level function so that worker processes can run it during a large sync."""
    from configdrive.seed import build_seed

    try:
        seed = build_seed(raw, fmt, vm_id)
        data = seed.image
    except SpecError as err:
        return Result(vm_id, revision, "invalid", problems=tuple(err.problems))
    except ConfigDriveError as err:
        return Result(vm_id, revision, "failed", error=str(err))
    digest = _digest(data)
    if known_digest is None:
        known_digest = _file_digest(path)
    if digest == known_digest:
        return Result(vm_id, revision, "unchanged", digest, len(data), instance_id=seed.instance_id)
    try:
        write_file(path, data)
    except ConfigDriveError as err:
        return Result(vm_id, revision, "failed", error=str(err))
    return Result(vm_id, revision, "written", digest, len(data), instance_id=seed.instance_id)


def _rebuild_args(args: tuple[str, bytes, int, str, str, bytes | None]) -> Result:
    return rebuild(*args)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _file_digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return _digest(handle.read())
    except OSError:
        return None


class Backoff:
    """Exponential delays with jitter between ``base`` and ``cap`` seconds; ``reset`` on success."""

    def __init__(self, base: float = 0.1, cap: float = 10.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2 ** self.failures)
        self.failures += 1
        return float(delay * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.failures = 0


class Watcher:
    """Keeps ``out_dir/<vm-id>.iso`` in step with ``store``; ``run()`` until ``request_stop()``."""

    def __init__(self, store: SpecStore, out_dir: str | os.PathLike[str], fmt: str = "nocloud",
                 keep_deleted: bool = False, qmp_targets: Mapping[str, QmpTarget] | None = None,
                 jobs: int = 1, progress_every: float = 2.0) -> None:
        self.store = store
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.keep_deleted = keep_deleted
        self.qmp_targets = dict(qmp_targets or {})
        self.jobs = max(1, jobs)
        self.progress_every = progress_every
        self.counts: Counter[str] = Counter()
        self.revision = 0  # the store revision everything up to which has been applied
        self._built: dict[str, tuple[int, bytes]] = {}  # vm_id -> (spec revision, ISO digest)
        self._instance_ids: dict[str, str] = {}  # vm_id -> instance id of the ISO last built
        self._stop = threading.Event()
        self._resync = threading.Event()

    def iso_path(self, vm_id: str) -> Path:
        return self.out_dir / f"{vm_id}.iso"

    def request_stop(self) -> None:
        """Finish the VM at hand and return from ``run`` (safe to call from a signal handler)."""
        self._stop.set()

    def request_resync(self) -> None:
        """List the whole store again at the next opportunity (SIGHUP)."""
        self._resync.set()

    # --- the loop ------------------------------------------------------------------------

    def run(self, once: bool = False) -> None:
        """Full sync (unless ``sync()`` already ran), then apply changes as they come; with
        ``once``, the sync only."""
        try:
            self.out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create {self.out_dir}: {err.strerror}") from err
        if once:
            self.sync("initial sync")
            return
        backoff = Backoff()
        why: str | None = "initial sync" if not self.revision else None
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
                log.warning("store %s unavailable (%s); retrying in %.1f s",
                            self.store.url, err, delay)
                self._stop.wait(delay)
        log.info("stopped at revision %d", self.revision)

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
                if self._stop.is_set() or self._resync.is_set():
                    return True
        return True

    # --- full sync -----------------------------------------------------------------------

    def sync(self, why: str = "resync") -> None:
        """List the store; build every VM whose revision this watcher has not built; remove the
        ISOs of VMs that are gone (unless keeping them) and temp files a crash left behind."""
        started = time.monotonic()
        snapshot = self.store.list()
        records = snapshot.records
        todo = [r for r in records.values() if self._built.get(r.vm_id, (None,))[0] != r.revision]
        log.info("%s: %d specs at revision %d, %d to build", why, len(records),
                 snapshot.revision, len(todo))
        done, last_report = 0, time.monotonic()
        for result in self._rebuild_all(todo):
            self._record(result, "new spec" if result.vm_id not in self._built else why,
                         quiet=why == "initial sync")
            done += 1
            if time.monotonic() - last_report >= self.progress_every:
                last_report = time.monotonic()
                log.info("%s: %d/%d built", why, done, len(todo))
            if self._stop.is_set():
                log.info("%s interrupted after %d/%d", why, done, len(todo))
                return
        self._remove_orphans(set(records))
        self.revision = snapshot.revision
        log.info("%s done: %d specs in %.2f s (%s)", why, len(records),
                 time.monotonic() - started, _summary(self.counts))

    def _rebuild_all(self, records: list[SpecRecord]) -> Iterator[Result]:
        jobs = [(r.vm_id, r.raw, r.revision, self.fmt, str(self.iso_path(r.vm_id)),
                 self._digest_of(r.vm_id)) for r in records]
        if self.jobs == 1 or len(jobs) < POOL_THRESHOLD:
            yield from map(_rebuild_args, jobs)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the etcd client runs gRPC threads that a fork would copy mid-flight.
        with ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                yield from pool.map(_rebuild_args, jobs, chunksize=16)
            finally:
                pool.shutdown(cancel_futures=True)

    def _remove_orphans(self, present: set[str]) -> None:
        try:
            names = os.listdir(self.out_dir)
        except OSError as err:
            log.error("cannot list %s: %s", self.out_dir, err.strerror)
            return
        for name in names:
            if name.startswith(".") and name.endswith(".tmp") and ".iso." in name:
                self._remove(self.out_dir / name, "temp file left by an interrupted write")
            stem, _, suffix = name.rpartition(".")
            if suffix == "iso" and VM_ID.match(stem) and stem not in present:
                self._built.pop(stem, None)
                if not self.keep_deleted:
                    self._remove(self.out_dir / name, "spec no longer in the store")

    # --- changes -------------------------------------------------------------------------

    def apply(self, batch: Batch) -> None:
        """Apply a watch batch: only the last change of each VM counts."""
        latest = {change.vm_id: change for change in batch.changes}
        for change in latest.values():
            if change.raw is None:
                self._built.pop(change.vm_id, None)
                self.counts["deleted"] += 1
                if self.keep_deleted:
                    log.info("%s: spec deleted at revision %d; keeping its ISO",
                             change.vm_id, change.revision)
                else:
                    self._remove(self.iso_path(change.vm_id),
                                 f"spec deleted at revision {change.revision}")
                continue
            result = rebuild(change.vm_id, change.raw, change.revision, self.fmt,
                             str(self.iso_path(change.vm_id)), self._digest_of(change.vm_id))
            self._record(result, "spec changed" if change.vm_id in self._built else "new spec")

    def _digest_of(self, vm_id: str) -> bytes | None:
        built = self._built.get(vm_id)
        return built[1] if built else None

    def _record(self, result: Result, why: str, quiet: bool = False) -> None:
        self.counts[result.outcome] += 1
        vm_id = result.vm_id
        if result.outcome == "invalid":
            # Paths only: a problem's message may quote the offending value (a key, user-data).
            log.warning("%s: invalid spec at revision %d (%s), keeping the last good ISO; "
                        "problems at: %s", vm_id, result.revision, why,
                        ", ".join(p.path or "<spec>" for p in result.problems))
            log.debug("%s: problems: %s", vm_id, "; ".join(map(str, result.problems)))
            return
        if result.outcome == "failed":
            log.error("%s: rebuild failed at revision %d (%s): %s", vm_id, result.revision, why,
                      result.error)
            return
        assert result.digest is not None
        self._built[vm_id] = (result.revision, result.digest)
        previous_iid = self._instance_ids.get(vm_id)
        self._instance_ids[vm_id] = result.instance_id
        if result.outcome == "unchanged":
            log.debug("%s: %s at revision %d, ISO content unchanged", vm_id, why, result.revision)
            return
        log.log(logging.DEBUG if quiet else logging.INFO, "%s: rebuilt %s (%s, revision %d, %d bytes)", vm_id,
                self.iso_path(vm_id).name, why, result.revision, result.size)
        # Users expect a changed seed to take effect; cloud-init re-applies per-instance config
        # (keys, network, runcmd) only when the instance id changes, so say which case this is.
        if previous_iid == result.instance_id:
            log.warning("%s: seed changed but its instance id %r did not: cloud-init will not re-run "
                        "per-instance config (keys, network, runcmd) on the next boot; change "
                        "instance_id for that", vm_id, result.instance_id)
        elif previous_iid is not None:
            log.info("%s: new instance id %r (was %r): cloud-init will treat the next boot as a new "
                     "instance", vm_id, result.instance_id, previous_iid)
        self._swap(vm_id)

    def _swap(self, vm_id: str) -> None:
        target = self.qmp_targets.get(vm_id)
        if target is None:
            return
        from configdrive.qmp import change_medium

        path = str(self.iso_path(vm_id).resolve())
        try:
            change_medium(target, path)
        except QmpError as err:
            self.counts["swap failed"] += 1
            log.error("%s: hot-swap failed, the VM keeps its previous medium: %s", vm_id, err)
            return
        self.counts["swapped"] += 1
        log.info("%s: swapped the medium of %s via %s", vm_id, target.device, target.socket)

    def _remove(self, path: Path, why: str) -> None:
        try:
            if remove_file(path):
                self.counts["removed"] += 1
                log.info("removed %s (%s)", path.name, why)
        except ConfigDriveError as err:
            log.error("%s", err)


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to do"
