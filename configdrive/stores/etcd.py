"""The etcd v3 store: one key per VM under a prefix (``/configdrive/<host>/<vm-id>``).

Built on the ``etcd3`` package (0.12.0, pinned with ``protobuf<4`` in the ``etcd`` extra) for its
gRPC stubs and messages, with our own range paging, transactions and watch stream so that the
revision of every read is known, a watch resumes from the last revision seen, a compacted
revision turns into ``Batch(resync=True)``, and a dropped connection into StoreError (the
caller backs off and resumes) instead of the library's own retry loop.

Security is spelled as etcdctl spells it: ``etcds://HOST:PORT/PREFIX`` speaks TLS (``etcd://``
does not), ``?cacert=&cert=&key=&user=`` mirror etcdctl's ``--cacert --cert --key --user``, and
``ETCDCTL_CACERT``, ``ETCDCTL_CERT``, ``ETCDCTL_KEY``, ``ETCDCTL_USER``, ``ETCDCTL_PASSWORD`` fill
in what the URL leaves out (the URL wins, as etcdctl's flags beat its environment). A password
never goes in the URL: URLs are logged. With a user, the store authenticates (etcd's Auth
service), sends the token as ``token`` metadata with every call, and authenticates again when
etcd says the token expired.

Importing this module changes nothing in the process (no environment variable, no protobuf
implementation switch); the client libraries are loaded, and checked, when a store is opened.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import warnings
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from configdrive.errors import InputError, RevisionConflict, StoreError
from configdrive.inputs import read_regular_file
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
#: URL scheme -> whether it speaks TLS (as http/https).
SCHEMES = {"etcd": False, "etcds": True}
#: What a URL's query may say: etcdctl's flag names, and a file to read the password from.
QUERY_OPTIONS = ("cacert", "cert", "key", "user", "password-file")
#: etcdctl's environment variables, read when the URL does not say.
ENVIRONMENT = {
    "cacert": "ETCDCTL_CACERT",
    "cert": "ETCDCTL_CERT",
    "key": "ETCDCTL_KEY",
    "user": "ETCDCTL_USER",
    "password": "ETCDCTL_PASSWORD",
}
#: A certificate, key or password file larger than this is not one.
MAX_SECRET_FILE = 1024 * 1024
INSTALL = "the etcd store needs: pip install 'configdrive[etcd]'"
PASSWORD_HELP = "give it in ETCDCTL_PASSWORD, as ETCDCTL_USER=user:password, or in a file named by password-file=PATH"


@dataclass(frozen=True)
class TLSFiles:
    """PEM bytes for a TLS channel, and the paths they came from (for messages).
    ``cacert`` None: trust the system's CAs (gRPC's roots)."""

    cacert: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    cacert_path: str | None = None
    cert_path: str | None = None

    @classmethod
    def load(cls, cacert: str | None, cert: str | None, key: str | None) -> TLSFiles:
        """Read the files now, so a wrong path is a StoreError naming it, not a handshake failure."""
        if bool(cert) != bool(key):
            raise StoreError(
                "etcd TLS: a client certificate needs its key and a key its certificate: "
                "give both cert= and key= (ETCDCTL_CERT, ETCDCTL_KEY)"
            )
        return cls(
            _read_pem(cacert, "cacert", b"CERTIFICATE"),
            _read_pem(cert, "cert", b"CERTIFICATE"),
            _read_pem(key, "key", b"PRIVATE KEY"),
            cacert,
            cert,
        )


@dataclass(frozen=True)
class Credentials:
    """An etcd user and its password (never printed)."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class EtcdURL:
    """What an ``etcd://`` or ``etcds://`` URL and etcdctl's environment say, checked."""

    host: str
    port: int
    prefix: str
    tls: TLSFiles | None
    credentials: Credentials | None


def parse_url(url: str, environ: Mapping[str, str] | None = None) -> EtcdURL:
    """``etcd[s]://HOST:PORT/PREFIX?cacert=&cert=&key=&user=&password-file=``, completed from
    etcdctl's ``ETCDCTL_*`` variables in ``environ`` (default: the process's environment).

    The port defaults to 2379, the prefix to ``/configdrive/``. ``etcd://`` is plain gRPC: TLS
    options in its URL are refused and ``ETCDCTL_CACERT/CERT/KEY`` ignored, as etcdctl ignores them
    for an ``http://`` endpoint. A password is refused in the URL; it comes from ``password-file``,
    ``ETCDCTL_PASSWORD`` or ``ETCDCTL_USER=user:password``, in that order (etcdctl's own rules:
    with a password given separately, the user name is taken whole)."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise StoreError(
            f"bad etcd URL {_redact(url)!r}: use etcd://HOST:PORT/PREFIX or etcds://HOST:PORT/PREFIX (TLS)"
        )
    tls = SCHEMES[parts.scheme]
    if "@" in parts.netloc:
        raise StoreError(
            f"bad etcd URL {_redact(url)!r}: name the user with ?user=NAME; a password "
            f"never goes in the URL (URLs end up in logs): {PASSWORD_HELP}"
        )
    try:
        port = parts.port or 2379
    except ValueError as err:
        raise StoreError(f"bad etcd URL {_redact(url)!r}: {err}") from err
    if parts.fragment:
        raise StoreError(f"bad etcd URL {_redact(url)!r}: unexpected #{parts.fragment}")
    query = _query(url, parts.query)

    if tls:
        tls_files: TLSFiles | None = TLSFiles.load(
            *(query.get(name) or env.get(ENVIRONMENT[name]) or None for name in ("cacert", "cert", "key"))
        )
    else:
        given = [name for name in ("cacert", "cert", "key") if name in query]
        if given:
            raise StoreError(f"bad etcd URL {_redact(url)!r}: {', '.join(given)} need TLS: use etcds://")
        tls_files = None

    return EtcdURL(
        parts.hostname or "127.0.0.1", port, parts.path or "/configdrive/", tls_files, _credentials(query, env)
    )


def _query(url: str, text: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name == "password":
            raise StoreError(
                f"bad etcd URL {_redact(url)!r}: a password never goes in the URL (URLs end "
                f"up in logs and process lists): {PASSWORD_HELP}"
            )
        if name not in QUERY_OPTIONS:
            raise StoreError(
                f"bad etcd URL {_redact(url)!r}: unknown option {name!r} (known: {', '.join(QUERY_OPTIONS)})"
            )
        if name in query:
            raise StoreError(f"bad etcd URL {_redact(url)!r}: {name} given twice")
        if not value:
            raise StoreError(f"bad etcd URL {_redact(url)!r}: {name} is empty")
        query[name] = value
    if ":" in query.get("user", ""):
        raise StoreError(
            f"bad etcd URL {_redact(url)!r}: a password never goes in the URL (URLs end up "
            f"in logs and process lists): give user=NAME only and {PASSWORD_HELP}"
        )
    return query


def _credentials(query: Mapping[str, str], env: Mapping[str, str]) -> Credentials | None:
    user = query.get("user") or env.get(ENVIRONMENT["user"]) or None
    if user is None:
        if "password-file" in query:
            raise StoreError("etcd: password-file= needs a user: add user=NAME or set ETCDCTL_USER")
        return None
    if "password-file" in query:
        password: str | None = (
            _read_secret(query["password-file"], "password-file")
            .decode("utf-8", "replace")
            .removesuffix("\n")
            .removesuffix("\r")
        )
    else:
        password = env.get(ENVIRONMENT["password"]) or None
    if password is None:
        name, colon, password = user.partition(":")
        if not colon:
            raise StoreError(f"etcd: no password for user {user!r}: {PASSWORD_HELP} (configdrive never prompts)")
        user = name
    if not user:
        raise StoreError("etcd: the user name is empty (ETCDCTL_USER=user:password)")
    return Credentials(user, password)


def _read_secret(path: str, what: str) -> bytes:
    """A small regular file, read whole without blocking; StoreError naming ``what`` and the path."""
    try:
        return read_regular_file(path, MAX_SECRET_FILE)
    except InputError as err:
        raise StoreError(f"etcd {what}={path}: {str(err).removeprefix(path + ': ')}") from err


def _read_pem(path: str | None, what: str, kind: bytes) -> bytes | None:
    if path is None:
        return None
    data = _read_secret(path, what)
    if b"-----BEGIN " not in data or kind not in data:
        raise StoreError(f"etcd {what}={path}: not a PEM file with a {kind.decode().lower()}")
    return data


def _redact(url: str) -> str:
    """``url`` without anything that may be a password (``user:password@``, ``password=``,
    ``user=NAME:...``), for messages."""
    parts = urlsplit(url)
    netloc = "***@" + parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in QUERY_OPTIONS:
            value = "***"  # password=, or a misspelt option that may hold one
        elif name == "user" and ":" in value:
            value = value.partition(":")[0] + ":***"
        query.append((name, value))
    return parts._replace(netloc=netloc, query=urlencode(query, safe="/:*")).geturl()


# --- the client libraries ----------------------------------------------------------------------


def protobuf_problem(version: str, implementation: str) -> str | None:
    """Why etcd3 0.12's generated code cannot load with this protobuf, or None if it can.

    Its ``_pb2`` modules predate protobuf 4: they load with protobuf 3.x, or with 4+ only through
    the pure-Python implementation, which only the environment (before protobuf is first
    imported) can select."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return None
    if major < 4 or implementation == "python":
        return None
    return (
        f"the etcd store's client (etcd3 0.12) cannot load with protobuf {version} "
        f"({implementation} implementation): install protobuf<4 (pip install 'configdrive[etcd]' "
        "pins it), or start the program with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python in "
        "its environment (slower, same behaviour)"
    )


def _load_client() -> tuple[Any, Any]:
    """``(grpc, etcd3.etcdrpc)``, or StoreError saying what to install or set."""
    try:
        import grpc
        from google.protobuf import __version__ as protobuf_version
        from google.protobuf.internal import api_implementation
    except ImportError as err:
        raise StoreError(f"{INSTALL} ({err})") from err
    problem = protobuf_problem(protobuf_version, api_implementation.Type())
    if problem:
        raise StoreError(problem)
    try:
        with warnings.catch_warnings():  # its generated code uses protobuf calls now deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            import etcd3
    except ImportError as err:
        raise StoreError(f"{INSTALL} ({err})") from err
    except TypeError as err:  # "Descriptors cannot be created directly": a protobuf we did not foresee
        raise StoreError(
            f"etcd3 0.12 cannot load with protobuf {protobuf_version}: install "
            f"protobuf<4 or set PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python ({err})"
        ) from err
    return grpc, etcd3.etcdrpc


class EtcdStore:
    """Specs as values of the keys ``<prefix><vm-id>``; revisions are etcd's mod_revision.

    ``tls``: speak TLS (None: plain gRPC); ``credentials``: authenticate as that etcd user."""

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        timeout: float = 5.0,
        *,
        tls: TLSFiles | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        grpc, self._rpc = _load_client()
        self._grpc = grpc
        self.prefix = prefix.encode() if prefix.endswith("/") else f"{prefix}/".encode()
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.url = f"{'etcds' if tls else 'etcd'}://{self.address}{self.prefix.decode()}"
        self.timeout = timeout
        self.tls = tls
        self.credentials = credentials
        #: How many times this store has authenticated (a fresh token each time).
        self.authentications = 0
        self._token: str | None = None  # None: not yet authenticated; "": auth is off in etcd
        self._auth_lock = threading.Lock()
        if tls is None:
            self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=tls.cacert, private_key=tls.key, certificate_chain=tls.cert
            )
            self._channel = grpc.secure_channel(self.address, creds, options=CHANNEL_OPTIONS)
        self._kv = self._rpc.KVStub(self._channel)
        self._watch = self._rpc.WatchStub(self._channel)
        self._auth = self._rpc.AuthStub(self._channel)

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> EtcdStore:
        """A store for ``url`` (see :func:`parse_url`; ``environ`` defaults to ``os.environ``)."""
        where = parse_url(url, environ)
        return cls(where.host, where.port, where.prefix, tls=where.tls, credentials=where.credentials)

    # --- reading -------------------------------------------------------------------------

    def list(self) -> Snapshot:
        records: dict[str, SpecRecord] = {}
        key, end, revision = self.prefix, _prefix_end(self.prefix), 0
        while True:
            # Every page after the first is read at the first page's revision: one snapshot.
            request = self._rpc.RangeRequest(
                key=key, range_end=end, limit=PAGE, revision=revision, sort_order=self._rpc.RangeRequest.ASCEND
            )
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
        cursor = revision
        stream = self._open_watch(cursor)
        renewed = False  # authenticated again for this watch already
        try:
            while True:
                try:
                    item = stream.responses.get(timeout=idle)
                except queue.Empty:
                    yield Batch((), cursor)
                    continue
                if isinstance(item, self._grpc.RpcError):
                    if not renewed and self._token_rejected(item):
                        renewed = True
                        stream = self._renew_watch(stream, cursor)
                        continue
                    raise StoreError(f"etcd watch failed: {self._describe(item)}", cursor) from item
                if isinstance(item, StoreError):
                    raise StoreError(str(item), cursor)
                if item.compact_revision:
                    log.warning("etcd compacted past revision %d (now %d): full resync", cursor, item.compact_revision)
                    yield Batch((), cursor, resync=True)
                    return
                if item.canceled:
                    # An expired token cancels the watch as it is created: authenticate, try again.
                    if not renewed and self._token_rejected(item.cancel_reason):
                        renewed = True
                        stream = self._renew_watch(stream, cursor)
                        continue
                    raise StoreError(f"etcd cancelled the watch: {self._explain(item.cancel_reason)}", cursor)
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
                    renewed = False  # a later expiry may be renewed again
                if changes or not item.created:
                    yield Batch(tuple(changes), cursor)
        finally:
            stream.close()

    def _open_watch(self, cursor: int) -> _WatchStream:
        try:
            return _WatchStream(self, cursor)
        except StoreError as err:  # authentication failed: say where the watch stands
            raise StoreError(str(err), cursor if err.revision is None else err.revision) from err

    def _renew_watch(self, stream: _WatchStream, cursor: int) -> _WatchStream:
        stream.close()
        self._forget_token(stream.token)
        log.info("etcd token for %s expired: authenticating again", self.url)
        return self._open_watch(cursor)

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
            compare.append(
                self._rpc.Compare(
                    result=self._rpc.Compare.EQUAL, target=self._rpc.Compare.MOD, key=key, mod_revision=expected
                )
            )
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

    # --- authentication ------------------------------------------------------------------

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata of a call: etcd's ``token``, authenticating first if need be."""
        if self.credentials is None:
            return ()
        with self._auth_lock:
            if self._token is None:
                self._token = self._authenticate(self.credentials)
            token = self._token
        return (("token", token),) if token else ()

    def _authenticate(self, credentials: Credentials) -> str:
        """A fresh token ("" when etcd has authentication off, as etcd's own client accepts)."""
        request = self._rpc.AuthenticateRequest(name=credentials.user, password=credentials.password)
        try:
            response = self._auth.Authenticate(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            details = _details(err)
            if "authentication is not enabled" in details:
                log.warning("etcd at %s has authentication off: user %r is not checked", self.address, credentials.user)
                return ""
            if err.code().name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise StoreError(self._describe(err)) from err
            if "authentication failed" in details:
                raise StoreError(
                    f"etcd at {self.address} refused user {credentials.user!r}: wrong user name or password"
                ) from err
            raise StoreError(f"etcd authentication as {credentials.user!r} failed: {self._describe(err)}") from err
        self.authentications += 1
        return str(response.token)

    def _forget_token(self, token: str | None) -> None:
        """Drop ``token`` so the next call authenticates again (unless another thread did)."""
        with self._auth_lock:
            if self._token == token:
                self._token = None

    def _token_rejected(self, err: Any) -> bool:
        """Whether ``err`` (an RpcError or a watch's cancel reason) says our token is no longer
        good: expired, or issued before a change to etcd's users and roles."""
        if self.credentials is None or not self._token:
            return False
        text = err if isinstance(err, str) else _details(err)
        return "invalid auth token" in text or "revision of auth store is old" in text

    # --- helpers -------------------------------------------------------------------------

    def _key(self, vm_id: str) -> bytes:
        return self.prefix + check_vm_id(vm_id).encode()

    def _vm_id(self, key: bytes) -> str | None:
        """The VM id of a key below our prefix; None (skipped) for nested or foreign keys."""
        name = key[len(self.prefix) :].decode("utf-8", "replace")
        return name if VM_ID.match(name) else None

    def _call(self, method: Any, request: Any, what: str) -> Any:
        for attempt in (1, 2):
            metadata = self._metadata()
            try:
                return method(request, timeout=self.timeout, metadata=metadata)
            except self._grpc.RpcError as err:
                # etcd checks the token before it applies anything: the retry cannot apply twice.
                if attempt == 1 and self._token_rejected(err):
                    log.info("etcd token for %s expired: authenticating again", self.url)
                    self._forget_token(dict(metadata).get("token"))
                    continue
                raise StoreError(f"etcd {what} failed: {self._describe(err)}") from err
        raise AssertionError("unreachable")

    def _describe(self, err: Any) -> str:
        """A gRPC error in words, with what to check for the usual TLS and auth mistakes."""
        code = err.code() if hasattr(err, "code") else None
        details = _details(err)
        name = code.name if code is not None else "error"
        if name == "UNAVAILABLE":
            reason = (details.rpartition("last error: ")[2] or details).removesuffix(": OK")
            return f"cannot reach etcd at {self.address} ({reason}){self._connect_hint(details)}"
        if name == "DEADLINE_EXCEEDED":
            return f"no answer from etcd at {self.address} within {self.timeout:g} s{self._connect_hint(details)}"
        return f"{name}: {self._explain(details)}"

    def _connect_hint(self, details: str) -> str:
        if self.tls is None:
            if "Socket closed" in details or "DEADLINE" in details or "Connection reset" in details:
                return "; if that etcd speaks TLS, use etcds://"
            return ""
        if "CERTIFICATE_VERIFY_FAILED" in details or "certificate verify failed" in details:
            if self.tls.cacert_path is None:
                return (
                    "; the server's certificate is not signed by a CA this system trusts: "
                    "give etcd's CA as cacert=PATH (ETCDCTL_CACERT)"
                )
            return (
                f"; the server's certificate is not signed by the CA in cacert={self.tls.cacert_path}, or has expired"
            )
        if "Peer name" in details or "hostname" in details.lower():
            return f"; the server's certificate does not name {self.address.rpartition(':')[0]}"
        if "Connection refused" in details:
            return ""
        if self.tls.cert is None:
            return (
                "; the TLS session was refused: if etcd runs with --client-cert-auth it needs a "
                "client certificate: give cert= and key= (ETCDCTL_CERT, ETCDCTL_KEY)"
            )
        return (
            f"; the TLS session was refused: is the client certificate cert={self.tls.cert_path} "
            "signed by a CA that etcd's --trusted-ca-file names, and meant for client auth?"
        )

    def _explain(self, details: str) -> str:
        if "permission denied" in details:
            if self.credentials is not None:
                return f"{details} (etcd user {self.credentials.user!r} has no role granting {self.prefix.decode()})"
            return (
                f"{details} (etcd has authentication on: give user= (ETCDCTL_USER) and a password, "
                "or a client certificate whose common name is an etcd user)"
            )
        if "user name is empty" in details:
            return (
                f"{details} (etcd has authentication on: give user= (ETCDCTL_USER) and a password, "
                "or a client certificate whose common name is an etcd user)"
            )
        return details


class _WatchStream:
    """One gRPC Watch stream for the store's prefix from ``cursor + 1``, read by a thread."""

    def __init__(self, store: EtcdStore, cursor: int) -> None:
        rpc = store._rpc
        create = rpc.WatchCreateRequest(
            key=store.prefix, range_end=_prefix_end(store.prefix), start_revision=cursor + 1
        )
        self.stop = threading.Event()
        self.responses: queue.Queue[Any] = queue.Queue()
        metadata = store._metadata()
        self.token = dict(metadata).get("token")

        def requests() -> Iterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            self.stop.wait()  # keep the stream open until we are closed

        self.call = store._watch.Watch(requests(), metadata=metadata)

        def pump() -> None:
            try:
                for response in self.call:
                    self.responses.put(response)
                self.responses.put(StoreError("etcd ended the watch stream", cursor))
            except store._grpc.RpcError as err:
                self.responses.put(err)

        self.reader = threading.Thread(target=pump, name="configdrive-etcd-watch", daemon=True)
        self.reader.start()

    def close(self) -> None:
        self.stop.set()
        self.call.cancel()
        self.reader.join(timeout=2)


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end convention)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _details(err: Any) -> str:
    details = err.details() if hasattr(err, "details") else None
    return str(details if details is not None else err)
