"""Fixtures for the store and watcher tests: both stores (a folder, a real etcd), a paused qemu."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from configdrive.errors import IsoError
from configdrive.iso import read_iso
from configdrive.stores import SpecStore, open_store
from configdrive.watch import Watcher
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
        text += f"user_data: \"#!/bin/sh\\n# {'x' * padding}\\n\"\n"
    return text.encode()


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


def converged(out_dir: Path, expected: dict[str, int]) -> bool:
    """Every VM's ISO carries its latest version (read back with configdrive's reader)."""
    return all(iso_hostname(out_dir / f"{vm_id}.iso") == f"h-{vm_id}-{n}"
               for vm_id, n in expected.items())


@contextmanager
def running(watcher: Watcher, timeout: float = 30) -> Iterator[Watcher]:
    """Run ``watcher`` in a thread until the block ends; waits for its first sync."""
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: watcher.revision, timeout, "the watcher's first sync")
        yield watcher
    finally:
        watcher.request_stop()
        thread.join(15)
        assert not thread.is_alive(), "the watcher did not stop"
