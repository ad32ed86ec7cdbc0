"""The etcd v3 store: one key per VM under a prefix (``/configdrive/<host>/<vm-id>``).

Built on the ``etcd3`` package (0.12.0, pinned with ``protobuf<4`` in the ``etcd`` extra) for its
gRPC stubs and messages, with our own range paging, transactions and watch stream so that the
revision of every read is known, a watch resumes from the last revision seen, a compacted
revision turns into ``Batch(resync=True)``, and a dropped connection into StoreError (the
caller backs off and resumes) instead of the library's own retry loop.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import warnings
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlsplit

from configdrive.errors import RevisionConflict, StoreError
from configdrive.stores import VM_ID, Batch, Change, Snapshot, SpecRecord, check_vm_id

log = logging.getLogger(__name__)

#: mvccpb.Event.EventType.DELETE (kv.proto): a watch event that removed its key.
DELETE = 1
#: Keys per range request while listing; 10,000 specs of a few KB stay far below gRPC's limits.
PAGE = 500
#: Largest message we accept (a page of big specs); etcd's own request limit is 1.5 MiB per value.
MAX_MESSAGE = 256 * 1024 * 1024
#: Reconnect quickly after an etcd restart; gRPC's default backoff grows to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
]


def _import_etcd3() -> Any:
    """The etcd3 module. Its generated code predates protobuf 4: where a newer protobuf is
    installed and not yet loaded, fall back to protobuf's pure-Python implementation."""
    import sys

    if "google.protobuf" not in sys.modules:
        try:
            from google.protobuf import __version__ as protobuf_version
        except ImportError as err:
            raise StoreError("the etcd store needs: pip install 'configdrive[etcd]'") from err
        if int(protobuf_version.split(".")[0]) >= 4:
            os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    try:
        with warnings.catch_warnings():  # its generated code uses protobuf calls now deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            import etcd3
    except ImportError as err:
        raise StoreError(f"the etcd store needs: pip install 'configdrive[etcd]' ({err})") from err
    except TypeError as err:  # "Descriptors cannot be created directly": protobuf >= 4 loaded
        raise StoreError("etcd3 0.12 needs protobuf<4 or "
                         "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python") from err
    return etcd3


class EtcdStore:
    """Specs as values of the keys ``<prefix><vm-id>``; revisions are etcd's mod_revision."""

    def __init__(self, host: str, port: int, prefix: str, timeout: float = 5.0) -> None:
        import grpc

        etcd3 = _import_etcd3()
        self._grpc = grpc
        self._rpc = etcd3.etcdrpc
        self.prefix = prefix.encode() if prefix.endswith("/") else f"{prefix}/".encode()
        self.url = f"etcd://{host}:{port}{self.prefix.decode()}"
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"{host}:{port}", options=CHANNEL_OPTIONS)
        self._kv = self._rpc.KVStub(self._channel)
        self._watch = self._rpc.WatchStub(self._channel)

    @classmethod
    def from_url(cls, url: str) -> EtcdStore:
        """``etcd://HOST:PORT/PREFIX``; the port defaults to 2379, the prefix to ``/configdrive/``."""
        parts = urlsplit(url)
        try:
            port = parts.port or 2379
        except ValueError as err:
            raise StoreError(f"bad etcd URL {url!r}: {err}") from err
        return cls(parts.hostname or "127.0.0.1", port, parts.path or "/configdrive/")

    # --- reading -------------------------------------------------------------------------

    def list(self) -> Snapshot:
        records: dict[str, SpecRecord] = {}
        key, end, revision = self.prefix, _prefix_end(self.prefix), 0
        while True:
            # Every page after the first is read at the first page's revision: one snapshot.
            request = self._rpc.RangeRequest(key=key, range_end=end, limit=PAGE, revision=revision,
                                             sort_order=self._rpc.RangeRequest.ASCEND)
            response = self._call(self._kv.Range, request, "list")
            revision = revision or response.header.revision
            for kv in response.kvs:
                vm_id = self._vm_id(kv.key)
                if vm_id:
                    records[vm_id] = SpecRecord(vm_id, kv.value, kv.mod_revision)
            if not response.more or not response.kvs:
                return Snapshot(records, revision)
            key = response.kvs[-1].key + b"\0"

    def get(self, vm_id: str) -> SpecRecord | None:
        request = self._rpc.RangeRequest(key=self._key(vm_id))
        response = self._call(self._kv.Range, request, f"get {vm_id}")
        for kv in response.kvs:
            return SpecRecord(vm_id, kv.value, kv.mod_revision)
        return None

    def watch(self, revision: int, idle: float = 0.5) -> Generator[Batch, None, None]:
        create = self._rpc.WatchCreateRequest(key=self.prefix, range_end=_prefix_end(self.prefix),
                                              start_revision=revision + 1)
        stop = threading.Event()
        responses: queue.Queue[Any] = queue.Queue()

        def requests() -> Iterator[Any]:
            yield self._rpc.WatchRequest(create_request=create)
            stop.wait()  # keep the stream open until we are closed

        call = self._watch.Watch(requests())

        def pump() -> None:
            try:
                for response in call:
                    responses.put(response)
                responses.put(StoreError("etcd ended the watch stream", revision))
            except self._grpc.RpcError as err:
                responses.put(err)

        reader = threading.Thread(target=pump, name="configdrive-etcd-watch", daemon=True)
        reader.start()
        cursor = revision
        try:
            while True:
                try:
                    item = responses.get(timeout=idle)
                except queue.Empty:
                    yield Batch((), cursor)
                    continue
                if isinstance(item, self._grpc.RpcError):
                    raise StoreError(f"etcd watch failed: {_describe(item)}", cursor) from item
                if isinstance(item, StoreError):
                    raise StoreError(str(item), cursor)
                if item.compact_revision:
                    log.warning("etcd compacted past revision %d (now %d): full resync",
                                cursor, item.compact_revision)
                    yield Batch((), cursor, resync=True)
                    return
                if item.canceled:
                    raise StoreError(f"etcd cancelled the watch: {item.cancel_reason}", cursor)
                changes = []
                for event in item.events:
                    kv = event.kv
                    vm_id = self._vm_id(kv.key)
                    if vm_id is None or kv.mod_revision <= cursor:
                        continue  # not ours, or already seen before a reconnect
                    deleted = event.type == DELETE
                    changes.append(Change(vm_id, None if deleted else kv.value, kv.mod_revision))
                if item.events:
                    cursor = max(cursor, item.events[-1].kv.mod_revision)
                if changes or not item.created:
                    yield Batch(tuple(changes), cursor)
        finally:
            stop.set()
            call.cancel()
            reader.join(timeout=2)

    # --- writing -------------------------------------------------------------------------

    def put(self, vm_id: str, raw: bytes, expected_revision: int | None = None) -> int:
        key = self._key(vm_id)
        put = self._rpc.RequestOp(request_put=self._rpc.PutRequest(key=key, value=raw))
        return int(self._txn(vm_id, key, put, expected_revision, "put").header.revision)

    def delete(self, vm_id: str, expected_revision: int | None = None) -> bool:
        key = self._key(vm_id)
        if expected_revision is None:
            request = self._rpc.DeleteRangeRequest(key=key)
            return bool(self._call(self._kv.DeleteRange, request, f"delete {vm_id}").deleted)
        delete = self._rpc.RequestOp(request_delete_range=self._rpc.DeleteRangeRequest(key=key))
        response = self._txn(vm_id, key, delete, expected_revision, "delete")
        return bool(response.responses[0].response_delete_range.deleted)

    def _txn(self, vm_id: str, key: bytes, op: Any, expected: int | None, what: str) -> Any:
        """Run ``op`` if the key's mod_revision is ``expected`` (0: absent), else RevisionConflict."""
        compare = []
        if expected is not None:
            compare.append(self._rpc.Compare(result=self._rpc.Compare.EQUAL,
                                             target=self._rpc.Compare.MOD, key=key,
                                             mod_revision=expected))
        failure = self._rpc.RequestOp(request_range=self._rpc.RangeRequest(key=key))
        request = self._rpc.TxnRequest(compare=compare, success=[op], failure=[failure])
        response = self._call(self._kv.Txn, request, f"{what} {vm_id}")
        if not response.succeeded:
            kvs = response.responses[0].response_range.kvs
            have = kvs[0].mod_revision if kvs else 0
            raise RevisionConflict(f"{vm_id}: expected revision {expected}, etcd has {have}", have)
        return response

    def close(self) -> None:
        self._channel.close()

    # --- helpers -------------------------------------------------------------------------

    def _key(self, vm_id: str) -> bytes:
        return self.prefix + check_vm_id(vm_id).encode()

    def _vm_id(self, key: bytes) -> str | None:
        """The VM id of a key below our prefix; None (skipped) for nested or foreign keys."""
        name = key[len(self.prefix):].decode("utf-8", "replace")
        return name if VM_ID.match(name) else None

    def _call(self, method: Any, request: Any, what: str) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            raise StoreError(f"etcd {what} failed: {_describe(err)}") from err


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end convention)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _describe(err: Any) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    return f"{code.name if code else 'error'}: {details}"
