"""The Format record: everything the rest of configdrive knows about one output format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from configdrive.errors import Problem
from configdrive.model import FileTree, VMSpec


@dataclass(frozen=True)
class Format:
    """One seed format, defined beside its renderer and registered in ``configdrive.render.FORMATS``.

    ``problems`` names what the format cannot express (each problem's message starts with the
    format's name); ``render`` is pure (no I/O, no clock); ``instance_id`` is the id cloud-init
    will see; ``fixed_instance_id`` is set when cloud-init's reader ignores the seed's id;
    ``metadata_files`` are the files ``configdrive inspect`` parses; ``fields`` reads a rendered
    tree (or one read back from an image) into the spec fields cloud-init sees, for
    ``configdrive diff`` (None: the format's seeds cannot be compared); ``narrow`` marks a format
    that cannot carry much of what a valid spec may say (DHCP, bonds, vendor data, ...): ``put``
    and ``check_spec`` check it only when it is named.
    """

    name: str
    label: str
    help: str
    datasource: str
    render: Callable[[VMSpec], FileTree]
    problems: Callable[[VMSpec], list[Problem]]
    instance_id: Callable[[VMSpec], str]
    metadata_files: tuple[str, ...] = ()
    fixed_instance_id: str | None = None
    fields: Callable[[FileTree], dict[str, Any]] | None = None
    narrow: bool = False
