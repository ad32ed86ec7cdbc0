"""Atomic, private, symlink-safe writes: temp file in the same folder, fsync, rename; mode 0600.

Seeds hold user-data and keys, so every file we write is readable by its owner only, and a
reader never sees a half-written file: it sees the complete old one or the complete new one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from configdrive.errors import OutputError
from configdrive.model import FileTree

#: Mode of every file configdrive writes.
FILE_MODE = 0o600


def write_file(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically; refuse to write through a symlink."""
    target = Path(path)
    try:
        if stat.S_ISLNK(os.lstat(target).st_mode):
            raise OutputError("is a symbolic link; refusing to write through it", str(target))
    except FileNotFoundError:
        pass
    except OSError as err:
        raise OutputError(err.strerror or str(err), str(target)) from err
    folder = target.parent
    try:
        # mkstemp: O_CREAT|O_EXCL with mode 0600, a unique name, so concurrent writers never collide.
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise OutputError(f"cannot create a file in {folder}: {err.strerror}", str(target)) from err
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as err:
        _discard(temp)
        raise OutputError(f"write failed: {err.strerror}", str(target)) from err
    _fsync_dir(folder)


def write_tree(folder: str | os.PathLike[str], tree: FileTree) -> None:
    """Write every file of ``tree`` below ``folder`` (created 0700 where missing), each atomically."""
    root = Path(folder)
    for rel in sorted(tree):
        target = root.joinpath(*rel.split("/"))
        _make_folders(root, target.parent)
        write_file(target, tree[rel])


def _make_folders(root: Path, folder: Path) -> None:
    """Create ``folder`` and each missing parent down from ``root`` with mode 0700
    (``Path.mkdir(parents=True)`` would give the parents the umask's mode)."""
    for part in [*reversed(folder.relative_to(root).parents), folder.relative_to(root)]:
        path = root / part
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except FileNotFoundError:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create folder: {err.strerror}", str(path)) from err


def remove_file(path: str | os.PathLike[str]) -> bool:
    """Remove ``path`` if it exists; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise OutputError(f"cannot remove: {err.strerror}", os.fspath(path)) from err
    _fsync_dir(Path(path).parent)
    return True


def _discard(temp: Path) -> None:
    try:
        os.unlink(temp)
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
