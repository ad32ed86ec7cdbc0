"""Independent readers on our images: blkid, xorriso, bsdtar, and cloud-init's own datasource code.

One set of expectations per fixture, computed from the spec as written (not from our renderer),
checked on every format that can express the fixture (the golden and ISO tests check that the
others refuse it). Needs the Debian packages listed in tests/APT_PACKAGES and tests/readers/.
"""

from __future__ import annotations

import base64
import ipaddress
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from configdrive import FORMATS as REGISTRY
from configdrive import build_iso, load_spec, render, write_file
from tests.conftest import FORMATS, VALID_SPECS, spec_id
from tests.readers.cloudinit_versions import PYTHON as CLOUD_INIT_PYTHON
from tests.readers.cloudinit_versions import READER, VERSIONS, read_seed

pytestmark = pytest.mark.readers

__all__ = ["CLOUD_INIT_PYTHON", "READER"]  # for test_opennebula


def _raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


#: Where `cloud-init devel net-convert` reads each format's network config, and as what kind.
NET_CONVERT = {
    "nocloud": ("network-config", "yaml"),
    "configdrive": ("openstack/latest/network_data.json", "network_data.json"),
}


def _cases(keep: Any = lambda raw: True, formats: Any = FORMATS) -> list[Any]:
    """(fixture, format) pairs for every format that can express the fixture."""
    return [
        pytest.param((path, fmt), id=f"{spec_id(path)}-{fmt}")
        for path in VALID_SPECS
        if keep(_raw(path))
        for fmt in formats
        if not REGISTRY[fmt].problems(load_spec(path))
    ]


def _image(tmp_path: Path, path: Path, fmt: str) -> tuple[Path, dict[str, Any], str]:
    iso = tmp_path / f"{path.stem}-{fmt}.iso"
    write_file(iso, build_iso(load_spec(path), fmt))
    return iso, _raw(path), fmt


@pytest.fixture(params=_cases())
def image(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any], str]:
    return _image(tmp_path, *request.param)


@pytest.fixture(params=_cases(lambda raw: "network" in raw, [f for f in FORMATS if f in NET_CONVERT]))
def networked_image(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any], str]:
    return _image(tmp_path, *request.param)


@pytest.fixture(
    params=_cases(
        lambda raw: isinstance(raw.get("user_data"), dict) or str(raw.get("user_data", "")).startswith("#cloud-config")
    )
)
def cloud_config_image(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any], str]:
    return _image(tmp_path, *request.param)


def _run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{cmd[0]} failed: {result.stderr}"
    return result.stdout


def _expected_names(raw: dict[str, Any], fmt: str) -> set[str]:
    return set(render(load_spec(raw), fmt))


def test_blkid_sees_iso9660_with_the_label(image: tuple[Path, dict[str, Any], str]) -> None:
    iso, _, fmt = image
    out = _run("blkid", "-p", "-o", "export", str(iso))
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert fields["TYPE"] == "iso9660"
    assert fields["LABEL"] == REGISTRY[fmt].label


def test_xorriso_and_bsdtar_list_the_same_long_names(image: tuple[Path, dict[str, Any], str]) -> None:
    iso, raw, fmt = image
    expected = _expected_names(raw, fmt)
    xorriso = _run("xorriso", "-indev", str(iso), "-find", "/", "-type", "f")
    xorriso_names = {line.strip().strip("'").lstrip("/") for line in xorriso.splitlines() if line.strip()}
    bsdtar_names = {n for n in _run("bsdtar", "-tf", str(iso)).splitlines() if n in expected or "." in n or "/" in n}
    bsdtar_files = {n for n in bsdtar_names if not any(e.startswith(n + "/") for e in expected)} - {"."}
    assert xorriso_names == expected
    assert bsdtar_files == expected


def _extract(iso: Path, into: Path) -> Path:
    into.mkdir()
    _run("bsdtar", "-xf", str(iso), "-C", str(into))
    return into


def _mac_names(raw: dict[str, Any]) -> list[str]:
    ethernets = raw.get("network", {}).get("ethernets", {})
    return [
        f"{d['match']['macaddress']}={d.get('set-name', i)}"
        for i, d in ethernets.items()
        if "macaddress" in d.get("match", {})
    ]


@pytest.fixture(params=list(VERSIONS))
def version(request: pytest.FixtureRequest) -> str:
    """The cloud-init version reading the seed (cloudinit_versions.VERSIONS)."""
    return request.param  # type: ignore[no-any-return]


def _cloud_init_read(iso: Path, fmt: str, raw: dict[str, Any], tmp_path: Path, version: str = "22.4") -> dict[str, Any]:
    seed = _extract(iso, tmp_path / "seed")
    return read_seed(version, fmt, seed, _mac_names(raw))


def _expected_network(raw: dict[str, Any]) -> dict[str, Any]:
    """What cloud-init should end up with, per interface name, straight from the spec's text."""
    out: dict[str, Any] = {}
    net = raw.get("network", {})
    for section in ("ethernets", "bonds", "vlans"):
        for dev_id, dev in net.get(section, {}).items():
            routes = []
            for route in dev.get("routes", []):
                family = 6 if ":" in route["via"] else 4
                to = route["to"] if route["to"] != "default" else ("::/0" if family == 6 else "0.0.0.0/0")
                routes.append([str(ipaddress.ip_network(to)), route["via"]])
            out[dev.get("set-name", dev_id)] = {
                "addresses": sorted(str(ipaddress.ip_interface(a)) for a in dev.get("addresses", [])),
                "dhcp4": dev.get("dhcp4", False),
                "dhcp6": dev.get("dhcp6", False),
                "routes": sorted(routes),
            }
    return out


def test_cloud_init_reads_identity_keys_and_payloads(
    image: tuple[Path, dict[str, Any], str], tmp_path: Path, version: str
) -> None:
    iso, raw, fmt = image
    spec = load_spec(raw)
    got = _cloud_init_read(iso, fmt, raw, tmp_path, version)
    assert got["found"] is True
    assert got["instance_id"] == (
        REGISTRY[fmt].fixed_instance_id or (raw["instance_id"] if fmt == "nocloud" else spec.uuid)
    )
    assert got["hostname"] == raw["hostname"]
    if "fqdn" in raw:
        assert got["fqdn"] == raw["fqdn"]
    assert got["public_keys"] == sorted(raw.get("ssh_authorized_keys", []))
    if "availability_zone" in raw:
        assert got["availability_zone"] == raw["availability_zone"]
    user = raw.get("user_data")
    if isinstance(user, str):
        assert got["userdata_raw"] == user
    elif isinstance(user, dict):
        assert yaml.safe_load(got["userdata_raw"]) == user
        assert got["userdata_raw"].startswith("#cloud-config\n")
    elif "user_data_parts" in raw:
        for part in raw["user_data_parts"]:
            assert part["content"] in got["userdata_raw"]
    vendor = raw.get("vendor_data")
    if isinstance(vendor, str):
        assert got["vendordata_raw"] == vendor
    elif isinstance(vendor, dict):
        assert yaml.safe_load(got["vendordata_raw"]) == vendor
    else:
        assert not got["vendordata_raw"]
    if fmt == "configdrive":
        assert got["metadata"]["meta"] == raw.get("meta", {})
        assert got["files"] == {f["path"]: f["content"] for f in raw.get("files", [])}
        assert got["ec2_metadata"]["instance-id"] == raw["instance_id"]


def test_cloud_init_parses_the_network_we_meant(
    image: tuple[Path, dict[str, Any], str], tmp_path: Path, version: str
) -> None:
    iso, raw, fmt = image
    got = _cloud_init_read(iso, fmt, raw, tmp_path, version)
    if "network" not in raw:
        assert got["network_config"] is None
        return
    summary = got["network_summary"]["interfaces"]
    for name, expected in _expected_network(raw).items():
        assert {k: summary[name][k] for k in expected} == expected, name
    macs = {d["match"]["macaddress"]: n for n, d in raw["network"].get("ethernets", {}).items() if "match" in d}
    for mac, dev_id in macs.items():
        name = raw["network"]["ethernets"][dev_id].get("set-name", dev_id)
        assert summary[name]["mac"] == mac
    servers = {
        s
        for s in (
            d.get("nameservers", {}).get("addresses", [])
            for sec in raw["network"].values()
            if isinstance(sec, dict)
            for d in sec.values()
        )
        for s in s
    }
    if fmt == "opennebula" and version != "22.4":
        # cloud-init writes OpenNebula's network as v2 itself; 25.1 keeps v2 servers per interface.
        assert got["network_summary"]["dns"] == []
        assert {s for i in summary.values() for s in i["dns"]} == servers
    else:
        assert set(got["network_summary"]["dns"]) == servers


@cache
def _net_convert(path: str, kind: str, macs: tuple[str, ...]) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        args = [arg for m in macs for arg in ("-m", "{1},{0}".format(*m.split("=")))]
        _run(
            "cloud-init", "devel", "net-convert", "-p", path, "-k", kind, "-d", out, "-D", "debian", "-O", "eni", *args
        )
        return (Path(out) / "etc/network/interfaces.d/50-cloud-init").read_text()


def test_net_convert_renders_addresses_and_routes(
    networked_image: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    iso, raw, fmt = networked_image
    seed = _extract(iso, tmp_path / "seed")
    source, kind = NET_CONVERT[fmt]
    eni = _net_convert(str(seed / source), kind, tuple(_mac_names(raw)))
    for name, expected in _expected_network(raw).items():
        assert f"iface {name} " in eni
        for address in expected["addresses"]:
            assert f"address {address}" in eni
        for to, via in expected["routes"]:
            default = ipaddress.ip_network(to).prefixlen == 0
            assert (f"gateway {via}" in eni or f"default gw {via}" in eni) if default else f"{to} gw {via}" in eni


def test_cloud_config_user_data_passes_cloud_init_schema(
    cloud_config_image: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    iso, raw, fmt = cloud_config_image
    user_data = tmp_path / "user-data"  # as cloud-init's datasource hands it on
    user_data.write_bytes(base64.b64decode(_cloud_init_read(iso, fmt, raw, tmp_path)["userdata_b64"]))
    assert user_data.read_bytes().startswith(b"#cloud-config")
    result = subprocess.run(["cloud-init", "schema", "-c", str(user_data)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
