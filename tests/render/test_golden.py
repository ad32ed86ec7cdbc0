"""Golden trees: every valid fixture rendered in every format, compared file by file; a fixture a
format cannot express must be refused with a FormatError and has no golden folder.

Regenerate after an intended change, then review the diff:
    CONFIGDRIVE_UPDATE_GOLDEN=1 python -m pytest tests/render/test_golden.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from configdrive import FORMATS, FormatError, load_spec, render
from tests.conftest import FIXTURES

GOLDEN = FIXTURES / "golden"


def _tree_on_disk(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_rendered_tree_matches_golden(valid_spec_path: Path, fmt: str) -> None:
    spec = load_spec(valid_spec_path)
    folder = GOLDEN / valid_spec_path.stem / fmt
    if FORMATS[fmt].problems(spec):
        with pytest.raises(FormatError):
            render(spec, fmt)
        if os.environ.get("CONFIGDRIVE_UPDATE_GOLDEN"):
            shutil.rmtree(folder, ignore_errors=True)
        assert not folder.exists(), f"{folder} is golden output of a spec {fmt} refuses"
        return
    tree = dict(render(spec, fmt))
    if os.environ.get("CONFIGDRIVE_UPDATE_GOLDEN"):
        shutil.rmtree(folder, ignore_errors=True)
        for rel, data in tree.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
    golden = _tree_on_disk(folder)
    assert sorted(tree) == sorted(golden)
    for rel in tree:
        assert tree[rel] == golden[rel], f"{valid_spec_path.stem}/{fmt}/{rel} differs from golden"
