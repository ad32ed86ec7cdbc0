"""Atomic, private, symlink-safe writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from configdrive import OutputError
from configdrive.output import remove_file, write_file, write_tree


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
