"""The one pipeline: raw spec -> validated VMSpec -> FileTree -> ISO bytes.

The CLI, the watcher, ``put`` and the benchmark all build and check seeds through these calls,
so parsing, validating, the format's checks, rendering and packing are wired in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from configdrive.errors import FormatError
from configdrive.iso import build_epoch, pack_iso
from configdrive.model import FileTree, VMSpec
from configdrive.render import CHECKED_BY_DEFAULT, DEFAULT_FORMAT, Format, check, get_format

#: What a spec may be given as: text or bytes (YAML or JSON), plain data, or an already valid VMSpec.
SpecSource = VMSpec | bytes | str | Mapping[str, Any]


@dataclass(frozen=True)
class Seed:
    """One VM's seed in one format: the valid spec, the rendered tree, the instance id cloud-init
    will see, and a digest of everything that goes into the image (the ISO is packed on demand)."""

    spec: VMSpec
    format: Format
    tree: FileTree
    instance_id: str
    digest: str

    @cached_property
    def image(self) -> bytes:
        """The ISO image bytes (packed on first use)."""
        return pack_iso(self.tree, self.format.label)


def load(source: SpecSource, origin: str | None = None) -> VMSpec:
    """``source`` validated into a VMSpec; SpecError lists every problem. ``origin`` names it in errors."""
    from configdrive.spec import parse_spec, spec_from_data

    if isinstance(source, VMSpec):
        return source
    if isinstance(source, (bytes, str)):
        return parse_spec(source, origin)
    return spec_from_data(source, origin)


def check_spec(source: SpecSource, formats: Iterable[str] = CHECKED_BY_DEFAULT, origin: str | None = None) -> VMSpec:
    """Validate ``source`` and check that every one of ``formats`` can express it (default: every
    format but the narrow ones, see ``Format.narrow``)."""
    spec = load(source, origin)
    try:
        check(spec, tuple(formats))
    except FormatError as err:
        raise FormatError(err.problems, origin) from None
    return spec


def build_seed(source: SpecSource, fmt: str = DEFAULT_FORMAT, origin: str | None = None) -> Seed:
    """The seed of ``source`` in format ``fmt``; SpecError (FormatError) when it cannot be built."""
    form = get_format(fmt)
    spec = check_spec(source, (form.name,), origin)
    if spec.instance_id_from == "content":
        spec = with_content_instance_id(spec, form)
    tree = form.render(spec)
    return Seed(spec, form, tree, form.instance_id(spec), tree_digest(tree, form.label))


def build_iso(spec: SpecSource, fmt: str = DEFAULT_FORMAT) -> bytes:
    """The seed ISO of ``spec`` in format ``fmt``."""
    return build_seed(spec, fmt).image


def with_content_instance_id(spec: VMSpec, form: Format) -> VMSpec:
    """``spec`` with its instance id derived from the seed ``form`` renders for it: ``instance_id``
    plus 12 hex digits of the rendered files' digest (config-2's ``uuid`` is derived from that id),
    so any change to what the guest is given makes cloud-init see a new instance."""
    import dataclasses
    import uuid

    from configdrive.spec import UUID_NAMESPACE

    instance_id = f"{spec.instance_id}-{_tree_hash(form.render(spec), 'content')[:12]}"
    return dataclasses.replace(spec, instance_id=instance_id, uuid=str(uuid.uuid5(UUID_NAMESPACE, instance_id)))


def tree_digest(tree: FileTree, label: str) -> str:
    """A hex digest that changes exactly when the packed image would: label, date and every file."""
    return _tree_hash(tree, f"{label}\0{build_epoch()}")


def _tree_hash(tree: FileTree, header: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{header}\0{len(tree)}\0".encode())
    # Each distinct content is hashed once (a config drive repeats user_data in a dozen folders);
    # a repeat is recorded by the number of its first occurrence.
    first: dict[bytes, int] = {}
    for path in sorted(tree):
        data = tree[path]
        number = first.setdefault(data, len(first))
        digest.update(f"{path}\0{len(data)}\0{number}\0".encode())
    for data in first:  # insertion order: first occurrence order, fixed by the sorted paths
        digest.update(data)
    return digest.hexdigest()
