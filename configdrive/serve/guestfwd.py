"""The helper at the guest end of qemu's ``guestfwd=tcp:169.254.169.254:80-cmd:...``.

qemu's user network runs the ``-cmd:`` command once per guest TCP connection, with that
connection on standard input and output; this relays it to the VM's socket of
``configdrive serve --socket-dir DIR``::

    guestfwd=tcp:169.254.169.254:80-cmd:python3 -I -S /path/to/guestfwd.py DIR/<vm-id>.sock

Run as a script (not ``-m``) it imports nothing of configdrive: the standard library only, so
it starts in ~15 ms. ``socat STDIO UNIX-CONNECT:DIR/<vm-id>.sock`` does the same job. qemu
splits its options at commas, so neither path may contain one.
"""

import os
import selectors
import socket
import sys

CHUNK = 65536


def relay(path: str, inbound: int = 0, outbound: int = 1) -> int:
    """Copy ``inbound`` -> the socket at ``path`` -> ``outbound`` until both directions end."""
    try:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(path)
    except OSError as err:
        print(f"guestfwd: cannot connect to {path}: {err.strerror}", file=sys.stderr)
        return 1
    selector = selectors.DefaultSelector()
    selector.register(inbound, selectors.EVENT_READ, "guest")
    selector.register(server, selectors.EVENT_READ, "server")
    open_directions = 2
    while open_directions:
        for key, _ in selector.select():
            if key.data == "guest":
                data = _read(inbound)
                if data:
                    server.sendall(data)
                    continue
                selector.unregister(inbound)
                _shutdown(server)
            else:
                data = _read(server.fileno())
                if data:
                    _write_all(outbound, data)
                    continue
                selector.unregister(server)
                _close_output(outbound)
            open_directions -= 1
    server.close()
    return 0


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _close_output(fd: int) -> None:
    """End the guest's side: a half-close when standard output is the connection's socket."""
    try:
        socket.socket(fileno=os.dup(fd)).shutdown(socket.SHUT_WR)
    except OSError:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return relay(argv[1])
    except (BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
