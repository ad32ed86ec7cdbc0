"""The two opt-in change policies: network config applied on every boot (cloud-init's own
``updates.network.when``, carried as vendor data) and an instance id derived from the content.
Booted guests prove what cloud-init does with them (tests/vm: the lifecycle's last two boots)."""

from __future__ import annotations

import email
import json
from typing import Any

import pytest
import yaml

from configdrive import FORMATS, FormatError, SpecError, build_seed
from configdrive.render import CHECKED_BY_DEFAULT
from tests.conftest import FIXTURES, example_with, takes_network_updates

_spec = example_with

EXAMPLE = example_with()
UPDATES = {"network": {"when": ["boot"]}}


def vendor_config(spec: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The cloud-config cloud-init takes from the seed's vendor data (parts merged)."""
    tree = build_seed(spec, fmt).tree
    if fmt == "nocloud":
        payload = tree["vendor-data"]
    else:
        payload = json.loads(tree["openstack/latest/vendor_data.json"])["cloud-init"].encode()
    if payload.startswith(b"#cloud-config"):
        loaded: dict[str, Any] = yaml.safe_load(payload)
        return loaded
    merged: dict[str, Any] = {}
    for part in email.message_from_bytes(payload).walk():
        if part.get_content_type() == "text/cloud-config":
            merged.update(yaml.safe_load(part.get_payload(decode=True)))
    return merged


UPDATABLE = [fmt for fmt in CHECKED_BY_DEFAULT if takes_network_updates(fmt)]


def test_formats_that_refuse_network_updates_say_why() -> None:
    assert UPDATABLE
    for fmt in set(FORMATS) - set(UPDATABLE):
        with pytest.raises(FormatError) as info:
            build_seed(_spec(updates=UPDATES, vendor_data=None, network=None), fmt)
        assert "updates" in {p.path for p in info.value.problems}


@pytest.mark.parametrize("fmt", UPDATABLE)
@pytest.mark.parametrize(
    "vendor",
    [
        None,
        {"write_files": [{"path": "/x", "content": "y"}]},
        "#cloud-config\nwrite_files: [{path: /x, content: y}]\n",
        "#!/bin/sh\necho vendor\n",
        [{"content_type": "text/x-shellscript", "content": "#!/bin/sh\necho part\n"}],
    ],
    ids=["none", "mapping", "cloud-config-text", "script", "parts"],
)
def test_network_updates_reach_the_vendor_data(fmt: str, vendor: Any) -> None:
    spec = _spec(vendor_data=vendor, updates=UPDATES)
    config = vendor_config(spec, fmt)
    assert config["updates"] == UPDATES
    if isinstance(vendor, dict) or (isinstance(vendor, str) and vendor.startswith("#cloud-config")):
        assert config["write_files"] == [{"path": "/x", "content": "y"}]  # the spec's vendor data kept


@pytest.mark.parametrize(
    "bad",
    [
        {"updates": {"network": {"when": ["sometimes"]}}},
        {"updates": {"network": {}}},
        {"updates": {"storage": {"when": ["boot"]}}},
        {"updates": UPDATES, "vendor_data": "Content-Type: multipart/mixed; boundary=x\n\n--x--\n"},
        {"updates": UPDATES, "vendor_data": {"updates": {"network": {"when": ["hotplug"]}}}},
        {"instance_id_from": "clock"},
        {"instance_id_from": "content", "uuid": "0b0d3a2e-6f6e-4b6a-8a55-3a4c1d2e3f40"},
    ],
)
def test_bad_policies_are_refused_with_their_field(bad: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        build_seed(_spec(**bad), "nocloud")
    fields = {p.path.split(".")[0].split("[")[0] for p in info.value.problems}
    assert fields & {"updates", "vendor_data", "instance_id_from", "uuid"}, info.value.problems


@pytest.mark.parametrize("fmt", CHECKED_BY_DEFAULT)
def test_content_derived_instance_id_follows_every_change(fmt: str) -> None:
    spec = _spec(instance_id_from="content")
    seed = build_seed(spec, fmt)
    plain = build_seed(_spec(), fmt)
    assert seed.instance_id != plain.instance_id
    assert build_seed(spec, fmt).instance_id == seed.instance_id  # reproducible
    for change in (
        {"hostname": "web2", "fqdn": "web2.example.org"},
        {"meta": {"role": "db"}},
        {"ssh_authorized_keys": EXAMPLE["ssh_authorized_keys"][:1]},
    ):
        assert build_seed(_spec(instance_id_from="content", **change), fmt).instance_id != seed.instance_id
    if fmt == "nocloud":
        assert seed.instance_id.startswith(EXAMPLE["instance_id"] + "-")
        assert yaml.safe_load(seed.tree["meta-data"])["instance-id"] == seed.instance_id
    else:
        assert json.loads(seed.tree["openstack/latest/meta_data.json"])["uuid"] == seed.instance_id


def test_a_format_with_a_fixed_instance_id_refuses_a_content_derived_one() -> None:
    fixed = [name for name, fmt in FORMATS.items() if fmt.fixed_instance_id]
    static = yaml.safe_load((FIXTURES / "specs/valid/static.yaml").read_text())
    for name in fixed:
        build_seed(static, name)
        with pytest.raises(FormatError) as info:
            build_seed({**static, "instance_id_from": "content"}, name)
        assert [p.path for p in info.value.problems] == ["instance_id_from"]
