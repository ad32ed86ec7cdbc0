"""ISO packing and reading: reproducible bytes, labels, long names, reading other tools' images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from configdrive import IsoError, build_iso, load_spec, read_iso, render
from configdrive.iso import DEFAULT_EPOCH, iso9660_names, pack_iso
from tests.conftest import FIXTURES, ROOT

BUILD_SNIPPET = """
import sys, time
if sys.argv[1] != "-":
    time.time = lambda: float(sys.argv[1])  # pycdlib reads time.time(); pretend another clock
from configdrive import build_iso, load_spec
sys.stdout.buffer.write(build_iso(load_spec(sys.argv[2]), sys.argv[3]))
"""


def _build_in_subprocess(spec: Path, fmt: str, clock: str, env: dict[str, str]) -> bytes:
    return subprocess.run([sys.executable, "-c", BUILD_SNIPPET, clock, str(spec), fmt],
                          check=True, capture_output=True, env={**os.environ, **env}, cwd=ROOT).stdout


def test_identical_bytes_across_clock_and_time_zone(valid_spec_path: Path, fmt: str) -> None:
    first = _build_in_subprocess(valid_spec_path, fmt, "-", {"TZ": "UTC"})
    later = _build_in_subprocess(valid_spec_path, fmt, "1999999999", {"TZ": "Pacific/Chatham"})
    assert first == later
    assert first == build_iso(load_spec(valid_spec_path), fmt)


def test_source_date_epoch_sets_every_date(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(FIXTURES / "specs/valid/minimal.yaml")
    default = build_iso(spec)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    stamped = build_iso(spec)
    assert stamped != default and stamped == build_iso(spec)
    assert b"2023111422132000" in stamped  # 2023-11-14T22:13:20Z in the volume descriptor
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(IsoError, match="SOURCE_DATE_EPOCH"):
        build_iso(spec)
    assert DEFAULT_EPOCH == 946684800


def test_round_trip_keeps_names_and_contents(valid_spec_path: Path, fmt: str) -> None:
    spec = load_spec(valid_spec_path)
    tree = dict(render(spec, fmt))
    image = read_iso(build_iso(spec, fmt))
    assert image.label == ("cidata" if fmt == "nocloud" else "config-2")
    assert image.files == tree


def test_iso9660_names_are_unique_and_legal() -> None:
    tree = {f"dir/{name}": b"" for name in ("a-b.json", "a_b.json", "A-B.JSON", "x" * 40)}
    names = iso9660_names(tree)
    leaves = [names[p] for p in tree]
    assert len(set(leaves)) == len(leaves)
    for name in leaves:
        stem = name.rsplit("/", 1)[1].split(";")[0]
        assert stem.replace(".", "").replace("_", "").isalnum() and stem.isupper() or stem.isdigit()


def test_reads_images_made_by_genisoimage(tmp_path: Path) -> None:
    if shutil.which("genisoimage") is None:
        pytest.fail("genisoimage is needed (apt-get install genisoimage)")
    seed = tmp_path / "seed"
    (seed / "openstack/latest").mkdir(parents=True)
    (seed / "openstack/latest/meta_data.json").write_text('{"uuid": "u"}')
    (seed / "user-data").write_text("#cloud-config\n")
    out = tmp_path / "g.iso"
    subprocess.run(["genisoimage", "-quiet", "-J", "-r", "-V", "config-2", "-o", str(out), str(seed)],
                   check=True)
    image = read_iso(out)
    assert image.label == "config-2"
    assert image.files == {"openstack/latest/meta_data.json": b'{"uuid": "u"}',
                           "user-data": b"#cloud-config\n"}


def test_unreadable_input_is_an_iso_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 70000)
    with pytest.raises(IsoError) as info:
        read_iso(junk)
    assert info.value.path == str(junk)
    with pytest.raises(IsoError, match="cannot open"):
        read_iso(tmp_path / "missing.iso")


def test_empty_tree_still_packs() -> None:
    assert read_iso(pack_iso({}, "cidata")).files == {}


def test_reads_images_made_by_cloud_localds(tmp_path: Path) -> None:
    if shutil.which("cloud-localds") is None:
        pytest.fail("cloud-localds is needed (apt-get install cloud-image-utils)")
    (tmp_path / "user-data").write_text("#cloud-config\nhostname: x\n")
    (tmp_path / "meta-data").write_text("instance-id: iid-local\n")
    out = tmp_path / "seed.img"
    subprocess.run(["cloud-localds", str(out), str(tmp_path / "user-data"), str(tmp_path / "meta-data")],
                   check=True)
    image = read_iso(out)
    assert image.label.lower() == "cidata"
    assert image.files["meta-data"] == b"instance-id: iid-local\n"
    assert image.files["user-data"].startswith(b"#cloud-config")
