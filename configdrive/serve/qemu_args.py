"""qemu arguments to reach ``configdrive serve`` from a guest, for each way the README describes.

    socket + guestfwd  (user networking, IPv4)   metadata_user_netdev_args(socket_dir, vm_id, mac)
    tap on a bridge    (IPv4 and IPv6, root)     metadata_tap_args(tap, mac)
    platform identity  (cloud-init's checks)     openstack_smbios_args(), ec2_smbios_args(serial)

With user networking the guest's every source address is the same, so the service tells VMs
apart by socket: qemu relays each guest connection to 169.254.169.254:80 through the helper
``guestfwd.py`` to ``DIR/<vm-id>.sock``. qemu refuses a guestfwd address outside the user
net, so the net is 169.254.0.0/16: the guest gets 169.254.2.15 by DHCP and 169.254.169.254
is on-link.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from configdrive.errors import QemuError

METADATA_ADDRESS = "169.254.169.254"
USER_NET = "169.254.0.0/16"
HELPER = Path(__file__).with_name("guestfwd.py")


def guestfwd_command(socket_path: str | os.PathLike[str], python: str = sys.executable) -> str:
    """The ``-cmd:`` command relaying one guest connection to ``socket_path``."""
    command = f"{python} -I -S {HELPER} {os.fspath(socket_path)}"
    for part in (python, str(HELPER), os.fspath(socket_path)):
        if "," in part or " " in part:
            raise QemuError(
                f"{part!r}: a guestfwd command may contain no comma (qemu splits "
                "options there) and no space (the command is split at spaces)"
            )
    return command


def metadata_user_netdev_args(
    socket_dir: str | os.PathLike[str],
    vm_id: str,
    mac: str,
    *,
    netdev: str = "n0",
    device: str = "virtio-net-pci",
    ipv6: bool = False,
    restrict: bool = True,
    python: str = sys.executable,
) -> list[str]:
    """A user-networking NIC with ``mac`` whose 169.254.169.254:80 is ``socket_dir/<vm_id>.sock``.

    ``restrict`` keeps all other guest traffic inside qemu (guestfwd still works)."""
    command = guestfwd_command(Path(socket_dir) / f"{vm_id}.sock", python)
    options = [f"user,id={netdev}", f"net={USER_NET}", "ipv4=on", f"ipv6={'on' if ipv6 else 'off'}"]
    if restrict:
        options.append("restrict=on")
    options.append(f"guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:{command}")
    return ["-netdev", ",".join(options), "-device", f"{device},netdev={netdev},mac={mac}"]


def metadata_tap_args(tap: str, mac: str, *, netdev: str = "n0", device: str = "virtio-net-pci") -> list[str]:
    """A NIC on an existing tap device (on a bridge where ``serve --listen`` listens); the
    service finds the VM by its addresses, or by the EUI-64 of ``mac`` for IPv6."""
    for value in (tap, mac, netdev):
        if "," in value:
            raise QemuError(f"{value!r}: qemu option values may not contain a comma here")
    return [
        "-netdev",
        f"tap,id={netdev},ifname={tap},script=no,downscript=no",
        "-device",
        f"{device},netdev={netdev},mac={mac}",
    ]


def openstack_smbios_args() -> list[str]:
    """DMI product name ``OpenStack Nova``: cloud-init's OpenStack datasource (and ds-identify)
    probe the metadata service only on that platform."""
    return ["-smbios", "type=1,product=OpenStack Nova"]


def ec2_smbios_args(serial: str = "ec2-configdrive") -> list[str]:
    """A DMI serial starting with ``ec2``: cloud-init's EC2 datasource stays off without it."""
    if not serial.lower().startswith("ec2") or "," in serial:
        raise QemuError(f"EC2 serial {serial!r} must start with 'ec2' and contain no comma")
    return ["-smbios", f"type=1,serial={serial}"]
