"""Fixtures for the store and watcher tests: both stores (a folder, a real etcd), every format,
paused qemu machines, and what a converged image folder looks like."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from configdrive.errors import IsoError
from configdrive.iso import read_iso
from configdrive.render import DEFAULT_FORMAT, FORMATS
from configdrive.seed import build_seed
from configdrive.sinks import SeedFolder
from configdrive.stores import SpecStore, open_store
from tests.watch.servers import EtcdServer, QemuMachine, wait_for


def need(binary: str, module: str | None = None) -> None:
    """Skip when a tool is missing on a developer's machine; fail under CI, which installs it."""
    missing = shutil.which(binary) is None
    if module and not missing:
        missing = importlib.util.find_spec(module) is None
    if missing:
        message = f"needs {binary}" + (f" and the {module} module" if module else "")
        if os.environ.get("CI"):
            pytest.fail(f"{message}: see tests/APT_PACKAGES-watch and the etcd/qmp extras")
        pytest.skip(message)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    need("etcd", "etcd3")
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd for one test that kills and restarts it."""
    need("etcd", "etcd3")
    server = EtcdServer(tmp_path / "etcd-data").start()
    yield server
    server.stop()


@pytest.fixture(params=["dir", pytest.param("etcd", marks=pytest.mark.etcd)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind: a folder, or a unique prefix in the shared etcd."""
    if request.param == "dir":
        (tmp_path / "specs").mkdir()
        return f"dir:{tmp_path / 'specs'}"
    server: EtcdServer = request.getfixturevalue("etcd_server")
    return f"{server.url}/test/{uuid.uuid4().hex}/"


@pytest.fixture(params=list(FORMATS))
def fmt(request: pytest.FixtureRequest) -> str:
    """Each format in the registry."""
    return str(request.param)


@pytest.fixture
def store(store_url: str) -> Iterator[SpecStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def qemu_factory(tmp_path: Path) -> Iterator[object]:
    """Starts paused q35 machines with an ide-cd ``cd0`` (holding ``iso``, or empty)."""
    need("qemu-system-x86_64", "qemu.qmp")
    machines: list[QemuMachine] = []

    def start(iso: Path | None) -> QemuMachine:
        folder = tmp_path / f"qemu{len(machines)}"
        folder.mkdir()
        machine = QemuMachine(folder, iso)
        machines.append(machine)
        return machine.start()

    yield start
    for machine in machines:
        machine.stop()


def spec(vm_id: str, n: int, padding: int = 0) -> bytes:
    """Version ``n`` of ``vm_id``'s spec; the hostname carries the version."""
    text = f"instance_id: iid-{vm_id}\nhostname: h-{vm_id}-{n}\n"
    if padding:
        text += f'user_data: "#!/bin/sh\\n# {"x" * padding}\\n"\n'
    return text.encode()


@lru_cache(maxsize=4096)
def expected_image(vm_id: str, n: int, fmt: str = DEFAULT_FORMAT, padding: int = 0) -> bytes:
    """The image of version ``n`` of ``vm_id``'s spec, as the pipeline builds it."""
    return build_seed(spec(vm_id, n, padding), fmt, vm_id).image


def iso_hostname(path: Path) -> str | None:
    """The hostname a NoCloud ISO carries, or None when the file is missing."""
    try:
        image = read_iso(path)
    except IsoError as err:
        if isinstance(err.__cause__, FileNotFoundError):
            return None
        raise
    meta = yaml.safe_load(image.files["meta-data"])
    return str(meta["local-hostname"])


def converged(out_dir: Path, expected: dict[str, int], fmt: str = DEFAULT_FORMAT, padding: int = 0) -> bool:
    """Every VM's ISO is byte for byte the image of its latest version, in any format."""
    for vm_id, n in expected.items():
        try:
            if (out_dir / f"{vm_id}.iso").read_bytes() != expected_image(vm_id, n, fmt, padding):
                return False
        except FileNotFoundError:
            return False
    return True


def images(out_dir: Path) -> list[str]:
    """The image names in ``out_dir`` (the state file and temp files left out)."""
    return sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("."))


@contextmanager
def running(watch: SeedFolder, timeout: float = 30) -> Iterator[SeedFolder]:
    """Run ``watch``'s follower in a thread until the block ends; waits for its first sync."""
    thread = threading.Thread(target=watch.follower.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: watch.follower.revision, timeout, "the watcher's first sync")
        yield watch
    finally:
        watch.follower.request_stop()
        thread.join(15)
        assert not thread.is_alive(), "the watcher did not stop"
