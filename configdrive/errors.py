"""The configdrive exception tree; nothing else escapes the public API.

ConfigDriveError                 root: catch this to catch everything we raise
 +-- SpecError                   the spec is invalid; .problems lists every Problem(path, message)
 |    +-- FormatError            a valid spec that a format cannot express (problems name the format)
 +-- UnknownFormatError          no format of that name; .name, .known
 +-- InputError                  a user's file could not be read (missing, unreadable); .path
 +-- IsoError                    an image could not be built or read; .path names the file
 +-- OutputError                 a file could not be written safely; .path names the target
 +-- StoreError                  a spec store failed; .revision is the last revision seen
 |    +-- RevisionConflict       a compare-and-swap write lost to a concurrent writer
 +-- QemuError                   qemu could not be probed or driven
 |    +-- QmpError               qemu refused or failed a QMP command; .sent / .received
 +-- ServeError                  the metadata service cannot start or reload (a --listen value,
                                 the socket folder, the leases file)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a spec: the dotted path of the field and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<spec>'}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ConfigDriveError(Exception):
    """Root of every error configdrive raises."""


class SpecError(ConfigDriveError):
    """An invalid spec; ``problems`` holds every problem found, sorted and de-duplicated."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = sorted(set(problems))
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{where}invalid spec ({len(self.problems)} problem(s)):\n{lines}")


class FormatError(SpecError):
    """The spec is valid, but a format cannot express all of it; each problem names the format."""


class UnknownFormatError(ConfigDriveError):
    """A format name that is not in the registry."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name, self.known = name, known
        super().__init__(f"unknown format {name!r} (known: {', '.join(known)})")


class InputError(ConfigDriveError):
    """A file the user named could not be read: missing, unreadable, not a regular file."""

    def __init__(self, message: str, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class IsoError(ConfigDriveError):
    """An ISO image could not be built or read."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class OutputError(ConfigDriveError):
    """A file could not be written safely (symlink target, permissions, disk full, ...)."""

    def __init__(self, message: str, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class StoreError(ConfigDriveError):
    """A spec store (directory, etcd) failed; ``revision`` is the last revision seen, if any."""

    def __init__(self, message: str, revision: int | None = None) -> None:
        self.revision = revision
        super().__init__(message)


class RevisionConflict(StoreError):
    """A compare-and-swap write found a newer revision than the caller expected."""


class QemuError(ConfigDriveError):
    """qemu could not be probed, started or driven."""


class QmpError(QemuError):
    """qemu's QMP refused or failed a command; ``sent`` and ``received`` keep the evidence."""

    def __init__(self, message: str, sent: object = None, received: object = None) -> None:
        self.sent = sent
        self.received = received
        super().__init__(message)


class ServeError(ConfigDriveError):
    """The metadata service cannot start or reload: a ``--listen`` value, the socket folder, the leases file."""
