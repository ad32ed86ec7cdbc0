"""Spec loading and validation: every problem, each at its field's path."""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict, UserString
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from configdrive import SpecError, load_spec, parse_spec, yamldoc
from configdrive import spec as spec_module
from configdrive.model import Route
from configdrive.spec import check_data
from configdrive.specschema import field_path
from configdrive.sshkeys import parse_ssh_key
from configdrive.yamldoc import parse_document
from tests.conftest import FIXTURES, INVALID_SPECS, VALID_SPECS, spec_id


@pytest.mark.parametrize("path", VALID_SPECS, ids=spec_id)
def test_valid_fixture_loads(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    spec = load_spec(path)
    assert spec.instance_id == raw["instance_id"]
    assert spec.hostname == raw["hostname"]
    assert len(spec.ssh_authorized_keys) == len(raw.get("ssh_authorized_keys", []))


@pytest.mark.parametrize("path", INVALID_SPECS, ids=spec_id)
def test_invalid_fixture_reports_every_expected_path(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    with pytest.raises(SpecError) as info:
        if "raw" in case:
            parse_spec(case["raw"], str(path))
        else:
            load_spec(case["spec"])
    assert sorted({p.path for p in info.value.problems}) == sorted(set(case["expect"]))
    for problem in info.value.problems:
        assert problem.path in str(info.value) and problem.message


def test_problem_paths_use_dots_and_indexes() -> None:
    assert field_path(["network", "ethernets", "eth1", "addresses", 0]) == "network.ethernets.eth1.addresses[0]"
    problems = check_data(
        {"instance_id": "i", "hostname": "h", "network": {"ethernets": {"eth1": {"addresses": ["2001:db8::1/129"]}}}}
    )
    assert [str(p) for p in problems] == [
        "network.ethernets.eth1.addresses[0]: '2001:db8::1/129' is not a valid IPv6 interface address"
    ]


def test_not_a_mapping_is_one_problem() -> None:
    assert [p.path for p in check_data(["a list"])] == [""]
    with pytest.raises(SpecError):
        parse_spec(b"just a string")


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_document("a: [1,\nb: 2\n", "x.yaml")
    assert "line 3" in str(info.value) and info.value.source == "x.yaml"


def test_unreadable_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")


def test_uuid_derived_from_instance_id_is_stable_and_changes_with_it() -> None:
    a = load_spec({"instance_id": "iid-a", "hostname": "h"})
    again = load_spec({"instance_id": "iid-a", "hostname": "h"})
    b = load_spec({"instance_id": "iid-b", "hostname": "h"})
    assert a.uuid == again.uuid != b.uuid
    assert uuid.UUID(a.uuid).version == 5
    given = load_spec({"instance_id": "iid-a", "hostname": "h", "uuid": "0B5B2A2E-4C3E-4A5F-9A53-1D2E3F405162"})
    assert given.uuid == "0b5b2a2e-4c3e-4a5f-9a53-1d2e3f405162"


def test_default_route_takes_the_gateway_family() -> None:
    spec = load_spec(
        {
            "instance_id": "i",
            "hostname": "h",
            "network": {
                "ethernets": {
                    "e": {
                        "addresses": ["2001:db8::5/64", "192.0.2.5/24"],
                        "routes": [{"to": "default", "via": "2001:db8::1"}, {"to": "default", "via": "192.0.2.1"}],
                    }
                }
            },
        }
    )
    assert spec.network is not None
    assert [r.to for r in spec.network.interfaces[0].routes] == ["::/0", "0.0.0.0/0"]


def test_gateway_reachable_through_dhcp_is_accepted() -> None:
    nic = {"dhcp4": True, "routes": [{"to": "10.9.0.0/16", "via": "10.0.2.2"}]}
    spec = load_spec({"instance_id": "i", "hostname": "h", "network": {"ethernets": {"e": nic}}})
    assert spec.network is not None
    assert spec.network.interfaces[0].routes == (Route("10.9.0.0/16", "10.0.2.2"),)
    # the same gateway without DHCP is on no subnet of the interface: refused
    del nic["dhcp4"]
    problems = check_data({"instance_id": "i", "hostname": "h", "network": {"ethernets": {"e": nic}}})
    assert [str(p) for p in problems] == [
        "network.ethernets.e.routes[0].via: gateway 10.0.2.2 is not on any subnet of this interface"
    ]


def test_ssh_key_parsing() -> None:
    line = ((FIXTURES / "specs/valid/example.yaml").read_text().split("ssh-ed25519 ", 1)[1]).split("\n", 1)[0]
    key = parse_ssh_key("ssh-ed25519 " + line)
    assert key.type == "ssh-ed25519" and key.comment == "alice@example"
    with pytest.raises(ValueError, match="does not hold a ssh-rsa key"):
        parse_ssh_key("ssh-rsa " + key.data)


def test_oversized_payload_names_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(spec_module.LIMITS, "payload_bytes", 10)
    problems = check_data({"instance_id": "i", "hostname": "h", "user_data": "x" * 11})
    assert [(p.path, "10 byte limit" in p.message) for p in problems] == [("user_data", True)]


# --- bounded parsing ---------------------------------------------------------------------------

#: YAML that PyYAML's SafeLoader reads without complaint, to compare the bounded composer with.
YAML_CORPUS = [
    "a: 1\nb: [1, 2.5, -3, 0x1f, 0o17, 017, 1_000, 1:30, .inf, -.Inf, .nan, 6.8523015e+5]\n",
    "a: [yes, No, on, OFF, true, ~, null, '', \"\", 'yes']\n",
    "d: 2001-12-14t21:59:43.10-05:00\ne: 2002-12-14\nf: '2002-12-14'\n",
    "base: &b {x: 1, y: [a, b]}\nuse: *b\nmerged: {<<: *b, y: 2}\nmany: {<<: [*b, {x: 9, z: 3}], w: 0}\n",
    's: |\n  line one\n  line two\nf: >\n  folded\n  text\nq: "tab\\there \\u00e9 \\U0001F600"\n',
    '? complex\n: value\n\'quoted key\': "v"\n"k2": [{a: {b: [c, {d: e}]}}]\n',
    "--- \n- a\n- - b\n  - c\n- {d: [e, f]}\n...\n",
    "empty: {}\nnone: []\nnested: [[], [[]], {a: {}}]\n",
    "a: &anchor !!str 1\nb: *anchor\nc: !!int '7'\nd: !!float '1'\ne: !!bool 'true'\nf: !!null ''\n",
    "x: =\ny: '<<'\n",
]


def test_bounded_composer_gives_what_pyyaml_gives() -> None:
    for text in YAML_CORPUS + [p.read_text() for p in VALID_SPECS + INVALID_SPECS]:
        expected = yaml.load(text, Loader=yaml.SafeLoader) if "x: =" not in text else {"x": "=", "y": "<<"}
        assert parse_document(text) == expected, text


@pytest.fixture(params=["libyaml", "pure"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's parser and with PyYAML's pure-Python one."""
    if request.param == "pure":
        monkeypatch.setattr(yamldoc, "_yaml_loader", lambda: yaml.SafeLoader)
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 25_000 + "]" * 25_000,
        "{a: " * 25_000 + "}" * 25_000,
        "- " * 25_000 + "x",
        "a:\n" + "".join(" " * (i + 1) + "b:\n" for i in range(2000)) + " " * 2002 + "c\n",
    ],
    ids=["flow-lists", "flow-maps", "block-dashes", "block-maps"],
)
def test_deep_nesting_is_refused_by_either_loader(text: str, loader: str) -> None:
    start = time.perf_counter()
    with pytest.raises(SpecError, match="nested deeper than 64 levels"):
        parse_document(text)
    assert time.perf_counter() - start < 5  # the pure scanner reads 4 MB of indentation


def test_depth_64_is_taken(loader: str) -> None:
    data = parse_document("a: " + "[" * 63 + "]" * 63)
    for _ in range(62):
        data = data[0] if isinstance(data, list) else data["a"]
    assert data == [[]]


def test_alias_bomb_and_cycle_are_refused_by_either_loader(loader: str) -> None:
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 12)
    )
    start = time.perf_counter()
    with pytest.raises(SpecError, match="more than 20000 values"):
        parse_document(bomb)
    assert time.perf_counter() - start < 1
    with pytest.raises(SpecError) as info:
        parse_document("user_data: &a {x: [1, *a]}")
    assert [str(p) for p in info.value.problems] == [
        "user_data.x[1]: alias *a is inside the value it names (circular data)"
    ]


def test_other_documents_may_hold_more_values() -> None:
    table = "".join(f"vm{i}: [10.0.{i // 256}.{i % 256}]\n" for i in range(10_000))
    with pytest.raises(SpecError, match="more than 20000 values"):
        parse_document(table)
    assert len(parse_document(table, max_values=100_000)) == 10_000


def test_parse_problems_are_all_reported_with_paths() -> None:
    text = (
        "instance_id: i\nhostname: h\nhostname: again\nmeta: {1: a, k: !!binary aGk=, j: !!int x}\n"
        "user_data: {? [a]\n: b, when: 2024-02-30}\n"
    )
    with pytest.raises(SpecError) as info:
        parse_document(text)
    assert [str(p) for p in info.value.problems] == [
        "hostname: is given twice (duplicate key)",
        "meta: mapping key 1 is not a string (quote it)",
        "meta.j: 'x' is not a valid !!int",
        "meta.k: YAML tag !!binary is not allowed (allowed: !!str, !!int, !!float, !!bool, !!null, !!seq and !!map)",
        "user_data: mapping key ['a'] is not a string (quote it)",
        "user_data.when: '2024-02-30' is not a valid !!timestamp",
    ]


def test_load_spec_refuses_special_files_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(SpecError, match="cannot read spec: is not a regular file"):
        load_spec(tmp_path / "fifo.yaml")


def test_library_data_of_any_mapping_sequence_and_str_type() -> None:
    class Name(str):
        pass

    spec = load_spec(
        MappingProxyType(
            {
                Name("instance_id"): Name("i"),
                "hostname": UserString("h"),
                "ssh_authorized_keys": (KEY,),
                "meta": OrderedDict(a="b"),
            }
        )
    )
    assert (type(spec.instance_id), type(spec.hostname), spec.meta) == (str, str, {"a": "b"})
    looped: dict[str, Any] = {"instance_id": "i", "hostname": "h"}
    looped["user_data"] = {"again": [looped]}
    assert [str(p) for p in check_data(looped)] == [
        "user_data.again[0]: is a list or mapping that contains itself (circular data)"
    ]
    assert [p.path for p in check_data({"instance_id": "i", "hostname": "h", "meta": {"k": "\udc80"}})] == ["meta.k"]


# --- exact values ------------------------------------------------------------------------------

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y alice@example"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", "its Ed25519 key claims 32 bytes, 0 follow"),
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAHwlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX0=",
            "its Ed25519 key is not 32 bytes",
        ),
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB", "ends before the length of its RSA modulus"),
        (KEY + "\nssh-ed25519 AAAA second-key", "control character or line break"),
        (KEY.replace(" alice", "\x85alice"), "control character or line break"),
        (KEY.replace("X2y", "X2yAAAA"), "3 bytes after the key"),
    ],
    ids=["false-length", "short-key", "rsa-cut", "newline", "nel", "trailing"],
)
def test_ssh_key_blobs_are_read_in_full(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ssh_key(line)


def test_names_at_their_legal_maximum() -> None:
    label = "a" * 63
    fqdn = ".".join([label, "b" * 63, "c" * 63, "d" * 61])
    assert len(fqdn) == 253
    assert load_spec({"instance_id": "i" * 255, "hostname": label, "fqdn": fqdn + "."}).fqdn == fqdn
    assert [p.path for p in check_data({"instance_id": "i", "hostname": label, "fqdn": fqdn + "d"})] == ["fqdn"]
    assert [p.path for p in check_data({"instance_id": "i", "hostname": "h" * 64})] == ["hostname"]


def test_payload_limit_applies_to_the_bytes_written(monkeypatch: pytest.MonkeyPatch) -> None:
    from configdrive.render.userdata import render_payload

    payload = {"runcmd": ["x" * 100]}
    written = len(render_payload(payload) or b"")
    monkeypatch.setitem(spec_module.LIMITS, "payload_bytes", written)
    assert check_data({"instance_id": "i", "hostname": "h", "user_data": payload}) == []
    monkeypatch.setitem(spec_module.LIMITS, "payload_bytes", written - 1)
    [problem] = check_data({"instance_id": "i", "hostname": "h", "user_data": payload})
    assert problem.path == "user_data" and f"({written} bytes)" in problem.message


@pytest.mark.parametrize("filename", ['a"b', "a;b=c", "it's", "f" * 255, "é" * 100, "=?utf-8?q?x?=", "a b"])
def test_part_filenames_the_spec_takes_arrive_as_written(filename: str) -> None:
    import email

    from configdrive.render.userdata import render_payload

    spec = load_spec(
        {
            "instance_id": "i",
            "hostname": "h",
            "user_data_parts": [{"content_type": "text/x-shellscript", "content": "#!/bin/sh\n", "filename": filename}],
        }
    )
    message = email.message_from_bytes(render_payload(spec.user_data) or b"")
    assert [part.get_filename() for part in message.walk() if not part.is_multipart()] == [filename]
