"""Fixtures for the booted-VM tests: the cached guests, the accelerator verdict, boot runners.

``vm`` boots the Debian 12 guest (cloud-init 22.4), ``vm_debian13`` the Debian 13 one
(cloud-init 25.1, netplan + systemd-networkd); each guest is built the first time a test asks
for it. Per-boot times are printed in pytest's terminal summary and written to
``$CONFIGDRIVE_VM_CACHE/last-run.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import configdrive
from configdrive import qemu

from . import harness
from .guest_image import DEBIAN12, DEBIAN13, Generation, GuestImage, cache_root, ensure_guest

HOST_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "ssh-keygen")
_TIMES: list[dict[str, Any]] = []
_BUILD: dict[str, dict[str, Any]] = {}  # generation name -> image, build time, accelerator


@dataclass
class VmRunner:
    """Builds a seed from a spec with configdrive and boots the guest with it."""

    image: GuestImage
    accel: qemu.Accelerator
    workdir: Path
    generation: Generation = DEBIAN12
    boots: list[harness.Boot] = field(default_factory=list)

    def disk(self, name: str) -> Path:
        """A fresh copy-on-write disk over the guest image."""
        return harness.make_overlay(self.image, self.workdir / f"{name}.qcow2")

    def seed(self, name: str, spec: Mapping[str, Any], fmt: str) -> Path:
        path = self.workdir / f"{name}.iso"
        configdrive.write_file(path, configdrive.build_iso(configdrive.load_spec(dict(spec)), fmt))
        return path

    def boot(
        self,
        name: str,
        disk: Path,
        seed: Path | None,
        nics: list[harness.Nic],
        *,
        machine: str = "q35",
        bus: qemu.CdromBus | None = None,
        attach: harness.Attach = "cdrom",
        report_paths: tuple[str, ...] = (),
        kernel_args: str = "",
        extra_args: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> harness.Boot:
        """Boot ``disk``; ``seed`` None boots without a seed drive (see harness.qemu_argv for
        ``kernel_args``, ``extra_args`` and ``wrapper``)."""
        console = self.workdir / f"{name}.console.log"
        argv = harness.qemu_argv(
            self.image, disk, seed, nics, console, accel=self.accel, machine=machine, bus=bus,
            attach=attach, report_paths=report_paths, kernel_args=kernel_args, extra_args=extra_args,
            wrapper=wrapper,
        )  # fmt: skip
        try:
            result = harness.boot(name, argv, console)
        except harness.BootFailed:
            _TIMES.append(
                {"boot": name, "generation": self.generation.name, "seconds": None, "accel": self.accel, "ok": False}
            )
            raise
        (self.workdir / f"{name}.report.json").write_text(json.dumps(result.report, indent=1))
        _TIMES.append(
            {"boot": name, "generation": self.generation.name, "seconds": round(result.seconds, 1),
             "accel": self.accel, "guest_uptime": result.report.get("uptime"), "ok": True}
        )  # fmt: skip
        self.boots.append(result)
        return result


def _guest(generation: Generation) -> GuestImage:
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"VM tests need {', '.join(missing)} (see tests/vm/APT_PACKAGES)")
    if os.geteuid() != 0:
        pytest.fail("building the VM guest needs root (debootstrap, chroot)")
    started = time.monotonic()
    image, build_seconds = ensure_guest(generation)
    _BUILD[generation.name] = {
        "image": str(image.directory),
        "suite": generation.suite,
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "wait_seconds": round(time.monotonic() - started, 1),
    }
    return image


def _runner(generation: Generation, image: GuestImage, workdir: Path) -> VmRunner:
    # one verdict file per generation: the cache is keyed by the probed kernel
    accel = qemu.probe_accelerator(image.kernel, cache=cache_root() / f"accel-{generation.name}.json")
    _BUILD[generation.name]["accel"] = accel
    return VmRunner(image, accel, workdir, generation)


@dataclass(frozen=True)
class Keys:
    ed25519: str
    rsa: str
    later: str  # the key the metadata change adds
    fourth: str  # the key the network-policy reboot adds (and cloud-init must not install)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Fresh OpenSSH public keys (only the public halves are used; shared by every VM test module)."""
    folder = tmp_path_factory.mktemp("keys")

    def make(name: str, *args: str) -> str:
        path = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-N", "", "-C", f"{name}@configdrive-test", "-f", str(path), *args],
            check=True,
        )
        return path.with_suffix(".pub").read_text().strip()

    return Keys(make("ed", "-t", "ed25519"), make("rsa", "-t", "rsa", "-b", "2048"),
                make("later", "-t", "ed25519"), make("fourth", "-t", "ed25519"))  # fmt: skip


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The Debian 12 guest (cloud-init 22.4, ifupdown)."""
    return _guest(DEBIAN12)


@pytest.fixture(scope="session")
def guest_image_debian13() -> GuestImage:
    """The Debian 13 guest (cloud-init 25.1, netplan + systemd-networkd + systemd-resolved)."""
    return _guest(DEBIAN13)


@pytest.fixture(scope="session")
def vm(guest_image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmRunner]:
    yield _runner(DEBIAN12, guest_image, tmp_path_factory.mktemp("vm"))


@pytest.fixture(scope="session")
def vm_debian13(guest_image_debian13: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmRunner]:
    yield _runner(DEBIAN13, guest_image_debian13, tmp_path_factory.mktemp("vm-debian13"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TIMES and not _BUILD:
        return
    terminalreporter.section("VM boots")
    for name, build in _BUILD.items():
        built = build.get("build_seconds")
        terminalreporter.write_line(
            f"{name} guest {build.get('image')}: "
            + (f"built in {built} s" if built is not None else "cached")
            + f", accelerator {build.get('accel')}"
        )
    for entry in _TIMES:
        seconds = entry["seconds"]
        shown = "FAILED" if seconds is None else f"{seconds:6.1f} s"
        terminalreporter.write_line(f"{entry['generation']:<9} {entry['boot']:<36} {shown}")
    total = sum(e["seconds"] or 0 for e in _TIMES)
    terminalreporter.write_line(f"{'total boot time':<46} {total:6.1f} s")
    try:
        (cache_root() / "last-run.json").write_text(json.dumps({"guests": _BUILD, "boots": _TIMES}, indent=1) + "\n")
    except OSError:
        pass
