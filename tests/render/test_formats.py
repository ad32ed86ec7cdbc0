"""What each format writes, per cloud-init 22.4 and Nova: seeds, versions, payloads, files."""

from __future__ import annotations

import email
import json

import yaml

from configdrive import load_spec, render
from configdrive.render import openstack as cd
from tests.conftest import FIXTURES

EXAMPLE = load_spec(FIXTURES / "specs/valid/example.yaml")
MINIMAL = load_spec(FIXTURES / "specs/valid/minimal.yaml")


def test_nocloud_always_writes_user_data_and_only_given_optional_files() -> None:
    tree = render(MINIMAL, "nocloud")
    assert sorted(tree) == ["meta-data", "user-data"]
    assert tree["user-data"] == b""  # without it cloud-init skips the seed as "not a valid seed"
    assert yaml.safe_load(tree["meta-data"]) == {"instance-id": "iid-minimal", "local-hostname": "minimal"}


def test_nocloud_local_hostname_is_the_fqdn_when_given() -> None:
    meta = yaml.safe_load(render(EXAMPLE, "nocloud")["meta-data"])
    assert meta["local-hostname"] == "web1.example.org"
    assert [k.split()[0] for k in meta["public-keys"]] == ["ssh-ed25519", "ssh-rsa"]


def test_every_dated_folder_carries_what_its_version_supports() -> None:
    tree = render(EXAMPLE, "configdrive")
    folders = {p.split("/")[1] for p in tree if p.startswith("openstack/") and "/content/" not in p}
    assert folders == set(cd.VERSIONS)
    for version in cd.VERSIONS:
        names = {p.rsplit("/", 1)[1] for p in tree if p.startswith(f"openstack/{version}/")}
        # network_data.json from Liberty on: cloud-init reads only the newest dated folder it knows.
        assert ("network_data.json" in names) == (version == "latest" or version >= cd.OS_LIBERTY)
        assert ("vendor_data.json" in names) == (version == "latest" or version >= cd.OS_HAVANA)
        assert ("vendor_data2.json" in names) == (version == "latest" or version >= cd.OS_NEWTON_TWO)
        assert {"meta_data.json", "user_data"} <= names
    assert tree["openstack/2015-10-15/network_data.json"] == tree["openstack/latest/network_data.json"]
    assert set(tree) >= {"ec2/latest/meta-data.json", "ec2/2009-04-04/user-data"}


def test_no_network_section_means_no_network_data_json() -> None:
    assert not [p for p in render(MINIMAL, "configdrive") if p.endswith("network_data.json")]


def test_meta_data_json_fields() -> None:
    tree = render(EXAMPLE, "configdrive")
    meta = json.loads(tree["openstack/latest/meta_data.json"])
    assert meta["uuid"] == EXAMPLE.uuid and meta["name"] == "web1"
    assert meta["hostname"] == "web1.example.org"  # dotted: cloud-init adds no .novalocal
    assert meta["availability_zone"] == "zone-a" and meta["meta"] == {"role": "web", "owner": "team-blue"}
    assert sorted(meta["public_keys"]) == ["alice@example", "bob@example"]
    assert [k["type"] for k in meta["keys"]] == ["ssh", "ssh"]
    assert "keys" not in json.loads(tree["openstack/2013-10-17/meta_data.json"])


def test_vendor_data_json_wraps_payload_under_cloud_init_key() -> None:
    tree = render(EXAMPLE, "configdrive")
    vendor = json.loads(tree["openstack/latest/vendor_data.json"])
    assert vendor == {"cloud-init": EXAMPLE.vendor_data}
    assert json.loads(tree["openstack/latest/vendor_data2.json"]) == {}


def test_files_go_to_content_with_paths_in_meta_data() -> None:
    spec = load_spec(FIXTURES / "specs/valid/vendor-and-files.yaml")
    tree = render(spec, "configdrive")
    meta = json.loads(tree["openstack/latest/meta_data.json"])
    assert meta["files"] == [
        {"path": "/etc/configdrive/motd", "content_path": "/content/0000"},
        {"path": "/var/lib/app/settings.json", "content_path": "/content/0001"},
    ]
    assert tree["openstack/content/0000"] == b"welcome\n"
    assert json.loads(tree["openstack/latest/vendor_data.json"])["cloud-init"].startswith("#cloud-config\n")


def test_mime_multipart_parts_survive_a_parse() -> None:
    spec = load_spec(FIXTURES / "specs/valid/multipart.yaml")
    raw = render(spec, "nocloud")["user-data"]
    message = email.message_from_bytes(raw)
    assert message.is_multipart()
    parts = message.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/x-shellscript"]
    assert [p.get_filename() for p in parts] == ["config.yaml", "script.sh"]
    assert parts[1].get_payload(decode=True).startswith(b"#!/bin/sh\n")
    assert render(spec, "nocloud")["user-data"] == raw  # boundary is derived, not random


def test_mapping_user_data_is_cloud_config() -> None:
    raw = render(EXAMPLE, "nocloud")["user-data"]
    assert raw.startswith(b"#cloud-config\n")
    assert yaml.safe_load(raw)["runcmd"] == [["touch", "/var/tmp/runcmd-ran"]]


def test_yaml_bytes_do_not_depend_on_libyaml() -> None:
    import yaml

    from configdrive.render.userdata import dump_yaml

    for data in ({"k": "\U00010000"}, {"a\rb": "x"}, {"plain": ["ascii", 1, True]}, {"é": "ü\n"}):
        pure = yaml.dump(
            data, Dumper=yaml.SafeDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16
        ).encode()
        assert dump_yaml(data) == pure, data


def test_every_registered_format_is_consistent(fmt: str) -> None:
    """Label lookup, refusal messages and the instance-id rule, for each Format in the registry."""
    from configdrive.render import FORMATS, format_of_label

    form = FORMATS[fmt]
    assert form.name == fmt and format_of_label(form.label.swapcase()) is form
    assert form.problems(MINIMAL) == []  # every format carries a hostname and an instance id
    for spec in (MINIMAL, EXAMPLE, load_spec(FIXTURES / "specs/valid/bond-vlan.yaml")):
        assert all(p.message.startswith(f"{fmt}: ") for p in form.problems(spec))
    if form.fixed_instance_id is not None:  # cloud-init ignores the seed's id: so must we
        assert form.instance_id(MINIMAL) == form.instance_id(EXAMPLE) == form.fixed_instance_id
    else:
        assert form.instance_id(MINIMAL) != form.instance_id(EXAMPLE)
