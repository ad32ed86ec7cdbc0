"""Spec loading and validation: every problem, each at its field's path."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from configdrive import SpecError, load_spec, parse_spec
from configdrive.model import Route
from configdrive.spec import check_data, field_path, parse_document, parse_ssh_key
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
    assert field_path(["network", "ethernets", "eth1", "addresses", 0]) == \
        "network.ethernets.eth1.addresses[0]"
    problems = check_data({"instance_id": "i", "hostname": "h",
                           "network": {"ethernets": {"eth1": {"addresses": ["2001:db8::1/129"]}}}})
    assert [str(p) for p in problems] == [
        "network.ethernets.eth1.addresses[0]: '2001:db8::1/129' is not a valid IPv6 interface address"]


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
    given = load_spec({"instance_id": "iid-a", "hostname": "h",
                       "uuid": "0B5B2A2E-4C3E-4A5F-9A53-1D2E3F405162"})
    assert given.uuid == "0b5b2a2e-4c3e-4a5f-9a53-1d2e3f405162"


def test_default_route_takes_the_gateway_family() -> None:
    spec = load_spec({"instance_id": "i", "hostname": "h", "network": {"ethernets": {"e": {
        "addresses": ["2001:db8::5/64", "192.0.2.5/24"],
        "routes": [{"to": "default", "via": "2001:db8::1"}, {"to": "default", "via": "192.0.2.1"}]}}}})
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
        "network.ethernets.e.routes[0].via: gateway 10.0.2.2 is not on any subnet of this interface"]


def test_ssh_key_parsing() -> None:
    line = ((FIXTURES / "specs/valid/example.yaml").read_text().split("ssh-ed25519 ", 1)[1]).split("\n", 1)[0]
    key = parse_ssh_key("ssh-ed25519 " + line)
    assert key.type == "ssh-ed25519" and key.comment == "alice@example"
    with pytest.raises(ValueError, match="does not hold a ssh-rsa key"):
        parse_ssh_key("ssh-rsa " + key.data)


def test_oversized_payload_names_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from configdrive import spec as spec_module

    monkeypatch.setitem(spec_module.LIMITS, "payload_bytes", 10)
    problems = check_data({"instance_id": "i", "hostname": "h", "user_data": "x" * 11})
    assert [(p.path, "10 byte limit" in p.message) for p in problems] == [("user_data", True)]
