"""Boot the guest under qemu with a seed, read the report from the serial console.

One qemu per boot, started by PID, watched with a deadline, killed by PID when the deadline
passes or the report never comes; a failed boot raises :class:`BootFailed` with the console tail.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from configdrive import qemu

from .guest_image import GuestImage

#: How the seed reaches the guest: a CD-ROM on ``bus``, or a read-only virtio disk.
Attach = Literal["cdrom", "disk"]
BOOT_TIMEOUT = 600.0  # TCG on a busy 2-core machine: a first boot takes up to ~160 s
REPORT_RE = re.compile(r"@@CDR (\d+) ([A-Za-z0-9+/=]+)")
BEGIN_RE = re.compile(r"@@CDREPORT-BEGIN (\d+)")
END_RE = re.compile(r"@@CDREPORT-END (\d+)")


class BootFailed(AssertionError):
    """The guest gave no complete report; the message carries the console tail."""


@dataclass(frozen=True)
class Nic:
    """A virtio NIC on its own qemu user network; ``netdev`` holds extra ``-netdev user`` options."""

    mac: str
    netdev: str = "restrict=on,ipv4=on,ipv6=on"


@dataclass
class Boot:
    """What one boot produced: the parsed report, its console log and how long it took."""

    name: str
    report: dict[str, Any]
    seconds: float
    console: Path
    argv: list[str] = field(default_factory=list)


def make_overlay(image: GuestImage, path: Path) -> Path:
    """A qcow2 overlay over the read-only root image, one per test disk."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.root), str(path)],
        check=True,
    )
    return path


def qemu_argv(
    image: GuestImage,
    disk: Path,
    seed: Path | None,
    nics: list[Nic],
    console: Path,
    *,
    accel: qemu.Accelerator,
    machine: str = "q35",
    bus: qemu.CdromBus | None = None,
    attach: Attach = "cdrom",
    report_paths: tuple[str, ...] = (),
    kernel_args: str = "",
    extra_args: Sequence[str] = (),
    wrapper: Sequence[str] = (),
) -> list[str]:
    """The qemu command line for one boot of ``disk`` with ``seed`` as a CD-ROM or a virtio disk
    (or no seed at all: ``None``). ``kernel_args`` end the kernel command line, ``extra_args``
    end qemu's (a NIC of another kind, ``-smbios``), and ``wrapper`` comes before qemu (e.g.
    ``ip netns exec NS``: it must exec qemu, so that the PID the harness kills is qemu's)."""
    append = "root=LABEL=vmroot ro console=ttyS0 panic=-1"
    if report_paths:
        append += " cdreport.paths=" + ",".join(report_paths)
    if kernel_args:
        append += " " + kernel_args
    argv = [
        *wrapper, qemu.QEMU, "-machine", machine, "-m", "1024", "-smp", "2",
        "-nodefaults", "-display", "none", "-no-reboot",
        *qemu.accel_args(accel),
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
        "-drive", f"file={disk},if=virtio,format=qcow2",
        "-serial", f"file:{console}",
    ]  # fmt: skip
    if seed is not None and attach == "disk":
        argv += qemu.disk_args(seed)
    elif seed is not None:
        argv += qemu.cdrom_args(seed, bus or qemu.default_bus(machine))
    for n, nic in enumerate(nics):
        argv += [
            "-netdev", f"user,id=net{n},{nic.netdev}",
            "-device", f"virtio-net-pci,netdev=net{n},mac={nic.mac}",
        ]  # fmt: skip
    return argv + list(extra_args)


def parse_report(console_text: str) -> dict[str, Any] | None:
    """The report between the markers, or None while it is incomplete."""
    begin, end = BEGIN_RE.search(console_text), END_RE.search(console_text)
    if not begin or not end:
        return None
    count = int(begin.group(1))
    chunks = {int(n): chunk for n, chunk in REPORT_RE.findall(console_text)}
    if sorted(chunks) != list(range(count)):
        missing = sorted(set(range(count)) - set(chunks))
        raise BootFailed(f"report lines missing or garbled on the console: {missing[:10]}")
    payload = "".join(chunks[n] for n in range(count))
    report: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(payload)))
    return report


def console_tail(console: Path, lines: int = 80) -> str:
    try:
        text = console.read_text(errors="replace")
    except OSError:
        return "<no console output>"
    return "\n".join(text.splitlines()[-lines:])


def boot(name: str, argv: list[str], console: Path, timeout: float = BOOT_TIMEOUT) -> Boot:
    """Run qemu until the guest reports and powers off; kill it by PID on the deadline."""
    console.write_bytes(b"")
    started = time.monotonic()
    stderr_path = console.with_suffix(".qemu-stderr")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    report: dict[str, Any] | None = None
    seconds = 0.0
    try:
        deadline = started + timeout
        while time.monotonic() < deadline:
            exited = proc.poll() is not None
            report = parse_report(console.read_text(errors="replace"))
            if report is not None:
                seconds = time.monotonic() - started
                break
            if exited:
                raise BootFailed(
                    f"{name}: qemu (pid {proc.pid}) exited with {proc.returncode} before the "
                    f"report after {time.monotonic() - started:.0f} s\n"
                    f"qemu stderr: {stderr_path.read_text(errors='replace')[-2000:]}\n"
                    f"console tail:\n{console_tail(console)}"
                )
            time.sleep(1.0)
        else:
            raise BootFailed(
                f"{name}: no report within {timeout:.0f} s; qemu pid {proc.pid} killed\n"
                f"console tail:\n{console_tail(console)}"
            )
        try:  # the guest powers itself off after the report
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
    finally:
        stop(proc)
    return Boot(name, report, seconds, console, argv)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate this qemu by its PID, then kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
