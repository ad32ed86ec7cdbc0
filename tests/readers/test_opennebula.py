"""OpenNebula CONTEXT seeds read by cloud-init 22.4's own OpenNebula datasource.

cloud-init runs context.sh through ``sudo -u nobody bash -e`` and keeps every variable it
sets: these tests prove each value arrives byte for byte and nothing in a value runs.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configdrive import build_iso, load_spec, read_iso, render
from configdrive.render.opennebula import INSTANCE_ID, context_variables, render_context
from tests.readers.cloudinit_versions import VERSIONS, defects_seen, read_seed
from tests.readers.test_readers import CLOUD_INIT_PYTHON, READER, _run

pytestmark = pytest.mark.readers

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y"
RSA = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCkG7AIrbUesLo5l9DY3ZusrvyaFIw9G3CCaA9dXhCQytYCY7Em5dYRT6+uFF"
    "GpkVqU/2IlXUCYSKwM+EflQe2JvmxEqZSlSFsO/N6bkaAo7LxC9P/sco6U8XQ46FlcJXz60r+M00gJWhX5OyuOI+GD"
    "SSayyLmMa8ksyu18JRTuaw=="
)
MAC0, MAC1, MAC_OTHER = "52:54:00:0e:00:01", "52:54:00:0e:00:02", "52:54:00:0a:0b:0c"

STATIC_SPEC: dict[str, Any] = {
    "instance_id": "iid-one-1",
    "hostname": "web1",
    "fqdn": "web1.example.org",
    "ssh_authorized_keys": [f"{ED25519} alice@example", f"{RSA} bob@example"],
    "user_data": "#cloud-config\nruncmd:\n  - [touch, /var/tmp/one]\n",
    "network": {
        "ethernets": {
            "eth0": {
                "match": {"macaddress": MAC0},
                "addresses": ["192.0.2.10/24", "2001:db8:1::10/64"],
                "routes": [{"to": "default", "via": "192.0.2.1"}, {"to": "::/0", "via": "2001:db8:1::1"}],
                "nameservers": {
                    "addresses": ["192.0.2.53", "2001:db8:1::53"],
                    "search": ["example.org", "corp.example"],
                },
                "mtu": 9000,
            },
            "eth1": {"match": {"macaddress": MAC1.upper()}, "addresses": ["10.20.0.5/16"]},
        }
    },
}


def _read(context_dir: Path, macs: dict[str, str]) -> dict[str, Any]:
    out = _run(
        CLOUD_INIT_PYTHON, str(READER), "opennebula", str(context_dir), *(f"{mac}={name}" for mac, name in macs.items())
    )
    return json.loads(out)  # type: ignore[no-any-return]


def _read_spec(spec: dict[str, Any], tmp_path: Path, macs: dict[str, str]) -> dict[str, Any]:
    """Build the ISO, read it back with our reader, and hand its context.sh to cloud-init."""
    image = read_iso(build_iso(load_spec(spec), "opennebula"))
    assert image.label == "CONTEXT" and sorted(image.files) == ["context.sh"]
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "context.sh").write_bytes(image.files["context.sh"])
    return _read(seed, macs)


def test_identity_keys_and_user_data(tmp_path: Path) -> None:
    got = _read_spec(STATIC_SPEC, tmp_path, {MAC0: "ens3", MAC1: "ens4"})
    assert got["found"] is True
    assert got["instance_id"] == INSTANCE_ID == "iid-dsopennebula"
    assert got["hostname"] == "web1" and got["fqdn"] == "web1.example.org"
    assert got["public_keys"] == sorted(STATIC_SPEC["ssh_authorized_keys"])
    assert base64.b64decode(got["userdata_b64"]) == STATIC_SPEC["user_data"].encode()
    assert got["vendordata_raw"] is None


def test_network_config_v2_one_stanza_per_nic_by_mac(tmp_path: Path) -> None:
    got = _read_spec(STATIC_SPEC, tmp_path, {MAC0: "ens3", MAC1: "ens4"})
    assert got["network_config"] == {
        "version": 2,
        "ethernets": {
            "ens3": {
                "match": {"macaddress": MAC0},
                "addresses": ["192.0.2.10/24", "2001:db8:1::10/64"],
                "gateway4": "192.0.2.1",
                "gateway6": "2001:db8:1::1",
                "nameservers": {
                    "addresses": ["192.0.2.53", "2001:db8:1::53"],
                    "search": ["example.org", "corp.example"],
                },
                "mtu": "9000",  # cloud-init passes the context's string on
            },
            "ens4": {"match": {"macaddress": MAC1}, "addresses": ["10.20.0.5/16"]},
        },
    }
    summary = got["network_summary"]["interfaces"]
    assert summary["ens3"]["routes"] == [["0.0.0.0/0", "192.0.2.1"], ["::/0", "2001:db8:1::1"]]
    assert summary["ens4"]["dns"] == [] and summary["ens4"]["routes"] == []
    # No global DNS is written: a NIC gets only the servers the spec gives it.
    assert got["network_summary"]["dns"] == ["192.0.2.53", "2001:db8:1::53"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("gateways_and_mtu", [True, False], ids=["gateways-mtu", "plain"])
def test_each_version_logs_only_its_known_defects(tmp_path: Path, version: str, gateways_and_mtu: bool) -> None:
    """cloud-init writes the network config from context.sh itself: 25.1 deprecates the gateway4/6
    it makes of ETHn_GATEWAY/ETHn_IP6_GATEWAY and refuses the MTU it leaves a string. Nothing else."""
    spec = copy.deepcopy(STATIC_SPEC)
    eth0 = spec["network"]["ethernets"]["eth0"]
    if not gateways_and_mtu:
        del eth0["routes"], eth0["mtu"]
    (tmp_path / "context.sh").write_bytes(render(load_spec(spec), "opennebula")["context.sh"])
    got = read_seed(version, "opennebula", tmp_path, [f"{MAC0}=ens3", f"{MAC1}=ens4"])
    known = ["OpenNebula default gateways as gateway4/gateway6", "OpenNebula MTU as a string"]
    assert sorted(defects_seen(got)) == (sorted(known) if version == "25.1" and gateways_and_mtu else [])
    ens3 = got["network_summary"]["interfaces"]["ens3"]
    assert ens3["addresses"] == eth0["addresses"]
    assert ens3["routes"] == ([["0.0.0.0/0", "192.0.2.1"], ["::/0", "2001:db8:1::1"]] if gateways_and_mtu else [])
    assert ens3["mtu"] in ((9000, "9000") if gateways_and_mtu else (None,))


def test_a_nic_the_spec_does_not_name_gets_an_address_made_up_from_its_mac(tmp_path: Path) -> None:
    """Why every NIC in the spec needs an IPv4 address: cloud-init configures every NIC it sees."""
    got = _read_spec(STATIC_SPEC, tmp_path, {MAC0: "ens3", MAC1: "ens4", MAC_OTHER: "ens5"})
    assert got["network_config"]["ethernets"]["ens5"]["addresses"] == ["0.10.11.12/24"]


def test_no_network_section_means_no_network_config(tmp_path: Path) -> None:
    got = _read_spec({"instance_id": "i", "hostname": "bare"}, tmp_path, {MAC0: "ens3"})
    assert got["network_config"] is None  # cloud-init falls back to DHCP on the first NIC
    assert got["hostname"] == "bare" and got["public_keys"] == [] and got["userdata_raw"] is None


# --- quoting: nothing leaves its quotes ----------------------------------------------------------


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    """A folder anyone may write to (context.sh runs as nobody): an escaped command would leave a file."""
    folder = Path(tempfile.mkdtemp(prefix="configdrive-quoting-"))
    os.chmod(folder, 0o1777)
    yield folder
    shutil.rmtree(folder)


def nasty(marker: Path) -> list[str]:
    """Values that would run ``touch`` in ``marker`` if any escaped its single quotes."""
    m = marker
    return [
        f"$(touch {m}/dollar-paren)",
        f"`touch {m}/backquote`",
        f"'; touch {m}/quote; '",
        f"'\\''$(touch {m}/escaped-quote)'\\''",
        f'"$(touch {m}/double-quoted)"',
        f"\\'$(touch {m}/backslash-quote)\\'",
        f'it\'s "quoted" `touch {m}/mixed` $(touch {m}/mixed2) ${{HOME}} $PATH $$ $0 ${{!S*}}',
        f"line one\nline two $(touch {m}/newline)\n'\ntouch {m}/newline-quote\n'",
        "ends with a backslash \\",
        "\\",
        "'",
        "''",
        "'''",
        '"',
        "\n",
        "\r\n",
        "\n\n\n",
        " spaces around ",
        "tab\there",
        "!history !! !$",
        "unicode é ü \u2028 😀",
        "# not a comment",
        "a=b c=d",
    ]


def test_every_value_arrives_byte_exact_and_nothing_runs(tmp_path: Path, marker_dir: Path) -> None:
    values = {f"CONFIGDRIVE_TEST_{i}": value for i, value in enumerate(nasty(marker_dir))}
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "context.sh").write_bytes(render_context(values))
    got = _read(seed, {})
    assert {k: v for k, v in got["metadata"].items() if k.startswith("CONFIGDRIVE_TEST_")} == values
    assert sorted(os.listdir(marker_dir)) == []


def test_spec_fields_with_shell_syntax_arrive_byte_exact_and_nothing_runs(tmp_path: Path, marker_dir: Path) -> None:
    """Every spec string that reaches context.sh: key comments verbatim, user data (base64)."""
    values = nasty(marker_dir)
    one_line = [" ".join(v.split()) for v in values if len(v.splitlines()) <= 1 and v.strip()]
    keys = [
        f"{ED25519} {' '.join(one_line[: len(one_line) // 2])}",
        f"{RSA} {' '.join(one_line[len(one_line) // 2 :])}",
    ]
    user_data = "#!/bin/sh\n" + "\n".join(values) + "\0binary\r\n\n"
    spec = {"instance_id": "i", "hostname": "quoting", "ssh_authorized_keys": keys, "user_data": user_data}
    assert all("'" in key and "$" in key for key in keys)
    got = _read_spec(spec, tmp_path, {})
    assert got["public_keys"] == sorted(keys)
    assert got["metadata"]["SSH_PUBLIC_KEY"] == "\n".join(keys)
    assert base64.b64decode(got["userdata_b64"]) == user_data.encode()
    assert sorted(os.listdir(marker_dir)) == []


def test_the_reader_gets_exactly_our_variables(tmp_path: Path) -> None:
    """Every variable we write arrives with its value, and cloud-init adds only its own keys."""
    ours = context_variables(load_spec(STATIC_SPEC))
    got = _read_spec(STATIC_SPEC, tmp_path, {MAC0: "ens3", MAC1: "ens4"})["metadata"]
    assert {k: got[k] for k in ours} == ours
    assert set(got) - set(ours) == {"instance-id", "local-hostname", "public-keys"}
