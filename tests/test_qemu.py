"""configdrive.qemu: CD-ROM and disk argument building and the cached accelerator verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configdrive import qemu
from configdrive.errors import ConfigDriveError, QemuError


def test_ide_uses_the_machines_own_controller() -> None:
    assert qemu.cdrom_args("/s/seed.iso", "ide") == [
        "-drive", "file=/s/seed.iso,format=raw,if=none,media=cdrom,readonly=on,id=seed",
        "-device", "ide-cd,drive=seed",
    ]  # fmt: skip


def test_sata_adds_an_ahci_controller() -> None:
    args = qemu.cdrom_args(Path("seed.iso"), "sata", node="cd0")
    assert args[1] == "file=seed.iso,format=raw,if=none,media=cdrom,readonly=on,id=cd0"
    assert args[2:] == ["-device", "ahci,id=cd0-ahci", "-device", "ide-cd,drive=cd0,bus=cd0-ahci.0"]


def test_virtio_scsi_adds_a_scsi_controller() -> None:
    assert qemu.cdrom_args("seed.iso", "virtio-scsi")[2:] == [
        "-device", "virtio-scsi-pci,id=seed-scsi",
        "-device", "scsi-cd,drive=seed,bus=seed-scsi.0",
    ]  # fmt: skip


def test_commas_in_the_path_are_escaped() -> None:
    assert qemu.cdrom_args("/tmp/a,b.iso")[1].startswith("file=/tmp/a,,b.iso,format=raw")


def test_disk_attaches_the_seed_as_a_read_only_virtio_disk() -> None:
    assert qemu.disk_args("/s/seed.iso") == [
        "-drive", "file=/s/seed.iso,format=raw,if=none,readonly=on,id=seed",
        "-device", "virtio-blk-pci,drive=seed",
    ]  # fmt: skip


def test_disk_node_and_path() -> None:
    args = qemu.disk_args(Path("/tmp/a,b.iso"), node="seed1")
    assert args[1] == "file=/tmp/a,,b.iso,format=raw,if=none,readonly=on,id=seed1"
    assert args[3] == "virtio-blk-pci,drive=seed1"
    assert "media=cdrom" not in args[1]
    for node in ("", "a,b", "1seed", "se ed"):
        with pytest.raises(QemuError):
            qemu.disk_args("seed.iso", node=node)


def test_cdrom_and_disk_of_two_seeds_do_not_clash() -> None:
    argv = qemu.cdrom_args("a.iso", "sata", node="cd") + qemu.disk_args("b.iso", node="disk")
    ids = [opt.split("id=")[1].split(",")[0] for opt in argv if "id=" in opt]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("machine", "bus"),
    [("pc", "ide"), ("pc-i440fx-7.2", "ide"), ("q35", "sata"), ("pc-q35-7.2", "sata"),
     ("microvm", "virtio-scsi")],
)  # fmt: skip
def test_default_bus(machine: str, bus: str) -> None:
    assert qemu.default_bus(machine) == bus


@pytest.mark.parametrize(("bus", "node"), [("floppy", "seed"), ("ide", "a,b"), ("ide", "")])
def test_bad_bus_or_node_is_refused(bus: str, node: str) -> None:
    with pytest.raises(ConfigDriveError):
        qemu.cdrom_args("seed.iso", bus, node=node)  # type: ignore[arg-type]


def test_accel_args() -> None:
    assert qemu.accel_args("kvm") == ["-accel", "kvm", "-cpu", "host"]
    assert qemu.accel_args("tcg") == ["-accel", "tcg", "-cpu", "max"]
    with pytest.raises(ConfigDriveError):
        qemu.accel_args("hvf")  # type: ignore[arg-type]


def test_probe_without_a_usable_kvm_device_is_tcg_and_cached(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not a kernel")
    cache = tmp_path / "cache" / "accel.json"
    verdict = qemu.probe_accelerator(kernel, cache=cache, qemu="python3", kvm_device=tmp_path / "no-kvm")
    assert verdict == "tcg"
    assert json.loads(cache.read_text())["accel"] == "tcg"


def test_probe_reuses_a_cached_verdict(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not a kernel")
    cache = tmp_path / "accel.json"
    qemu.probe_accelerator(kernel, cache=cache, qemu="python3", kvm_device=tmp_path / "no-kvm")
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({**data, "accel": "kvm"}))  # a verdict under the same key
    assert qemu.probe_accelerator(kernel, cache=cache, qemu="python3") == "kvm"


def test_probe_refuses_a_missing_qemu_or_kernel(tmp_path: Path) -> None:
    with pytest.raises(ConfigDriveError, match="not found"):
        qemu.probe_accelerator(tmp_path / "vmlinuz", qemu="no-such-qemu-binary")
    with pytest.raises(ConfigDriveError, match="kernel"):
        qemu.probe_accelerator(tmp_path / "vmlinuz", qemu="python3")
