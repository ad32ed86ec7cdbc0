"""Reading the user's files safely: regular files only, never blocking, at most a size limit.

A FIFO, a device or a folder named as a spec is refused before anything is read from it (opened
non-blocking, checked with fstat), and no more than ``limit + 1`` bytes are ever read, so
``/dev/zero`` or a huge file cannot exhaust memory.
"""

from __future__ import annotations

import os
import stat

from configdrive.errors import InputError

#: Largest spec file or store value read (64 MiB); the same limit as ``spec.LIMITS["spec_bytes"]``.
SPEC_LIMIT = 64 * 1024 * 1024


def read_regular_file(path: str | os.PathLike[str], limit: int = SPEC_LIMIT) -> bytes:
    """The bytes of the regular file ``path``; InputError when it is missing, unreadable, not a
    regular file or larger than ``limit`` bytes."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", name) from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"is not a regular file ({_kind(info.st_mode)})", name)
        if info.st_size > limit:
            raise InputError(f"is larger than the {limit} byte limit", name)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", name) from err
    finally:
        os.close(fd)
    if size > limit:
        raise InputError(f"is larger than the {limit} byte limit", name)
    return b"".join(chunks)


def read_stream(stream: object, limit: int = SPEC_LIMIT, name: str = "<stdin>") -> bytes:
    """At most ``limit`` bytes from a binary stream (standard input); InputError beyond that."""
    data: bytes = stream.read(limit + 1)  # type: ignore[attr-defined]
    if len(data) > limit:
        raise InputError(f"is larger than the {limit} byte limit", name)
    return data


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"
