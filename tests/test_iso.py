"""configdrive.iso: images built through pycdlib read back by pycdlib, isoinfo (ISO 9660 and Joliet
separately), xorriso, bsdtar and isovfy; reproducible bytes across clock, time zone and threads;
shared extents for equal contents; reading other tools' images."""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from configdrive import FORMATS, FormatError, IsoError, build_iso, load_spec, read_iso, render
from configdrive.iso import SECTOR, iso9660_names, pack_iso
from tests.conftest import FIXTURES, ROOT

BUILD_SNIPPET = """
import sys, time
if sys.argv[1] != "-":
    time.time = lambda: float(sys.argv[1])  # pycdlib reads time.time(); pretend another clock
from configdrive import build_iso, load_spec
sys.stdout.buffer.write(build_iso(load_spec(sys.argv[2]), sys.argv[3]))
"""


def _build_in_subprocess(spec: Path, fmt: str, clock: str, env: dict[str, str]) -> bytes:
    return subprocess.run(
        [sys.executable, "-c", BUILD_SNIPPET, clock, str(spec), fmt],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
        cwd=ROOT,
    ).stdout


def _refused(spec_path: Path, fmt: str) -> bool:
    """Whether ``fmt`` cannot express this fixture; if so, building it must raise FormatError."""
    spec = load_spec(spec_path)
    if not FORMATS[fmt].problems(spec):
        return False
    with pytest.raises(FormatError):
        build_iso(spec, fmt)
    return True


def test_identical_bytes_across_clock_and_time_zone(valid_spec_path: Path, fmt: str) -> None:
    if _refused(valid_spec_path, fmt):
        return
    first = _build_in_subprocess(valid_spec_path, fmt, "-", {"TZ": "UTC"})
    later = _build_in_subprocess(valid_spec_path, fmt, "1999999999", {"TZ": "Pacific/Chatham"})
    assert first == later
    assert first == build_iso(load_spec(valid_spec_path), fmt)


def test_round_trip_keeps_names_and_contents(valid_spec_path: Path, fmt: str) -> None:
    if _refused(valid_spec_path, fmt):
        return
    spec = load_spec(valid_spec_path)
    tree = dict(render(spec, fmt))
    image = read_iso(build_iso(spec, fmt))
    assert image.label == FORMATS[fmt].label
    assert image.files == tree


def test_iso9660_names_are_unique_and_legal() -> None:
    tree = {f"dir/{name}": b"" for name in ("a-b.json", "a_b.json", "A-B.JSON", "x" * 40)}
    names = iso9660_names(tree)
    leaves = [names[p] for p in tree]
    assert len(set(leaves)) == len(leaves)
    for name in leaves:
        stem = name.rsplit("/", 1)[1].split(";")[0]
        assert stem.replace(".", "").replace("_", "").isalnum() and stem.isupper() or stem.isdigit()


@pytest.mark.readers
def test_reads_images_made_by_genisoimage(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "openstack/latest").mkdir(parents=True)
    (seed / "openstack/latest/meta_data.json").write_text('{"uuid": "u"}')
    (seed / "user-data").write_text("#cloud-config\n")
    out = tmp_path / "g.iso"
    subprocess.run(["genisoimage", "-quiet", "-J", "-r", "-V", "config-2", "-o", str(out), str(seed)], check=True)
    image = read_iso(out)
    assert image.label == "config-2"
    assert image.files == {"openstack/latest/meta_data.json": b'{"uuid": "u"}', "user-data": b"#cloud-config\n"}


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


@pytest.mark.readers
def test_reads_images_made_by_cloud_localds(tmp_path: Path) -> None:
    (tmp_path / "user-data").write_text("#cloud-config\nhostname: x\n")
    (tmp_path / "meta-data").write_text("instance-id: iid-local\n")
    out = tmp_path / "seed.img"
    subprocess.run(["cloud-localds", str(out), str(tmp_path / "user-data"), str(tmp_path / "meta-data")], check=True)
    image = read_iso(out)
    assert image.label.lower() == "cidata"
    assert image.files["meta-data"] == b"instance-id: iid-local\n"
    assert image.files["user-data"].startswith(b"#cloud-config")


# --- edges of the tree, each image read back by pycdlib and by independent readers --------------

BIG_FOLDER = {f"openstack/content/{i:04d}": f"file {i}\n".encode() for i in range(300)}
MANY_FOLDERS = {f"d{i:03d}/sub-{i}/leaf.txt": str(i).encode() for i in range(250)}
CLASHES = {
    f"x/{name}": name.encode()
    for name in ("a-b.json", "a_b.json", "A-B.JSON", "a.b.json", "n" * 60, "n" * 61, "no-extension", "ünïcode.txt")
}
SHARED = {
    f"openstack/{v}/{leaf}": leaf.encode() * 50
    for v in ("2012-08-10", "latest", "2018-08-27")
    for leaf in ("meta_data.json", "user_data")
} | {"ec2/latest/user-data": b"user_data" * 50}
CASES = {
    "big-folder": BIG_FOLDER,
    "many-folders": MANY_FOLDERS,
    "clashes": CLASHES,
    "shared": SHARED,
    "empty-files": {"user-data": b"", "meta-data": b"instance-id: i\n", "vendor-data": b""},
    "empty-tree": {},
}


@pytest.mark.parametrize("name", CASES)
def test_reads_back_the_same_files(name: str) -> None:
    tree = CASES[name]
    image = pack_iso(tree, "cidata")
    assert len(image) % SECTOR == 0
    back = read_iso(image)
    assert back.label == "cidata"
    assert back.files == dict(sorted(tree.items()))


def _isoinfo_files(iso: Path, joliet: bool) -> dict[str, bytes]:
    """Every file as isoinfo reads it from the Joliet tree, or from the bare ISO 9660 tree.
    isoinfo knows no UTF-8: Joliet names go through Latin-1, which every test name fits."""
    tree = ["-J", "-j", "iso8859-1"] if joliet else []
    listing = subprocess.run(["isoinfo", "-f", *tree, "-i", str(iso)], capture_output=True, check=True)
    files = {}
    for path in listing.stdout.decode("latin-1").splitlines():
        files[path] = subprocess.run(
            ["isoinfo", *tree, "-i", str(iso), "-x", path.encode("latin-1")], capture_output=True, check=True
        ).stdout
    return files


@pytest.mark.readers
@pytest.mark.parametrize("name", ["big-folder", "many-folders", "clashes", "shared", "empty-files"])
def test_independent_readers_agree(name: str, tmp_path: Path) -> None:
    tree = CASES[name]
    iso = tmp_path / "seed.iso"
    iso.write_bytes(pack_iso(tree, "config-2"))
    result = subprocess.run(["isovfy", str(iso)], capture_output=True, text=True)
    assert "No errors found" in result.stdout + result.stderr
    result = subprocess.run(
        ["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True, text=True, check=True
    )
    assert {line.strip("'").lstrip("/") for line in result.stdout.splitlines()} == set(tree)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["bsdtar", "xf", str(iso), "-C", str(out)], check=True)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == tree
    # Joliet alone (Windows' view): the same names, no ";1", the same bytes through hard links.
    folders = {"/" + "/".join(p.split("/")[:n]) for p in tree for n in range(1, p.count("/") + 1)}
    joliet = {p: d for p, d in _isoinfo_files(iso, joliet=True).items() if p not in folders}
    assert joliet == {f"/{p}": d for p, d in tree.items()}
    # Bare ISO 9660 (level 3 names, upper case): every file's bytes are there under some name.
    plain = [d for p, d in _isoinfo_files(iso, joliet=False).items() if ";1" in p]
    assert sorted(plain) == sorted(tree.values())


def test_equal_contents_share_one_extent() -> None:
    import pycdlib

    data = b"same bytes\n" * 100
    shared = pack_iso({f"v{i}/user_data": data for i in range(10)}, "config-2")
    single = pack_iso({f"v{i}/user_data": data + bytes([i]) for i in range(10)}, "config-2")
    assert len(single) - len(shared) == 9 * SECTOR
    assert read_iso(shared).files["v7/user_data"] == data
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(shared))
    extents = {iso.get_record(rr_path=f"/v{i}/user_data").extent_location() for i in range(10)}
    extents |= {iso.get_record(joliet_path=f"/v{i}/user_data").extent_location() for i in range(10)}
    assert len(extents) == 1  # the ISO 9660 / Rock Ridge and the Joliet entries, all one extent
    iso.close()


def _all_dates(image: bytes) -> set[tuple[int, ...]]:
    """Every date in the image as (Y, M, D, h, m, s, gmtoffset), read back by pycdlib."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    dates = set()
    for vd in (iso.pvd, iso.joliet_vd):
        for date in (vd.volume_creation_date, vd.volume_modification_date, vd.volume_effective_date):
            dates.add((date.year, date.month, date.dayofmonth, date.hour, date.minute, date.second, date.gmtoffset))
        folders = [vd.root_dir_record]
        while folders:
            folder = folders.pop()
            for record in (folder, *folder.children):
                stamps = [record.date]
                if record.rock_ridge is not None and record.rock_ridge.dr_entries.tf_record is not None:
                    tf = record.rock_ridge.dr_entries.tf_record
                    stamps += [tf.access_time, tf.modification_time, tf.attribute_change_time]
                for d in stamps:
                    dates.add(
                        (d.years_since_1900 + 1900, d.month, d.day_of_month, d.hour, d.minute, d.second, d.gmtoffset)
                    )
                if record is not folder and record.is_dir() and not (record.is_dot() or record.is_dotdot()):
                    folders.append(record)
    iso.close()
    return dates


def test_every_date_is_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(FIXTURES / "specs/valid/example.yaml")
    for epoch in (None, 1700000000):
        if epoch is None:
            monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
            expected = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
        else:
            monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
            expected = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
        wanted = {expected.timetuple()[:6] + (0,)}
        for fmt in ("nocloud", "configdrive"):
            assert _all_dates(build_iso(spec, fmt)) == wanted
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(IsoError, match="SOURCE_DATE_EPOCH"):
        build_iso(spec)


def test_threads_build_the_same_bytes_as_serial_builds() -> None:
    specs = [load_spec(FIXTURES / "specs/valid/example.yaml"), load_spec(FIXTURES / "specs/valid/bond-vlan.yaml")]
    serial = [build_iso(spec, "configdrive") for spec in specs]
    assert serial[0] != serial[1]
    results: dict[int, list[bytes]] = {0: [], 1: []}

    def build(i: int) -> None:
        for _ in range(20):
            results[i].append(build_iso(specs[i], "configdrive"))

    threads = [threading.Thread(target=build, args=(i,)) for i in (0, 1, 0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] and results[1]
    assert set(results[0]) == {serial[0]} and set(results[1]) == {serial[1]}


@pytest.mark.parametrize(
    "bad", [{"": b""}, {"/abs": b""}, {"a//b": b""}, {"a": b"", "a/b": b""}, {"x/" + "y" * 70: b""}]
)
def test_refuses_paths_it_cannot_write(bad: dict[str, bytes]) -> None:
    with pytest.raises(IsoError):
        pack_iso(bad, "cidata")
