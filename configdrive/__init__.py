"""configdrive: one validated VM spec -> NoCloud and OpenStack config-drive seed ISOs.

    spec = load_spec("vm.yaml")                 # SpecError lists every problem
    write_file("seed.iso", build_iso(spec, "configdrive"))
"""

from configdrive.errors import (
    ConfigDriveError,
    IsoError,
    OutputError,
    Problem,
    QmpError,
    RevisionConflict,
    SpecError,
    StoreError,
)
from configdrive.iso import SeedImage, read_iso
from configdrive.model import FileTree, VMSpec
from configdrive.output import write_file
from configdrive.render import FORMATS, render
from configdrive.seed import build_iso
from configdrive.spec import load_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "load_spec",
    "parse_spec",
    "render",
    "build_iso",
    "write_file",
    "read_iso",
    "FORMATS",
    "VMSpec",
    "FileTree",
    "SeedImage",
    "Problem",
    "ConfigDriveError",
    "SpecError",
    "IsoError",
    "OutputError",
    "StoreError",
    "RevisionConflict",
    "QmpError",
]
