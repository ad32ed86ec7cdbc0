"""The QMP sink: hands each image the image folder wrote to the running qemu of its VM.

Each VM's swap runs in a thread of its own, so a qemu that is stopped (SIGSTOP), hung or gone
delays only its own VM: the swap gives up after ``timeout`` seconds per QMP step and is retried
with backoff, logged when its state changes. A seed attached as a read-only disk cannot be
swapped; the sink says when the guest will see the new one instead. The QMP client itself is
``configdrive.qmp``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from configdrive.errors import QmpError
from configdrive.qmp import DEFAULT_TIMEOUT, QmpTarget, change_medium
from configdrive.sinks import Sink
from configdrive.watch import Backoff

log = logging.getLogger(__name__)

#: Longest pause between two tries to swap the medium of an unresponsive qemu.
RETRY_CAP = 60.0


class QmpSink(Sink):
    """Swaps the medium of the VMs in ``targets`` (re-assignable, e.g. on SIGHUP) after each
    write; ``counts`` has ``swapped``, ``swap failed`` and ``not swapped (disk)``."""

    def __init__(self, targets: Mapping[str, QmpTarget] | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.targets = dict(targets or {})
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        # vm_id -> (request number, path) of the newest image to insert: the path never changes,
        # so the number tells a write that came during a swap from the one being swapped.
        self._wanted: dict[str, tuple[int, str]] = {}
        self._requests = 0
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()

    def written(self, vm_id: str, path: Path) -> None:
        """The image folder replaced ``path``, VM ``vm_id``'s image."""
        target = self.targets.get(vm_id)
        if target is None:
            return
        if target.media == "disk":
            self._count("not swapped (disk)")
            log.info(
                "%s: its seed is attached as a read-only disk, which a running VM cannot have "
                "swapped: the guest sees the new seed when the disk is reattached or the VM "
                "restarts",
                vm_id,
            )
            return
        with self._lock:
            self._requests += 1
            self._wanted[vm_id] = (self._requests, str(Path(path).resolve()))
            if vm_id not in self._threads:
                thread = threading.Thread(
                    target=self._swap_until_done, args=(vm_id, self._stop), name=f"qmp-{vm_id}", daemon=True
                )
                self._threads[vm_id] = thread
                thread.start()

    def close(self) -> None:
        """Stop retrying; wait (bounded) for swaps in flight. Later writes start afresh."""
        with self._lock:
            self._stop.set()
            self._stop = threading.Event()
            threads = list(self._threads.values())
            self._threads = {}  # each exits on its own stop event; later writes get new threads
        deadline = time.monotonic() + self.timeout + 1
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = sorted(self._wanted)
        if left:
            log.warning(
                "not swapped before stopping: %s (their guests see the new seed at the next boot)", ", ".join(left)
            )

    def pending(self) -> list[str]:
        """The VMs whose swap has not succeeded yet."""
        with self._lock:
            return sorted(self._wanted)

    def _swap_until_done(self, vm_id: str, stop: threading.Event) -> None:
        backoff = Backoff(base=0.5, cap=RETRY_CAP)
        failing = ""
        while not stop.is_set():
            with self._lock:
                wanted = self._wanted.get(vm_id)
                target = self.targets.get(vm_id)
                if wanted is None or target is None or target.media == "disk":
                    # Under the same lock as the check: a write from now on starts a new thread.
                    self._wanted.pop(vm_id, None)
                    self._leave(vm_id)
                    return
            try:
                change_medium(target, wanted[1], timeout=self.timeout)
            except QmpError as err:
                self._count("swap failed")
                delay = backoff.next()
                if str(err) != failing:
                    failing = str(err)
                    log.error(
                        "%s: hot-swap failed, the VM keeps its previous medium; retrying in the "
                        "background (backoff up to %.0f s): %s",
                        vm_id,
                        RETRY_CAP,
                        err,
                    )
                stop.wait(delay)
                continue
            self._count("swapped")
            log.info(
                "%s: swapped the medium of %s via %s%s",
                vm_id,
                target.device,
                target.socket,
                f" after {backoff.failures} failed tries" if backoff.failures else "",
            )
            backoff.reset()
            failing = ""
            with self._lock:
                if self._wanted.get(vm_id) == wanted:
                    del self._wanted[vm_id]
        with self._lock:
            self._leave(vm_id)

    def _leave(self, vm_id: str) -> None:
        """Unregister the calling thread (not a newer one started after ``close``); hold the lock."""
        if self._threads.get(vm_id) is threading.current_thread():
            del self._threads[vm_id]

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1
