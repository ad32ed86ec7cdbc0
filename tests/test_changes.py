"""configdrive.changes and `configdrive diff`: which changed field cloud-init applies when.

The rows of ``RULES`` themselves are what booted guests did (tests/vm asserts them); here: the
comparison of seeds as cloud-init reads them, from specs, store entries and ISOs alike.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from configdrive import FORMATS, build_seed
from configdrive.changes import RULES, changed_fields, summary, verdicts
from configdrive.render import CHECKED_BY_DEFAULT
from tests.conftest import FIXTURES, ROOT, example_with, takes_network_updates

_changed = example_with

EXAMPLE = example_with()
COMPARABLE = [name for name in CHECKED_BY_DEFAULT if FORMATS[name].fields is not None]
STATIC = yaml.safe_load((FIXTURES / "specs/valid/static.yaml").read_text())


def _fields(spec: dict[str, Any], fmt: str) -> dict[str, Any]:
    form = FORMATS[fmt]
    assert form.fields is not None
    return form.fields(build_seed(spec, fmt).tree)


def _verdicts(fmt: str, new: dict[str, Any]) -> dict[str, str]:
    return {v.field: v.applies for v in verdicts(FORMATS[fmt], summary(_fields(EXAMPLE, fmt)), _fields(new, fmt))}


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_same_spec_has_no_changes(fmt: str) -> None:
    assert _verdicts(fmt, EXAMPLE) == {}


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_same_instance_id(fmt: str) -> None:
    user_data = dict(EXAMPLE["user_data"], bootcmd=[["echo", "boot"]], runcmd=[["echo", "changed"]])
    new = _changed(
        ssh_authorized_keys=EXAMPLE["ssh_authorized_keys"][:1],
        user_data=user_data,
        meta={"role": "db"},
        hostname="web2",
        fqdn="web2.example.org",
    )
    assert _verdicts(fmt, new) == {
        "hostname": "next-boot",
        "meta": "never",
        "ssh_authorized_keys": "new-instance",
        "user_data.bootcmd": "next-boot",
        "user_data.runcmd": "new-instance",
    }


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_new_instance_id_applies_everything_per_instance(fmt: str) -> None:
    new = _changed(
        instance_id="iid-other", ssh_authorized_keys=EXAMPLE["ssh_authorized_keys"][:1], availability_zone="zone-b"
    )
    got = _verdicts(fmt, new)
    assert got == {"instance_id": "next-boot", "ssh_authorized_keys": "next-boot", "availability_zone": "never"}


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_network_change_waits_for_a_new_instance_unless_asked_every_boot(fmt: str) -> None:
    network = copy.deepcopy(EXAMPLE["network"])
    eth = next(iter(network["ethernets"].values()))
    eth["mtu"] = 1400
    assert _verdicts(fmt, _changed(network=network)) == {"network": "new-instance"}
    if not takes_network_updates(fmt):
        return
    vendor = "#cloud-config\nupdates:\n  network:\n    when: [boot]\n"
    got = _verdicts(fmt, _changed(network=network, vendor_data=vendor))
    assert got["network"] == "next-boot"


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_a_vendor_key_the_user_data_also_has_is_never_applied(fmt: str) -> None:
    """cloud-init merges vendor data under user data: a vendor ``runcmd`` loses to the user's,
    even for a new instance; two mappings merge key by key, so a vendor mapping still counts."""
    user = {"runcmd": [["echo", "user"]], "apt": {"preserve_sources_list": True}}
    old = _changed(user_data=user, vendor_data={"runcmd": [["echo", "v1"]], "apt": {"conf": "a"}})
    new = _changed(user_data=user, vendor_data={"runcmd": [["echo", "v2"]], "apt": {"conf": "b"}})
    form = FORMATS[fmt]
    got = {v.field: v.applies for v in verdicts(form, summary(_fields(old, fmt)), _fields(new, fmt))}
    assert got == {"vendor_data.runcmd": "never", "vendor_data.apt": "new-instance"}
    # without the user's runcmd the vendor's runs, as any vendor data does
    user_without = {k: v for k, v in EXAMPLE["user_data"].items() if k != "runcmd"}
    alone = _changed(user_data=user_without, vendor_data={"runcmd": [["echo", "v2"]]})
    got = {v.field: v.applies for v in verdicts(form, summary(_fields(old, fmt)), _fields(alone, fmt))}
    assert got["vendor_data.runcmd"] == "new-instance"


@pytest.mark.parametrize("fmt", [f for f in COMPARABLE if takes_network_updates(f)])
def test_user_data_updates_override_the_vendor_network_policy(fmt: str) -> None:
    network = copy.deepcopy(EXAMPLE["network"])
    next(iter(network["ethernets"].values()))["mtu"] = 1400
    vendor = {"updates": {"network": {"when": ["boot"]}}}
    user_never = dict(EXAMPLE["user_data"], updates={"network": {"when": []}})
    assert _verdicts(fmt, _changed(network=network, vendor_data=vendor))["network"] == "next-boot"
    got = _verdicts(fmt, _changed(network=network, vendor_data=vendor, user_data=user_never))
    assert got["network"] == "new-instance"


def test_a_fixed_instance_id_never_reruns_per_instance_config() -> None:
    fixed = next((f for f in FORMATS.values() if f.fixed_instance_id), None)
    if fixed is None:
        pytest.skip("no registered format fixes the instance id")
    old = {"instance_id": "a", "ssh_authorized_keys": ["k1"], "hostname": "h"}
    new = {"instance_id": "b", "ssh_authorized_keys": ["k2"], "hostname": "g"}
    got = {v.field: v.applies for v in verdicts(fixed, summary(old), new)}
    assert got == {"instance_id": "never", "ssh_authorized_keys": "never", "hostname": "next-boot"}


def test_every_changed_field_has_a_rule() -> None:
    fields = {f for fmt in COMPARABLE for f in _fields(EXAMPLE, fmt)}
    assert fields <= set(RULES)
    old, new = summary({"user_data": {"a": 1, "b": 2}}), summary({"user_data": {"a": 1, "b": 3, "c": 4}})
    assert changed_fields(old, new) == ["user_data.b", "user_data.c"]
    assert all(len(digest) == 24 for digest in old.values())  # digests, not values


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "configdrive", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_cli_compares_specs_isos_and_store_entries(tmp_path: Path, fmt: str) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump(EXAMPLE))
    new.write_text(yaml.safe_dump(_changed(ssh_authorized_keys=EXAMPLE["ssh_authorized_keys"][:1])))
    iso = tmp_path / "old.iso"
    assert run("build", str(old), "-o", str(iso), "-f", fmt).returncode == 0
    store = tmp_path / "store"
    store.mkdir()
    (store / "vm1.yaml").write_text(new.read_text())
    for left, right, extra in ((old, new, ["-f", fmt]), (iso, new, []), (iso, "vm1", ["--store", f"dir:{store}"])):
        result = run("diff", str(left), str(right), "--json", *extra)
        assert result.returncode == 1, result.stderr
        verdict = json.loads(result.stdout)
        assert verdict == [
            {"field": "ssh_authorized_keys", "applies": "new-instance", "why": RULES["ssh_authorized_keys"].why}
        ]
        assert "AAAA" not in result.stdout + result.stderr  # no key material
    same = run("diff", str(iso), str(old))
    assert same.returncode == 0 and same.stdout == ""


def test_cli_diff_refuses_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("instance_id: 5\n")
    example = str(FIXTURES / "specs/valid/example.yaml")
    assert run("diff", example, str(bad)).returncode == 2
    assert run("diff", example, str(tmp_path / "missing.yaml")).returncode == 2
    names = [n for n in FORMATS][:2]
    isos = []
    for name in names:
        isos.append(tmp_path / f"{name}.iso")
        assert run("build", example, "-o", str(isos[-1]), "-f", name).returncode == 0
    result = run("diff", *map(str, isos))
    assert result.returncode == 2 and "different" in result.stderr


@pytest.mark.parametrize("fmt", COMPARABLE)
def test_multipart_user_data_is_compared_part_by_part(fmt: str) -> None:
    def parts(label: str, script: str) -> list[dict[str, str]]:
        return [
            {
                "content_type": "text/cloud-config",
                "content": f"#cloud-config\nbootcmd: [echo {label}]\nruncmd: [echo {label}]\n",
            },
            {"content_type": "text/x-shellscript", "content": f"#!/bin/sh\necho {script}\n", "filename": "a.sh"},
        ]

    base = _changed(user_data=None, user_data_parts=parts("one", "one"))
    form = FORMATS[fmt]
    assert form.fields is not None
    old = summary(form.fields(build_seed(base, fmt).tree))

    def got(new: dict[str, Any]) -> dict[str, str]:
        assert form.fields is not None
        return {v.field: v.applies for v in verdicts(form, old, form.fields(build_seed(new, fmt).tree))}

    assert got(_changed(user_data=None, user_data_parts=parts("two", "one"))) == {
        "user_data.bootcmd": "next-boot",
        "user_data.runcmd": "new-instance",
    }
    assert got(_changed(user_data=None, user_data_parts=parts("one", "two"))) == {"user_data": "new-instance"}


@pytest.mark.parametrize("fmt", [name for name, f in FORMATS.items() if f.fixed_instance_id and f.fields])
def test_a_fixed_instance_id_format_from_real_seeds(fmt: str) -> None:
    form = FORMATS[fmt]
    assert form.fields is not None
    old = summary(form.fields(build_seed(STATIC, fmt).tree))
    new = dict(
        STATIC,
        instance_id="iid-other",
        hostname="db2",
        fqdn="db2.example.org",
        ssh_authorized_keys=[*STATIC["ssh_authorized_keys"], EXAMPLE["ssh_authorized_keys"][1]],
    )
    got = {v.field: v.applies for v in verdicts(form, old, form.fields(build_seed(new, fmt).tree))}
    assert got == {"hostname": "next-boot", "ssh_authorized_keys": "never"}  # the id never changes


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True),
        st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))),
    )
)
def test_opennebula_context_reads_back_what_was_written(variables: dict[str, str]) -> None:
    from configdrive.render.opennebula import read_context, render_context

    assert read_context(render_context(variables)) == variables
