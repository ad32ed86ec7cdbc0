"""FileTree <-> ISO 9660 bytes (Joliet + Rock Ridge); the only place a timestamp is chosen.

Images are written here directly (see "writing" below); pycdlib, imported only by ``read_iso``,
reads any seed back, ours or another tool's.

Every date in the image is one fixed instant (``SOURCE_DATE_EPOCH`` when set, else
2000-01-01T00:00:00Z), written as UTC, so identical input gives identical bytes on any
clock and in any time zone.
"""

from __future__ import annotations

import io
import os
import re
import struct
import time as clock_module
from collections.abc import Callable
from dataclasses import dataclass, field
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
# The image is laid out directly from a list of folders, not through pycdlib: pycdlib builds and
# re-walks an object tree on every add (about 7 ms for a 44-file config drive; this writer takes
# well under 1 ms). pycdlib, xorriso, bsdtar, isovfy, blkid and cloud-init read the result back in
# the tests (tests/test_iso_writer.py, tests/readers/).
#   0-15 system area | 16 PVD | 17 Joliet SVD | 18 terminator | path tables: ISO L, M, Joliet L, M
#   | ISO folders (Rock Ridge) | Rock Ridge continuation area (ER) | Joliet folders | file data
# Files with equal contents share one extent, as hard links would; that keeps a config drive,
# whose dated folders repeat the same files, small.

SECTOR = 2048
_FIRST_FREE = 19  # after the system area and the three volume descriptors
_FILE_MODE, _DIR_MODE = 0o100444, 0o40555
# Rock Ridge 1.09 (RRIP_1991A), as pycdlib writes it; Linux prefers it over Joliet when present.
_ER = b"".join((
    b"ER", bytes((8 + 10 + 84 + 135, 1, 10, 84, 135, 1)), b"RRIP_1991A",
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS",
    b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN "
    b"PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.",
))
_LE32, _BE32 = struct.Struct("<I").pack, struct.Struct(">I").pack
_SP = b"SP\x07\x01\xbe\xef\x00"
_RR_NAMED, _RR_DOT = b"RR\x05\x01\x89", b"RR\x05\x01\x81"  # PX+NM+TF present; PX+TF present


def _b32(value: int) -> bytes:
    return _LE32(value) + _BE32(value)


@dataclass(eq=False)
class _Folder:
    """One folder while the image is laid out; numbers are path table positions, extents sectors."""

    name: str
    iso_id: bytes
    joliet_id: bytes
    parent: _Folder | None
    folders: list[_Folder] = field(default_factory=list)
    files: list[tuple[bytes, bytes, bytes, bytes]] = field(default_factory=list)  # iso, joliet, rr, data
    number: int = 1
    joliet_number: int = 1
    extent: int = 0
    sectors: int = 1
    joliet_extent: int = 0
    joliet_sectors: int = 1


def pack_iso(tree: FileTree, label: str) -> bytes:
    """The ISO image of ``tree`` with volume label ``label``; same input, same bytes."""
    for path in tree:
        if not path or path.startswith("/") or "" in path.split("/"):
            raise IsoError(f"cannot put the path {path!r} in an image")
    stamp = clock_module.gmtime(build_epoch())
    date = bytes((stamp.tm_year - 1900, stamp.tm_mon, stamp.tm_mday, stamp.tm_hour, stamp.tm_min,
                  stamp.tm_sec, 0))
    root = _folders(tree)
    iso_order = _path_table_order(root, lambda f: f.iso_id)
    joliet_order = _path_table_order(root, lambda f: f.joliet_id)
    for number, folder in enumerate(iso_order, 1):
        folder.number = number
    for number, folder in enumerate(joliet_order, 1):
        folder.joliet_number = number
    iso_pt_size = sum(8 + len(f.iso_id) + len(f.iso_id) % 2 for f in iso_order)
    joliet_pt_size = sum(8 + len(f.joliet_id) + len(f.joliet_id) % 2 for f in joliet_order)
    iso_pt_at = _FIRST_FREE
    joliet_pt_at = iso_pt_at + 2 * _sectors(iso_pt_size)
    free = joliet_pt_at + 2 * _sectors(joliet_pt_size)

    # A folder's size depends only on its names, so every place is known before any record is
    # written, and each record is written once.
    tf = b"TF\x1a\x01\x0e" + date * 3  # modified, accessed, attributes changed
    for folder in iso_order:
        folder.extent, folder.sectors = free, _folder_sectors(folder, joliet=False)
        free += folder.sectors
    continuation, free = free, free + 1
    for folder in joliet_order:
        folder.joliet_extent, folder.joliet_sectors = free, _folder_sectors(folder, joliet=True)
        free += folder.joliet_sectors
    extents: dict[bytes, int] = {}
    for folder in iso_order:
        for *_names, data in folder.files:
            if data and data not in extents:
                extents[data], free = free, free + _sectors(len(data))
    extents[b""] = free  # an empty file takes no sector and points past the end, as in genisoimage

    image = bytearray(free * SECTOR)
    _put(image, 16, _volume_descriptor(1, label, free, iso_pt_size, iso_pt_at, root.extent,
                                       root.sectors, date, stamp))
    _put(image, 17, _volume_descriptor(2, label, free, joliet_pt_size, joliet_pt_at,
                                       root.joliet_extent, root.joliet_sectors, date, stamp))
    _put(image, 18, b"\xffCD001\x01")
    for at, endian in ((iso_pt_at, "<"), (iso_pt_at + _sectors(iso_pt_size), ">")):
        _put(image, at, b"".join(
            struct.pack(f"{endian}BBIH", len(f.iso_id), 0, f.extent, f.parent.number if f.parent else 1)
            + f.iso_id + b"\x00" * (len(f.iso_id) % 2) for f in iso_order))
    for at, endian in ((joliet_pt_at, "<"), (joliet_pt_at + _sectors(joliet_pt_size), ">")):
        _put(image, at, b"".join(
            struct.pack(f"{endian}BBIH", len(f.joliet_id), 0, f.joliet_extent,
                        f.parent.joliet_number if f.parent else 1) + f.joliet_id
            + b"\x00" * (len(f.joliet_id) % 2) for f in joliet_order))
    for folder in iso_order:
        _put(image, folder.extent, _iso_records(folder, extents, date, tf, continuation))
    _put(image, continuation, _ER)
    for folder in joliet_order:
        _put(image, folder.joliet_extent, _joliet_records(folder, extents, date))
    for data, extent in extents.items():
        _put(image, extent, data)
    return bytes(image)


def _folders(tree: FileTree) -> _Folder:
    """The folder tree of ``tree``, with each entry's ISO 9660, Joliet and Rock Ridge names."""
    names = iso9660_names(tree)
    root = _Folder("", b"\x00", b"\x00", None)
    folders = {"": root}
    for path in sorted(names):  # a parent sorts before its children
        if not path:
            continue
        parent = folders[path.rpartition("/")[0]]
        leaf = path.rpartition("/")[2]
        iso_id = names[path].rpartition("/")[2].encode()
        if path in tree:
            parent.files.append((iso_id, _joliet(leaf + ";1"), leaf.encode(), tree[path]))
        else:
            folders[path] = _Folder(leaf, iso_id, _joliet(leaf), parent)
            parent.folders.append(folders[path])
    return root


@lru_cache(maxsize=4096)
def _joliet(name: str) -> bytes:
    encoded = name.encode("utf-16-be", "surrogatepass")
    if len(encoded) > 128:
        raise IsoError(f"the name {name!r} is longer than Joliet's 64 characters")
    return encoded


def _sectors(size: int) -> int:
    return max(1, -(-size // SECTOR))


def _put(image: bytearray, sector: int, data: bytes) -> None:
    image[sector * SECTOR:sector * SECTOR + len(data)] = data


def _path_table_order(root: _Folder, key: Callable[[_Folder], bytes]) -> list[_Folder]:
    """Folders in path table order: by depth, then by parent's position, then by identifier."""
    order, level = [root], [root]
    while level:
        level = [child for folder in level for child in sorted(folder.folders, key=key)]
        order += level
    return order


def _volume_descriptor(kind: int, label: str, sectors: int, pt_size: int, pt_at: int,
                       root_extent: int, root_sectors: int, date: bytes,
                       stamp: clock_module.struct_time) -> bytes:
    """The primary (kind 1) or Joliet supplementary (kind 2) volume descriptor (ECMA-119 8.4)."""
    joliet = kind == 2

    def text(value: str, size: int) -> bytes:
        if joliet:  # UCS-2 big endian, padded with UCS-2 spaces
            return (value.encode("utf-16-be") + b"\x00 " * size)[:size]
        return value.encode("ascii", "replace")[:size].ljust(size, b" ")

    moment = (clock_module.strftime("%Y%m%d%H%M%S", stamp) + "00").encode() + b"\x00"
    unset = b"0" * 16 + b"\x00"
    root = _directory_record(root_extent, root_sectors * SECTOR, 2, date, b"\x00", b"")
    return b"".join((
        bytes((kind,)), b"CD001\x01\x00", text("", 32), text(label, 32), bytes(8), _b32(sectors),
        b"%/E".ljust(32, b"\x00") if joliet else bytes(32), _VOLUME_SEQUENCE_1, _VOLUME_SEQUENCE_1, b"\x00\x08\x08\x00",
        _b32(pt_size), struct.pack("<I", pt_at), bytes(4),
        struct.pack(">I", pt_at + _sectors(pt_size)), bytes(4), root,
        text("", 128), text("", 128), text("", 128), text("configdrive", 128),
        text("", 37), text("", 37), text("", 37), moment, moment, unset, moment, b"\x01\x00",
    ))
_RECORD_HEAD = struct.Struct("<BxI4sI4s7sBxx4sB")
_VOLUME_SEQUENCE_1 = b"\x01\x00\x00\x01"  # volume 1 of 1, both byte orders
# System use areas: "." and ".." carry RR, PX and TF; named entries add NM (5 + name bytes).
_DOT_USE, _NAMED_USE = 5 + 36 + 26, 5 + 36 + 26 + 5
_ROOT_DOT_USE = _DOT_USE + len(_SP) + 28  # the root's "." also starts SUSP and points to the ER


def _record_length(ident: bytes, system_use: int) -> int:
    return 33 + len(ident) + (1 - len(ident) % 2) + system_use


def _directory_record(extent: int, size: int, flags: int, date: bytes, ident: bytes,
                      system_use: bytes) -> bytes:
    """One directory record (ECMA-119 9.1); ``flags`` 2 marks a folder."""
    length = _record_length(ident, len(system_use))
    if length > 255:
        raise IsoError(f"the name {ident!r} is too long for a directory record")
    return b"".join((_RECORD_HEAD.pack(length, extent, _BE32(extent), size, _BE32(size), date, flags,
                                       _VOLUME_SEQUENCE_1, len(ident)),
                     ident, b"" if len(ident) % 2 else b"\x00", system_use))


def _folder_sectors(folder: _Folder, joliet: bool) -> int:
    """How many sectors the folder's records take (ISO 9660 with Rock Ridge, or Joliet)."""
    if joliet:
        lengths = [34, 34, *(_record_length(f.joliet_id, 0) for f in folder.folders),
                   *(_record_length(jid, 0) for _iid, jid, _rr, _data in folder.files)]
    else:
        lengths = [34 + (_DOT_USE if folder.parent else _ROOT_DOT_USE), 34 + _DOT_USE,
                   *(_record_length(f.iso_id, _NAMED_USE + len(f.name.encode())) for f in folder.folders),
                   *(_record_length(iid, _NAMED_USE + len(rr)) for iid, _jid, rr, _data in folder.files)]
    used = 0
    for length in lengths:
        if length > SECTOR - used % SECTOR:
            used += SECTOR - used % SECTOR
        used += length
    return _sectors(used)


@lru_cache(maxsize=64)
def _px(mode: int, links: int) -> bytes:
    return b"PX\x24\x01" + _b32(mode) + _b32(links) + bytes(16)  # uid and gid 0


def _nm(name: bytes) -> bytes:
    return b"NM" + bytes((5 + len(name), 1, 0)) + name


def _iso_records(folder: _Folder, extents: dict[bytes, int], date: bytes, tf: bytes,
                 continuation: int = 0) -> bytes:
    """The folder's ISO 9660 records with Rock Ridge names, modes and times."""
    parent = folder.parent or folder
    dot_use = _RR_DOT + _px(_DIR_MODE, 2 + len(folder.folders)) + tf
    if folder.parent is None:  # SUSP starts at the root; its ER entry is in a sector of its own
        ce = b"CE\x1c\x01" + _b32(continuation) + _b32(0) + _b32(len(_ER))
        dot_use = _SP + dot_use + ce
    entries = [(child.iso_id, _directory_record(
        child.extent, child.sectors * SECTOR, 2, date, child.iso_id,
        _RR_NAMED + _px(_DIR_MODE, 2 + len(child.folders)) + _nm(child.name.encode()) + tf))
        for child in folder.folders]
    entries += [(iso_id, _directory_record(
        extents.get(data, 0), len(data), 0, date, iso_id,
        _RR_NAMED + _px(_FILE_MODE, 1) + _nm(rr_name) + tf))
        for iso_id, _joliet_id, rr_name, data in folder.files]
    entries.sort(key=lambda entry: _iso_sort_key(entry[0]))
    return _pack_records([
        _directory_record(folder.extent, folder.sectors * SECTOR, 2, date, b"\x00", dot_use),
        _directory_record(parent.extent, parent.sectors * SECTOR, 2, date, b"\x01",
                          _RR_DOT + _px(_DIR_MODE, 2 + len(parent.folders)) + tf),
        *(record for _key, record in entries)])


def _joliet_records(folder: _Folder, extents: dict[bytes, int], date: bytes) -> bytes:
    """The folder's Joliet records: UCS-2 names, no system use area."""
    parent = folder.parent or folder
    entries = [(child.joliet_id, _directory_record(
        child.joliet_extent, child.joliet_sectors * SECTOR, 2, date, child.joliet_id, b""))
        for child in folder.folders]
    entries += [(joliet_id, _directory_record(extents.get(data, 0), len(data), 0, date, joliet_id, b""))
                for _iso_id, joliet_id, _rr_name, data in folder.files]
    entries.sort()
    return _pack_records([
        _directory_record(folder.joliet_extent, folder.joliet_sectors * SECTOR, 2, date, b"\x00", b""),
        _directory_record(parent.joliet_extent, parent.joliet_sectors * SECTOR, 2, date, b"\x01", b""),
        *(record for _key, record in entries)])


def _iso_sort_key(ident: bytes) -> tuple[bytes, bytes]:
    """ECMA-119 9.3: by name, then extension, each padded with spaces (version is always 1)."""
    name, _dot, ext = ident.partition(b";")[0].partition(b".")
    return name.ljust(31, b" "), ext.ljust(31, b" ")


def _pack_records(records: list[bytes]) -> bytes:
    """Records back to back, none crossing a sector boundary; whole sectors."""
    out = bytearray()
    for record in records:
        room = SECTOR - len(out) % SECTOR
        if len(record) > room:
            out += bytes(room)
        out += record
    return bytes(out) + bytes(-len(out) % SECTOR)



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
