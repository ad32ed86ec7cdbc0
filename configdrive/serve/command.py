"""The ``configdrive serve`` subcommand's options; ``cli.py`` adds it with
``add_serve_parser(command)`` and dispatches to ``run_serve(args)`` (in ``process.py``, imported
only when serve runs: asyncio and aiohttp cost every other command nothing).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from configdrive.render import FORMATS
from configdrive.storeurls import URL_HELP as STORE_HELP

EXAMPLES = """\
examples:
  configdrive serve --source dir:/etc/configdrive/specs --socket-dir /run/configdrive/vms
  configdrive serve --source etcd://10.0.0.5:2379/configdrive/host1/ \\
      --listen 169.254.169.254:80 --listen '[fe80::a9fe:a9fe%br0]:80' --leases /run/configdrive/leases.yaml
  configdrive serve --source dir:specs --socket-dir /run/cd --out-dir /var/lib/configdrive/seeds
"""


def add_serve_parser(command: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``serve`` through cli.py's ``command(name, func, help)`` factory."""
    p = command("serve", run_serve, "serve each VM's seed files over HTTP (OpenStack, EC2, NoCloud-net)")
    p.epilog = EXAMPLES
    p.add_argument("--source", required=True, metavar="URL", help=STORE_HELP)
    p.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="TCP address to serve on, the VM found by source address: 169.254.169.254:80, "
        "[fd00:ec2::254]:80, [fe80::a9fe:a9fe%%br0]:80 (repeatable)",
    )
    p.add_argument(
        "--socket-dir",
        metavar="DIR",
        help="one Unix socket per VM, DIR/<vm-id>.sock, for qemu's guestfwd (owned by serve)",
    )
    p.add_argument(
        "--leases",
        metavar="FILE",
        help="YAML/JSON {vm-id: address or [addresses]}: further source addresses per VM, "
        "e.g. DHCPv4 leases (re-read on SIGHUP)",
    )
    p.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="do not log each request (VM id, source, method, path, status)",
    )
    images = p.add_argument_group("seed images too (the watch options)")
    images.add_argument("--out-dir", help="also keep DIR/<vm-id>.iso in step, as `configdrive watch` does")
    images.add_argument(
        "-f",
        "--format",
        choices=tuple(FORMATS),
        help="format of those images (default: nocloud); the service serves NoCloud and config-2 either way",
    )
    images.add_argument("--keep-deleted", action="store_true", help="keep the ISO of a deleted spec")
    images.add_argument("--qmp-map", metavar="FILE", help="as for watch: hot-swap media of running VMs")
    images.add_argument("--qmp-timeout", type=float, metavar="SECONDS", help="as for watch")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes answer on the --listen sockets (the kernel spreads the connections; "
        "each follows the store itself, so memory is N times); the socket folder is served by "
        "the first (default: 1)",
    )
    p.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for a large sync (default: CPU count)"
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT (exit 0); SIGHUP re-lists the store and re-reads the leases."""
    from configdrive.serve.process import serve

    return serve(args)
