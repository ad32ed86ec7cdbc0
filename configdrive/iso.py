"""FileTree <-> ISO 9660 bytes (level 3 + Joliet + Rock Ridge) through pycdlib; the only pycdlib
importer and the only place a date is chosen.

Every date in the image is one fixed instant (``SOURCE_DATE_EPOCH`` when set, else
2000-01-01T00:00:00Z), written as UTC, so identical input gives identical bytes on any clock, in
any time zone and from any thread.

Why the dates are pinned this way: pycdlib stamps ``time.time()`` (through ``time.localtime``, so
the local zone leaks in) into every record it creates, and into the volume modification date each
time it writes the volume descriptors. Patching the clock would be process-wide: it would race
with other threads building images and change what other pycdlib users in the same process get.
Instead, once the tree is complete, ``_pin_dates`` replaces every date object pycdlib holds for
this image (volume descriptors, each directory record, each Rock Ridge TF entry) with one parsed
from our fixed instant, and the only date pycdlib makes while writing (the volume modification
date, at a fixed offset of each volume descriptor) is overwritten in the written bytes. Nothing
global is touched, so concurrent builds need no lock.
"""

from __future__ import annotations

import io
import os
import re
import stat
import time as clock_module
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from configdrive.errors import IsoError
from configdrive.model import FileTree

#: Image timestamp when SOURCE_DATE_EPOCH is not set: 2000-01-01T00:00:00Z.
DEFAULT_EPOCH = 946684800

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


def iso9660_names(tree: FileTree) -> dict[str, str]:
    """Map each path of the tree (and its parent folders) to a unique ISO 9660 level-3 name.
    Readers that know Rock Ridge or Joliet never see these; they keep the image valid."""
    folders: set[str] = set()
    for path in tree:
        parent = path.rpartition("/")[0]
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    if not folders.isdisjoint(tree):
        raise IsoError(f"{sorted(folders.intersection(tree))[0]!r} is both a file and a folder")
    names: dict[str, str] = {"": ""}
    taken: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(folders.union(tree)):
        parent, _, leaf = path.rpartition("/")
        is_file = path in tree
        stem, ext = _stem_and_extension(leaf, is_file)
        used = taken.setdefault(parent, set())
        candidate, n = stem, 0
        while (candidate, ext) in used:
            n += 1
            candidate = f"{stem[:20]}_{n:03d}"
        used.add((candidate, ext))
        names[path] = f"{names[parent]}/{candidate}.{ext};1" if is_file else f"{names[parent]}/{candidate}"
    names[""] = "/"
    return names


@lru_cache(maxsize=4096)
def _stem_and_extension(leaf: str, is_file: bool) -> tuple[str, str]:
    """d-characters only: ``meta_data.json`` -> ``("META_DATA", "JSON")``; folders have no extension."""
    stem, _, ext = leaf.upper().rpartition(".") if is_file and "." in leaf else (leaf.upper(), "", "")
    return _D_CHARS.sub("_", stem)[:24] or "_", _D_CHARS.sub("_", ext)[:6]


# --- writing ----------------------------------------------------------------------------------
#
# Files with equal contents (config-2 repeats user_data, meta_data.json and more across its dated
# folders and ec2/) are added once and hard-linked (add_hard_link) everywhere else, in the ISO 9660 /
# Rock Ridge tree and in the Joliet tree, so they share one extent, as genisoimage -cache-inodes
# would. Joliet names carry no ";1" version, as genisoimage writes them.

SECTOR = 2048
_FILE_MODE, _DIR_MODE = 0o100444, 0o40555
# Byte offset of the volume modification date in a primary or supplementary volume descriptor
# (ECMA-119 8.4.27); pycdlib sets it from the clock while writing.
_VD_MODIFIED_AT = 830
_VD_DATE_SIZE = 17


def pack_iso(tree: FileTree, label: str) -> bytes:
    """The ISO image of ``tree`` with volume label ``label``; same input, same bytes."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    for path in tree:
        if not path or path.startswith("/") or "" in path.split("/"):
            raise IsoError(f"cannot put the path {path!r} in an image")
    epoch = build_epoch()
    names = iso9660_names(tree)
    iso = pycdlib.PyCdlib()
    try:
        iso.new(interchange_level=3, vol_ident=label, app_ident_str="configdrive", joliet=3, rock_ridge="1.09")
        for path in sorted(names):  # a parent sorts before its children
            if path and path not in tree:
                iso.add_directory(
                    iso_path=names[path], rr_name=_leaf(path), joliet_path=f"/{path}", file_mode=_DIR_MODE
                )
        first_of: dict[bytes, str] = {}  # contents -> ISO 9660 path of the file that holds them
        for path in sorted(tree):
            data = tree[path]
            if data in first_of:
                iso.add_hard_link(iso_old_path=first_of[data], iso_new_path=names[path], rr_name=_leaf(path))
                iso.add_hard_link(iso_old_path=first_of[data], joliet_new_path=f"/{path}")
            else:
                first_of[data] = names[path]
                iso.add_fp(
                    io.BytesIO(data),
                    len(data),
                    iso_path=names[path],
                    rr_name=_leaf(path),
                    joliet_path=f"/{path}",
                    file_mode=_FILE_MODE,
                )
        _pin_dates(iso, epoch)
        out = io.BytesIO()
        iso.write_fp(out)
    except PyCdlibException as err:
        raise IsoError(f"cannot build the image: {err}") from err
    image = out.getbuffer()
    stamp = _volume_date(epoch)
    for sector in (16, 17):  # the primary and the Joliet volume descriptor
        at = sector * SECTOR + _VD_MODIFIED_AT
        image[at : at + _VD_DATE_SIZE] = stamp
    return out.getvalue()


def _leaf(path: str) -> str:
    return path.rpartition("/")[2]


def _volume_date(epoch: int) -> bytes:
    """ECMA-119 8.4.26.1 date text of ``epoch`` in UTC: digits, hundredths, offset 0."""
    return clock_module.strftime("%Y%m%d%H%M%S", clock_module.gmtime(epoch)).encode() + b"00\x00"


def _record_date(epoch: int) -> bytes:
    """ECMA-119 9.1.5 seven-byte date of ``epoch`` in UTC."""
    t = clock_module.gmtime(epoch)
    return bytes((t.tm_year - 1900, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0))


def _pin_dates(iso: Any, epoch: int) -> None:
    """Give every date pycdlib holds for this image the instant ``epoch`` (see the module docstring)."""
    from pycdlib.dates import DirectoryRecordDate, VolumeDescriptorDate

    volume_date = VolumeDescriptorDate()
    volume_date.parse(_volume_date(epoch))
    record_date = DirectoryRecordDate()
    record_date.parse(_record_date(epoch))
    for vd in (iso.pvd, iso.joliet_vd):
        vd.volume_creation_date = vd.volume_modification_date = vd.volume_effective_date = volume_date
        folders = [vd.root_dir_record]
        while folders:
            folder = folders.pop()
            for record in (folder, *folder.children):
                record.date = record_date
                if record.rock_ridge is not None:
                    for entries in (record.rock_ridge.dr_entries, record.rock_ridge.ce_entries):
                        tf = entries.tf_record if entries is not None else None
                        if tf is not None:
                            for kind in _TF_TIMES:
                                if getattr(tf, kind, None) is not None:
                                    setattr(tf, kind, record_date)
                if record is not folder and record.is_dir() and not (record.is_dot() or record.is_dotdot()):
                    folders.append(record)


#: The times a Rock Ridge TF entry may carry (all 7-byte dates unless bit 7 of its flags is set,
#: which pycdlib never sets for new records).
_TF_TIMES = (
    "creation_time",
    "access_time",
    "modification_time",
    "attribute_change_time",
    "backup_time",
    "expiration_time",
    "effective_time",
)


def looks_like_iso(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file with an ISO 9660 volume descriptor where one belongs."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return False
            handle.seek(16 * SECTOR + 1)
            return handle.read(5) == b"CD001"
    except OSError:
        return False


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
