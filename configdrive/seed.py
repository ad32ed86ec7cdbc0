"""The pipeline the CLI, the watcher and the benchmark share: VMSpec -> FileTree -> ISO bytes."""

from __future__ import annotations

from configdrive.iso import pack_iso
from configdrive.model import VMSpec
from configdrive.render import label, render


def build_iso(spec: VMSpec, fmt: str = "nocloud") -> bytes:
    """The seed ISO of ``spec`` in format ``fmt`` (``nocloud`` or ``configdrive``)."""
    return pack_iso(render(spec, fmt), label(fmt))
