"""The formats registry: a format name -> its renderer module, and ``render``."""

from __future__ import annotations

from types import ModuleType

from configdrive.errors import SpecError
from configdrive.model import FileTree, VMSpec
from configdrive.render import configdrive, nocloud

#: Format name -> renderer module with ``LABEL``, ``problems(spec)``, ``render(spec)`` and
#: ``instance_id(spec)``.
FORMATS: dict[str, ModuleType] = {"nocloud": nocloud, "configdrive": configdrive}


def renderer(fmt: str) -> ModuleType:
    """The renderer module for a format name; ValueError names the known ones."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})") from None


def render(spec: VMSpec, fmt: str = "nocloud") -> FileTree:
    """The seed's file tree for ``fmt``; SpecError if the format cannot express the spec."""
    module = renderer(fmt)
    problems = module.problems(spec)
    if problems:
        raise SpecError(problems)
    tree: FileTree = module.render(spec)
    return tree


def instance_id(spec: VMSpec, fmt: str) -> str:
    """The instance id cloud-init will see in this format (config-2 uses ``uuid``)."""
    return str(renderer(fmt).instance_id(spec))


def label(fmt: str) -> str:
    """The volume label cloud-init looks for with this format."""
    return str(renderer(fmt).LABEL)
