"""The metadata service's error: a branch of ``ConfigDriveError`` (listed in configdrive.errors' tree)."""

from __future__ import annotations

from configdrive.errors import ConfigDriveError


class ServeError(ConfigDriveError):
    """The service cannot start or reload: a ``--listen`` value, the socket folder, the leases file."""
