"""etcd for real deployments: TLS (a CA, client certificates) and users with passwords, spelled as
etcdctl users spell them, against a real etcd started with a CA and certificates made here (with
the openssl command), client-certificate checking on and authentication enabled (with etcdctl).

The etcd runs with ``--auth-token-ttl 2``, so tokens expire within a test and every test that
takes more than two seconds also proves the store authenticates again.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from configdrive.errors import StoreError
from configdrive.stores import Batch, open_store
from configdrive.stores.etcd import EtcdStore, parse_url, protobuf_problem
from tests.watch.servers import ROOT, EtcdServer

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]

TTL = 2  # etcd --auth-token-ttl, seconds
PASSWORDS = {"root": "root-Secret-1", "alice": "alice-Secret-2"}
ETCD_ENV = (
    "ETCDCTL_ENDPOINTS",
    "ETCDCTL_CACERT",
    "ETCDCTL_CERT",
    "ETCDCTL_KEY",
    "ETCDCTL_USER",
    "ETCDCTL_PASSWORD",
    "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION",
)
SPEC = (ROOT / "fixtures/specs/valid/minimal.yaml").read_bytes()


def need(binary: str, module: str | None = None) -> None:
    """Skip on a developer's machine without the tool; fail under CI, which installs it."""
    import importlib.util

    missing = shutil.which(binary) is None or bool(module and importlib.util.find_spec(module) is None)
    if missing:
        message = f"needs {binary}" + (f" and the {module} module" if module else "")
        if os.environ.get("CI"):
            pytest.fail(f"{message}: see tests/APT_PACKAGES-watch, tests/APT_PACKAGES-etcd and the etcd extra")
        pytest.skip(message)


# --- a CA and certificates, made with the openssl command ----------------------------------------


class PKI:
    """``<name>.crt`` and ``<name>.key`` files in ``folder``: two CAs (``ca``, which etcd trusts,
    and ``rogue-ca``, which it does not) and certificates they sign."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def crt(self, name: str) -> str:
        return str(self.folder / f"{name}.crt")

    def key(self, name: str) -> str:
        return str(self.folder / f"{name}.key")

    def _openssl(self, *args: str) -> None:
        result = subprocess.run(["openssl", *args], cwd=self.folder, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode(errors="replace")

    def make_ca(self, name: str) -> None:
        self._openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            self.key(name),
            "-out",
            self.crt(name),
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )

    def issue(self, name: str, ca: str, common_name: str, extensions: str) -> None:
        csr, ext = self.folder / f"{name}.csr", self.folder / f"{name}.ext"
        ext.write_text(extensions)
        self._openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            self.key(name),
            "-out",
            str(csr),
            "-subj",
            f"/CN={common_name}",
        )
        self._openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            self.crt(ca),
            "-CAkey",
            self.key(ca),
            "-CAcreateserial",
            "-out",
            self.crt(name),
            "-days",
            "2",
            "-extfile",
            str(ext),
        )


CLIENT = "extendedKeyUsage=clientAuth\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    need("openssl")
    pki = PKI(tmp_path_factory.mktemp("pki"))
    pki.make_ca("ca")
    pki.make_ca("rogue-ca")
    # etcd 3.4 also uses its server certificate as a client (its gRPC gateway): both usages.
    pki.issue(
        "server",
        "ca",
        "etcd-server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    pki.issue("client", "ca", "configdrive-client", CLIENT)  # a common name that is no etcd user
    pki.issue("alice-cert", "ca", "alice", CLIENT)  # etcd takes the CN as the user
    pki.issue("rogue-client", "rogue-ca", "alice", CLIENT)  # signed by a CA etcd does not trust
    return pki


# --- etcd with TLS, client certificates and authentication ------------------------------------------


class TLSEtcdServer(EtcdServer):
    """servers.EtcdServer speaking TLS only, checking client certificates, short-lived tokens."""

    def __init__(self, data_dir: Path, pki: PKI) -> None:
        super().__init__(data_dir)
        self.pki = pki

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    client_scheme = "https"

    def extra_args(self) -> list[str]:
        return [
            "--cert-file",
            self.pki.crt("server"),
            "--key-file",
            self.pki.key("server"),
            "--trusted-ca-file",
            self.pki.crt("ca"),
            "--client-cert-auth",
            "--auth-token",
            "simple",
            "--auth-token-ttl",
            str(TTL),
        ]

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"etcd exited with {self.process.returncode}; see {self.log}")
        context = ssl.create_default_context(cafile=self.pki.crt("ca"))
        context.load_cert_chain(self.pki.crt("client"), self.pki.key("client"))
        try:
            with urllib.request.urlopen(f"https://{self.endpoint}/health", timeout=1, context=context) as r:
                return b'"true"' in r.read()
        except OSError:
            return False


@dataclass
class Cluster:
    server: TLSEtcdServer
    pki: PKI

    def url(self, prefix: str, scheme: str = "etcds", **query: str) -> str:
        options = "&".join(f"{name.replace('_', '-')}={quote(value, safe='/')}" for name, value in query.items())
        return f"{scheme}://{self.server.endpoint}{prefix}" + (f"?{options}" if options else "")

    def tls_env(self, name: str = "client") -> dict[str, str]:
        """etcdctl's TLS variables for a client certificate ``name``."""
        return {
            "ETCDCTL_CACERT": self.pki.crt("ca"),
            "ETCDCTL_CERT": self.pki.crt(name),
            "ETCDCTL_KEY": self.pki.key(name),
        }

    def env(self, **extra: str) -> dict[str, str]:
        """A child's environment: ours without any etcdctl setting, plus ``extra``."""
        base = {k: v for k, v in os.environ.items() if k not in ETCD_ENV}
        return {**base, "PYTHONPATH": str(ROOT), **extra}

    def etcdctl(self, *args: str, user: str = "root", stdin: bytes | None = None) -> bytes:
        env = self.env(
            ETCDCTL_ENDPOINTS=f"https://{self.server.endpoint}",
            **self.tls_env(),
            ETCDCTL_USER=f"{user}:{PASSWORDS[user]}",
        )
        result = subprocess.run(["etcdctl", *args], env=env, input=stdin, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout


@pytest.fixture(scope="module")
def cluster(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need("etcd", "etcd3")
    need("etcdctl")
    server = TLSEtcdServer(tmp_path_factory.mktemp("etcd-tls") / "data", pki).start()
    try:
        cluster = Cluster(server, pki)
        env = cluster.env(ETCDCTL_ENDPOINTS=f"https://{server.endpoint}", **cluster.tls_env())
        for command in (
            ["user", "add", f"root:{PASSWORDS['root']}"],
            ["user", "add", f"alice:{PASSWORDS['alice']}"],
            ["role", "add", "configdrive"],
            ["role", "grant-permission", "configdrive", "--prefix=true", "readwrite", "/configdrive/"],
            ["user", "grant-role", "alice", "configdrive"],
            ["auth", "enable"],
        ):
            result = subprocess.run(["etcdctl", *command], env=env, capture_output=True, timeout=60)
            assert result.returncode == 0, result.stderr.decode(errors="replace")
        yield cluster
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"/configdrive/{uuid.uuid4().hex}/"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "configdrive", *args], env=env, cwd=ROOT, capture_output=True, timeout=60
    )


def next_change(batches: Iterator[Batch], timeout: float = 20) -> Batch:
    """The next batch with changes (idle ticks skipped), within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for batch in batches:
        if batch.changes:
            return batch
        assert time.monotonic() < deadline, "no change seen"
    raise AssertionError("the watch ended")


# --- URLs and etcdctl's environment (no server needed) --------------------------------------------


def test_url_options_and_etcdctl_variables(pki: PKI, tmp_path: Path) -> None:
    tls = {"cacert": pki.crt("ca"), "cert": pki.crt("client"), "key": pki.key("client")}
    query = "&".join(f"{k}={v}" for k, v in tls.items())

    # Everything in the URL but the password, which comes from the environment.
    where = parse_url(f"etcds://etcd.example:2380/cd/h1/?{query}&user=alice", {"ETCDCTL_PASSWORD": "Pw-7f3kq!"})
    assert (where.host, where.port, where.prefix) == ("etcd.example", 2380, "/cd/h1/")
    assert where.tls is not None and where.tls.cacert_path == tls["cacert"] and where.tls.cert_path == tls["cert"]
    assert where.tls.key == Path(tls["key"]).read_bytes()
    assert where.credentials is not None and (where.credentials.user, where.credentials.password) == (
        "alice",
        "Pw-7f3kq!",
    )
    assert "Pw-7f3kq!" not in repr(where) and "PRIVATE" not in repr(where)

    # Everything from etcdctl's variables; ETCDCTL_USER=user:password as etcdctl takes it.
    env = {
        "ETCDCTL_CACERT": tls["cacert"],
        "ETCDCTL_CERT": tls["cert"],
        "ETCDCTL_KEY": tls["key"],
        "ETCDCTL_USER": "alice:p:w",
    }
    where = parse_url("etcds://10.0.0.5/", env)
    assert (where.port, where.prefix) == (2379, "/")
    assert where.tls is not None and where.tls.cacert_path == tls["cacert"]
    assert where.credentials is not None and (where.credentials.user, where.credentials.password) == ("alice", "p:w")

    # The URL wins over the environment, as etcdctl's flags do.
    where = parse_url(
        f"etcds://h/p/?cacert={tls['cacert']}&user=bob",
        {**env, "ETCDCTL_CACERT": pki.crt("rogue-ca"), "ETCDCTL_PASSWORD": "bobpw"},
    )
    assert where.tls is not None and where.tls.cacert_path == tls["cacert"]
    assert where.credentials is not None and (where.credentials.user, where.credentials.password) == ("bob", "bobpw")

    # With ETCDCTL_PASSWORD the user name is taken whole (etcdctl's rule).
    where = parse_url("etcd://h/p/", {"ETCDCTL_USER": "a:b", "ETCDCTL_PASSWORD": "pw"})
    assert where.credentials is not None and (where.credentials.user, where.credentials.password) == ("a:b", "pw")

    # A password file: one trailing newline is not part of the password.
    secret = tmp_path / "password"
    secret.write_text("from file\n")
    where = parse_url(f"etcd://h/p/?user=alice&password-file={secret}", {"ETCDCTL_PASSWORD": "env"})
    assert where.credentials is not None and where.credentials.password == "from file"

    # etcd:// is plain gRPC: etcdctl's TLS variables do not apply (as for an http:// endpoint).
    where = parse_url("etcd://h/p/", env)
    assert where.tls is None and where.credentials is not None
    # etcds:// without a CA trusts the system's CAs.
    where = parse_url("etcds://h/p/", {})
    assert where.tls is not None and where.tls.cacert is None and where.credentials is None


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("etcds://h/p/?user=alice:s3cr3t", {}, "a password never goes in the URL"),
        ("etcds://alice:s3cr3t@h/p/", {}, "a password never goes in the URL"),
        ("etcds://h/p/?user=alice&password=s3cr3t", {}, "a password never goes in the URL"),
        ("etcds://h/p/?cacert=/x&bogus=1", {}, "unknown option 'bogus'"),
        ("etcds://h/p/?user=alice&passwd=s3cr3t", {}, "unknown option 'passwd'"),
        ("etcds://h/p/?user=a&user=b", {"ETCDCTL_PASSWORD": "s3cr3t"}, "user given twice"),
        ("etcds://h/p/?cacert=", {}, "cacert is empty"),
        ("etcd://h/p/?cacert={ca}", {}, "need TLS: use etcds://"),
        ("etcds://h/p/?cert={client_crt}", {}, "give both cert= and key="),
        ("etcds://h/p/", {"ETCDCTL_KEY": "{client_key}"}, "give both cert= and key="),
        ("etcds://h/p/?cacert=/nonexistent/ca.crt", {}, "cacert=/nonexistent/ca.crt: cannot read"),
        ("etcds://h/p/?cacert={folder}", {}, "is not a regular file"),
        ("etcds://h/p/?cacert={client_key}", {}, "not a PEM file with a certificate"),
        ("etcds://h/p/?cert={client_crt}&key={client_crt}", {}, "not a PEM file with a private key"),
        ("etcds://h/p/?user=alice", {}, "no password for user 'alice'"),
        ("etcds://h/p/", {"ETCDCTL_USER": "alice"}, "no password for user 'alice'"),
        ("etcds://h/p/?password-file=/x", {}, "password-file= needs a user"),
        ("etcds://h:port/p/", {}, "bad etcd URL"),
    ],
)
def test_url_refusals(pki: PKI, url: str, env: dict[str, str], expected: str) -> None:
    names = {
        "ca": pki.crt("ca"),
        "client_crt": pki.crt("client"),
        "client_key": pki.key("client"),
        "folder": str(pki.folder),
    }
    url = url.format(**names)
    env = {k: v.format(**names) for k, v in env.items()}
    with pytest.raises(StoreError) as caught:
        parse_url(url, env)
    assert expected in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_an_unknown_scheme_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("etcd+tls://alice:s3cr3t@h/p/")
    assert "etcds://" in str(caught.value) and "s3cr3t" not in str(caught.value)


# --- the client libraries --------------------------------------------------------------------------


def test_importing_the_store_leaves_the_environment_alone(cluster: Cluster) -> None:
    script = textwrap.dedent("""
        import os, sys
        before = dict(os.environ)
        import configdrive.stores.etcd as etcd
        assert "etcd3" not in sys.modules and "grpc" not in sys.modules, "loaded at import"
        assert dict(os.environ) == before, "import changed the environment"
        store = etcd.EtcdStore.from_url(sys.argv[1])     # loads grpc, protobuf and etcd3
        store.list()
        store.close()
        assert "etcd3" in sys.modules
        changed = {k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)}
        assert not changed, changed
        print("unchanged")
    """)
    url = cluster.url("/configdrive/", **{"user": "alice"})
    env = cluster.env(**cluster.tls_env(), ETCDCTL_PASSWORD=PASSWORDS["alice"])
    result = subprocess.run([sys.executable, "-c", script, url], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout == b"unchanged\n", result.stderr.decode(errors="replace")


def test_protobuf_4_or_newer_needs_the_pure_python_implementation() -> None:
    assert protobuf_problem("3.20.3", "cpp") is None
    assert protobuf_problem("3.20.3", "python") is None
    assert protobuf_problem("5.29.3", "python") is None
    problem = protobuf_problem("5.29.3", "upb")
    assert problem is not None
    assert "protobuf<4" in problem and "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python" in problem


def test_a_newer_protobuf_is_a_clear_store_error_at_start_up() -> None:
    """With a protobuf 5 (upb) loaded, opening a store (not importing it) fails, saying what to do,
    and the command line prints that without a traceback."""
    script = textwrap.dedent("""
        import sys, types
        protobuf = types.ModuleType("google.protobuf")
        protobuf.__version__, protobuf.__path__ = "5.29.3", []
        internal = types.ModuleType("google.protobuf.internal")
        internal.__path__ = []
        api = types.ModuleType("google.protobuf.internal.api_implementation")
        api.Type = lambda: "upb"
        protobuf.internal, internal.api_implementation = internal, api
        sys.modules.update({"google.protobuf": protobuf, "google.protobuf.internal": internal,
                            "google.protobuf.internal.api_implementation": api})
        import configdrive.stores.etcd
        from configdrive.cli import main
        sys.exit(main(["list", "--store", "etcd://127.0.0.1:9/configdrive/"]))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ETCD_ENV}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"protobuf 5.29.3 (upb implementation)" in result.stderr
    assert b"protobuf<4" in result.stderr and b"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python" in result.stderr


@pytest.mark.parametrize("module", ["grpc", "etcd3"])
def test_missing_client_libraries_say_what_to_install(module: str) -> None:
    script = (
        "import sys; sys.modules[sys.argv[1]] = None\n"
        "from configdrive.cli import main\n"
        "sys.exit(main(['list', '--store', 'etcd://127.0.0.1:9/configdrive/']))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ETCD_ENV}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", script, module], env=env, capture_output=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert b"Traceback" not in result.stderr and b"ModuleNotFoundError" not in result.stderr
    assert b"pip install 'configdrive[etcd]'" in result.stderr


# --- a real etcd: what works ------------------------------------------------------------------------


def test_put_get_list_watch_over_tls_with_a_password(
    cluster: Cluster, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETCDCTL_PASSWORD", PASSWORDS["alice"])
    for name in ("ETCDCTL_USER", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"):
        monkeypatch.delenv(name, raising=False)
    url = cluster.url(
        prefix,
        cacert=cluster.pki.crt("ca"),
        cert=cluster.pki.crt("client"),
        key=cluster.pki.key("client"),
        user="alice",
    )
    store, writer = open_store(url), open_store(url)
    try:
        assert store.url == f"etcds://{cluster.server.endpoint}{prefix}"
        first = store.put("vm1", SPEC, expected_revision=0)
        store.put("vm2", SPEC)
        record = store.get("vm1")
        assert record is not None and (record.raw, record.revision) == (SPEC, first)
        snapshot = store.list()
        assert set(snapshot.records) == {"vm1", "vm2"}

        batches = store.watch(snapshot.revision, idle=0.1)
        next(batches)  # the stream is open
        updated = writer.put("vm1", SPEC + b"# v2\n", expected_revision=first)
        batch = next_change(batches)
        assert [(c.vm_id, c.raw, c.revision) for c in batch.changes] == [("vm1", SPEC + b"# v2\n", updated)]
        assert writer.delete("vm2") is True
        batch = next_change(batches)
        assert [(c.vm_id, c.deleted) for c in batch.changes] == [("vm2", True)]
        batches.close()
        # Our prefix is what etcdctl sees too.
        assert cluster.etcdctl("get", "--print-value-only", f"{prefix}vm1") == SPEC + b"# v2\n\n"
    finally:
        store.close()
        writer.close()


def test_etcdctl_and_configdrive_read_the_same_settings(cluster: Cluster, prefix: str) -> None:
    """One set of ETCDCTL_* variables serves etcdctl and configdrive alike."""
    env = cluster.env(**cluster.tls_env(), ETCDCTL_USER=f"alice:{PASSWORDS['alice']}")
    url = cluster.url(prefix)  # etcds://HOST:PORT/PREFIX, nothing else
    cluster.etcdctl("put", f"{prefix}vm1", user="alice", stdin=SPEC)

    result = cli("get", "--store", url, "vm1", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == SPEC

    spec_file = ROOT / "fixtures/specs/valid/minimal.yaml"
    result = cli("put", "--store", url, "vm2", str(spec_file), env=env)
    assert result.returncode == 0, result.stderr
    etcdctl_env = {**env, "ETCDCTL_ENDPOINTS": f"https://{cluster.server.endpoint}"}
    read = subprocess.run(
        ["etcdctl", "get", "--print-value-only", f"{prefix}vm2"], env=etcdctl_env, capture_output=True, timeout=60
    )
    assert read.returncode == 0 and read.stdout == SPEC + b"\n", read.stderr

    result = cli("list", "--store", url, env=env)
    assert result.returncode == 0 and [line.split(b"\t")[0] for line in result.stdout.splitlines()] == [b"vm1", b"vm2"]


def test_the_watcher_builds_seeds_over_tls(cluster: Cluster, prefix: str, tmp_path: Path) -> None:
    cluster.etcdctl("put", f"{prefix}vm1", user="alice", stdin=SPEC)
    env = cluster.env(**cluster.tls_env(), ETCDCTL_USER="alice", ETCDCTL_PASSWORD=PASSWORDS["alice"])
    out = tmp_path / "seeds"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "configdrive",
            "watch",
            "--once",
            "--jobs",
            "1",
            "--source",
            cluster.url(prefix),
            "--out-dir",
            str(out),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert (out / "vm1.iso").is_file()


def test_a_client_certificate_alone_authenticates_its_common_name(cluster: Cluster, prefix: str) -> None:
    """etcd with --client-cert-auth takes the certificate's CN as the user when no token comes."""
    url = cluster.url(
        prefix, cacert=cluster.pki.crt("ca"), cert=cluster.pki.crt("alice-cert"), key=cluster.pki.key("alice-cert")
    )
    store = EtcdStore.from_url(url, {})
    try:
        revision = store.put("vm1", SPEC)
        record = store.get("vm1")
        assert record is not None and record.revision == revision
        assert store.authentications == 0
    finally:
        store.close()


def test_an_expired_token_is_renewed(cluster: Cluster, prefix: str) -> None:
    env = {**cluster.tls_env(), "ETCDCTL_USER": f"alice:{PASSWORDS['alice']}"}
    store, writer = EtcdStore.from_url(cluster.url(prefix), env), EtcdStore.from_url(cluster.url(prefix), env)
    try:
        first = store.put("vm1", SPEC)
        assert store.authentications == 1
        batches = store.watch(first, idle=0.1)  # created with the first token
        next(batches)

        time.sleep(TTL * 2 + 1)  # the token has expired (etcd checks its tokens every second)
        # A compare-and-swap after expiry: refused for the token, retried once, applied once.
        second = store.put("vm1", SPEC + b"# 2\n", expected_revision=first)
        assert store.authentications == 2
        record = store.get("vm1")
        assert record is not None and (record.raw, record.revision) == (SPEC + b"# 2\n", second)
        # The watch opened before the expiry still delivers.
        batch = next_change(batches)
        assert [(c.vm_id, c.revision) for c in batch.changes] == [("vm1", second)]
        batches.close()

        time.sleep(TTL * 2 + 1)
        # A watch opened after expiry: etcd cancels it at creation, the store authenticates again.
        batches = store.watch(second, idle=0.1)
        next(batches)
        third = writer.put("vm1", SPEC + b"# 3\n")
        batch = next_change(batches)
        assert [(c.vm_id, c.revision) for c in batch.changes] == [("vm1", third)]
        assert store.authentications == 3
        batches.close()
        assert set(store.list().records) == {"vm1"}
    finally:
        store.close()
        writer.close()


def test_threads_share_one_token(cluster: Cluster, prefix: str) -> None:
    env = {**cluster.tls_env(), "ETCDCTL_USER": f"alice:{PASSWORDS['alice']}"}
    store = EtcdStore.from_url(cluster.url(prefix), env)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                store.put(f"vm{n}", SPEC + f"# {i}\n".encode())
                store.get(f"vm{n}")
        except BaseException as err:  # noqa: B036 - reported below
            errors.append(err)

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert store.authentications < 3  # one token for all (a second if it expired meanwhile)
        assert len(store.list().records) == 8
    finally:
        store.close()


# --- a real etcd: clear refusals ----------------------------------------------------------------

REFUSALS = {
    # name: (URL query, environment, what the message says)
    "wrong CA": (
        {"cacert": "rogue-ca", "cert": "client"},
        {"ETCDCTL_USER": "alice"},
        "not signed by the CA in cacert=",
    ),
    "system CAs only": ({"cert": "client"}, {"ETCDCTL_USER": "alice"}, "not signed by a CA this system trusts"),
    "no client certificate": ({"cacert": "ca"}, {"ETCDCTL_USER": "alice"}, "needs a client certificate"),
    "untrusted client certificate": (
        {"cacert": "ca", "cert": "rogue-client"},
        {"ETCDCTL_USER": "alice"},
        "is the client certificate",
    ),
    "wrong password": (
        {"cacert": "ca", "cert": "client"},
        {"ETCDCTL_USER": "alice", "password": "Wr0ng-pw"},
        "refused user 'alice': wrong user name or password",
    ),
    "unknown user": (
        {"cacert": "ca", "cert": "client"},
        {"ETCDCTL_USER": "mallory", "password": "Wr0ng-pw"},
        "refused user 'mallory': wrong user name or password",
    ),
    "no user": ({"cacert": "ca", "cert": "client"}, {}, "etcd has authentication on: give user="),
    "prefix not granted": (
        {"cacert": "ca", "cert": "client", "prefix": "/other/"},
        {"ETCDCTL_USER": "alice"},
        "etcd user 'alice' has no role granting /other/",
    ),
    "plain gRPC to a TLS etcd": ({"scheme": "etcd"}, {"ETCDCTL_USER": "alice"}, "use etcds://"),
}


def _refusal(cluster: Cluster, case: str) -> tuple[str, dict[str, str], str, str]:
    query, env_spec, expected = REFUSALS[case]
    pki = cluster.pki
    options = {}
    if "cacert" in query:
        options["cacert"] = pki.crt(query["cacert"])
    if "cert" in query:
        options["cert"], options["key"] = pki.crt(query["cert"]), pki.key(query["cert"])
    url = cluster.url(query.get("prefix", f"/configdrive/{uuid.uuid4().hex}/"), query.get("scheme", "etcds"), **options)
    env = {}
    password = env_spec.get("password", PASSWORDS["alice"])
    if "ETCDCTL_USER" in env_spec:
        env = {"ETCDCTL_USER": env_spec["ETCDCTL_USER"], "ETCDCTL_PASSWORD": password}
    return url, env, expected, password


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_clear_store_errors(cluster: Cluster, case: str) -> None:
    url, env, expected, password = _refusal(cluster, case)
    started = time.monotonic()
    store = EtcdStore.from_url(url, env)
    try:
        for operation in (store.list, lambda: store.get("vm1"), lambda: store.put("vm1", SPEC)):
            with pytest.raises(StoreError) as caught:
                operation()
            assert expected in str(caught.value), str(caught.value)
            assert password not in str(caught.value)
        batches = store.watch(0, idle=0.1)
        with pytest.raises(StoreError) as caught:
            next_change(batches, timeout=10)
        assert expected in str(caught.value) and password not in str(caught.value), str(caught.value)
        assert caught.value.revision == 0  # where to resume
        batches.close()
    finally:
        store.close()
    assert time.monotonic() - started < 30  # no hang: every call has a deadline


@pytest.mark.parametrize("case", ["wrong CA", "no client certificate", "wrong password", "no user"])
def test_refusals_on_the_command_line(cluster: Cluster, case: str) -> None:
    url, env, expected, password = _refusal(cluster, case)
    started = time.monotonic()
    result = cli("list", "--store", url, env=cluster.env(**env))
    assert time.monotonic() - started < 30
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, stderr
    assert "configdrive: error: " in stderr and expected in stderr, stderr
    assert "Traceback" not in stderr and password not in stderr
