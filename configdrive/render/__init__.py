"""The format registry (name -> Format) and ``render``; nothing else lists format names.

Adding a format: a module beside these that defines ``FORMAT = Format(...)``, and one line below.
"""

from __future__ import annotations

from configdrive.errors import FormatError, Problem, UnknownFormatError
from configdrive.model import FileTree, VMSpec
from configdrive.render import nocloud, opennebula, openstack
from configdrive.render.format import Format

__all__ = [
    "CHECKED_BY_DEFAULT",
    "DEFAULT_FORMAT",
    "FORMATS",
    "Format",
    "check",
    "format_of_label",
    "get_format",
    "instance_id",
    "label",
    "render",
]

#: Every format, by name, in the order the CLI lists them.
FORMATS: dict[str, Format] = {f.name: f for f in (nocloud.FORMAT, openstack.FORMAT, opennebula.FORMAT)}

#: The formats a spec is checked against when none is named (``put``, ``check_spec``).
CHECKED_BY_DEFAULT: tuple[str, ...] = tuple(name for name, f in FORMATS.items() if not f.narrow)

#: The format used when none is named.
DEFAULT_FORMAT = nocloud.FORMAT.name


def get_format(name: str) -> Format:
    """The Format called ``name``; UnknownFormatError names the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(name, tuple(FORMATS)) from None


def format_of_label(label: str) -> Format | None:
    """The format whose volume label is ``label`` (in any case), if any."""
    return next((f for f in FORMATS.values() if f.label.lower() == label.lower()), None)


def check(spec: VMSpec, formats: tuple[str, ...] | list[str]) -> None:
    """Raise one FormatError listing what any of ``formats`` cannot express; None when all can."""
    problems = [p for name in formats for p in _policy_problems(spec, get_format(name))]
    problems += [p for name in formats for p in get_format(name).problems(spec)]
    if problems:
        raise FormatError(problems)


def _policy_problems(spec: VMSpec, fmt: Format) -> list[Problem]:
    """What a format's reader makes of the spec's instance-id policy."""
    if spec.instance_id_from == "content" and fmt.fixed_instance_id is not None:
        return [
            Problem(
                "instance_id_from",
                f"{fmt.name}: cloud-init gives every {fmt.name} guest the instance "
                f"id {fmt.fixed_instance_id!r}, so an id derived from the content would change nothing",
            )
        ]
    return []


def render(spec: VMSpec, fmt: str = DEFAULT_FORMAT) -> FileTree:
    """The seed's file tree for format ``fmt``; FormatError if the format cannot express the spec."""
    check(spec, [fmt])
    return get_format(fmt).render(spec)


def instance_id(spec: VMSpec, fmt: str) -> str:
    """The instance id cloud-init will see for ``spec`` in format ``fmt``."""
    return get_format(fmt).instance_id(spec)


def label(fmt: str) -> str:
    """The volume label cloud-init looks for with this format."""
    return get_format(fmt).label
