"""cloud-init's own readers against the service return what they read from the images.

From a guest namespace whose source address the leases file gives to each fixture's VM:
the OpenStack ``MetadataReader`` (``/openstack/...``, and EC2 at 169.254.169.254 as the
datasource does) against ``ConfigDriveReader`` on the config-2 tree; the EC2 helpers (also
with an IMDSv2 token) against the tree's ``ec2/latest``; NoCloud-net's ``util.read_seeded``
over HTTP against the same function on the NoCloud tree. Runs Debian's /usr/bin/python3.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from configdrive.output import write_tree
from configdrive.seed import build_seed
from tests.conftest import VALID_SPECS, spec_id
from tests.serve.conftest import LabService

pytestmark = pytest.mark.readers

CLOUD_INIT_PYTHON = "/usr/bin/python3"
READER = Path(__file__).with_name("cloudinit_http_reader.py")
URL = "http://169.254.169.254"


@pytest.fixture(scope="module")
def reader_guests(lab_service: LabService) -> dict[str, str]:
    has_cloudinit = subprocess.run([CLOUD_INIT_PYTHON, "-c", "import cloudinit"], capture_output=True)
    if has_cloudinit.returncode != 0:
        pytest.fail("needs Debian's cloud-init package (tests/APT_PACKAGES)")
    return {
        name: lab_service.lab.guest(f"r{i}", f"52:54:00:ee:00:{i:02x}", [f"{lab_service.lease(name)}/16"])
        for i, name in enumerate(lab_service.names)
    }


def _read(lab_service: LabService, guest: str | None, *args: str) -> Any:
    cmd = [CLOUD_INIT_PYTHON, str(READER), *args]
    result = (
        lab_service.lab.run(guest, *cmd) if guest else subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _tree(tmp_path: Path, path: Path, fmt: str) -> tuple[Path, dict[str, bytes]]:
    tree = dict(build_seed(path.read_bytes(), fmt).tree)
    folder = tmp_path / fmt
    write_tree(folder, tree)
    return folder, tree


def _as_materialized(node: Any, key_names: list[str]) -> Any:
    """ec2/latest/meta-data.json as cloud-init's MetadataMaterializer builds it from the HTTP tree:
    leaves as text, public keys by name."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "public-keys":
            out[key] = {key_names[int(i)]: v["openssh-key"] for i, v in value.items()}
        elif isinstance(value, dict):
            out[key] = _as_materialized(value, key_names)
        else:
            out[key] = value if isinstance(value, str) else str(value)
    return out


def _key_names(tree: dict[str, bytes]) -> list[str]:
    return [k["name"] for k in json.loads(tree["openstack/latest/meta_data.json"]).get("keys", [])]


@pytest.mark.parametrize("path", VALID_SPECS, ids=spec_id)
def test_openstack_metadata_reader(
    lab_service: LabService, reader_guests: dict[str, str], tmp_path: Path, path: Path
) -> None:
    folder, tree = _tree(tmp_path, path, "configdrive")
    over_http = _read(lab_service, reader_guests[path.stem], "openstack", URL)
    from_image = _read(lab_service, None, "configdrive", str(folder))
    ec2_http, ec2_image = over_http.pop("ec2-metadata"), from_image.pop("ec2-metadata")
    assert over_http == from_image
    assert ec2_http == _as_materialized(ec2_image, _key_names(tree))
    assert over_http["metadata"]["uuid"] == json.loads(tree["openstack/latest/meta_data.json"])["uuid"]


@pytest.mark.parametrize("imdsv2", [False, True], ids=["imdsv1", "imdsv2"])
@pytest.mark.parametrize("path", VALID_SPECS, ids=spec_id)
def test_ec2_helpers(
    lab_service: LabService, reader_guests: dict[str, str], tmp_path: Path, path: Path, imdsv2: bool
) -> None:
    _, tree = _tree(tmp_path, path, "configdrive")
    got = _read(lab_service, reader_guests[path.stem], "ec2", URL, *(["imdsv2"] if imdsv2 else []))
    assert got["meta-data"] == _as_materialized(json.loads(tree["ec2/latest/meta-data.json"]), _key_names(tree))
    user_data = tree.get("ec2/latest/user-data")
    expected_user_data = {"bytes": __import__("base64").b64encode(user_data).decode()} if user_data else ""
    assert got["user-data"] == expected_user_data


@pytest.mark.parametrize("path", VALID_SPECS, ids=spec_id)
def test_nocloud_net_reader(lab_service: LabService, reader_guests: dict[str, str], tmp_path: Path, path: Path) -> None:
    folder, tree = _tree(tmp_path, path, "nocloud")
    over_http = _read(lab_service, reader_guests[path.stem], "nocloud", URL + "/nocloud/")
    from_image = _read(lab_service, None, "nocloud", f"{folder}/")
    if "vendor-data" not in tree:
        # The image has no vendor-data file; the service answers it empty (cloud-init would
        # otherwise retry it for ~10 s): both mean "no vendor data" to cloud-init.
        assert from_image["vendor-data"] is None and over_http["vendor-data"] == {"bytes": ""}
        over_http["vendor-data"] = None
    assert over_http == from_image
    assert over_http["meta-data"]["instance-id"]
