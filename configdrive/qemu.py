"""qemu arguments to attach a seed ISO as a CD-ROM or a read-only virtio disk, and a probe for whether KVM works.

For testing images offline::

    from configdrive import qemu
    accel = qemu.probe_accelerator(Path("vmlinuz"), cache=Path("~/.cache/cd-accel").expanduser())
    argv = ["qemu-system-x86_64", "-machine", "q35", "-m", "1024", *qemu.accel_args(accel),
            "-drive", "file=disk.qcow2,if=virtio", *qemu.cdrom_args("seed.iso", "sata")]

Every seed format is found by cloud-init by its volume label on any of the buses offered here,
provided the guest's initramfs or kernel has the driver (``ata_piix`` for ide on ``pc``, ``ahci``
for sata, ``virtio_scsi``, plus ``sr_mod`` and ``isofs``; ``virtio_blk`` for :func:`disk_args`).
The same ISO image serves both: hypervisors without CD-ROM emulation attach it as a disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal, get_args

from configdrive.errors import QemuError

CdromBus = Literal["ide", "sata", "virtio-scsi"]
Accelerator = Literal["kvm", "tcg"]

CDROM_BUSES: tuple[CdromBus, ...] = get_args(CdromBus)
QEMU = "qemu-system-x86_64"
KERNEL_BANNER = b"Linux version"


def default_bus(machine: str) -> CdromBus:
    """The CD-ROM bus a machine type offers natively: IDE on ``pc``, SATA (AHCI) on ``q35``."""
    if machine.startswith(("q35", "pc-q35")):
        return "sata"
    if machine in ("pc", "isapc") or machine.startswith("pc-"):
        return "ide"
    return "virtio-scsi"


def cdrom_args(iso: str | os.PathLike[str], bus: CdromBus = "ide", *, node: str = "seed") -> list[str]:
    """Arguments that attach ``iso`` read-only as a CD-ROM on ``bus``.

    ``ide`` uses the machine's own IDE/AHCI controller (PIIX on ``pc``, ICH9 on ``q35``);
    ``sata`` and ``virtio-scsi`` add a controller of their own named ``<node>-ahci`` or
    ``<node>-scsi``, so they work on any machine type. ``node`` must be unique per VM.
    """
    if bus not in CDROM_BUSES:
        raise QemuError(f"unknown CD-ROM bus {bus!r}; expected one of {CDROM_BUSES}")
    _check_node(node)
    drive = [
        "-drive",
        f"file={_option_value(os.fspath(iso))},format=raw,if=none,media=cdrom,readonly=on,id={node}",
    ]
    if bus == "ide":
        return [*drive, "-device", f"ide-cd,drive={node}"]
    if bus == "sata":
        return [
            *drive,
            "-device",
            f"ahci,id={node}-ahci",
            "-device",
            f"ide-cd,drive={node},bus={node}-ahci.0",
        ]
    return [
        *drive,
        "-device",
        f"virtio-scsi-pci,id={node}-scsi",
        "-device",
        f"scsi-cd,drive={node},bus={node}-scsi.0",
    ]


def disk_args(iso: str | os.PathLike[str], *, node: str = "seed") -> list[str]:
    """Arguments that attach ``iso`` as a read-only virtio disk (``virtio-blk-pci``).

    For guests or hypervisors without CD-ROM emulation; cloud-init finds the seed by its label
    just as on a CD-ROM. A disk is not removable media: a rebuilt seed reaches the guest only
    when the disk is attached again or the VM restarts. ``node`` must be unique per VM.
    """
    _check_node(node)
    return [
        "-drive", f"file={_option_value(os.fspath(iso))},format=raw,if=none,readonly=on,id={node}",
        "-device", f"virtio-blk-pci,drive={node}",
    ]  # fmt: skip


def _check_node(node: str) -> None:
    if not node or not all(c.isalnum() or c in "-_." for c in node) or not node[0].isalpha():
        raise QemuError(f"invalid qemu node name {node!r}")


def accel_args(accel: Accelerator) -> list[str]:
    """``-accel``/``-cpu`` for a verdict of :func:`probe_accelerator`."""
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg", "-cpu", "max"]
    raise QemuError(f"unknown accelerator {accel!r}")


def probe_accelerator(
    kernel: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    qemu: str = QEMU,
    timeout: float = 20.0,
    kvm_device: str | os.PathLike[str] = "/dev/kvm",
) -> Accelerator:
    """``"kvm"`` if a KVM boot of ``kernel`` prints its banner on serial within ``timeout``.

    A usable-looking ``/dev/kvm`` is not enough: a nested or paravirtual KVM may abort on
    ``-cpu host`` or hang before the first console line. The probe boots ``kernel`` (no
    initrd, so it panics and stops after the banner) and kills qemu by PID when done. The
    verdict is cached in ``cache`` (JSON), keyed by qemu binary, kernel and host kernel release.
    """
    qemu_path = shutil.which(qemu)
    if qemu_path is None:
        raise QemuError(f"{qemu} not found on PATH")
    kernel_path = Path(kernel)
    if not kernel_path.is_file():
        raise QemuError(f"{kernel_path}: kernel for the accelerator probe not found")
    key = _probe_key(Path(qemu_path), kernel_path)
    cache_path = Path(cache) if cache is not None else None
    cached = _read_cache(cache_path, key)
    if cached is not None:
        return cached
    if os.access(kvm_device, os.R_OK | os.W_OK):
        verdict: Accelerator = "kvm" if _kvm_boots(qemu_path, kernel_path, timeout) else "tcg"
    else:
        verdict = "tcg"
    if cache_path is not None:
        _write_cache(cache_path, key, verdict)
    return verdict


def _kvm_boots(qemu: str, kernel: Path, timeout: float) -> bool:
    with tempfile.TemporaryDirectory(prefix="configdrive-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        console.touch()
        argv = [
            qemu, "-nodefaults", "-display", "none", "-no-reboot", "-m", "256",
            *accel_args("kvm"),
            "-serial", f"file:{_option_value(str(console))}",
            "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1",
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as err:
            raise QemuError(f"cannot start {qemu}: {err}") from err
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if KERNEL_BANNER in console.read_bytes():
                    return True
                if proc.poll() is not None:  # e.g. -cpu host refused: no banner will come
                    return KERNEL_BANNER in console.read_bytes()
                time.sleep(0.2)
            return False
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _probe_key(qemu: Path, kernel: Path) -> str:
    qemu_stat, kernel_stat = qemu.stat(), kernel.stat()
    return json.dumps(
        [str(qemu), qemu_stat.st_mtime_ns, str(kernel.resolve()), kernel_stat.st_size,
         os.uname().release]
    )  # fmt: skip


def _read_cache(path: Path | None, key: str) -> Accelerator | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("key") == key and data.get("accel") in ("kvm", "tcg"):
        return "kvm" if data["accel"] == "kvm" else "tcg"
    return None


def _write_cache(path: Path, key: str, verdict: Accelerator) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "accel": verdict}) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        raise QemuError(f"{path}: cannot cache the accelerator verdict: {err}") from err


def _option_value(value: str) -> str:
    """Escape a value for qemu's ``key=value,...`` option syntax (a comma is written twice)."""
    return value.replace(",", ",,")
