"""The EC2 metadata tree (listings and leaves) from a config drive's ``ec2/<date>/meta-data.json``.

The config-2 renderer writes EC2 metadata as one JSON document; the HTTP service serves the same
data the way EC2 and Nova do: a folder answers with its entries one per line (``name/`` for a
folder), a leaf with its value, and ``public-keys/`` with ``<index>=<key name>`` lines, which is
how cloud-init's ``MetadataMaterializer`` expects them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: The dates cloud-init asks for: 2009-04-04 (the minimum, and what the config drive carries)
#: and the extended versions its EC2 datasource probes. Later dates only add keys, so the same
#: tree answers every one of them.
EC2_VERSIONS = ("2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest")


def ec2_tree(meta_data_json: bytes, key_names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """(path below ``meta-data/``, body) for every folder and leaf of ``meta_data_json``.

    A folder appears twice, as ``x`` and ``x/``; the root folder is ``""``. ``key_names`` names
    the public keys in order (EC2 lists them as ``0=<name>``)."""
    data = json.loads(meta_data_json)
    if not isinstance(data, dict):
        raise ValueError("ec2 meta-data.json is not an object")
    yield from _folder("", data, key_names)


def _folder(prefix: str, node: Mapping[str, Any], key_names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    entries = []
    for name in sorted(node):
        value = node[name]
        path = prefix + name
        if name == "public-keys" and isinstance(value, dict) and not prefix:
            entries.append(name + "/")
            yield from _public_keys(path, value, key_names)
        elif isinstance(value, dict):
            entries.append(name + "/")
            yield from _folder(path + "/", value, key_names)
        else:
            entries.append(name)
            yield path, _leaf(value)
    listing = "\n".join(entries).encode()
    yield prefix, listing
    if prefix:
        yield prefix.rstrip("/"), listing


def _public_keys(path: str, keys: Mapping[str, Any], key_names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """``public-keys/`` lists ``0=<name>``; ``public-keys/0/`` lists ``openssh-key``."""
    lines = []
    for index in sorted(keys, key=int):
        name = key_names[int(index)] if int(index) < len(key_names) else f"key-{index}"
        lines.append(f"{index}={name}")
        yield from _folder(f"{path}/{index}/", keys[index], key_names)
    listing = "\n".join(lines).encode()
    yield path + "/", listing
    yield path, listing


def _leaf(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return "\n".join(map(str, value)).encode()
    return json.dumps(value).encode() if value is None or isinstance(value, bool) else str(value).encode()
