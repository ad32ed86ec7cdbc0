"""FileTree <-> ISO 9660 bytes (Joliet + Rock Ridge); the only pycdlib importer and the only
place a timestamp is chosen.

Every date in the image is one fixed instant (``SOURCE_DATE_EPOCH`` when set, else
2000-01-01T00:00:00Z), written as UTC, so identical input gives identical bytes on any
clock and in any time zone.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time as clock_module
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from configdrive.errors import IsoError
from configdrive.model import FileTree

#: Image timestamp when SOURCE_DATE_EPOCH is not set: 2000-01-01T00:00:00Z.
DEFAULT_EPOCH = 946684800

_CLOCK_LOCK = threading.Lock()
_D_CHARS = re.compile(r"[^A-Z0-9_]")


@dataclass(frozen=True)
class SeedImage:
    """An ISO read back: its volume label and every file, by Rock Ridge (or Joliet) path."""

    label: str
    files: dict[str, bytes]


def build_epoch() -> int:
    """The instant stamped on every date: ``SOURCE_DATE_EPOCH`` or ``DEFAULT_EPOCH``."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return DEFAULT_EPOCH
    try:
        epoch = int(value)
    except ValueError:
        raise IsoError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds") from None
    if not 0 <= epoch < 2**31:
        raise IsoError(f"SOURCE_DATE_EPOCH={value!r} is out of range for ISO 9660 dates")
    return epoch


class _FixedClock:
    """Stands in for the ``time`` module inside pycdlib: a fixed now, and UTC for local time."""

    def __init__(self, epoch: int) -> None:
        self._epoch = float(epoch)

    def time(self) -> float:
        return self._epoch

    localtime = staticmethod(clock_module.gmtime)
    gmtime = staticmethod(clock_module.gmtime)
    strftime = staticmethod(clock_module.strftime)


@contextmanager
def _fixed_clock(epoch: int) -> Iterator[None]:
    """Point pycdlib's clock reads at ``epoch``; pycdlib reads the clock in several modules."""
    from pycdlib import dates, headervd, pycdlib, rockridge, utils

    modules = [m for m in (dates, headervd, pycdlib, rockridge, utils) if hasattr(m, "time")]
    with _CLOCK_LOCK:
        saved = [m.time for m in modules]
        clock = _FixedClock(epoch)
        try:
            for module in modules:
                module.time = clock
            yield
        finally:
            for module, original in zip(modules, saved):
                module.time = original


def iso9660_names(tree: FileTree) -> dict[str, str]:
    """Map each path of the tree (and its parent folders) to a unique ISO 9660 level-3 name.
    Readers that know Rock Ridge or Joliet never see these; they keep the image valid."""
    names: dict[str, str] = {"": "/"}
    taken: dict[str, set[str]] = {}
    for path in sorted({p for f in tree for p in _parents(f)} | set(tree)):
        parent, _, leaf = path.rpartition("/")
        is_file = path in tree
        stem, dot, ext = leaf.upper().rpartition(".") if is_file and "." in leaf else (leaf.upper(), "", "")
        stem, ext = _D_CHARS.sub("_", stem)[:24] or "_", _D_CHARS.sub("_", ext)[:6]
        used = taken.setdefault(parent, set())
        candidate, n = stem, 0
        while (candidate, ext) in ((s, e) for s, _, e in (u.partition(".") for u in used)):
            n += 1
            candidate = f"{stem[:20]}_{n:03d}"
        used.add(f"{candidate}.{ext}" if ext else candidate)
        iso_leaf = f"{candidate}.{ext};1" if is_file else candidate
        names[path] = f"{names[parent].rstrip('/')}/{iso_leaf}"
    return names


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def pack_iso(tree: FileTree, label: str) -> bytes:
    """The ISO image of ``tree`` with volume label ``label``; same input, same bytes."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    names = iso9660_names(tree)
    out = io.BytesIO()
    try:
        with _fixed_clock(build_epoch()):
            iso = pycdlib.PyCdlib()
            iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label,
                    app_ident_str="configdrive")
            for path in sorted(names):
                if path and path not in tree:
                    leaf = path.rsplit("/", 1)[-1]
                    iso.add_directory(names[path], rr_name=leaf, joliet_path=f"/{path}",
                                      file_mode=0o40555)
            for path in sorted(tree):
                data = tree[path]
                iso.add_fp(io.BytesIO(data), len(data), names[path], rr_name=path.rsplit("/", 1)[-1],
                           joliet_path=f"/{path}", file_mode=0o100444)
            iso.write_fp(out)
            iso.close()
    except PyCdlibException as err:
        raise IsoError(f"pycdlib could not build the image: {err}") from err
    return out.getvalue()


def read_iso(source: str | os.PathLike[str] | bytes) -> SeedImage:
    """Read an ISO (ours, genisoimage's, cloud-localds', ...) into its label and files."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    where = None if isinstance(source, bytes) else os.fspath(source)
    try:
        fp: Any = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as err:
        raise IsoError(f"cannot open: {err.strerror}", where) from err
    iso = pycdlib.PyCdlib()
    try:
        with fp:
            iso.open_fp(fp)
            label = iso.pvd.volume_identifier.decode("utf-8", "replace").rstrip(" \x00")
            facade: Any
            if iso.has_rock_ridge():
                facade, key = iso.get_rock_ridge_facade(), "rr_path"
            elif iso.has_joliet():
                facade, key = iso.get_joliet_facade(), "joliet_path"
            else:
                facade, key = iso.get_iso9660_facade(), "iso_path"
            files = {}
            for root, _dirs, leaves in facade.walk("/"):
                for leaf in leaves:
                    path = f"{root.rstrip('/')}/{leaf}"
                    data = io.BytesIO()
                    iso.get_file_from_iso_fp(data, **{key: path})
                    name = path.lstrip("/")
                    if key == "iso_path":
                        name = name.split(";", 1)[0].lower()
                    files[name] = data.getvalue()
            iso.close()
    except PyCdlibException as err:
        raise IsoError(f"not a readable ISO 9660 image: {err}", where) from err
    return SeedImage(label, dict(sorted(files.items())))
