"""Listening sockets: ``--listen`` addresses (IPv4, ``[IPv6]:PORT``, link-local with a zone)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from configdrive.errors import ServeError

#: Linux's IP_FREEBIND (Python names it only from 3.12 on); IPv6 sockets honour it too.
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
#: Listen backlog of every listener (TCP and per-VM sockets): a boot storm opens many
#: connections at once. asyncio listens again with its own ``backlog`` (default 100) when it
#: starts serving a socket, so pass this to ``create_server``/``create_unix_server`` too.
BACKLOG = 1024


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``[fe80::1%br0]:PORT`` -> (host, port); numeric hosts only
    (port 0: any free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ServeError(f"--listen {value!r}: expected HOST:PORT or [IPV6]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ServeError(f"--listen {value!r}: write an IPv6 address in brackets, [{host}]:{port}")
    if not host:
        raise ServeError(f"--listen {value!r}: name the address to listen on (0.0.0.0 or [::] for all)")
    address, _, zone = host.partition("%")
    try:
        # Strictly: getaddrinfo would take "1.2.3" for 1.2.0.3, and IP_FREEBIND would bind it.
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ServeError(f"--listen {value!r}: {address!r} is not an IP address") from None
    if zone and not (ip.version == 6 and ip.is_link_local):
        raise ServeError(f"--listen {value!r}: only a link-local address takes a zone (%{zone})")
    return host, int(port)


def bind_tcp(value: str, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket for a ``--listen`` value.

    IPv6 sockets are IPv6-only (list ``0.0.0.0:PORT`` as well for IPv4); the address may be one
    the host does not have yet (IP_FREEBIND), so the service can start before its bridge is up."""
    host, port = parse_listen(value)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ServeError(f"--listen {value!r}: {err.strerror}") from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise ServeError(f"--listen {value!r}: {err.strerror}") from err
    return sock
