"""Which VM a source address belongs to: spec addresses, leases, EUI-64 identifiers, conflicts."""

from __future__ import annotations

import pytest

from configdrive.errors import ServeError
from configdrive.seed import check_spec
from configdrive.serve.addresses import AddressIndex, Claims, address_claims, canonical, eui64, spec_claims
from configdrive.serve.leases import parse_leases
from configdrive.serve.listeners import parse_listen
from tests.conftest import FIXTURES


def test_modified_eui64() -> None:
    # RFC 4291 appendix A: flip the universal/local bit, insert ff:fe in the middle.
    assert eui64("52:54:00:12:34:01") == 0x5054_00FF_FE12_3401
    assert eui64("00:1b:21:3c:4d:5e") == 0x021B_21FF_FE3C_4D5E
    with pytest.raises(ValueError):
        eui64("52:54:00:12:34")


def test_canonical_forms() -> None:
    assert canonical("fe80::5054:ff:fe12:3401%eth0") == "fe80::5054:ff:fe12:3401"
    assert canonical("::ffff:10.0.0.5") == "10.0.0.5"
    assert canonical("2001:DB8:0::1") == "2001:db8::1"
    with pytest.raises(ValueError):
        canonical("10.0.0.256")


def test_a_spec_claims_its_addresses_and_the_eui64_of_its_macs() -> None:
    spec = check_spec((FIXTURES / "specs/valid/example.yaml").read_bytes(), ())
    claims = spec_claims(spec)
    assert claims.addresses == {"2001:db8:1::10"}
    assert claims.interface_ids == {eui64("52:54:00:12:34:01"), eui64("52:54:00:12:34:02")}


def _index() -> AddressIndex:
    index = AddressIndex()
    index.set("a", Claims(frozenset({"10.0.0.5", "2001:db8::5"}), frozenset({eui64("52:54:00:00:00:0a")})))
    index.set("b", address_claims(["10.0.0.6"]))
    return index


@pytest.mark.parametrize(
    ("source", "vm"),
    [
        ("10.0.0.5", "a"),
        ("::ffff:10.0.0.5", "a"),
        ("2001:db8::5", "a"),
        ("fe80::5054:ff:fe00:a%br0", "a"),  # link-local, EUI-64
        ("2001:db8:77:1:5054:ff:fe00:a", "a"),  # EUI-64 under any /64
        ("10.0.0.6", "b"),
        ("10.0.0.7", None),
        ("fe80::5054:ff:fe00:b", None),
        ("not an address", None),
        ("", None),
    ],
)
def test_lookup(source: str, vm: str | None) -> None:
    assert _index().lookup(source) == vm


def test_an_address_claimed_twice_answers_for_neither(caplog: pytest.LogCaptureFixture) -> None:
    index = _index()
    index.set("c", Claims(frozenset({"10.0.0.5"}), frozenset({eui64("52:54:00:00:00:0a")})))
    assert index.lookup("10.0.0.5") is None
    assert index.lookup("fe80::5054:ff:fe00:a") is None
    assert index.lookup("2001:db8::5") == "a"  # uncontested
    assert "10.0.0.5 is claimed by a and c" in caplog.text
    index.discard("c")
    assert index.lookup("10.0.0.5") == "a"
    assert index.lookup("fe80::5054:ff:fe00:a") == "a"


def test_an_exact_address_and_an_eui64_of_different_vms_answer_for_neither() -> None:
    index = _index()
    index.set("d", address_claims(["2001:db8:9::5054:ff:fe00:a"]))
    assert index.lookup("2001:db8:9::5054:ff:fe00:a") is None


def test_leases() -> None:
    assert parse_leases({"web1": "10.0.0.23", "db1": ["10.0.0.24", "2001:DB8::24"]}) == {
        "web1": ["10.0.0.23"],
        "db1": ["10.0.0.24", "2001:db8::24"],
    }
    assert parse_leases(None) == {}
    with pytest.raises(ServeError) as err:
        parse_leases({"web1": "10.0.0.300", "../x": "10.0.0.1", "db1": [5]})
    assert "web1" in str(err.value) and "../x" in str(err.value) and "db1" in str(err.value)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("169.254.169.254:80", ("169.254.169.254", 80)),
        ("[fd00:ec2::254]:80", ("fd00:ec2::254", 80)),
        ("[fe80::a9fe:a9fe%br0]:8080", ("fe80::a9fe:a9fe%br0", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_listen_values(value: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "1.2.3:80",
        "localhost:80",
        "fd00::1:80",
        "[fd00::1]",
        ":80",
        "10.0.0.1:99999",
        "10.0.0.1:http",
        "[10.0.0.1%eth0]:80",
        "[fd00::1%eth0]:80",
        "[::1]:-1",
    ],
)
def test_bad_listen_values(value: str) -> None:
    with pytest.raises(ServeError):
        parse_listen(value)
