"""The direct ISO writer in configdrive.iso at its edges: folders and path tables spanning several
sectors, shared extents for equal contents, empty files, clashing ISO 9660 names, dates; each
image read back by pycdlib and, where installed, by xorriso, bsdtar and isovfy."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from configdrive.errors import IsoError
from configdrive.iso import SECTOR, pack_iso, read_iso

BIG_FOLDER = {f"openstack/content/{i:04d}": f"file {i}\n".encode() for i in range(300)}
MANY_FOLDERS = {f"d{i:03d}/sub-{i}/leaf.txt": str(i).encode() for i in range(250)}
CLASHES = {f"x/{name}": name.encode() for name in ("a-b.json", "a_b.json", "A-B.JSON", "a.b.json",
                                                    "n" * 60, "n" * 61, "no-extension", "ünïcode.txt")}
CASES = {"big-folder": BIG_FOLDER, "many-folders": MANY_FOLDERS, "clashes": CLASHES,
         "empty-files": {"user-data": b"", "meta-data": b"instance-id: i\n", "vendor-data": b""},
         "empty-tree": {}}


@pytest.mark.parametrize("name", CASES)
def test_reads_back_the_same_files(name: str) -> None:
    tree = CASES[name]
    image = pack_iso(tree, "cidata")
    assert len(image) % SECTOR == 0
    back = read_iso(image)
    assert back.label == "cidata"
    assert back.files == dict(sorted(tree.items()))


@pytest.mark.parametrize("name", ["big-folder", "many-folders", "clashes", "empty-files"])
def test_independent_readers_agree(name: str, tmp_path: Path) -> None:
    tree = CASES[name]
    iso = tmp_path / "seed.iso"
    iso.write_bytes(pack_iso(tree, "config-2"))
    if shutil.which("isovfy"):
        result = subprocess.run(["isovfy", str(iso)], capture_output=True, text=True)
        assert "No errors found" in result.stdout + result.stderr
    if shutil.which("xorriso"):
        result = subprocess.run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"],
                                capture_output=True, text=True, check=True)
        found = {line.strip("'").lstrip("/") for line in result.stdout.splitlines()}
        assert found == set(tree)
    if shutil.which("bsdtar"):
        out = tmp_path / "out"
        out.mkdir()
        subprocess.run(["bsdtar", "xf", str(iso), "-C", str(out)], check=True)
        assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == tree


def test_equal_contents_share_one_extent() -> None:
    data = b"same bytes\n" * 100
    shared = pack_iso({f"v{i}/user_data": data for i in range(10)}, "config-2")
    single = pack_iso({f"v{i}/user_data": data + bytes([i]) for i in range(10)}, "config-2")
    assert len(single) - len(shared) == 9 * SECTOR
    assert read_iso(shared).files["v7/user_data"] == data


def test_dates_follow_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14T22:13:20Z
    image = pack_iso({"meta-data": b"x"}, "cidata")
    pvd = image[16 * SECTOR:17 * SECTOR]
    assert pvd[813:830] == b"2023111422132000\x00"  # volume creation date, UTC
    root_record = pvd[156:190]
    assert tuple(root_record[18:25]) == (123, 11, 14, 22, 13, 20, 0)
    assert struct.unpack("<I", pvd[80:84])[0] * SECTOR == len(image)


@pytest.mark.parametrize("bad", [{"": b""}, {"/abs": b""}, {"a//b": b""}, {"a": b"", "a/b": b""},
                                 {"x/" + "y" * 70: b""}])
def test_refuses_paths_it_cannot_write(bad: dict[str, bytes]) -> None:
    with pytest.raises(IsoError):
        pack_iso(bad, "cidata")
