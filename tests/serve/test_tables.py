"""Each VM's table: byte-identical to the renderer's trees, listings as Nova and EC2 answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from configdrive.seed import build_seed, check_spec
from configdrive.serve.ec2 import EC2_VERSIONS
from configdrive.serve.registry import vm_data
from configdrive.serve.tables import Table, build_table
from tests.conftest import VALID_SPECS, spec_id


def _trees(path: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    spec = check_spec(path.read_bytes(), ())
    return dict(build_seed(spec, "nocloud").tree), dict(build_seed(spec, "configdrive").tree)


@pytest.fixture(params=VALID_SPECS, ids=spec_id)
def trees(request: pytest.FixtureRequest) -> tuple[dict[str, bytes], dict[str, bytes], Table]:
    nocloud, configdrive = _trees(request.param)
    return nocloud, configdrive, build_table(nocloud, configdrive)


def _body(table: Table, path: str) -> bytes | None:
    answer = table.get(path)
    return None if answer is None else answer.body


def test_openstack_files_are_the_config_drive_files(trees: Any) -> None:
    _, configdrive, table = trees
    served = {p for p in table if p.startswith("/openstack/") and not p.endswith("/") and p.count("/") == 3}
    expected = {"/" + p for p in configdrive if p.startswith("openstack/")}
    assert served == expected
    for path in expected:
        assert _body(table, path) == configdrive[path[1:]], path


def test_nocloud_files_are_the_nocloud_files(trees: Any) -> None:
    nocloud, _, table = trees
    for name, content in nocloud.items():
        assert _body(table, f"/nocloud/{name}") == content
    if "vendor-data" not in nocloud:
        # cloud-init retries a missing vendor-data for ~10 s: answer it empty.
        assert _body(table, "/nocloud/vendor-data") == b""
    if "network-config" not in nocloud:
        assert _body(table, "/nocloud/network-config") is None


def test_a_file_the_image_lacks_is_not_served(trees: Any) -> None:
    _, configdrive, table = trees
    assert "openstack/2012-08-10/vendor_data.json" not in configdrive
    assert table.get("/openstack/2012-08-10/vendor_data.json") is None
    assert table.get("/openstack/2012-08-10/network_data.json") is None
    assert table.get("/openstack/latest/password") is None


def test_openstack_listings(trees: Any) -> None:
    _, configdrive, table = trees
    versions = sorted({p.split("/")[1] for p in configdrive if p.startswith("openstack/")} - {"content"})
    assert _body(table, "/openstack") == _body(table, "/openstack/") == "\n".join(versions).encode()
    assert versions[-1] == "latest" and "2018-08-27" in versions
    for version in versions:
        names = sorted(p.rsplit("/", 1)[1] for p in configdrive if p.startswith(f"openstack/{version}/"))
        assert _body(table, f"/openstack/{version}/") == "\n".join(names).encode()


def test_content_files(trees: Any) -> None:
    _, configdrive, table = trees
    meta = json.loads(configdrive["openstack/latest/meta_data.json"])
    for item in meta.get("files", []):
        # cloud-init fetches <base>/openstack/<content_path>
        assert _body(table, "/openstack" + item["content_path"]) == configdrive["openstack" + item["content_path"]]


def _walk(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out += _walk(value, f"{prefix}{key}/")
        else:
            out.append((prefix + key, value))
    return out


def test_ec2_leaves_and_listings(trees: Any) -> None:
    _, configdrive, table = trees
    meta = json.loads(configdrive["ec2/latest/meta-data.json"])
    for version in EC2_VERSIONS:
        for path, value in _walk(meta):
            body = _body(table, f"/{version}/meta-data/{path}")
            assert body == (value if isinstance(value, str) else str(value)).encode(), path
        root = _body(table, f"/{version}/meta-data/")
        assert root == _body(table, f"/{version}/meta-data")
        assert root is not None and set(root.decode().split("\n")) == {
            k + "/" if isinstance(v, dict) else k for k, v in meta.items()
        }
        assert _body(table, f"/{version}/user-data") == configdrive.get("ec2/latest/user-data")
    assert _body(table, "/") == "\n".join(EC2_VERSIONS).encode()


def test_ec2_public_keys_are_listed_by_name() -> None:
    _, configdrive = _trees(next(p for p in VALID_SPECS if p.stem == "example"))
    table = build_table(None, configdrive)
    assert _body(table, "/latest/meta-data/public-keys/") == b"0=alice@example\n1=bob@example"
    assert _body(table, "/latest/meta-data/public-keys/1/") == b"openssh-key"
    assert _body(
        table,
        "/latest/meta-data/public-keys/0/openssh-key",
    ).startswith(b"ssh-ed25519 ")  # type: ignore[union-attr]
    assert _body(table, "/latest/meta-data/placement/availability-zone") == b"zone-a"


def test_a_format_not_served_has_no_paths() -> None:
    nocloud, _ = _trees(VALID_SPECS[0])
    table = build_table(nocloud, None)
    assert not [p for p in table if not p.startswith("/nocloud")]


def test_vms_of_one_shape_share_one_layout() -> None:
    path = next(p for p in VALID_SPECS if p.stem == "example")
    a = vm_data({f: build_seed(path.read_bytes(), f) for f in ("nocloud", "configdrive")})
    raw = path.read_bytes().replace(b"iid-example-0001", b"iid-example-0002")
    b = vm_data({f: build_seed(raw, f) for f in ("nocloud", "configdrive")})
    assert a.table.layout is b.table.layout
    assert a.table.get("/latest/meta-data/instance-id") != b.table.get("/latest/meta-data/instance-id")
