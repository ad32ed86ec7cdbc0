"""Atomic, private writes: never through a symlink, never over a device, FIFO, socket or folder.

Temp file in the same folder, fsync, rename, fsync the folder; mode 0600. Many files at once
(``write_files``, and the watcher's image folder through the same ``stage_at``/``commit_at``):
every temp file of a batch is written first, then they are made durable together (one
``syncfs(2)``, or an fsync each), renamed, and the folder is synced once. Seeds hold user-data
and keys, so every file we write is readable by its owner only, and a reader never sees a
half-written file: it sees the complete old one or the complete new one.
Only a missing path or a regular file is ever replaced: a rename over a device, FIFO or socket
swaps it out from under every other user (as root, ``build -o /dev/null`` used to turn
/dev/null into a private regular file).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from configdrive.errors import OutputError
from configdrive.model import FileTree

#: Mode of every file configdrive writes.
FILE_MODE = 0o600
#: Mode of every folder configdrive creates.
FOLDER_MODE = 0o700
#: Files ``write_files`` writes before it makes them durable and renames them: one folder sync
#: per this many files, and at most this many temp files left to clean up after a crash.
BATCH = 500

#: From this many files on, a batch is made durable with one ``syncfs(2)`` of the folder's file
#: system (one journal commit and one disk cache flush) instead of an ``fsync`` per file (one
#: each); below it, fsyncs, which do not wait for other programs' unwritten data.
SYNCFS_FROM = 16

#: inode, size, mtime_ns of a file as written: "the very file we wrote".
Signature = tuple[int, int, int]

_KINDS = (
    (stat.S_ISDIR, "folder"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
)


def check_target(path: str | os.PathLike[str]) -> None:
    """Raise OutputError unless ``path`` is missing or a regular file, the only things
    ``write_file`` replaces; lets a caller refuse a bad target before doing any work."""
    _refuse_unless_regular(os.fspath(path), None, os.fspath(path))


def write_file(
    path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE, *, mtime_ns: int | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically (with modification time ``mtime_ns`` when given,
    set before the rename, so watchers see one change). Refuses, touching nothing, when ``path``
    is a symlink, folder, device, FIFO or socket."""
    target = Path(path)
    folder = target.parent
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise OutputError(f"cannot create a file in {folder}: {err.strerror}", str(target)) from err
    try:
        _write_at(dir_fd, target.name, data, mode, str(target), mtime_ns)
    finally:
        os.close(dir_fd)


def write_files(
    folder: str | os.PathLike[str], files: Iterable[tuple[str, bytes]], mode: int = FILE_MODE, *, batch: int = BATCH
) -> int:
    """Write each ``(name, data)`` of ``files`` to ``folder/name`` atomically and durably, as
    ``write_file`` does each, but in batches of ``batch``: every temp file of a batch is written,
    then all are made durable (one ``syncfs`` of the file system for a batch of SYNCFS_FROM or
    more, else an fsync each), renamed over their names, and the folder is synced once. ``files`` is
    consumed lazily (a generator of built images is held a batch at a time, not whole); returns
    the number of files written. After a crash every name holds its complete old or complete new
    contents (``remove_stale_temps`` removes the temp files left). Raises OutputError at the
    first failure: the files of earlier batches and those of this batch renamed before the
    failure are in place and durable, the rest of the batch is discarded and nothing after it is
    written. A name given twice in one batch gets its last contents."""
    root = Path(folder)
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise OutputError(f"cannot create a file in {root}: {err.strerror}", str(root)) from err
    written = 0
    staged: list[tuple[str, str]] = []  # (name, temp)
    try:
        for name, data in files:
            staged.append((name, stage_at(dir_fd, name, data, str(root / name), mode)))
            if len(staged) >= max(1, batch):
                written += _commit_all(dir_fd, root, staged)
                staged = []
        written += _commit_all(dir_fd, root, staged)
        staged = []
    finally:
        for _name, temp in staged:  # a failure while staging: drop what this batch wrote
            _discard(dir_fd, temp)
        os.close(dir_fd)
    return written


def _commit_all(dir_fd: int, root: Path, staged: list[tuple[str, str]]) -> int:
    """The durability pass (``sync_all`` when there are many), ``commit_at`` for each staged file,
    then one folder sync (also after a failure, for the files renamed before it); the temp files
    not renamed are discarded."""
    done = 0
    synced = len(staged) >= SYNCFS_FROM and sync_all(dir_fd)
    try:
        for name, temp in staged:
            commit_at(dir_fd, temp, name, str(root / name), synced=synced)
            done += 1
    except BaseException:
        for _name, temp in staged[done + 1 :]:
            _discard(dir_fd, temp)
        if done:
            sync_folder(dir_fd, str(root))
        raise
    finally:
        staged.clear()
    if done:
        sync_folder(dir_fd, str(root))
    return done


def sync_all(dir_fd: int) -> bool:
    """Make every file written on the file system of the folder open as ``dir_fd`` durable with one
    ``syncfs(2)`` (through libc: CPython 3.11 has no ``os.syncfs``). False when there is no
    syncfs or it failed: then fsync each file (``commit_at(synced=False)``), which also says
    which file could not be written. Since Linux 5.8 syncfs reports write-back errors."""
    call = _syncfs()
    if call is None:
        return False
    try:
        call(dir_fd)
    except OSError:
        return False
    return True


_SYNCFS: list[Callable[[int], None] | None] = []


def _syncfs() -> Callable[[int], None] | None:
    if not _SYNCFS:
        call: Callable[[int], None] | None = getattr(os, "syncfs", None)
        if call is None:
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                function = libc.syncfs
                function.argtypes = [ctypes.c_int]
                function.restype = ctypes.c_int

                def call(fd: int) -> None:
                    if function(fd) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, os.strerror(errno))

            except (OSError, AttributeError):
                call = None
        _SYNCFS.append(call)
    return _SYNCFS[0]


def stage_at(dir_fd: int, name: str, data: bytes, shown: str, mode: int = FILE_MODE) -> str:
    """The first half of a batched write: ``data`` in a new temp file beside ``name`` in the folder
    open as ``dir_fd`` (mode ``mode``, not yet durable, not renamed); returns the temp file's name.
    Refuses, writing nothing, when ``name`` is a symlink, folder, device, FIFO or socket."""
    _check_name(name, shown)
    _refuse_unless_regular(name, dir_fd, shown)
    temp, fd = create_temp(dir_fd, name, shown)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
    except BaseException as err:
        _discard(dir_fd, temp)
        if isinstance(err, OSError):
            raise OutputError(f"write failed: {err.strerror}", shown) from err
        raise
    return temp


def commit_at(dir_fd: int, temp: str, name: str, shown: str, *, synced: bool = False) -> Signature:
    """The second half: fsync the temp file ``temp`` (unless ``synced``: ``sync_all`` made it
    durable), rename it over ``name`` (checked again: only a missing name or a regular file is
    replaced) and return the new file's signature. The temp file is discarded when this fails.
    The rename is durable only after ``sync_folder``."""
    try:
        if synced:
            info = os.stat(temp, dir_fd=dir_fd, follow_symlinks=False)
        else:
            fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.fsync(fd)
                info = os.fstat(fd)
            finally:
                os.close(fd)
        # Again just before the rename: the target may have changed since the temp was written.
        _refuse_unless_regular(name, dir_fd, shown)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as err:
        _discard(dir_fd, temp)
        if isinstance(err, OSError):
            raise OutputError(f"write failed: {err.strerror}", shown) from err
        raise
    return info.st_ino, info.st_size, info.st_mtime_ns


def sync_folder(dir_fd: int, shown: str) -> None:
    """fsync the folder open as ``dir_fd``: makes the renames in it durable."""
    try:
        os.fsync(dir_fd)
    except OSError as err:
        raise OutputError(f"written, but syncing the folder failed: {err.strerror}", shown) from err


def write_tree(folder: str | os.PathLike[str], tree: FileTree) -> None:
    """Write every file of ``tree`` below ``folder`` (created 0700 where missing), each atomically.

    ``folder`` itself may be a symlink (the caller named it); below it nothing is followed: each
    folder is opened relative to its parent with O_NOFOLLOW, so a symlink planted in the tree
    cannot redirect a write elsewhere."""
    root = Path(folder)
    _make_root(root)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise OutputError(f"cannot open folder: {err.strerror}", str(root)) from err
    try:
        for rel in sorted(tree):
            *parents, name = rel.split("/")
            dir_fd = _open_folders(root_fd, root, parents)
            try:
                _write_at(dir_fd, name, tree[rel], FILE_MODE, str(root.joinpath(*parents, name)))
            finally:
                os.close(dir_fd)
    finally:
        os.close(root_fd)


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


def remove_stale_temps(folder: str | os.PathLike[str], name_glob: str = "*") -> list[str]:
    """Remove the temp files (``.<name>.*.tmp``, ``name`` matching ``name_glob``) that writes
    interrupted by a crash left in ``folder``; returns their names. Only for a folder whose sole
    writer is the caller, at its start: a write in progress would lose its temp file."""
    pattern = f".{name_glob}.*.tmp"
    try:
        names = sorted(name for name in os.listdir(folder) if fnmatch.fnmatchcase(name, pattern))
    except OSError as err:
        raise OutputError(f"cannot list: {err.strerror}", os.fspath(folder)) from err
    return [name for name in names if _is_regular(Path(folder, name)) and remove_file(Path(folder, name))]


def _write_at(dir_fd: int, name: str, data: bytes, mode: int, shown: str, mtime_ns: int | None = None) -> None:
    """The atomic write itself, with the folder open as ``dir_fd``; ``shown`` names the target in errors."""
    _check_name(name, shown)
    _refuse_unless_regular(name, dir_fd, shown)
    temp, fd = create_temp(dir_fd, name, shown)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if mtime_ns is not None:
                os.utime(handle.fileno(), ns=(mtime_ns, mtime_ns))
            os.fsync(handle.fileno())
        # Again just before the rename: a large write gives a window for the target to change.
        _refuse_unless_regular(name, dir_fd, shown)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as err:
        _discard(dir_fd, temp)
        if isinstance(err, OSError):
            raise OutputError(f"write failed: {err.strerror}", shown) from err
        raise
    try:
        os.fsync(dir_fd)
    except OSError as err:
        raise OutputError(f"written, but syncing its folder failed: {err.strerror}", shown) from err


def create_temp(dir_fd: int, name: str, shown: str) -> tuple[str, int]:
    """What ``tempfile.mkstemp`` does (O_CREAT|O_EXCL|O_NOFOLLOW, 0600, a random name, so
    concurrent writers never collide), relative to ``dir_fd``."""
    for _ in range(100):
        temp = f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return temp, os.open(temp, flags, FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot create a file in {Path(shown).parent}: {err.strerror}", shown) from err
    raise OutputError(f"cannot create a file in {Path(shown).parent}: no unused temp name", shown)


def _refuse_unless_regular(name: str, dir_fd: int | None, shown: str) -> None:
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputError(err.strerror or str(err), shown) from err
    if stat.S_ISLNK(mode):
        raise OutputError("is a symbolic link; refusing to write through it", shown)
    if not stat.S_ISREG(mode):
        kind = next((kind for test, kind in _KINDS if test(mode)), "special file")
        raise OutputError(f"is a {kind}; refusing to replace anything but a regular file", shown)


def _check_name(name: str, shown: str) -> None:
    if name in ("", ".", "..") or "/" in name:
        raise OutputError(f"{name!r} is not a file name", shown)


def _make_root(root: Path) -> None:
    """Create ``root`` with mode 0700 (missing parents get the umask's mode, as mkdir -p gives)."""
    try:
        root.mkdir(mode=FOLDER_MODE, exist_ok=True)
    except FileNotFoundError:
        root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create folder: {err.strerror}", str(root)) from err


def _open_folders(root_fd: int, root: Path, parts: list[str]) -> int:
    """Open the folder ``root/parts...``, creating missing ones 0700 and following no symlink;
    returns a new descriptor."""
    fd = os.dup(root_fd)
    shown = root
    try:
        for part in parts:
            shown = shown / part
            _check_name(part, str(shown))
            try:
                os.mkdir(part, FOLDER_MODE, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as err:
                raise OutputError(f"cannot create folder: {err.strerror}", str(shown)) from err
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as err:
                if _is_symlink(part, fd):
                    raise OutputError("is a symbolic link; refusing to follow it", str(shown)) from err
                raise OutputError(f"cannot open folder: {err.strerror}", str(shown)) from err
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _discard(dir_fd: int, temp: str) -> None:
    try:
        os.unlink(temp, dir_fd=dir_fd)
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
