"""configdrive: one validated VM spec -> NoCloud and OpenStack config-drive seed ISOs.

spec = load_spec("vm.yaml")                 # SpecError lists every problem
write_file("seed.iso", build_iso(spec, "configdrive"))
"""

from configdrive.errors import (
    ConfigDriveError,
    FormatError,
    InputError,
    IsoError,
    OutputError,
    Problem,
    QemuError,
    QmpError,
    RevisionConflict,
    SpecError,
    StoreError,
    UnknownFormatError,
)
from configdrive.iso import SeedImage, read_iso
from configdrive.model import FileTree, VMSpec
from configdrive.output import write_file
from configdrive.render import DEFAULT_FORMAT, FORMATS, Format, render
from configdrive.seed import Seed, build_iso, build_seed, check_spec
from configdrive.spec import load_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "load_spec",
    "parse_spec",
    "check_spec",
    "build_seed",
    "render",
    "build_iso",
    "write_file",
    "read_iso",
    "FORMATS",
    "DEFAULT_FORMAT",
    "Format",
    "Seed",
    "VMSpec",
    "FileTree",
    "SeedImage",
    "Problem",
    "ConfigDriveError",
    "SpecError",
    "FormatError",
    "UnknownFormatError",
    "InputError",
    "IsoError",
    "OutputError",
    "StoreError",
    "RevisionConflict",
    "QemuError",
    "QmpError",
]
