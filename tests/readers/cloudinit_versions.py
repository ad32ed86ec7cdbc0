"""The cloud-init versions the tests read seeds with, and the upstream defects each may log.

22.4 is Debian 12's installed `cloud-init` package; 25.1 is Debian 13's package, unpacked (not
installed) by `tests/setup-host.sh` into ``CLOUD_INIT_25_1``. Both run under Debian's
/usr/bin/python3 (3.11): 25.1's code imports with the modules 22.4's package already pulled in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

PYTHON = "/usr/bin/python3"  # Debian's python, where the cloud-init package lives
READER = ROOT / "tests/readers/cloudinit_reader.py"
CLOUD_INIT_25_1 = Path(os.environ.get("CLOUD_INIT_25_1", "/var/cache/configdrive-ci/cloud-init-25.1"))

#: version -> the folder put first on PYTHONPATH (None: the installed package).
VERSIONS: dict[str, Path | None] = {"22.4": None, "25.1": CLOUD_INIT_25_1 / "usr/lib/python3/dist-packages"}


def read_seed(version: str, fmt: str, seed: Path, macs: Iterable[str] = ()) -> dict[str, Any]:
    """What cloud-init ``version`` makes of the extracted seed in ``seed`` (see cloudinit_reader.py);
    ``macs`` are the VM's NICs as ``MAC=NAME``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = VERSIONS[version]
    if code is not None:
        if not (code / "cloudinit").is_dir():
            pytest.fail(f"cloud-init {version} is not unpacked in {code}: run `bash tests/setup-host.sh`")
        env["PYTHONPATH"] = str(code)
    cmd = [PYTHON, str(READER), fmt, str(seed), *macs]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, f"cloud-init {version} reader failed: {result.stderr}"
    got: dict[str, Any] = json.loads(result.stdout)
    assert got["cloud_init_version"].startswith(version + "."), got["cloud_init_version"]
    return got


@dataclass(frozen=True)
class KnownDefect:
    """A log line a cloud-init version writes for a right seed, and the schema problems (as
    ``cloud-init schema --system`` prints them) that must be all it is about."""

    versions: tuple[str, ...]
    log: str
    problems: tuple[str, ...]
    reference: str


#: The only WARNING/DEPRECATED lines a seed may cause, each matched in full.
KNOWN_DEFECTS: dict[str, KnownDefect] = {
    "accept-ra on a bond or VLAN": KnownDefect(
        # 25.1's v1 schema allows accept-ra on physical devices only. config-2 gets it from
        # cloud-init's own network_data.json converter (an ipv6 network turns RAs off, ipv6_dhcp
        # on); NoCloud v1 writes it to keep a static IPv6 bond/VLAN from taking SLAAC addresses.
        # The network is applied as written all the same.
        versions=("25.1",),
        log=re.escape(
            "network-config-v1 failed schema validation! "
            "You may run 'sudo cloud-init schema --system' to check the details."
        ),
        problems=(
            re.escape("Additional properties are not allowed ('accept-ra' was unexpected)"),
            r"\{(?=.*'type': '(?:bond|vlan)')(?=.*'accept-ra': (?:True|False)).*\} "
            r"is not valid under any of the given schemas",
        ),
        reference="canonical/cloud-init PR #6545 (merged after 25.1.4): allow accept_ra for bond/bridge/VLAN devices",
    ),
    # OpenNebula: cloud-init turns context.sh into network config v2 itself (OpenNebulaNetwork.gen_conf
    # in cloudinit/sources/DataSourceOpenNebula.py, 25.1.4); a seed cannot choose the form.
    "OpenNebula default gateways as gateway4/gateway6": KnownDefect(
        versions=("25.1",),
        log=re.escape(
            "The use of `gateway4` and `gateway6` is deprecated in 22.4 and scheduled to be removed in 27.4. "
            "For more info check out: https://docs.cloud-init.io/en/latest/topics/network-config-format-v2.html"
        ),
        problems=(),
        reference="cloud-init 25.1.4 DataSourceOpenNebula.py gen_conf writes ETHn_GATEWAY/ETHn_IP6_GATEWAY as "
        "gateway4/gateway6, which its own v2 reader deprecates; no upstream fix known",
    ),
    "OpenNebula MTU as a string": KnownDefect(
        versions=("25.1",),
        log=re.escape(
            "network-config-v2 failed schema validation! "
            "You may run 'sudo cloud-init schema --system' to check the details."
        ),
        problems=(r"'\d+' is not of type 'integer'",),
        reference="cloud-init 25.1.4 DataSourceOpenNebula.py gen_conf passes ETHn_MTU on as a string, which its "
        "own v2 schema refuses (the MTU is applied); no upstream fix known",
    ),
    # Seen in booted Debian 12 guests only (tests/vm/test_serve_boot.py): with a datasource found in
    # the network stage (NoCloud-net) 22.4 renders the network again for the new instance and runs
    # ifup on the NIC networking.service already brought up; nothing else happens (a seed drive's
    # datasource is found in init-local and never does this).
    "NoCloud-net ifup again": KnownDefect(
        versions=("22.4",),
        log=re.escape("Running ['ifup', 'eth0'] resulted in stderr output: ifup: interface eth0 already configured"),
        problems=(),
        reference="cloud-init 22.4 (Debian 12) with ifupdown; no upstream report found",
    ),
}


def defects_seen(got: dict[str, Any]) -> list[str]:
    """The known defects behind ``got["log"]``, one per line; an AssertionError names any other
    line, and any schema problem that no defect seen explains."""
    version = got["cloud_init_version"].rsplit(".", 1)[0]
    defects = {name: defect for name, defect in KNOWN_DEFECTS.items() if version in defect.versions}
    seen = []
    for record in got["log"]:
        name = next((n for n, d in defects.items() if re.fullmatch(d.log, record["message"])), None)
        assert name is not None, f"cloud-init {version} logged {record}"
        seen.append(name)
    for path, message in got.get("schema_problems") or []:
        explained = any(re.fullmatch(p, message) for name in seen for p in defects[name].problems)
        assert explained, f"cloud-init {version}: {path}: {message}"
    return seen
