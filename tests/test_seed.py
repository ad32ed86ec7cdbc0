"""configdrive.seed: the one pipeline, and the digest that stands for a packed image."""

from __future__ import annotations

import pytest

from configdrive import FormatError, SpecError, build_seed, check_spec
from configdrive.render import CHECKED_BY_DEFAULT
from configdrive.seed import tree_digest
from tests.conftest import FIXTURES

TREE = {"a/user_data": b"same", "b/user_data": b"same", "meta-data": b"instance-id: i\n"}


def test_digest_changes_exactly_when_the_image_would(monkeypatch: pytest.MonkeyPatch) -> None:
    base = tree_digest(TREE, "config-2")
    assert tree_digest(dict(reversed(list(TREE.items()))), "config-2") == base  # order does not matter
    variants = [
        ({**TREE, "b/user_data": b"other"}, "config-2"),  # one of two equal files changes
        ({**TREE, "a/user_data": b"sam", "b/user_data": b"esame"}, "config-2"),  # bytes moved between files
        ({"a/user_datx": b"same", "b/user_data": b"same", "meta-data": TREE["meta-data"]}, "config-2"),
        ({**TREE, "c": b""}, "config-2"),  # an empty file added
        (TREE, "cidata"),  # another label
    ]
    digests = {tree_digest(tree, label) for tree, label in variants}
    assert len(digests) == len(variants) and base not in digests
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert tree_digest(TREE, "config-2") != base


def test_build_seed_and_check_spec() -> None:
    raw = (FIXTURES / "specs/valid/example.yaml").read_bytes()
    for fmt in CHECKED_BY_DEFAULT:
        seed = build_seed(raw, fmt)
        assert seed.digest == tree_digest(seed.tree, seed.format.label)
        assert seed.image[32769:32774] == b"CD001"
    assert check_spec(raw).hostname == "web1"
    with pytest.raises(SpecError):
        check_spec(b"instance_id: i\n")
    with pytest.raises(FormatError) as info:  # a format named explicitly is checked
        check_spec(raw, ["opennebula"])
    assert all(p.message.startswith("opennebula:") for p in info.value.problems)
