"""The image-folder sink: one ``<vm-id>.iso`` per VM in a folder that belongs to the watcher.

Every image goes to a temp file beside its name and is renamed over it (mode 0600, never through
a symlink, never over anything but a regular file), so a reader or a starting qemu sees the
complete old image or the complete new one, even after kill -9. A full sync writes its temp
files first (up to CHUNK of them), makes them durable in one pass (one syncfs), renames them all
and syncs the folder once, instead of two syncs per image. An image is rewritten only when the
seed's digest changes. A write that fails (permissions, a full disk, a FIFO or folder in the way)
is retried with backoff until it succeeds, logged when its state changes.
``.configdrive-state.json`` remembers which input each image was built from and which file it
was written to, so a restart rebuilds only what changed.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from configdrive.errors import ConfigDriveError, InputError, OutputError
from configdrive.inputs import read_regular_file
from configdrive.output import (
    SYNCFS_FROM,
    Signature,
    commit_at,
    remove_file,
    remove_stale_temps,
    stage_at,
    sync_all,
    sync_folder,
    write_file,
)
from configdrive.seed import Seed
from configdrive.sinks import Sink
from configdrive.stores import VM_ID
from configdrive.watch import Backoff

log = logging.getLogger(__name__)

#: Beside the images: what each was built from and which file it is.
STATE_NAME = ".configdrive-state.json"
STATE_VERSION = 1
#: Outside a full sync the state file is rewritten once changes pause for STATE_QUIET seconds,
#: and under constant churn every STATE_MAX_AGE seconds: rewriting 10,000 entries takes tens of
#: milliseconds that would delay the next change. A stale state only costs rebuilds at a restart:
#: an entry counts only while its image is still the very file it names.
STATE_QUIET = 2.0
STATE_MAX_AGE = 60.0
#: Longest pause between two tries of a failing write.
RETRY_CAP = 60.0
#: Temp files a full sync writes before it makes them durable and renames them: bounds the
#: seeds held for a retry (25 KiB each for a config drive) at the cost of one more fsync pass
#: and folder sync per this many images.
CHUNK = 500
#: New write failures logged one by one per pass before the rest are only counted (a folder that
#: cannot be written fails every VM at once).
SHOWN = 3


class ImageListener(Protocol):
    """Told about each image once it is in place (the QMP sink)."""

    def written(self, vm_id: str, path: Path) -> None: ...


@dataclass
class Entry:
    """One image as written: the input digest its seed came from, the seed's digest and
    instance id, and the file's signature."""

    input: str
    seed: str
    instance_id: str
    file: Signature


@dataclass
class _Staged:
    """A temp file written during a batch, waiting for the durability pass and its rename."""

    vm_id: str
    temp: str
    seed: Seed  # without its image (kept only to retry a failed commit)
    input: str
    file: Signature | None = None


@dataclass
class _Retry:
    seed: Seed
    input: str
    backoff: Backoff
    due: float
    error: str


class ImageDirSink(Sink):
    """Keeps ``out_dir/<vm-id>.iso``; ``counts`` has ``written``, ``unchanged``, ``removed``,
    ``write failed`` (tries) and ``unwritten`` (given up at close)."""

    def __init__(
        self, out_dir: str | os.PathLike[str], keep_deleted: bool = False, listeners: Iterable[ImageListener] = ()
    ) -> None:
        self.out_dir = Path(out_dir)
        self.keep_deleted = keep_deleted
        self.listeners = list(listeners)
        self.counts: Counter[str] = Counter()
        self._entries: dict[str, Entry] | None = None  # read from the state file on first use
        self._syncing = False
        self._staged: list[_Staged] = []
        self._retries: dict[str, _Retry] = {}
        self._dirty = False
        self._saved_at = self._changed_at = time.monotonic()
        self._ignored: set[str] = set()  # special files in the folder, logged once
        self._unshown: list[str] = []  # VMs whose new write failure this pass did not log
        self._shown = 0

    def path(self, vm_id: str) -> Path:
        return self.out_dir / f"{vm_id}.iso"

    # --- what an earlier run left ----------------------------------------------------------

    def resumable(self) -> dict[str, str]:
        """The input digest of each image that is still the file this sink wrote."""
        return {vm_id: e.input for vm_id, e in self._state().items() if self._is_ours(vm_id, e)}

    def current(self, vm_id: str) -> tuple[str, Path] | None:
        """The seed digest and path of ``vm_id``'s image in place, if this folder wrote it (for the
        advice sink, which reads the image the guest has before it is replaced)."""
        entry = self._state().get(vm_id)
        if entry is None or not self._is_ours(vm_id, entry):
            return None
        return entry.seed, self.path(vm_id)

    def _state(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = self._load_state()
        return self._entries

    def _load_state(self) -> dict[str, Entry]:
        path = self.out_dir / STATE_NAME
        try:
            document = json.loads(read_regular_file(path))
            if document.get("version") != STATE_VERSION:
                raise ValueError(f"version {document.get('version')!r}")
            return {
                vm_id: Entry(
                    str(e["input"]),
                    str(e["seed"]),
                    str(e["instance_id"]),
                    (int(e["file"][0]), int(e["file"][1]), int(e["file"][2])),
                )
                for vm_id, e in document["vms"].items()
                if VM_ID.match(vm_id)
            }
        except InputError as err:
            if not isinstance(err.__cause__, FileNotFoundError):
                log.warning("ignoring %s (%s): every image will be built", path, err)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            log.warning(
                "ignoring %s (not a state file of ours: %s): every image will be built", path, type(err).__name__
            )
        return {}

    def _is_ours(self, vm_id: str, entry: Entry) -> bool:
        return _signature(self.path(vm_id)) == entry.file

    # --- events ----------------------------------------------------------------------------

    def begin_sync(self) -> None:
        self._syncing = True
        try:
            self.out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            stale = remove_stale_temps(self.out_dir, "*.iso") + remove_stale_temps(self.out_dir, STATE_NAME)
        except (OSError, ConfigDriveError) as err:
            log.error("cannot prepare %s: %s", self.out_dir, err)
            return
        if stale:
            log.info("removed %d temp file(s) left by an interrupted write", len(stale))

    def update(self, vm_id: str, seed: Seed, input_digest: str) -> None:
        self._retries.pop(vm_id, None)  # the newest seed replaces one whose write failed
        if self._unchanged(vm_id, seed, input_digest):
            return
        self._stage(vm_id, seed, input_digest)
        if not self._syncing:
            self._commit(one_by_one=True)
        elif len(self._staged) >= CHUNK:
            self._commit()

    def remove(self, vm_id: str) -> None:
        self._retries.pop(vm_id, None)
        if self._state().pop(vm_id, None) is not None:
            self._touch()
        if self.keep_deleted:
            log.info("%s: spec deleted; keeping %s", vm_id, self.path(vm_id).name)
        else:
            self._remove(vm_id, "spec deleted")

    def end_sync(self, present: frozenset[str] | None) -> None:
        self._syncing = False
        self._commit()
        if present is not None:
            self._remove_orphans(present)
        self._save_state()

    def poll(self) -> None:
        now = time.monotonic()
        due = [(vm_id, r) for vm_id, r in self._retries.items() if r.due <= now]
        if due:
            for vm_id, retry in due:
                self._stage(vm_id, retry.seed, retry.input, retry)
            self._commit()
        if self._dirty and (now - self._changed_at >= STATE_QUIET or now - self._saved_at >= STATE_MAX_AGE):
            self._save_state()

    def close(self) -> None:
        if self._retries:
            self.counts["unwritten"] += len(self._retries)
            log.error("not written, still failing: %s", ", ".join(sorted(self._retries)))
        if self._dirty:
            self._save_state()

    # --- writing ---------------------------------------------------------------------------

    def _unchanged(self, vm_id: str, seed: Seed, input_digest: str) -> bool:
        """True when ``vm_id``'s image already holds ``seed`` (the state says so and the file is
        the one it names, or, without a state entry, the bytes are equal)."""
        entries = self._state()
        entry = entries.get(vm_id)
        path = self.path(vm_id)
        if entry is not None and entry.seed == seed.digest and self._is_ours(vm_id, entry):
            if entry.input != input_digest:
                entry.input = input_digest
                self._touch()
            self.counts["unchanged"] += 1
            log.debug("%s: image content unchanged", vm_id)
            return True
        if entry is None and (file := _signature(path)) is not None and file[1] == len(seed.image):
            try:
                same = read_regular_file(path, limit=len(seed.image)) == seed.image
            except InputError:
                same = False
            if same:
                entries[vm_id] = Entry(input_digest, seed.digest, seed.instance_id, file)
                self._touch()
                self.counts["unchanged"] += 1
                return True
        return False

    def _stage(self, vm_id: str, seed: Seed, input_digest: str, retry: _Retry | None = None) -> None:
        """Write ``seed``'s image to a temp file beside its name (not yet durable, not renamed)."""
        path = self.path(vm_id)
        try:
            dir_fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                # Refuses a FIFO, folder or device in the way before writing anything.
                temp = stage_at(dir_fd, path.name, seed.image, str(path))
            finally:
                os.close(dir_fd)
        except OSError as err:
            self._failed(vm_id, seed, input_digest, OutputError(f"write failed: {err.strerror}", str(path)), retry)
            return
        except ConfigDriveError as err:
            self._failed(vm_id, seed, input_digest, err, retry)
            return
        # Without its packed image: a sync must not hold all its images.
        self._staged.append(_Staged(vm_id, temp, replace(seed), input_digest))

    def _commit(self, one_by_one: bool = False) -> None:
        """Make the batch's temp files durable, rename each over its image, sync the folder once,
        then record and announce them (``configdrive.output``'s batched write, as
        ``write_files``): one syncfs for a batch of SYNCFS_FROM or more, else an fsync each."""
        batch, self._staged = self._staged, []
        if not batch:
            self._end_pass()
            return
        started = time.monotonic()
        try:
            dir_fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            for staged in batch:
                self._failed(
                    staged.vm_id,
                    staged.seed,
                    staged.input,
                    OutputError(f"cannot open the folder: {err.strerror}", str(self.out_dir)),
                )
            self._end_pass()
            return
        renamed: list[_Staged] = []
        try:
            synced = len(batch) >= SYNCFS_FROM and sync_all(dir_fd)
            for staged in batch:
                path = self.path(staged.vm_id)
                try:
                    staged.file = commit_at(dir_fd, staged.temp, path.name, str(path), synced=synced)
                except ConfigDriveError as err:  # the temp file is gone
                    self._failed(staged.vm_id, staged.seed, staged.input, err)
                    continue
                renamed.append(staged)
            try:
                sync_folder(dir_fd, str(self.out_dir))
            except ConfigDriveError as err:
                log.error("renamed %d image(s) in %s, but %s", len(renamed), self.out_dir, err)
        finally:
            os.close(dir_fd)
        entries = self._state()
        for staged in renamed:
            assert staged.file is not None
            entries[staged.vm_id] = Entry(staged.input, staged.seed.digest, staged.seed.instance_id, staged.file)
            retried = self._retries.pop(staged.vm_id, None)
            if retried is not None:
                log.info(
                    "%s: wrote %s after %d failed tries",
                    staged.vm_id,
                    self.path(staged.vm_id).name,
                    retried.backoff.failures,
                )
            elif one_by_one:
                log.info("%s: wrote %s (%d bytes)", staged.vm_id, self.path(staged.vm_id).name, staged.file[1])
            else:
                log.debug("%s: wrote %s (%d bytes)", staged.vm_id, self.path(staged.vm_id).name, staged.file[1])
        if renamed:
            self._touch()
        self.counts["written"] += len(renamed)
        if len(renamed) > 1:
            log.info(
                "wrote %d images in %.2f s (one durability pass, one folder sync)",
                len(renamed),
                time.monotonic() - started,
            )
        for staged in renamed:
            for listener in self.listeners:
                try:
                    listener.written(staged.vm_id, self.path(staged.vm_id))
                except Exception as err:  # noqa: BLE001 - a listener's bug must not undo the writes
                    log.error("%s: %s failed: %s: %s", staged.vm_id, type(listener).__name__, type(err).__name__, err)
        self._end_pass()

    def _failed(
        self, vm_id: str, seed: Seed, input_digest: str, err: ConfigDriveError, retry: _Retry | None = None
    ) -> None:
        """Schedule another try of ``vm_id``'s write; log only when the error is new."""
        self.counts["write failed"] += 1
        retry = retry or _Retry(replace(seed), input_digest, Backoff(base=0.5, cap=RETRY_CAP), 0.0, "")
        delay = retry.backoff.next()
        retry.due = time.monotonic() + delay
        if str(err) != retry.error:
            retry.error = str(err)
            if self._shown < SHOWN:
                self._shown += 1
                log.error(
                    "%s: cannot write its image, the guest keeps the previous one; retrying with "
                    "backoff (up to %.0f s): %s",
                    vm_id,
                    RETRY_CAP,
                    err,
                )
            else:
                self._unshown.append(vm_id)
        self._retries[vm_id] = retry

    def _end_pass(self) -> None:
        """Count the new failures of this pass that were not logged one by one."""
        if self._unshown:
            log.error(
                "cannot write the images of %d more VMs either (%s, ...); retrying with backoff",
                len(self._unshown),
                ", ".join(self._unshown[:SHOWN]),
            )
        self._unshown, self._shown = [], 0

    # --- removing --------------------------------------------------------------------------

    def _remove_orphans(self, present: frozenset[str]) -> None:
        """Forget, and unless keeping them remove, the images of VMs not in ``present``."""
        try:
            names = os.listdir(self.out_dir)
        except OSError as err:
            log.error("cannot list %s: %s", self.out_dir, err.strerror)
            return
        entries = self._state()
        for vm_id in [vm_id for vm_id in entries if vm_id not in present]:
            del entries[vm_id]
            self._touch()
        for name in names:
            stem, _, suffix = name.rpartition(".")
            if suffix != "iso" or not VM_ID.match(stem) or stem in present:
                continue
            self._retries.pop(stem, None)
            if not self.keep_deleted:
                self._remove(stem, "spec no longer in the store")

    def _remove(self, vm_id: str, why: str) -> None:
        path = self.path(vm_id)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as err:
            log.error("%s: cannot remove %s: %s", vm_id, path.name, err.strerror)
            return
        if not stat.S_ISREG(mode):
            if path.name not in self._ignored:
                self._ignored.add(path.name)
                log.warning("%s is not a regular file: not an image of ours, leaving it", path)
            return
        try:
            if remove_file(path):
                self.counts["removed"] += 1
                log.info("removed %s (%s)", path.name, why)
        except ConfigDriveError as err:
            log.error("%s", err)

    # --- the state file --------------------------------------------------------------------

    def _touch(self) -> None:
        self._dirty = True
        self._changed_at = time.monotonic()

    def _save_state(self) -> None:
        entries = self._state()
        document: dict[str, Any] = {
            "version": STATE_VERSION,
            "vms": {
                vm_id: {"input": e.input, "seed": e.seed, "instance_id": e.instance_id, "file": list(e.file)}
                for vm_id, e in sorted(entries.items())
            },
        }
        self._saved_at = time.monotonic()
        try:
            write_file(self.out_dir / STATE_NAME, json.dumps(document, separators=(",", ":")).encode())
        except ConfigDriveError as err:
            log.error("cannot save the state (a restart will rebuild more than it needs): %s", err)
            return
        self._dirty = False


def _signature(path: Path) -> Signature | None:
    """The signature of the regular file ``path`` (not followed if a symlink), else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns
