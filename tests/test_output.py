"""Atomic, private writes that never follow a symlink or replace a device, FIFO, socket or folder."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from configdrive import OutputError
from configdrive.output import check_target, remove_file, remove_stale_temps, write_file, write_files, write_tree

SPECIAL_KINDS = ("fifo", "char-device", "socket", "folder", "symlink")


def make_special(path: Path, kind: str) -> os.stat_result:
    """Create a non-regular ``kind`` at ``path`` (a char device is 1,3, like /dev/null); returns its lstat."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "char-device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:  # bound by a relative name: AF_UNIX paths are short
            cwd = os.getcwd()
            os.chdir(path.parent)
            try:
                sock.bind(path.name)
            finally:
                os.chdir(cwd)
    elif kind == "folder":
        path.mkdir()
        (path / "inside").write_bytes(b"kept")
    elif kind == "symlink":
        (path.parent / "victim").write_bytes(b"precious")
        path.symlink_to("victim")
    return os.lstat(path)


def assert_unchanged(path: Path, before: os.stat_result) -> None:
    """Same inode, type, device numbers and contents; no temp file left beside it."""
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    if stat.S_ISDIR(after.st_mode):
        assert os.listdir(path) == ["inside"] and (path / "inside").read_bytes() == b"kept"
    if stat.S_ISLNK(after.st_mode):
        assert (path.parent / "victim").read_bytes() == b"precious"
    assert not [name for name in os.listdir(path.parent) if name.endswith(".tmp")]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_0600_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "seed.iso"
    write_file(target, b"data")
    assert target.read_bytes() == b"data" and _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["seed.iso"]


def test_replacing_keeps_0600_even_if_old_file_was_public(tmp_path: Path) -> None:
    target = tmp_path / "user-data"
    target.write_bytes(b"old")
    target.chmod(0o644)
    old_inode = target.stat().st_ino
    write_file(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600
    assert target.stat().st_ino != old_inode  # renamed over, never rewritten in place


def test_refuses_to_write_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "seed.iso"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link") as info:
        write_file(link, b"evil")
    assert info.value.path == str(link)
    assert victim.read_bytes() == b"precious" and link.is_symlink()


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "seed.iso"
    target.write_bytes(b"good")
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores the mode: use a missing folder instead
            target = tmp_path / "missing" / "seed.iso"
        with pytest.raises(OutputError):
            write_file(target, b"new")
    finally:
        os.chmod(tmp_path, 0o700)
    assert (tmp_path / "seed.iso").read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["seed.iso"]


def test_write_tree_creates_private_folders(tmp_path: Path) -> None:
    write_tree(tmp_path / "out", {"openstack/latest/user_data": b"u", "meta-data": b"m"})
    assert (tmp_path / "out/openstack/latest/user_data").read_bytes() == b"u"
    assert _mode(tmp_path / "out/openstack") == 0o700
    assert _mode(tmp_path / "out/meta-data") == 0o600


def test_remove_file(tmp_path: Path) -> None:
    target = tmp_path / "x"
    target.write_bytes(b"")
    assert remove_file(target) is True and remove_file(target) is False


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_refuses_to_replace_anything_but_a_regular_file(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "seed.iso"
    before = make_special(target, kind)
    with pytest.raises(OutputError, match="refusing") as info:
        write_file(target, b"evil")
    assert info.value.path == str(target)
    assert_unchanged(target, before)
    with pytest.raises(OutputError, match="refusing"):
        check_target(target)


def test_check_target_accepts_a_missing_or_regular_file(tmp_path: Path) -> None:
    check_target(tmp_path / "missing.iso")
    (tmp_path / "seed.iso").write_bytes(b"old")
    check_target(tmp_path / "seed.iso")


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_write_tree_refuses_a_special_file_in_the_tree(tmp_path: Path, kind: str) -> None:
    (tmp_path / "out/openstack").mkdir(parents=True)
    target = tmp_path / "out/openstack/meta_data.json"
    before = make_special(target, kind)
    with pytest.raises(OutputError, match="refusing") as info:
        write_tree(tmp_path / "out", {"openstack/meta_data.json": b"{}"})
    assert info.value.path == str(target)
    assert_unchanged(target, before)


@pytest.mark.parametrize("planted", ["openstack", "openstack/latest"])
def test_write_tree_never_follows_a_symlinked_folder_in_the_tree(tmp_path: Path, planted: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out" / planted).parent.mkdir(parents=True)
    (tmp_path / "out" / planted).symlink_to(elsewhere)
    with pytest.raises(OutputError, match="symbolic link") as info:
        write_tree(tmp_path / "out", {"openstack/latest/user_data": b"u"})
    assert info.value.path == str(tmp_path / "out" / planted)
    assert os.listdir(elsewhere) == [] and (tmp_path / "out" / planted).is_symlink()


def test_write_tree_follows_the_folder_it_was_given(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "named").symlink_to("real")
    write_tree(tmp_path / "named", {"a/b": b"x"})
    assert (tmp_path / "real/a/b").read_bytes() == b"x"


@pytest.mark.parametrize("rel", ["../escape", "a/../../escape", "a//b", "a/."])
def test_write_tree_refuses_paths_that_leave_or_bend_the_tree(tmp_path: Path, rel: str) -> None:
    with pytest.raises(OutputError, match="not a file name"):
        write_tree(tmp_path / "out", {rel: b"x"})
    assert not (tmp_path / "escape").exists()


def test_remove_stale_temps_removes_what_an_interrupted_write_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("configdrive.output._discard", lambda *args: None)  # as if killed before cleanup
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OutputError):
        write_file(tmp_path / "vm1.iso", b"new")
    monkeypatch.undo()
    (tmp_path / "vm1.iso").write_bytes(b"old")
    (tmp_path / ".keep.tmp").mkdir()
    [left] = [name for name in os.listdir(tmp_path) if name.startswith(".vm1.iso.")]
    assert remove_stale_temps(tmp_path, "*.iso") == [left]
    assert sorted(os.listdir(tmp_path)) == [".keep.tmp", "vm1.iso"]


def test_write_files_writes_every_file_in_batches_with_one_folder_sync_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f03").write_bytes(b"old")
    folder_syncs = []
    fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            folder_syncs.append(fd)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    files = ((f"f{i:02d}", f"data {i}".encode()) for i in range(7))
    assert write_files(tmp_path, files, batch=3) == 7
    assert len(folder_syncs) == 3  # batches of 3, 3 and 1
    assert sorted(os.listdir(tmp_path)) == [f"f{i:02d}" for i in range(7)]
    assert (tmp_path / "f03").read_bytes() == b"data 3"
    assert stat.S_IMODE((tmp_path / "f05").stat().st_mode) == 0o600


def test_write_files_stops_at_a_special_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    make_special(tmp_path / "b", "fifo")
    with pytest.raises(OutputError, match="FIFO"):
        write_files(tmp_path, [("a", b"1"), ("b", b"2"), ("c", b"3")], batch=10)
    # Nothing of the failing batch was renamed; no temp file is left.
    assert sorted(os.listdir(tmp_path)) == ["b"]
    with pytest.raises(OutputError, match="not a file name"):
        write_files(tmp_path, [("../escape", b"x")])
    assert not (tmp_path.parent / "escape").exists()


def test_write_files_makes_a_large_batch_durable_with_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import configdrive.output as output

    calls = []
    sync_all = output.sync_all
    monkeypatch.setattr(output, "sync_all", lambda fd: calls.append(fd) or sync_all(fd))
    assert write_files(tmp_path, ((f"f{i:03d}", bytes([i])) for i in range(2 * output.SYNCFS_FROM)), batch=100) == 32
    assert len(calls) == 1
    assert [(tmp_path / f"f{i:03d}").read_bytes() for i in range(32)] == [bytes([i]) for i in range(32)]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
