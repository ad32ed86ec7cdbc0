"""The command line as a user runs it: exit codes, messages, nothing written on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import configdrive
from configdrive import read_iso
from tests.conftest import FIXTURES, ROOT
from tests.test_output import assert_unchanged, make_special

EXAMPLE = FIXTURES / "specs/valid/example.yaml"
INVALID = FIXTURES / "specs/invalid/bad-addresses.yaml"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "configdrive", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin.decode() if stdin else None,
        timeout=60,
    )


def _invalid_spec(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(INVALID.read_text())["spec"]))
    return path


def test_build_writes_a_private_iso(tmp_path: Path) -> None:
    out = tmp_path / "seed.iso"
    result = run("build", str(EXAMPLE), "-o", str(out), "--format", "configdrive")
    assert result.returncode == 0, result.stderr
    assert read_iso(out).label == "config-2"
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert "wrote" in result.stderr


def test_build_from_stdin(tmp_path: Path) -> None:
    out = tmp_path / "seed.iso"
    result = run("build", "-", "-o", str(out), stdin=b"instance_id: i-1\nhostname: h\n")
    assert result.returncode == 0, result.stderr
    assert b"instance-id: i-1" in read_iso(out).files["meta-data"]


def test_invalid_spec_exits_2_prints_every_path_and_writes_nothing(tmp_path: Path) -> None:
    bad = _invalid_spec(tmp_path)
    out = tmp_path / "seed.iso"
    result = run("build", str(bad), "-o", str(out))
    assert result.returncode == 2
    for path in ("network.ethernets.eth1.addresses[0]", "network.ethernets.eth1.addresses[1]", "hostname"):
        assert path in result.stderr
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["bad.yaml"]


def test_invalid_spec_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "seed.iso"
    assert run("build", str(EXAMPLE), "-o", str(out)).returncode == 0
    before = out.read_bytes()
    assert run("build", str(_invalid_spec(tmp_path)), "-o", str(out)).returncode == 2
    assert out.read_bytes() == before


def test_format_that_cannot_express_spec_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "nomac.yaml"
    spec.write_text("instance_id: i\nhostname: h\nnetwork: {ethernets: {eth0: {dhcp4: true}}}\n")
    result = run("build", str(spec), "-o", str(tmp_path / "x.iso"), "-f", "configdrive")
    assert result.returncode == 2 and "network.ethernets.eth0.match.macaddress" in result.stderr
    assert not (tmp_path / "x.iso").exists()


def test_validate_json_lists_problems_per_spec(tmp_path: Path) -> None:
    result = run("validate", "--json", str(EXAMPLE), str(_invalid_spec(tmp_path)))
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert [r["valid"] for r in report] == [True, False]
    assert {"path": "hostname", "message": "'not_valid' is not a valid host name (RFC 1123 label)"} in report[1][
        "problems"
    ]
    assert run("validate", str(EXAMPLE), "-f", "nocloud", "-f", "configdrive").returncode == 0


def test_render_writes_the_tree(tmp_path: Path) -> None:
    result = run("render", str(EXAMPLE), "--format", "configdrive", "--out-dir", str(tmp_path / "t"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "t/openstack/latest/meta_data.json").read_text())["name"] == "web1"


def test_inspect_reports_label_files_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "seed.iso"
    run("build", str(EXAMPLE), "-o", str(out))
    result = run("inspect", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["label"] == "cidata" and report["format"] == "nocloud"
    assert report["metadata"]["meta-data"]["instance-id"] == "iid-example-0001"
    assert set(report["files"]) == {"meta-data", "user-data", "vendor-data", "network-config"}


def test_inspect_of_a_non_iso_exits_1(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 100)
    result = run("inspect", str(junk))
    assert result.returncode == 1 and "junk" in result.stderr


def test_schema_is_the_shipped_json_schema() -> None:
    result = run("schema")
    assert json.loads(result.stdout)["required"] == ["instance_id", "hostname"]
    assert result.stdout == (ROOT / "schemas/vmspec.schema.json").read_text()


def test_help_has_examples() -> None:
    result = run("build", "--help")
    assert result.returncode == 0 and "examples:" in result.stdout


def test_build_does_not_import_heavy_or_unused_modules(tmp_path: Path) -> None:
    # Never -o /dev/null: as root, the atomic rename once replaced the host's /dev/null (issue 12).
    out = tmp_path / "seed.iso"
    code = (
        f"import sys, runpy; sys.argv=['configdrive','build','-','-o',{str(out)!r}];\n"
        "try: runpy.run_module('configdrive', run_name='__main__')\n"
        "except SystemExit as stop: print('exit', stop.code)\n"
        "print(','.join(m for m in ('etcd3','grpc','qemu.qmp','jsonschema','configdrive.stores') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input="instance_id: i\nhostname: h\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stdout.startswith("exit 0\n"), result.stdout + result.stderr
    data = out.read_bytes()
    assert data[:32768] == bytes(32768) and data[32768:32774] == b"\x01CD001"  # system area, then the PVD
    assert "etcd3" not in result.stdout and "grpc" not in result.stdout and "qemu" not in result.stdout
    assert "configdrive.stores" not in result.stdout  # no store is opened: its package stays unloaded


LIBRARIES = ("pycdlib", "jsonschema", "yaml", "etcd3", "grpc", "qemu.qmp")
IMPORT_PROBE = (
    "import sys, runpy; sys.argv=['configdrive', *sys.argv[1:]]\n"
    "try: runpy.run_module('configdrive', run_name='__main__')\n"
    "except SystemExit: pass\n"
    f"print('loaded:', ','.join(m for m in {LIBRARIES!r} if m in sys.modules), file=sys.stderr)"
)


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--help"], set()),
        (["schema"], set()),
        (["list", "--store", "dir:{tmp}"], set()),
        (["get", "--store", "dir:{tmp}", "vm1"], set()),
        (["inspect", "{iso}"], {"pycdlib", "yaml"}),
        (["build", "{spec}", "-o", "{tmp}/out.iso"], {"pycdlib", "jsonschema", "yaml"}),
    ],
)
def test_commands_import_only_the_libraries_they_use(tmp_path: Path, argv: list[str], allowed: set[str]) -> None:
    iso = tmp_path / "seed.iso"
    iso.write_bytes(configdrive.build_iso(configdrive.load_spec(EXAMPLE)))
    args = [a.format(tmp=tmp_path, iso=iso, spec=EXAMPLE) for a in argv]
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    loaded = set(result.stderr.rpartition("loaded: ")[2].strip().split(",")) - {""}
    assert loaded <= allowed, result.stderr
    if argv[0] == "build":
        assert loaded == allowed and (tmp_path / "out.iso").exists()


@pytest.mark.parametrize("kind", ["fifo", "char-device"])
def test_build_refuses_an_output_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "seed.iso"
    before = make_special(target, kind)
    result = run("build", str(EXAMPLE), "-o", str(target))
    # exit 2: a target that is not a regular file is bad input, refused before anything is built
    assert result.returncode == 2 and "refusing" in result.stderr
    assert_unchanged(target, before)
    assert os.listdir(tmp_path) == ["seed.iso"]


def test_put_checks_every_format_but_the_narrow_ones_unless_named(tmp_path: Path) -> None:
    from configdrive.render import CHECKED_BY_DEFAULT, FORMATS

    store = f"dir:{tmp_path}"
    narrow = [name for name, fmt in FORMATS.items() if fmt.narrow]
    assert set(CHECKED_BY_DEFAULT) == set(FORMATS) - set(narrow) and CHECKED_BY_DEFAULT
    ok = run("put", "--store", store, "vm1", str(EXAMPLE))  # DHCP, vendor data: no narrow format takes it
    assert ok.returncode == 0, ok.stderr
    for name in narrow:
        refused = run("put", "--store", store, "vm2", str(EXAMPLE), "--format", name)
        assert refused.returncode == 2 and f"{name}:" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["vm1.yaml"]


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    iso = tmp_path / "seed.iso"
    iso.write_bytes(configdrive.build_iso(configdrive.load_spec(EXAMPLE)))
    for args in (["inspect", str(iso), "--contents"], ["schema"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "configdrive", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head -0` does
        err = proc.stderr.read().decode()
        assert proc.wait(60) in (0, 141) and "Traceback" not in err, err
