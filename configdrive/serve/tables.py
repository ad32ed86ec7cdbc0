"""One VM's HTTP answers, rendered once when its spec changes: request path -> (body, type).

Every body is a file of that VM's seed tree, byte for byte (the config-2 tree for ``/openstack/``,
the NoCloud tree for ``/nocloud/``), or a listing or EC2 leaf derived from those files; answering
a request is one dict lookup. Paths the seed lacks are simply absent (404).
"""

from __future__ import annotations

import json
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from configdrive.model import FileTree
from configdrive.serve.ec2 import EC2_VERSIONS, ec2_tree

JSON = "application/json"
TEXT = "text/plain"
DATA = "application/octet-stream"

#: The NoCloud files cloud-init's NoCloud-net reader fetches, plus network-config.
NOCLOUD_FILES = ("meta-data", "user-data", "vendor-data", "network-config")


class Answer(NamedTuple):
    """A response body and its content type."""

    body: bytes
    content_type: str


class Layout(dict[str, tuple[int, str]]):
    """Request path -> (slot in a Table's bodies, content type); shared by every VM whose seeds
    have the same paths with the same files repeated."""


#: Layouts by shape: 10,000 VMs of a few shapes share a few dicts instead of holding 10,000.
_LAYOUTS: weakref.WeakValueDictionary[tuple[tuple[str, int, str], ...], Layout] = weakref.WeakValueDictionary()

_Add = Callable[[str, bytes, str], None]


class Table:
    """A VM's answers: request path (as sent, without the query) -> Answer.

    Only the distinct bodies are the VM's own (a config drive repeats files in every version
    folder); which path reads which body, and its type, is the shared Layout."""

    __slots__ = ("layout", "bodies")

    def __init__(self, routes: Mapping[str, Answer]) -> None:
        slots: dict[bytes, int] = {}
        shape = []
        for path, (body, content_type) in routes.items():
            shape.append((path, slots.setdefault(body, len(slots)), content_type))
        key = tuple(shape)
        layout = _LAYOUTS.get(key)
        if layout is None:
            layout = _LAYOUTS.setdefault(key, Layout((path, (slot, kind)) for path, slot, kind in shape))
        self.layout: Layout = layout
        self.bodies: tuple[bytes, ...] = tuple(slots)

    def get(self, path: str) -> Answer | None:
        entry = self.layout.get(path)
        return None if entry is None else Answer(self.bodies[entry[0]], entry[1])

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout)

    def __len__(self) -> int:
        return len(self.layout)


def build_table(nocloud: FileTree | None, configdrive: FileTree | None) -> Table:
    """Every path served for a VM whose seeds are these trees (None: that format is not served)."""
    routes: dict[str, Answer] = {}

    def add(path: str, body: bytes, content_type: str) -> None:
        routes[sys.intern(path)] = Answer(body, content_type)

    if nocloud is not None:
        _nocloud(nocloud, add)
    if configdrive is not None:
        _openstack(configdrive, add)
        _ec2(configdrive, add)
    return Table(routes)


def _nocloud(tree: FileTree, add: _Add) -> None:
    for name in NOCLOUD_FILES:
        if name in tree:
            add(f"/nocloud/{name}", tree[name], DATA)
    if "vendor-data" not in tree:
        # cloud-init's NoCloud-net reader retries a missing vendor-data for about 10 s.
        add("/nocloud/vendor-data", b"", DATA)
    _listing(add, "/nocloud", [n for n in NOCLOUD_FILES if n in tree or n == "vendor-data"])


def _openstack(tree: FileTree, add: _Add) -> None:
    folders: dict[str, list[str]] = {}
    for path, body in tree.items():
        if not path.startswith("openstack/"):
            continue
        add("/" + path, body, JSON if path.endswith(".json") else DATA)
        folder, _, name = path[len("openstack/") :].rpartition("/")
        if folder != "content":
            folders.setdefault(folder, []).append(name)
    # As Nova answers: the versions one per line (dated ones sort before "latest"), then per version its files.
    _listing(add, "/openstack", sorted(folders))
    for folder, names in folders.items():
        _listing(add, f"/openstack/{folder}", sorted(names))


def _ec2(tree: FileTree, add: _Add) -> None:
    latest = tree.get("ec2/latest/meta-data.json")
    if latest is None:
        return
    names = _key_names(tree.get("openstack/latest/meta_data.json"))
    for version in EC2_VERSIONS:
        meta = tree.get(f"ec2/{version}/meta-data.json", latest)
        for sub, body in ec2_tree(meta, names):
            add(f"/{version}/meta-data/{sub}", body, TEXT)
            if not sub:
                add(f"/{version}/meta-data", body, TEXT)
        entries = ["meta-data"]
        user_data = tree.get(f"ec2/{version}/user-data", tree.get("ec2/latest/user-data"))
        if user_data is not None:
            add(f"/{version}/user-data", user_data, DATA)
            entries.append("user-data")
        _listing(add, f"/{version}", entries)
    add("/", "\n".join(EC2_VERSIONS).encode(), TEXT)


def _listing(add: _Add, folder: str, names: list[str]) -> None:
    body = "\n".join(names).encode()
    add(folder, body, TEXT)
    add(folder + "/", body, TEXT)


def _key_names(meta_data_json: bytes | None) -> list[str]:
    """The key pair names of meta_data.json's ``keys``, in order (EC2 lists keys as ``0=<name>``)."""
    if meta_data_json is None:
        return []
    keys = json.loads(meta_data_json).get("keys", [])
    return [str(k.get("name", f"key-{i}")) for i, k in enumerate(keys)]
