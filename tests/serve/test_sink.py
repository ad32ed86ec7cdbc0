"""The HTTP sink: the follower's one seed becomes both served formats; last good data kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from configdrive.seed import build_seed
from configdrive.serve.registry import MetadataTables
from configdrive.sinks import SeedBuilder
from configdrive.sinks.http import HttpSink
from configdrive.stores import open_store
from configdrive.watch import Follower
from tests.conftest import FIXTURES

EXAMPLE = (FIXTURES / "specs/valid/example.yaml").read_bytes()
#: Valid, and NoCloud can carry it, but config-2 cannot (a NIC without a MAC).
NO_MAC = b"instance_id: iid-nomac\nhostname: nomac\nnetwork:\n  ethernets:\n    eth0: {dhcp4: true}\n"


@pytest.mark.parametrize("fmt", ["nocloud", "configdrive", "opennebula"])
def test_any_follower_format_gives_both_served_formats(fmt: str) -> None:
    tables = MetadataTables()
    sink = HttpSink(tables)
    raw = EXAMPLE if fmt != "opennebula" else b"instance_id: iid-x\nhostname: x\n"
    try:
        seed = build_seed(raw, fmt)
    except Exception:  # noqa: BLE001 - a format this checkout does not have
        pytest.skip(f"no {fmt} format")
    sink.update("vm", seed, "digest")
    assert tables.vms["vm"].formats == {"nocloud", "configdrive"}
    assert tables.vms["vm"].table.get("/nocloud/meta-data") is not None
    assert tables.vms["vm"].table.get("/openstack/latest/meta_data.json") is not None


def test_a_format_the_spec_cannot_express_is_not_served(caplog: pytest.LogCaptureFixture) -> None:
    tables = MetadataTables()
    HttpSink(tables).update("vm", build_seed(NO_MAC, "nocloud"), "d")
    assert tables.vms["vm"].formats == {"nocloud"}
    assert tables.vms["vm"].table.get("/openstack") is None
    assert "vm: not served as configdrive" in caplog.text and "network.ethernets.eth0.match.macaddress" in caplog.text


def test_losing_a_format_keeps_the_last_good_data(caplog: pytest.LogCaptureFixture) -> None:
    tables = MetadataTables()
    sink = HttpSink(tables)
    sink.update("vm", build_seed(EXAMPLE, "nocloud"), "d1")
    before = tables.vms["vm"]
    sink.update("vm", build_seed(NO_MAC, "nocloud"), "d2")
    assert tables.vms["vm"] is before
    assert "cannot be served as configdrive any more; keeping its last good data" in caplog.text


def test_end_sync_hands_over_the_full_set() -> None:
    tables, seen = MetadataTables(), []
    sink = HttpSink(tables, full_set=seen.append)
    sink.update("a", build_seed(EXAMPLE, "nocloud"), "d")
    sink.end_sync(None)
    assert seen == []
    sink.end_sync(frozenset({"b"}))
    assert seen == [frozenset({"b"})]
    assert sink.resumable() == {}  # the tables live in memory: every seed is needed after a restart


def test_with_the_follower_and_a_folder_store(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "web1.yaml").write_bytes(EXAMPLE)
    (folder / "gone.yaml").write_bytes(b"instance_id: iid-gone\nhostname: gone\n")
    tables, full = MetadataTables(), []
    follower = Follower(
        open_store(f"dir:{folder}"), SeedBuilder("configdrive", pack=False), [HttpSink(tables, full_set=full.append)]
    )
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not full and time.monotonic() < deadline:
            time.sleep(0.02)
        assert set(tables.vms) == {"web1", "gone"}
        (folder / "gone.yaml").unlink()
        while "gone" in tables.vms and time.monotonic() < deadline:
            time.sleep(0.02)
        assert set(tables.vms) == {"web1"}
    finally:
        follower.request_stop()
        thread.join(10)
