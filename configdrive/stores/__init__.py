"""Spec stores: one small interface (list, get, watch, put, delete) with one backend per module.

    store = open_store("dir:/etc/configdrive/specs")     # or "etcd://127.0.0.1:2379/configdrive/host1/"
    snapshot = store.list()                              # every spec and the revision it was read at
    for batch in store.watch(snapshot.revision): ...     # changes after that revision, in order

A backend module is imported only when a URL names it, so ``configdrive build`` never loads
etcd's client. Backends do not validate: ``put_spec`` does, so an invalid spec never reaches a store.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from configdrive.errors import StoreError
from configdrive.storeurls import URL_HELP as URL_HELP

#: A VM id is a store key and a file name: no slashes, no leading dot, at most 128 characters.
VM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class SpecRecord:
    """One VM's spec text as stored, and the revision it was last modified at."""

    vm_id: str
    raw: bytes
    revision: int


@dataclass(frozen=True)
class Snapshot:
    """Every spec in a store, read at one ``revision``."""

    records: Mapping[str, SpecRecord]
    revision: int


@dataclass(frozen=True)
class Change:
    """A spec written (``raw`` set) or deleted (``raw`` is None) at ``revision``."""

    vm_id: str
    raw: bytes | None
    revision: int

    @property
    def deleted(self) -> bool:
        return self.raw is None


@dataclass(frozen=True)
class Batch:
    """What a watch yields: changes in store order, the revision to resume after, and whether
    history was lost (etcd compaction, inotify overflow) so the caller must ``list()`` again.
    An empty batch is an idle tick, so a caller can check its own flags."""

    changes: tuple[Change, ...]
    revision: int
    resync: bool = False


class SpecStore(Protocol):
    """What the watcher and the CLI need from a store of VM specs, keyed by VM id."""

    url: str

    def list(self) -> Snapshot:
        """Every spec, with the revision to start a watch from."""

    def get(self, vm_id: str) -> SpecRecord | None:
        """One spec, or None when the store has none for ``vm_id``."""

    def watch(self, revision: int, idle: float = 0.5) -> Generator[Batch, None, None]:
        """Changes after ``revision``; an empty batch every ``idle`` seconds without any.

        Raises StoreError when the store becomes unreachable; call again with the last
        batch's revision to resume. Close the iterator to stop watching."""

    def put(self, vm_id: str, raw: bytes, expected_revision: int | None = None) -> int:
        """Store ``raw`` unvalidated; returns its revision. With ``expected_revision`` (0: must
        not exist yet) the write happens only if the spec is still at that revision, else
        RevisionConflict."""

    def delete(self, vm_id: str, expected_revision: int | None = None) -> bool:
        """Remove a spec; False when there was none. ``expected_revision`` as for ``put``."""

    def close(self) -> None:
        """Release connections and file descriptors."""


def open_store(url: str) -> SpecStore:
    """The store a URL names: ``dir:PATH`` (or a plain path), ``etcd://HOST:PORT/PREFIX``, or
    ``etcds://HOST:PORT/PREFIX`` for etcd over TLS; an etcd URL takes etcdctl's options
    (``?cacert=&cert=&key=&user=``) and environment (``ETCDCTL_*``): see ``configdrive.stores.etcd``."""
    if url.startswith(("etcd://", "etcds://")):
        from configdrive.stores.etcd import EtcdStore

        return EtcdStore.from_url(url)
    if "://" in url:
        scheme = url.partition("://")[0]
        raise StoreError(
            f"unknown store URL scheme {scheme!r}: use dir:PATH, etcd://HOST:PORT/PREFIX "
            "or etcds://HOST:PORT/PREFIX (TLS)"
        )
    from configdrive.stores.directory import DirectoryStore

    return DirectoryStore(url.removeprefix("dir:"))


def check_vm_id(vm_id: str) -> str:
    """``vm_id`` if it is usable as a store key and a file name, else StoreError."""
    if not VM_ID.match(vm_id):
        raise StoreError(
            f"invalid VM id {vm_id!r}: letters, digits, '.', '_', '-'; "
            "starting with a letter or digit; at most 128 characters"
        )
    return vm_id


def put_spec(
    store: SpecStore, vm_id: str, raw: bytes, expected_revision: int | None = None, formats: Sequence[str] | None = None
) -> int:
    """Check ``raw`` through the pipeline (valid, and expressible in each of ``formats``; default:
    every format but the narrow ones), then store it. SpecError lists every problem and nothing
    is written; returns the new revision."""
    from configdrive.render import CHECKED_BY_DEFAULT
    from configdrive.seed import check_spec

    check_spec(raw, CHECKED_BY_DEFAULT if formats is None else formats, f"{store.url} {vm_id}")
    return store.put(check_vm_id(vm_id), raw, expected_revision)
